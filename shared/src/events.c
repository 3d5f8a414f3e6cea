/* events — CloudEvents envelope, outbox fields and the relay; see events.h. */
#include "voter/events.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voter/amqp.h"
#include "voter/crashpoint.h"
#include "voter/doclock.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/revclaim.h"
#include "voter/util.h"
#include "voter/xalloc.h"

void ev_build(ev_event *ev, const char *type, const char *source, const char *subject,
              int64_t version, const json_t *data) {
  char now[32];
  util_uuid(ev->id);
  util_format_date(util_now_ms(), now);
  /* CloudEvents wants RFC 3339: 2016-11-08T00:00:00.000Z */
  strcpy(now + 23, "Z");
  json_t *ce = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:O}", "specversion", "1.0",
                         "id", ev->id, "type", type, "source", source, "subject", subject, "time",
                         now, "datacontenttype", "application/json", "version",
                         (json_int_t)version, "data", data);
  ev->type = xstrdup(type);
  ev->body = json_dumps(ce, JSON_COMPACT | JSON_PRESERVE_ORDER); /* allocates through xalloc */
  json_decref(ce);
  if (!ev->body) xalloc_oom(0, XALLOC_WHERE);
}

void ev_free(ev_event *ev) {
  free(ev->type);
  free(ev->body);
  ev->type = ev->body = NULL;
}

static void append_entry(bson_t *dst, const char *key, const ev_event *ev) {
  bson_t entry;
  BSON_APPEND_DOCUMENT_BEGIN(dst, key, &entry);
  BSON_APPEND_UTF8(&entry, "id", ev->id);
  BSON_APPEND_UTF8(&entry, "type", ev->type);
  BSON_APPEND_UTF8(&entry, "body", ev->body);
  bson_append_document_end(dst, &entry);
}

void ev_outbox_insert_fields(bson_t *doc, const ev_event *ev) {
  bson_t arr;
  BSON_APPEND_ARRAY_BEGIN(doc, "_outbox", &arr);
  append_entry(&arr, "0", ev);
  bson_append_array_end(doc, &arr);
  BSON_APPEND_INT64(doc, "_outboxSeq", 1);
  BSON_APPEND_BOOL(doc, "_pending", true);
}

void ev_outbox_set_pending(bson_t *set) { BSON_APPEND_BOOL(set, "_pending", true); }

void ev_outbox_update_ops(bson_t *update, const ev_event *ev) {
  bson_t push, inc;
  BSON_APPEND_DOCUMENT_BEGIN(update, "$push", &push);
  append_entry(&push, "_outbox", ev);
  bson_append_document_end(update, &push);
  BSON_APPEND_DOCUMENT_BEGIN(update, "$inc", &inc);
  BSON_APPEND_INT64(&inc, "_outboxSeq", 1);
  bson_append_document_end(update, &inc);
}

bool ev_is_outbox_field(const char *key) {
  return strcmp(key, "_outbox") == 0 || strcmp(key, "_outboxSeq") == 0 ||
         strcmp(key, "_pending") == 0;
}

/* ---- relay ---- */

struct ev_relay {
  ev_relay_options opts;
  char **collections;
  char *url, *exchange;
  mq_conn *mq;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool kicked, stopping;
  _Atomic bool broker_up;
};

#define RELAY_BATCH_DOCS 200
#define RELAY_MAX_EVENTS 64

typedef struct {
  char id[37];
  char *type;
  char *body;
} pending_event;

/* Reads up to max events of the document's _outbox into out; returns the count. */
static int read_outbox(const bson_t *doc, pending_event *out, int max) {
  bson_iter_t it, arr;
  int n = 0;
  if (!bson_iter_init_find(&it, doc, "_outbox") || !BSON_ITER_HOLDS_ARRAY(&it)) return 0;
  if (!bson_iter_recurse(&it, &arr)) return 0;
  while (n < max && bson_iter_next(&arr)) {
    bson_iter_t f;
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &f)) continue;
    const char *id = NULL, *type = NULL, *body = NULL;
    while (bson_iter_next(&f)) {
      const char *k = bson_iter_key(&f);
      if (!BSON_ITER_HOLDS_UTF8(&f)) continue;
      if (strcmp(k, "id") == 0) id = bson_iter_utf8(&f, NULL);
      else if (strcmp(k, "type") == 0) type = bson_iter_utf8(&f, NULL);
      else if (strcmp(k, "body") == 0) body = bson_iter_utf8(&f, NULL);
    }
    if (!id || !type || !body) continue;
    snprintf(out[n].id, sizeof out[n].id, "%s", id);
    out[n].type = xstrdup(type);
    out[n].body = xstrdup(body);
    n++;
  }
  return n;
}

static void free_pending(pending_event *ev, int n) {
  for (int i = 0; i < n; i++) free(ev[i].type), free(ev[i].body);
}

/* Removes the first `done` confirmed events (ids) from the document. A write of the
 * document like any other: the next revision, claimed (revclaim.h), so it never overlaps
 * a domain write of another process; and conditioned on _outboxSeq, for documents whose
 * other writers do not claim revisions (jobs): if a writer pushed meanwhile, re-read and
 * remove only those ids. */
static void remove_published_locked(mongoc_collection_t *coll, mongoc_collection_t *revs,
                                    const bson_value_t *doc_id, const pending_event *done,
                                    int ndone) {
  for (int attempt = 0; attempt < 5; attempt++) {
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&filter, "_id", doc_id);
    bson_error_t error;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    const bson_t *doc;
    if (!mongoc_cursor_next(cur, &doc)) {
      mongoc_cursor_destroy(cur);
      bson_destroy(&filter);
      return;
    }
    int64_t seq = mongo_doc_int(doc, "_outboxSeq");
    int64_t rev = rev_of(doc);
    /* Keep every entry whose id was not confirmed, in order. */
    bson_t update = BSON_INITIALIZER, set, arr;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_ARRAY_BEGIN(&set, "_outbox", &arr);
    bson_iter_t it, items;
    int kept = 0;
    if (bson_iter_init_find(&it, doc, "_outbox") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &items)) {
      while (bson_iter_next(&items)) {
        bson_iter_t f;
        const char *id = NULL;
        if (BSON_ITER_HOLDS_DOCUMENT(&items) && bson_iter_recurse(&items, &f) &&
            bson_iter_find(&f, "id") && BSON_ITER_HOLDS_UTF8(&f))
          id = bson_iter_utf8(&f, NULL);
        bool confirmed = false;
        for (int i = 0; id && i < ndone && !confirmed; i++) confirmed = strcmp(done[i].id, id) == 0;
        if (confirmed) continue;
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&items, &len, &data);
        bson_t entry;
        char key[16];
        snprintf(key, sizeof key, "%d", kept++);
        if (bson_init_static(&entry, data, len)) BSON_APPEND_DOCUMENT(&arr, key, &entry);
      }
    }
    bson_append_array_end(&set, &arr);
    BSON_APPEND_BOOL(&set, "_pending", kept > 0);
    bson_append_document_end(&update, &set);
    mongoc_cursor_destroy(cur);
    bson_t guard = BSON_INITIALIZER;
    BSON_APPEND_INT64(&guard, "_outboxSeq", seq);
    rev_result r = rev_update(coll, revs, doc_id, rev, &guard, &update, &error);
    bson_destroy(&guard);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (r == REV_ERROR || r == REV_DUPLICATE) {
      log_warn("outbox: cannot clear published events: %s", error.message);
      return; /* they stay pending and are published again: duplicates, never losses */
    }
    if (r == REV_APPLIED) return;
    /* REV_BUSY or REV_UNMATCHED: another write came first; read again */
  }
}

/* The text form of a document id, as the domain layer locks it. */
static void id_text(const bson_value_t *v, char *out, size_t len) {
  if (v->value_type == BSON_TYPE_OID) {
    bson_oid_to_string(&v->value.v_oid, out);
  } else if (v->value_type == BSON_TYPE_UTF8) {
    snprintf(out, len, "%s", v->value.v_utf8.str);
  } else {
    snprintf(out, len, "?");
  }
}

static void remove_published(mongoc_collection_t *coll, mongoc_collection_t *revs,
                             const bson_value_t *doc_id, const pending_event *done, int ndone) {
  char id[128];
  id_text(doc_id, id, sizeof id);
  doclock_lock(id);
  remove_published_locked(coll, revs, doc_id, done, ndone);
  doclock_unlock(id);
}

/* Publishes every pending event of one collection. Returns -1 when the broker failed. */
static int relay_collection(ev_relay *r, mongoc_client_t *client, const char *name) {
  mongoc_collection_t *coll = mongo_collection(r->opts.db, client, name);
  char revs_name[128];
  rev_collection_name(name, revs_name, sizeof revs_name);
  mongoc_collection_t *revs = mongo_collection(r->opts.db, client, revs_name);
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "_pending", true);
  bson_t *opts = BCON_NEW("limit", BCON_INT64(RELAY_BATCH_DOCS));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
  const bson_t *doc;
  int rc = 0;
  /* Collect first: publishing while holding the cursor would keep it open across slow
   * broker round trips. */
  bson_t *docs[RELAY_BATCH_DOCS];
  int ndocs = 0;
  while (ndocs < RELAY_BATCH_DOCS && mongoc_cursor_next(cur, &doc)) docs[ndocs++] = bson_copy(doc);
  bson_error_t error;
  if (mongoc_cursor_error(cur, &error)) log_warn("outbox: scan of %s failed: %s", name, error.message);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(&filter);

  for (int d = 0; d < ndocs; d++) {
    if (rc == 0) {
      pending_event evs[RELAY_MAX_EVENTS];
      int n = read_outbox(docs[d], evs, RELAY_MAX_EVENTS);
      mq_message_out msgs[RELAY_MAX_EVENTS];
      for (int i = 0; i < n; i++) {
        msgs[i] = (mq_message_out){.routing_key = evs[i].type,
                                   .body = evs[i].body,
                                   .len = strlen(evs[i].body),
                                   .props = {.message_id = evs[i].id, .type = evs[i].type}};
      }
      if (n) CRASH_POINT("outbox.before-publish");
      size_t ok = n ? mq_publish_batch(r->mq, msgs, (size_t)n, 5000) : 0;
      if (ok) CRASH_POINT("outbox.published"); /* confirmed, not yet removed */
      for (size_t i = 0; i < ok; i++) {
        char labels[160];
        snprintf(labels, sizeof labels, "type=\"%s\",result=\"ok\"", evs[i].type);
        metrics_counter_inc("events_published_total", labels);
      }
      if ((int)ok < n) {
        char labels[160];
        snprintf(labels, sizeof labels, "type=\"%s\",result=\"failed\"", evs[ok].type);
        metrics_counter_inc("events_published_total", labels);
        rc = -1;
      }
      bson_iter_t idit;
      if (ok > 0 && bson_iter_init_find(&idit, docs[d], "_id"))
        remove_published(coll, revs, bson_iter_value(&idit), evs, (int)ok);
      free_pending(evs, n);
    }
    bson_destroy(docs[d]);
  }
  mongoc_collection_destroy(coll);
  mongoc_collection_destroy(revs);
  return rc;
}

/* One pass over every collection: publishes what is pending, up to a batch per collection. */
static void relay_pass(ev_relay *r) {
  if (mq_ensure(r->mq) != 0) {
    r->broker_up = false;
    return;
  }
  r->broker_up = true;
  if (r->opts.paused) return; /* connected (topology declared) but publishing nothing */
  mongoc_client_t *client = mongo_acquire(r->opts.db);
  for (char **c = r->collections; *c; c++) {
    if (relay_collection(r, client, *c) != 0) {
      r->broker_up = mq_is_connected(r->mq);
      break;
    }
  }
  mongo_release(r->opts.db, client);
}

static void *relay_main(void *arg) {
  ev_relay *r = arg;
  pthread_mutex_lock(&r->lock);
  while (!r->stopping) {
    if (!r->kicked) {
      struct timespec deadline;
      clock_gettime(CLOCK_REALTIME, &deadline);
      long ms = r->opts.poll_ms;
      deadline.tv_sec += ms / 1000;
      deadline.tv_nsec += (ms % 1000) * 1000000L;
      if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
      pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
    }
    if (r->stopping) break;
    r->kicked = false;
    pthread_mutex_unlock(&r->lock);
    relay_pass(r);
    pthread_mutex_lock(&r->lock);
  }
  pthread_mutex_unlock(&r->lock);
  /* Flush what this process can before exit; anything left stays in the outbox. */
  relay_pass(r);
  return NULL;
}

ev_relay *ev_relay_start(const ev_relay_options *opts) {
  ev_relay *r = xcalloc(1, sizeof *r);
  if (!r) return NULL;
  r->opts = *opts;
  if (r->opts.poll_ms <= 0) r->opts.poll_ms = 1000;
  size_t n = 0;
  while (opts->collections[n]) n++;
  r->collections = xcalloc(n + 1, sizeof *r->collections);
  for (size_t i = 0; i < n; i++) r->collections[i] = xstrdup(opts->collections[i]);
  r->url = xstrdup(opts->amqp_url);
  r->exchange = xstrdup(opts->exchange);
  r->mq = mq_conn_new(r->url, r->exchange, "outbox-relay");
  if (!r->mq) goto err;
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  r->kicked = true; /* publish leftovers from a previous run at once */
  metrics_describe("events_published_total", "counter", "Events published from the outbox");
  if (pthread_create(&r->thread, NULL, relay_main, r) != 0) goto err_thread;
  return r;
err_thread:
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->cond);
  mq_conn_free(r->mq);
err:
  for (size_t i = 0; i < n; i++) free(r->collections[i]);
  free(r->collections);
  free(r->url);
  free(r->exchange);
  free(r);
  return NULL;
}

void ev_relay_kick(ev_relay *r) {
  pthread_mutex_lock(&r->lock);
  r->kicked = true;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

void ev_relay_stop(ev_relay *r) {
  if (!r) return;
  pthread_mutex_lock(&r->lock);
  r->stopping = true;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
  pthread_join(r->thread, NULL);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->cond);
  mq_conn_free(r->mq);
  for (char **c = r->collections; *c; c++) free(*c);
  free(r->collections);
  free(r->url);
  free(r->exchange);
  free(r);
}

bool ev_relay_broker_up(ev_relay *r) { return r->broker_up; }
