/* replica — versioned, idempotent event application; see replica.h. */
#include "voter/replica.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/amqp.h"
#include "voter/events.h"
#include "voter/crashpoint.h"
#include "voter/doclock.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/replica_event.h"
#include "voter/util.h"
#include "voter/version.h"
#include "voter/xalloc.h"

static void count(const char *collection, const char *result) {
  char labels[160];
  snprintf(labels, sizeof labels, "collection=\"%s\",result=\"%s\"", collection, result);
  metrics_counter_inc("replica_events_total", labels);
}

static int64_t doc_version(mongoc_collection_t *coll, const char *id) {
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
  const bson_t *doc;
  int64_t v = -1;
  if (mongoc_cursor_next(cur, &doc) && !mongo_doc_number(doc, "version", &v)) v = -1;
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  return v;
}

/* Appends a JSON scalar as BSON; objects and arrays go through the JSON converter. */
static bool append_json(bson_t *dst, const char *key, const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_STRING: return BSON_APPEND_UTF8(dst, key, json_string_value(v));
  case JSON_INTEGER: return BSON_APPEND_INT64(dst, key, json_integer_value(v));
  case JSON_REAL: return BSON_APPEND_DOUBLE(dst, key, json_real_value(v));
  case JSON_TRUE: return BSON_APPEND_BOOL(dst, key, true);
  case JSON_FALSE: return BSON_APPEND_BOOL(dst, key, false);
  case JSON_NULL: return BSON_APPEND_NULL(dst, key);
  default: {
    json_t *wrap = json_pack("{s:O}", "v", v);
    bson_t tmp;
    bool ok = mongo_json_to_bson(wrap, &tmp);
    json_decref(wrap);
    if (!ok) return false;
    bson_iter_t it;
    ok = bson_iter_init_find(&it, &tmp, "v") && BSON_APPEND_VALUE(dst, key, bson_iter_value(&it));
    bson_destroy(&tmp);
    return ok;
  }
  }
}

static replica_result apply_locked(mongoc_collection_t *coll, const char *collection,
                                   const char *id, int64_t version, bool deleted,
                                   const json_t *data, const char **error) {
  bson_t filter = BSON_INITIALIZER, lt, update = BSON_INITIALIZER, set;
  BSON_APPEND_UTF8(&filter, "_id", id);
  BSON_APPEND_DOCUMENT_BEGIN(&filter, "version", &lt);
  BSON_APPEND_INT64(&lt, "$lt", version);
  bson_append_document_end(&filter, &lt);
  BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
  if (!deleted) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)data, key, value) {
      if (replica_event_skips_field(key)) continue;
      if (!append_json(&set, key, value)) {
        bson_destroy(&filter);
        bson_destroy(&update);
        *error = "event data cannot be stored";
        return REPLICA_INVALID;
      }
    }
  }
  BSON_APPEND_INT64(&set, "version", version);
  BSON_APPEND_BOOL(&set, "deleted", deleted);
  BSON_APPEND_DATE_TIME(&set, "appliedAt", util_now_ms());
  bson_append_document_end(&update, &set);
  bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
  bson_t reply;
  bson_error_t err;
  bool ok = mongoc_collection_update_one(coll, &filter, &update, opts, &reply, &err);
  replica_result result = REPLICA_APPLIED;
  if (ok) {
    int64_t matched = mongo_doc_int(&reply, "matchedCount");
    int64_t upserted = mongo_doc_int(&reply, "upsertedCount");
    if (!matched && !upserted) result = REPLICA_STALE; /* defensive: nothing written */
  } else if (mongo_is_duplicate(&err)) {
    /* the document exists with a version >= ours */
    result = version_compare(doc_version(coll, id), version) == VERSION_DUPLICATE ? REPLICA_DUPLICATE
                                                                                : REPLICA_STALE;
  } else {
    log_warn("replica: apply to %s failed: %s", collection, err.message);
    *error = "database unavailable";
    result = REPLICA_ERROR;
  }
  bson_destroy(&reply);
  bson_destroy(opts);
  bson_destroy(&filter);
  bson_destroy(&update);
  return result;
}

/* Bumped after every applied event: readers that cache what the replicas say (the voter's
 * known-target cache) compare it to notice a change applied by this process at once. */
static atomic_uint_fast64_t applied_changes;

uint64_t replica_changes(void) { return atomic_load(&applied_changes); }

replica_result replica_apply(mongo_db *db, const replica_source *sources, int nsources,
                             const char *body, size_t len, const char **error) {
  static const char *unused;
  if (!error) error = &unused;
  replica_event ev;
  replica_result result = REPLICA_INVALID;
  if (replica_event_parse(sources, nsources, body, len, &ev, error)) {
    mongoc_client_t *client = mongo_acquire(db);
    mongoc_collection_t *coll = mongo_collection(db, client, ev.source->collection);
    doclock_lock(ev.id);
    result = apply_locked(coll, ev.source->collection, ev.id, ev.version, ev.deleted, ev.data,
                          error);
    doclock_unlock(ev.id);
    if (result == REPLICA_APPLIED) atomic_fetch_add(&applied_changes, 1);
    mongoc_collection_destroy(coll);
    mongo_release(db, client);
  }
  static const char *const names[] = {"applied", "duplicate", "stale", "invalid", "error"};
  count(ev.source ? ev.source->collection : "unknown", names[result]);
  replica_event_free(&ev);
  return result;
}

bool replica_init(mongo_db *db, const replica_source *source) {
  metrics_describe("replica_events_total", "counter",
                   "Events applied to replicas by result (applied, duplicate, stale, invalid, error)");
  bson_error_t error;
  bson_t *keys = BCON_NEW("deleted", BCON_INT32(1));
  bool ok = mongo_create_index(db, source->collection, "deleted", keys, false, &error);
  if (!ok) log_warn("replica: cannot create indexes on %s yet: %s", source->collection, error.message);
  bson_destroy(keys);
  return ok;
}

/* ---- consumer thread ---- */

struct replica_consumer {
  replica_options opts;
  char *url, *exchange, *queue;
  const char **keys;
  pthread_t thread;
  volatile sig_atomic_t stop;
};

static mq_verdict handle(void *ctx, const mq_message *msg, const char **error) {
  replica_consumer *c = ctx;
  replica_result r = replica_apply(c->opts.db, c->opts.sources, c->opts.nsources, msg->body,
                                   msg->len, error);
  if (r == REPLICA_APPLIED) CRASH_POINT("replica.applied"); /* written, not yet acked */
  switch (r) {
  case REPLICA_INVALID: return MQ_REJECT;
  case REPLICA_ERROR: return MQ_RETRY;
  default: return MQ_ACK;
  }
}

static void *consumer_main(void *arg) {
  replica_consumer *c = arg;
  /* single active consumer: with several replicas of the service, one applies the feed at
   * a time (apply_locked's version-conditioned upsert is not atomic on FerretDB, and the
   * in-process lock does not reach the other replica) */
  mq_queue_spec spec = {.queue = c->queue,
                        .keys = c->keys,
                        .retry_delay_ms = c->opts.retry_delay_ms,
                        .max_attempts = c->opts.max_attempts,
                        .single_active = true};
  mq_consume(c->url, c->exchange, &spec, handle, c, &c->stop);
  return NULL;
}

replica_consumer *replica_consumer_start(const replica_options *opts) {
  replica_consumer *c = xcalloc(1, sizeof *c);
  if (!c) return NULL;
  c->opts = *opts;
  c->url = xstrdup(opts->amqp_url);
  c->exchange = xstrdup(opts->exchange);
  c->queue = xstrdup(opts->queue);
  c->keys = xcalloc((size_t)opts->nsources + 1, sizeof *c->keys);
  for (int i = 0; i < opts->nsources; i++) {
    char key[128];
    snprintf(key, sizeof key, "%s.*", opts->sources[i].prefix);
    c->keys[i] = xstrdup(key);
  }
  /* Declare the queue now, before the service reports ready, so events published right
   * after start-up are not parked as unroutable. Best effort: with the broker away the
   * consumer thread declares it when it connects. */
  mq_conn *declare = mq_conn_new(c->url, c->exchange, "declare");
  mq_queue_spec spec = {.queue = c->queue, .keys = c->keys, .retry_delay_ms = opts->retry_delay_ms,
                        .max_attempts = opts->max_attempts, .single_active = true};
  if (declare && mq_ensure(declare) == 0) mq_declare_queue(declare, &spec);
  mq_conn_free(declare);
  if (pthread_create(&c->thread, NULL, consumer_main, c) != 0) {
    c->thread = 0;
    replica_consumer_stop(c);
    return NULL;
  }
  return c;
}

void replica_consumer_stop(replica_consumer *c) {
  if (!c) return;
  c->stop = 1;
  if (c->thread) pthread_join(c->thread, NULL);
  for (int i = 0; c->keys && c->keys[i]; i++) free((char *)c->keys[i]);
  free(c->keys);
  free(c->url);
  free(c->exchange);
  free(c->queue);
  free(c);
}
