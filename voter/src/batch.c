/* batch — bulk ingestion; see batch.h. */
#include "batch.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch_parse.h"
#include "votes.h"
#include "voter/crashpoint.h"
#include "voter/amqp.h"
#include "voter/doclock.h"
#include "voter/events.h"
#include "voter/idem.h"
#include "voter/json.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/revclaim.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define BATCHES "batches"
#define INGEST_KEY "voter.ingest"

struct batch_ctx {
  mongo_db *db;
  char *url, *exchange;
  int chunk_size;
  mq_conn *publisher; /* shared by HTTP threads: guarded by lock */
  pthread_mutex_t lock;
  pthread_t *workers; /* INGEST_WORKERS consumers, each with its own connection */
  int nworkers;
  volatile sig_atomic_t stop;
};

bool batch_init(mongo_db *db) {
  (void)db;
  metrics_describe("votes_ingested_total", "counter", "Votes written by the batch ingestion worker");
  return true;
}

/* ---- worker ---- */

/* Writes update to the batch document as its next revision (revclaim.h), if guard holds
 * there: two replicas' workers (chunks of one batch are consumed by whichever replica the
 * broker hands them to) and a retried submission on a third never overwrite each other,
 * which FerretDB's separate filter and write steps and the in-process lock alone allowed.
 * 1 written, 0 guard did not hold, -1 database failure (error set). */
static int batch_write(batch_ctx *b, mongoc_client_t *client, mongoc_collection_t *coll,
                       const bson_oid_t *oid, const bson_t *guard, const bson_t *update,
                       bson_error_t *error) {
  char revs_name[64];
  rev_collection_name(BATCHES, revs_name, sizeof revs_name);
  mongoc_collection_t *revs = mongo_collection(b->db, client, revs_name);
  bson_value_t id = {.value_type = BSON_TYPE_OID};
  bson_oid_copy(oid, &id.value.v_oid);
  bson_t *byid = BCON_NEW("_id", BCON_OID(oid));
  int rc = -1;
  for (int attempt = 0; attempt < 20 && rc == -1; attempt++) {
    if (attempt) {
      struct timespec ts = {0, (long)(1 + rand() % 20) * 1000000L};
      nanosleep(&ts, NULL);
    }
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, byid, NULL, NULL);
    const bson_t *found;
    if (!mongoc_cursor_next(cur, &found)) {
      if (!mongoc_cursor_error(cur, error)) rc = 0; /* no such batch */
      mongoc_cursor_destroy(cur);
      break;
    }
    int64_t rev = rev_of(found);
    mongoc_cursor_destroy(cur);
    rev_result r = rev_update(coll, revs, &id, rev, guard, update, error);
    if (r == REV_APPLIED) rc = 1;
    else if (r == REV_UNMATCHED) rc = 0;
    else if (r != REV_BUSY) break; /* -1 */
    else snprintf(error->message, sizeof error->message, "batch write contended");
  }
  bson_destroy(byid);
  mongoc_collection_destroy(revs);
  return rc;
}

/* Records a written chunk on its batch, and the batch's completion. false on a database
 * failure: the chunk is then retried rather than acked, since a chunk acked without its
 * progress left its batch "queued" forever (found by tests/test_chaos.py). Repeating it is
 * harmless: the chunk's votes collide on their ids and its seq is pushed once. */
static bool record_progress(batch_ctx *b, const char *batch, int64_t seq, int64_t n) {
  bson_oid_t oid;
  if (!util_is_object_id(batch)) return true;
  bson_oid_init_from_string(&oid, batch);
  mongoc_client_t *client = mongo_acquire(b->db);
  mongoc_collection_t *coll = mongo_collection(b->db, client, BATCHES);
  bson_error_t error;
  doclock_lock(batch);
  /* only the first delivery of a chunk counts it */
  bson_t *guard = BCON_NEW("chunksDone", "{", "$ne", BCON_INT64(seq), "}");
  bson_t *update = BCON_NEW("$push", "{", "chunksDone", BCON_INT64(seq), "}", "$inc", "{",
                            "written", BCON_INT64(n), "}");
  bool ok = batch_write(b, client, coll, &oid, guard, update, &error) >= 0;
  CRASH_POINT("chunk.progress");
  /* completion: read back and compare ($expr is not available on FerretDB); the write is
   * the next revision of what was read, so nothing changed in between */
  bson_t *doc = NULL;
  if (ok) {
    bson_t *by_id = BCON_NEW("_id", BCON_OID(&oid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, by_id, NULL, NULL);
    const bson_t *found;
    if (mongoc_cursor_next(cur, &found)) doc = bson_copy(found);
    else if (mongoc_cursor_error(cur, &error)) ok = false;
    mongoc_cursor_destroy(cur);
    bson_destroy(by_id);
  }
  if (ok && doc) {
    const char *status = mongo_doc_str(doc, "status");
    if (mongo_doc_int(doc, "written") >= mongo_doc_int(doc, "accepted") &&
        (!status || strcmp(status, "completed") != 0)) {
      bson_t *guard_status = BCON_NEW("written", BCON_INT64(mongo_doc_int(doc, "written")));
      bson_t *set = BCON_NEW("$set", "{", "status", BCON_UTF8("completed"), "completedAt",
                             BCON_DATE_TIME(util_now_ms()), "}");
      /* 0: another write came in between (a later chunk): that one completes the batch */
      ok = batch_write(b, client, coll, &oid, guard_status, set, &error) >= 0;
      bson_destroy(set);
      bson_destroy(guard_status);
    }
  }
  if (!ok) log_warn("batch: progress update failed, the chunk will be retried: %s", error.message);
  if (doc) bson_destroy(doc);
  doclock_unlock(batch);
  bson_destroy(guard);
  bson_destroy(update);
  mongoc_collection_destroy(coll);
  mongo_release(b->db, client);
  return ok;
}

static mq_verdict handle_chunk(void *ctx, const mq_message *msg, const char **error) {
  batch_ctx *b = ctx;
  batch_chunk c;
  if (!batch_parse_chunk(msg->body, msg->len, &c)) {
    batch_parse_chunk_free(&c);
    *error = "malformed ingestion chunk";
    return MQ_REJECT;
  }
  int64_t written;
  vs_status st = votes_insert_many(b->db, c.votes, c.n, c.key, &written);
  mq_verdict verdict = MQ_ACK;
  if (st == VS_OK) metrics_counter_add("votes_ingested_total", "", (double)written);
  if (st != VS_OK || !record_progress(b, c.batch, c.seq, (int64_t)c.n)) {
    *error = "database unavailable";
    verdict = MQ_RETRY;
  }
  batch_parse_chunk_free(&c);
  return verdict;
}

static const char *const ingest_keys[] = {INGEST_KEY, NULL};
/* prefetch 1: one chunk in flight per worker, so the database sets the pace */
static const mq_queue_spec ingest_spec = {.queue = "voter.ingest", .keys = ingest_keys,
                                          .prefetch = 1, .max_attempts = 10,
                                          .retry_delay_ms = 2000};

static void *worker_main(void *arg) {
  batch_ctx *b = arg;
  mq_consume(b->url, b->exchange, &ingest_spec, handle_chunk, b, &b->stop);
  return NULL;
}

batch_ctx *batch_start(mongo_db *db, const char *amqp_url, const char *exchange, int chunk_size,
                       int workers) {
  batch_ctx *b = xcalloc(1, sizeof *b);
  b->db = db;
  b->url = xstrdup(amqp_url);
  b->exchange = xstrdup(exchange);
  b->chunk_size = chunk_size > 0 ? chunk_size : 2000;
  b->publisher = mq_conn_new(b->url, b->exchange, "voter-batch-publisher");
  pthread_mutex_init(&b->lock, NULL);
  /* the work queue exists before the first batch is accepted (best effort, see replica.c) */
  if (b->publisher && mq_ensure(b->publisher) == 0) mq_declare_queue(b->publisher, &ingest_spec);
  if (workers < 1) workers = 1;
  b->workers = xcalloc((size_t)workers, sizeof *b->workers);
  bool started = b->publisher != NULL;
  for (int i = 0; started && i < workers; i++) {
    started = pthread_create(&b->workers[i], NULL, worker_main, b) == 0;
    if (started) b->nworkers++;
  }
  if (!started) {
    b->stop = 1;
    for (int i = 0; i < b->nworkers; i++) pthread_join(b->workers[i], NULL);
    free(b->workers);
    mq_conn_free(b->publisher);
    pthread_mutex_destroy(&b->lock);
    free(b->url);
    free(b->exchange);
    free(b);
    return NULL;
  }
  return b;
}

void batch_stop(batch_ctx *b) {
  if (!b) return;
  b->stop = 1;
  for (int i = 0; i < b->nworkers; i++) pthread_join(b->workers[i], NULL);
  free(b->workers);
  mq_conn_free(b->publisher);
  pthread_mutex_destroy(&b->lock);
  free(b->url);
  free(b->exchange);
  free(b);
}

/* ---- submission ---- */

/* Validates one vote; returns NULL when valid, else a message (static or in buf). */
static const char *check_vote(batch_ctx *b, json_t *v, json_t *cache, char *buf, size_t len) {
  const char *shape = batch_parse_vote_shape(v, buf, len);
  if (shape) return shape;
  const char *c = jsonv_str(v, "candidate"), *e = jsonv_str(v, "election");
  char key[600];
  snprintf(key, sizeof key, "%s\x1f%s", e, c);
  json_t *known = json_object_get(cache, key);
  int st;
  if (known) {
    st = (int)json_integer_value(known);
  } else {
    st = votes_check(b->db, c, e);
    json_object_set_new(cache, key, json_integer(st));
  }
  switch (st) {
  case VS_OK: return NULL;
  case VS_UNKNOWN_ELECTION: return "unknown election";
  case VS_UNKNOWN_CANDIDATE: return "unknown candidate in this election";
  default: return "could not be checked (database unavailable)";
  }
}

static json_t *batch_view(const bson_t *doc) {
  json_t *raw = mongo_bson_to_json(doc);
  if (!raw) return json_object();
  json_t *id = json_object_get(json_object_get(raw, "_id"), "$oid");
  json_t *view = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "id", id, "status",
                           json_object_get(raw, "status"), "total", json_object_get(raw, "total"),
                           "accepted", json_object_get(raw, "accepted"), "rejected",
                           json_object_get(raw, "rejected"), "written",
                           json_object_get(raw, "written"), "rejections",
                           json_object_get(raw, "rejections"));
  json_t *created = json_object_get(json_object_get(raw, "createdAt"), "$date");
  if (created) json_object_set(view, "createdAt", created);
  json_t *completed = json_object_get(json_object_get(raw, "completedAt"), "$date");
  if (completed) json_object_set(view, "completedAt", completed);
  json_decref(raw);
  return view;
}

batch_status batch_get(batch_ctx *b, const char *id, json_t **result) {
  *result = NULL;
  if (!util_is_object_id(id)) return BATCH_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(b->db);
  mongoc_collection_t *coll = mongo_collection(b->db, client, BATCHES);
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid));
  bson_t *opts = BCON_NEW("projection", "{", "chunksDone", BCON_INT32(0), "}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
  const bson_t *doc;
  bson_error_t error;
  batch_status st = BATCH_NOT_FOUND;
  if (mongoc_cursor_next(cur, &doc)) {
    *result = batch_view(doc);
    st = BATCH_ACCEPTED;
  } else if (mongoc_cursor_error(cur, &error)) {
    st = BATCH_UNAVAILABLE;
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  bson_destroy(opts);
  mongoc_collection_destroy(coll);
  mongo_release(b->db, client);
  return st;
}

/* Publishes the accepted votes in chunks; returns how many chunks were confirmed. */
static size_t publish_chunks(batch_ctx *b, const char *batch, json_t *accepted, size_t nchunks) {
  size_t done = 0;
  pthread_mutex_lock(&b->lock);
  for (size_t c = 0; c < nchunks; c++) {
    json_t *slice = json_array();
    for (size_t i = c * (size_t)b->chunk_size;
         i < json_array_size(accepted) && i < (c + 1) * (size_t)b->chunk_size; i++)
      json_array_append(slice, json_array_get(accepted, i));
    json_t *msg = json_pack("{s:s, s:I, s:o}", "batch", batch, "seq", (json_int_t)c, "votes", slice);
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    char id[37];
    util_uuid(id);
    mq_props props = {.message_id = id, .type = INGEST_KEY, .content_type = "application/json"};
    /* An idle publisher connection may have been closed by the broker (missed heartbeats);
     * the first publish then only notices it, so keep trying through the reconnect backoff
     * for a few seconds before answering 503. */
    int rc = -1;
    for (double until = util_monotonic() + 5.0; text && rc != 0 && util_monotonic() < until;) {
      rc = mq_publish(b->publisher, NULL, INGEST_KEY, text, strlen(text), &props, 5000);
      if (rc != 0) {
        struct timespec pause = {0, 100 * 1000000L};
        nanosleep(&pause, NULL);
      }
    }
    free(text);
    if (rc != 0) break;
    done++;
  }
  pthread_mutex_unlock(&b->lock);
  return done;
}

/* The id of a batch and of its votes: derived from the caller's Idempotency-Key when there
 * is one (idem.h), so a retried submission re-queues the same votes under the same ids and
 * chunk names, which the worker writes and counts once; random otherwise. */
static void batch_id(const idem_key *key, bson_oid_t *oid, char text[25]) {
  if (key->present) idem_object_id(key->scoped, "batch", oid);
  else bson_oid_init(oid, NULL);
  bson_oid_to_string(oid, text);
}

static void vote_id(const idem_key *key, const char *batch, size_t n, char text[25]) {
  bson_oid_t oid;
  if (key->present) idem_child_id(batch, n, &oid);
  else bson_oid_init(&oid, NULL);
  bson_oid_to_string(&oid, text);
}

/* Moves a batch from one status to another, only if it is still in the first (under the
 * batch's lock, as record_progress). false on a database failure. */
static bool set_status(batch_ctx *b, mongoc_client_t *client, mongoc_collection_t *coll,
                       const bson_oid_t *oid, const char *batch, const char *from, const char *to) {
  bson_t *guard = BCON_NEW("status", BCON_UTF8(from));
  bson_t *update = BCON_NEW("$set", "{", "status", BCON_UTF8(to), "}");
  bson_error_t error;
  doclock_lock(batch);
  bool ok = batch_write(b, client, coll, oid, guard, update, &error) >= 0;
  doclock_unlock(batch);
  bson_destroy(guard);
  bson_destroy(update);
  return ok;
}

/* A retried keyed submission found its batch: unless it completed, its chunks are queued
 * again (the first attempt may have died before queueing them all; chunks already written
 * are redeliveries to the worker). Only when this attempt accepted exactly what the first
 * did: the replicas may have changed in between, and the batch's votes are the first's. */
static batch_status resume(batch_ctx *b, mongoc_client_t *client, mongoc_collection_t *coll,
                           const bson_t *found,
                           json_t *accepted, size_t nchunks, char *detail, size_t detail_len) {
  const char *status = mongo_doc_str(found, "status");
  if ((status && strcmp(status, "completed") == 0) ||
      mongo_doc_int(found, "accepted") != (int64_t)json_array_size(accepted))
    return BATCH_ACCEPTED;
  bson_iter_t it;
  if (!bson_iter_init_find(&it, found, "_id") || !BSON_ITER_HOLDS_OID(&it)) return BATCH_ACCEPTED;
  char batch[25];
  bson_oid_to_string(bson_iter_oid(&it), batch);
  metrics_counter_inc("idempotency_takeovers_total", "kind=\"batch\"");
  /* A failed batch is reopened before its chunks go out, and only while it is still
   * "failed": reopening after them could undo the completion their worker recorded. */
  if (status && strcmp(status, "failed") == 0 && !set_status(b, client, coll, bson_iter_oid(&it), batch, "failed", "queued"))
    return BATCH_UNAVAILABLE;
  size_t sent = publish_chunks(b, batch, accepted, nchunks);
  if (sent < nchunks) {
    set_status(b, client, coll, bson_iter_oid(&it), batch, "queued", "failed");
    snprintf(detail, detail_len, "the work queue is unavailable (%zu of %zu chunks queued)", sent, nchunks);
    return BATCH_UNAVAILABLE;
  }
  return BATCH_ACCEPTED;
}

batch_status batch_submit(batch_ctx *b, const char *body, size_t len, bool ndjson,
                          const idem_key *key, json_t **result, bool *replayed, char *detail,
                          size_t detail_len) {
  *result = NULL;
  *replayed = false;
  json_t *rejections = json_array(), *lines = json_array();
  json_t *votes = batch_parse_body(body, len, ndjson, rejections, lines, detail, detail_len);
  if (!votes) {
    json_decref(rejections);
    json_decref(lines);
    return BATCH_BAD_REQUEST;
  }
  json_t *accepted = json_array(), *cache = json_object();
  bson_oid_t oid;
  char batch[25], fp[65] = "";
  batch_id(key, &oid, batch);
  if (key->present) {
    json_t *request = json_pack("{s:b, s:s%}", "ndjson", ndjson, "body", body, len);
    idem_fingerprint(request, fp);
    json_decref(request);
  }
  size_t rejected = 0, i;
  json_t *v;
  json_array_foreach(votes, i, v) {
    json_int_t line = json_integer_value(json_array_get(lines, i));
    if (json_is_null(v)) {
      rejected++; /* malformed line, already recorded */
      continue;
    }
    char buf[320];
    const char *why = check_vote(b, v, cache, buf, sizeof buf);
    if (why) {
      rejected++;
      if (json_array_size(rejections) < BATCH_MAX_REJECTIONS)
        json_array_append_new(rejections, json_pack("{s:I, s:s}", "line", line, "error", why));
      continue;
    }
    char id[25];
    vote_id(key, batch, json_array_size(accepted), id);
    json_array_append_new(accepted, json_pack("{s:s, s:O, s:O}", "id", id, "candidate",
                                              json_object_get(v, "candidate"), "election",
                                              json_object_get(v, "election")));
  }
  size_t total = json_array_size(votes), naccepted = json_array_size(accepted);
  size_t nchunks = (naccepted + (size_t)b->chunk_size - 1) / (size_t)b->chunk_size;

  json_t *doc_json = json_pack("{s:s, s:I, s:I, s:I, s:I, s:O, s:I, s:[]}", "status",
                               naccepted ? "queued" : "completed", "total", (json_int_t)total,
                               "accepted", (json_int_t)naccepted, "rejected", (json_int_t)rejected,
                               "written", (json_int_t)0, "rejections", rejections, "chunks",
                               (json_int_t)nchunks, "chunksDone");
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_OID(&doc, "_id", &oid);
  bson_t fields;
  batch_status st = BATCH_ACCEPTED;
  mongoc_client_t *client = mongo_acquire(b->db);
  mongoc_collection_t *coll = mongo_collection(b->db, client, BATCHES);
  bson_error_t error;
  if (!mongo_json_to_bson(doc_json, &fields)) {
    st = BATCH_UNAVAILABLE;
  } else {
    bson_concat(&doc, &fields);
    bson_destroy(&fields);
    BSON_APPEND_DATE_TIME(&doc, "createdAt", util_now_ms());
    if (key->present) BSON_APPEND_UTF8(&doc, IDEM_FIELD, fp);
    bson_t *found = NULL;
    idem_result r = key->present ? idem_insert(coll, &doc, fp, "batch", &found, &error)
                                 : (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)
                                        ? IDEM_INSERTED : IDEM_ERROR);
    if (r == IDEM_EXISTS) {
      *replayed = true;
      st = resume(b, client, coll, found, accepted, nchunks, detail, detail_len);
      json_decref(doc_json);
      doc_json = batch_view(found);
    } else if (r == IDEM_MISMATCH) {
      st = BATCH_MISMATCH;
    } else if (r != IDEM_INSERTED) {
      st = BATCH_UNAVAILABLE;
    }
    if (found) bson_destroy(found);
  }
  if (st == BATCH_ACCEPTED) CRASH_POINT("batch.recorded"); /* recorded, nothing queued yet */
  if (st == BATCH_ACCEPTED && nchunks && !*replayed) {
    size_t sent = publish_chunks(b, batch, accepted, nchunks);
    if (sent < nchunks) {
      /* Chunks already confirmed will be written; say exactly what was not queued. */
      bson_t *update = BCON_NEW("$set", "{", "status", BCON_UTF8("failed"), "error",
                                BCON_UTF8("the work queue is unavailable"), "chunksQueued",
                                BCON_INT64((int64_t)sent), "}");
      batch_write(b, client, coll, &oid, NULL, update, &error);
      bson_destroy(update);
      snprintf(detail, detail_len, "the work queue is unavailable (%zu of %zu chunks queued)", sent, nchunks);
      st = BATCH_UNAVAILABLE;
    }
  }
  mongoc_collection_destroy(coll);
  mongo_release(b->db, client);
  bson_destroy(&doc);
  if (st == BATCH_ACCEPTED) {
    if (!*replayed) json_object_set_new(doc_json, "id", json_string(batch));
    json_object_del(doc_json, "chunksDone");
    json_object_del(doc_json, "chunks");
    *result = json_incref(doc_json);
  }
  json_decref(doc_json);
  json_decref(rejections);
  json_decref(lines);
  json_decref(votes);
  json_decref(accepted);
  json_decref(cache);
  return st;
}
