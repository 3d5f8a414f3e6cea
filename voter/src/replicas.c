/* replicas — the voter's replicas: required fields and sortable properties; see
 * replicas.h. */
#include "replicas.h"

#include <string.h>

const char *const replicas_candidate_required[] = {"fullName", "election", NULL};
const char *const replicas_election_required[] = {"title", NULL};

static const char *sort_in(const char *const *allowed, const char *p) {
  if (strcmp(p, "id") == 0) return "_id";
  for (int i = 0; allowed[i]; i++)
    if (strcmp(p, allowed[i]) == 0) return allowed[i];
  return NULL;
}

const char *replicas_candidate_sort(const char *p) {
  static const char *const allowed[] = {"firstName", "lastName", "fullName", "politicalParty",
                                        "election", "homeState", "version", NULL};
  return sort_in(allowed, p);
}

const char *replicas_election_sort(const char *p) {
  static const char *const allowed[] = {"title", "date", "electionType", "description", "version",
                                        NULL};
  return sort_in(allowed, p);
}
