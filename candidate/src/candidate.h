/* candidate — the candidate entity: validation, persistence and the events it emits.
 *
 * Documents live in the "candidates" collection of the service's database:
 *   {_id: ObjectId, firstName, lastName, fullName, politicalParty, election, homeState,
 *    politcalExperience, nameKey, version, createdAt, updatedAt, deleted,
 *    + outbox fields (see events.h)}
 * politcalExperience keeps the original API's misspelling: it is the wire name, and
 * politicalExperience is accepted on input as an alias. fullName is derived
 * ("<firstName> <lastName>") and stored so it sorts like any field.
 *
 * A candidate's election must be a live election of the local replica (elections.h)
 * whenever a write sets or changes it; a write that keeps the stored election is not
 * re-checked, so a candidate whose election was deleted can still be corrected or moved.
 *
 * nameKey is "<election>\x1f<fullName>" for live candidates and a per-id marker for
 * tombstones; its unique index makes a full name unique within one election, because
 * that pair is how the voter service names a candidate (a vote is
 * {"candidate": "<full name>", "election": "<title>"}): two live candidates sharing it
 * could not be told apart. Deleting a candidate frees the pair.
 *
 * A delete keeps a tombstone (deleted: true, version bumped) so a PUT that re-creates the
 * id continues the version sequence and replicas accept it. Every change pushes its event
 * (candidate.created|updated|deleted; data = the item, or {id, version} for a delete)
 * into the document's outbox in the same write. This layer knows nothing about HTTP. */
#ifndef CANDIDATE_CANDIDATE_H
#define CANDIDATE_CANDIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "docs.h"
#include "elections.h"
#include "voter/events.h"
#include "voter/mongo.h"

typedef enum {
  CS_OK = 0,
  CS_CREATED,
  CS_NOT_FOUND,
  CS_DUPLICATE,    /* full name already used in that election */
  CS_PRECONDITION, /* If-Match did not match */
  CS_INVALID,      /* errors filled (e.g. an unknown election) */
  CS_UNAVAILABLE   /* database unreachable */
} cs_status;

typedef struct candidate_store candidate_store;

typedef struct candidate_query {
  docs_page page;
  const char *election_contains; /* NULL: no filter; else a literal substring of election */
} candidate_query;

candidate_store *candidate_store_open(mongo_db *db, ev_relay *relay, const char *source,
                                      elections *replica);
void candidate_store_close(candidate_store *s);
/* Creates the indexes; false while the database is unreachable. */
bool candidate_store_init(candidate_store *s);

/* Maps an API sort property (firstName, lastName, fullName, politicalParty, election,
 * homeState, politcalExperience, version, id) to the document field; NULL when not
 * sortable. */
const char *candidate_sort_field(const char *property);

/* Validates the shape of a full representation (POST/PUT): types, required and unknown
 * fields, the experience alias, a fullName that contradicts the names, and an id that
 * differs from path_id (when given). Appends {field,message} to errors; returns their
 * count. Whether the election exists is checked by the writes. */
int candidate_validate(const json_t *body, const char *path_id, json_t *errors);

/* Every write that carries an unknown election answers CS_INVALID with an "election"
 * error in errors. */
cs_status candidate_create(candidate_store *s, const json_t *body, json_t **item,
                           json_t *errors);
cs_status candidate_get(candidate_store *s, const char *id, json_t **item);
/* if_match < 0: unconditional. CS_CREATED when the id did not exist (or was deleted). */
cs_status candidate_replace(candidate_store *s, const char *id, const json_t *body,
                            int64_t if_match, json_t **item, json_t *errors);
/* JSON merge patch (RFC 7396) on the current representation, then full validation. */
cs_status candidate_patch(candidate_store *s, const char *id, const json_t *patch,
                          int64_t if_match, json_t **item, json_t *errors);
cs_status candidate_delete(candidate_store *s, const char *id, int64_t if_match);
cs_status candidate_list(candidate_store *s, const candidate_query *q, json_t **items,
                         int64_t *total);
/* [{fullName, politicalParty, election}] of every live candidate, or of those of exactly
 * one election (election non-NULL), sorted by lastName, then firstName. */
cs_status candidate_summary(candidate_store *s, const char *election, json_t **list);
/* Deletes every candidate, each with its own candidate.deleted event. */
cs_status candidate_drop_all(candidate_store *s, int64_t *count);
/* Re-publishes every candidate as candidate.updated at its current version. */
cs_status candidate_replay(candidate_store *s, int64_t *count);

#endif
