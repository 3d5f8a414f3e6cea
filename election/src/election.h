/* election — the election entity: validation, persistence and the events it emits.
 *
 * Documents live in the "elections" collection of the service's database:
 *   {_id: ObjectId, title, titleKey, date: Date, electionType, description,
 *    version, createdAt, updatedAt, deleted, + outbox fields (see events.h)}
 * A delete keeps a tombstone (deleted: true, version bumped) so a later PUT that
 * re-creates the id continues the version sequence and replicas accept it; titleKey is
 * the title for live documents and a per-id marker for tombstones, so the unique index
 * on it frees the title of a deleted election. Every change pushes its event into the
 * document's outbox in the same write. This layer knows nothing about HTTP. */
#ifndef ELECTION_ELECTION_H
#define ELECTION_ELECTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/events.h"
#include "voter/mongo.h"

typedef enum {
  ES_OK = 0,
  ES_CREATED,
  ES_NOT_FOUND,
  ES_DUPLICATE,    /* title already used */
  ES_PRECONDITION, /* If-Match did not match */
  ES_INVALID,      /* errors filled */
  ES_UNAVAILABLE   /* database unreachable */
} es_status;

typedef struct election_store election_store;

#define ELECTION_MAX_SORT 4

typedef struct election_query {
  int64_t page, size;
  const char *sort_fields[ELECTION_MAX_SORT]; /* document field names */
  int sort_dirs[ELECTION_MAX_SORT];           /* 1 or -1 */
  int nsort;
  const char *type_contains; /* NULL: no filter */
} election_query;

election_store *election_store_open(mongo_db *db, ev_relay *relay, const char *source);
void election_store_close(election_store *s);
/* Creates the indexes; false while the database is unreachable. */
bool election_store_init(election_store *s);

/* Maps an API sort property (title, date, electionType, description, version, id) to the
 * document field; NULL when not sortable. */
const char *election_sort_field(const char *property);

/* Validates a full representation (POST/PUT). path_id, when given, must equal an "id" in
 * the body if the body has one. Appends {field,message} to errors; returns their count. */
int election_validate(const json_t *body, const char *path_id, json_t *errors);

es_status election_create(election_store *s, const json_t *body, json_t **item);
es_status election_get(election_store *s, const char *id, json_t **item);
/* if_match < 0: unconditional. ES_CREATED when the id did not exist (or was deleted). */
es_status election_replace(election_store *s, const char *id, const json_t *body,
                           int64_t if_match, json_t **item);
/* JSON merge patch (RFC 7396) on the current representation, then full validation. */
es_status election_patch(election_store *s, const char *id, const json_t *patch,
                         int64_t if_match, json_t **item, json_t *errors);
es_status election_delete(election_store *s, const char *id, int64_t if_match);
es_status election_list(election_store *s, const election_query *q, json_t **items,
                        int64_t *total);
/* Titles of every election, sorted. */
es_status election_titles(election_store *s, json_t **titles);
/* Deletes every election, each with its own election.deleted event. */
es_status election_drop_all(election_store *s, int64_t *count);
/* Re-publishes every election as election.updated at its current version. */
es_status election_replay(election_store *s, int64_t *count);

#endif
