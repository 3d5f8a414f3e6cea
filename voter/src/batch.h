/* batch — bulk vote ingestion through a durable AMQP work queue.
 *
 * POST /voter/votes/batch validates every line (NDJSON or a JSON array), records the batch
 * ({_id, status, total, accepted, rejected, rejections[], written, chunks, chunksDone[]}
 * in "batches"), and publishes the accepted votes in chunks, with their ids already
 * assigned, to the work queue "<queue prefix>.ingest" (persistent, confirmed). Worker
 * threads (INGEST_WORKERS, default 3) each consume one chunk at a time (prefetch 1), so
 * votes are written at the rate the database sustains however large the burst, and several
 * chunks (of one election too: votes_insert_many holds it shared) keep the database busy
 * while each waits for its answers. A redelivered chunk re-inserts nothing (the ids
 * collide) and counts nothing twice (see votes_insert_many). A client retrying a
 * submission sends an Idempotency-Key: the batch's and its votes' ids then come from it. */
#ifndef VOTER_BATCH_H
#define VOTER_BATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "voter/idem.h"
#include "voter/mongo.h"

typedef struct batch_ctx batch_ctx;

typedef enum {
  BATCH_ACCEPTED = 0,
  BATCH_BAD_REQUEST,
  BATCH_UNAVAILABLE,
  BATCH_NOT_FOUND,
  BATCH_MISMATCH /* Idempotency-Key reused by the caller with another body */
} batch_status;

batch_ctx *batch_start(mongo_db *db, const char *amqp_url, const char *exchange, int chunk_size,
                       int workers);
void batch_stop(batch_ctx *b);
bool batch_init(mongo_db *db);

/* Validates and queues a batch. On BATCH_BAD_REQUEST, detail explains (the body as a whole
 * is not NDJSON/JSON array); per-line problems are rejections in *result instead. With an
 * Idempotency-Key (key->present), the batch and its votes have ids derived from it: a
 * retry gets the first attempt's batch (*replayed), re-queued if it had not completed. */
batch_status batch_submit(batch_ctx *b, const char *body, size_t len, bool ndjson,
                          const idem_key *key, json_t **result, bool *replayed, char *detail,
                          size_t detail_len);
batch_status batch_get(batch_ctx *b, const char *id, json_t **result);

#endif
