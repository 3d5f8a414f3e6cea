/* replica_read — the read side of replicas: list, get, summary, clear and "is this target
 * known" (prefix replica_read_).
 *
 * replica.h writes replica documents ({_id: "<source id>", <data fields>, version, deleted,
 * appliedAt}); this module is the one place that reads them, for every service that keeps
 * a replica (the voter's candidates and elections, the candidate service's elections).
 * Tombstones (deleted: true) are never returned and never make a target known. The
 * queries only rely on the `deleted` flag, so the summary also serves a service's own
 * entity collection (the candidate service's candidates: the same shape as the voter's
 * replica of them). Nothing here knows about HTTP. */
#ifndef VOTER_REPLICA_READ_H
#define VOTER_REPLICA_READ_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/mongo.h"

typedef enum {
  REPLICA_READ_OK = 0,
  REPLICA_READ_NOT_FOUND,
  REPLICA_READ_UNAVAILABLE /* database failure (logged) */
} replica_read_status;

/* A replica document as its source service rendered it: _id becomes id, the bookkeeping
 * fields (deleted, appliedAt) are dropped, strings/numbers/booleans kept, anything else
 * null. The default render of list and get. */
json_t *replica_read_item(const bson_t *doc);

/* A page of live documents of collection; when field and contains are given, only those
 * whose field contains that text (a literal substring). render NULL: replica_read_item. */
replica_read_status replica_read_list(mongo_db *db, const char *collection, const char *field,
                                      const char *contains, const mongo_page *page,
                                      mongo_render render, json_t **items, int64_t *total);

/* The live document with this _id (a string, as replicas store source ids): OK with *item,
 * or NOT_FOUND. render NULL: replica_read_item. */
replica_read_status replica_read_get(mongo_db *db, const char *collection, const char *id,
                                     mongo_render render, json_t **item);

/* Whether a live document has every field equal to its value; match is a NULL-terminated
 * list of field, value pairs ({"title", "2024 Primary", NULL}). OK (with *known) or
 * UNAVAILABLE. */
replica_read_status replica_read_known(mongo_db *db, const char *collection,
                                       const char *const *match, bool *known);

/* A list of short rows of every live document (of those whose match_field equals value,
 * when value is not NULL), sorted ascending by the sort fields then _id. Each row holds the
 * fields, strings or null. */
typedef struct replica_summary_spec {
  const char *collection;
  const char *match_field;
  const char *const *fields; /* NULL-terminated */
  const char *const *sort;   /* NULL-terminated */
} replica_summary_spec;

/* [{fullName, politicalParty, election}] of candidates, by lastName then firstName: what
 * the candidate service serves of its own candidates and the voter of its replica. */
extern const replica_summary_spec replica_candidate_summary;

replica_read_status replica_read_summary(mongo_db *db, const replica_summary_spec *spec,
                                         const char *value, json_t **rows);

/* Deletes every document of collection, tombstones included; *count (may be NULL) gets
 * how many. */
replica_read_status replica_read_clear(mongo_db *db, const char *collection, int64_t *count);

#endif
