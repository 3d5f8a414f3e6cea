/* elections — the candidate service's read-only replica of the election service's
 * elections (prefix elections_).
 *
 * Documents live in the "elections" collection, written only by the shared replica
 * module from election.created|updated|deleted events consumed on the queue
 * "candidate.elections" (with its .retry and .dlq queues):
 *   {_id: "<election id>", title, date, electionType, description, version, deleted,
 *    appliedAt}
 * date stays the string the election service rendered (ISO 8601, so it sorts). Tombstones
 * (deleted: true) are hidden from every read here. Clearing the replica asks the election
 * service to replay its current elections (POST <ELECTION_URL>/election/events/replay,
 * through the shared httpc client), so it rebuilds by itself. This layer knows nothing about serving
 * HTTP. */
#ifndef CANDIDATE_ELECTIONS_H
#define CANDIDATE_ELECTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "voter/authz.h"
#include "voter/mongo.h"

typedef enum {
  ELECTIONS_OK = 0,
  ELECTIONS_NOT_FOUND,
  ELECTIONS_UNAVAILABLE /* database unreachable */
} elections_status;

typedef struct elections elections;

/* One convention (shared/README.md, "Error conventions"): the reads, writes and requests
 * return an elections_status; the life-cycle calls say only whether they worked (a
 * pointer or NULL from elections_open, a bool from elections_init and
 * elections_start_consumer), having logged why not. */

typedef struct elections_options {
  mongo_db *db;
  const char *election_url; /* the election service, e.g. http://127.0.0.1:8081 */
  const char *api_key;      /* sent as X-API-Key on the replay request when set */
  /* the consumer */
  const char *amqp_url;
  const char *exchange;
  const char *queue;        /* "candidate.elections" */
  int retry_delay_ms;
  int max_attempts;
} elections_options;

elections *elections_open(const elections_options *opts);
/* Stops the consumer (if started) and frees. */
void elections_close(elections *e);
/* Creates the replica's indexes; false while the database is unreachable. */
bool elections_init(elections *e);
/* Starts consuming election events into the replica (its own thread). false on failure. */
bool elections_start_consumer(elections *e);

/* Maps an API sort property (title, date, electionType, description, version, id) to the
 * document field; NULL when not sortable. */
const char *elections_sort_field(const char *property);

/* The reads go through the shared replica read side (replica_read.h) with this replica's
 * collection and representation. */

/* Live elections, one page; type_contains (may be NULL) filters by substring of
 * electionType, matched literally. */
elections_status elections_list(elections *e, const mongo_page *q, const char *type_contains,
                                json_t **items, int64_t *total);
elections_status elections_get(elections *e, const char *id, json_t **item);
/* Whether a live election has exactly this title. */
elections_status elections_title_known(elections *e, const char *title, bool *known);

/* Deletes every replica document, tombstones included. */
elections_status elections_clear(elections *e, int64_t *count);
/* Asks the election service to re-publish its elections (httpc_request_replay).
 * ELECTIONS_OK on a 2xx answer; otherwise ELECTIONS_UNAVAILABLE with a reason in err.
 * request_id (may be NULL) is passed on as X-Request-ID; auth (may be NULL) holds the admin
 * proof headers the election service requires for a replay. */
elections_status elections_request_replay(elections *e, const char *request_id, const authz_headers *auth,
                             char *err, size_t errlen);

#endif
