/* replicas — the voter's replicas: required fields and sortable properties; see
 * replicas.h. */
#include "replicas.h"

#include "voter/hal.h"

const char *const replicas_candidate_required[] = {"fullName", "election", NULL};
const char *const replicas_election_required[] = {"title", NULL};

const char *replicas_candidate_sort(const char *p) {
  static const char *const allowed[] = {"firstName", "lastName", "fullName", "politicalParty",
                                        "election", "homeState", "version", NULL};
  return hal_sort_field(allowed, p);
}

const char *replicas_election_sort(const char *p) {
  static const char *const allowed[] = {"title", "date", "electionType", "description", "version",
                                        NULL};
  return hal_sort_field(allowed, p);
}
