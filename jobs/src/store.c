/* store — job records and their data in MongoDB; see store.h. */
#include "store.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs.h"
#include "sign.h"
#include "voter/crashpoint.h"
#include "voter/doclock.h"
#include "voter/idem.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/revclaim.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define JOBS "jobs"
#define DATA "job_data"
#define KEYS "job_keys"

struct job_store {
  mongo_db *db;
  ev_relay *relay;
  char *source;
};

job_store *store_open(mongo_db *db, ev_relay *relay, const char *source) {
  job_store *s = xcalloc(1, sizeof *s);
  if (!s) return NULL;
  s->db = db;
  s->relay = relay;
  s->source = xstrdup(source);
  return s;
}

void store_close(job_store *s) {
  if (!s) return;
  free(s->source);
  free(s);
}

bool store_init(job_store *s) {
  static const struct {
    const char *coll, *name, *k1, *k2;
  } idx[] = {
      {JOBS, "pending", "_pending", NULL},
      {JOBS, "status_lease", "status", "leaseUntil"},
      {JOBS, "status_finished", "status", "finishedAt"},
      {JOBS, "owner_created", "owner", "createdAt"},
      {JOBS, "hook", "hookPending", "hookNextAt"},
      {DATA, "job", "job", NULL},
  };
  for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
    bson_t *keys = idx[i].k2 ? BCON_NEW(idx[i].k1, BCON_INT32(1), idx[i].k2, BCON_INT32(1))
                             : BCON_NEW(idx[i].k1, BCON_INT32(1));
    bson_error_t error;
    bool ok = mongo_create_index(s->db, idx[i].coll, idx[i].name, keys, false, &error);
    bson_destroy(keys);
    if (!ok) {
      log_warn("jobs: cannot create indexes yet: %s", error.message);
      return false;
    }
  }
  return true;
}

/* ---- helpers ---- */

typedef struct conn {
  mongoc_client_t *client;
  mongoc_collection_t *coll;
} conn;

static conn open_coll(job_store *s, const char *name) {
  conn c;
  c.client = mongo_acquire(s->db);
  c.coll = mongo_collection(s->db, c.client, name);
  return c;
}

static void close_coll(job_store *s, conn *c) {
  mongoc_collection_destroy(c->coll);
  mongo_release(s->db, c->client);
}

static js_status db_error(const char *what, const bson_error_t *error) {
  mongo_log_failure("jobs", what, error);
  return JS_UNAVAILABLE;
}

/* A string member into a fixed buffer ("" when absent). */
static void copy_str(const bson_t *doc, const char *key, char *dst, size_t cap) {
  const char *v = mongo_doc_str(doc, key);
  snprintf(dst, cap, "%s", v ? v : "");
}

static void doc_to_info(const bson_t *doc, job_info *j) {
  memset(j, 0, sizeof *j);
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), j->id);
  copy_str(doc, "status", j->status, sizeof j->status);
  copy_str(doc, "outcome", j->outcome, sizeof j->outcome);
  j->version = mongo_doc_int(doc, "version");
  j->created_ms = mongo_doc_date(doc, "createdAt");
  j->started_ms = mongo_doc_date(doc, "startedAt");
  j->finished_ms = mongo_doc_date(doc, "finishedAt");
  j->queued_ms = mongo_doc_date(doc, "queuedAt");
  j->not_before_ms = mongo_doc_date(doc, "notBefore");
  j->lease_until_ms = mongo_doc_date(doc, "leaseUntil");
  j->attempts = (int)mongo_doc_int(doc, "attempts");
  copy_str(doc, "worker", j->worker, sizeof j->worker);
  j->dispatched = mongo_doc_bool(doc, "dispatched");
  j->progress_done = mongo_doc_int(doc, "progressDone");
  j->progress_total = mongo_doc_int(doc, "progressTotal");
  copy_str(doc, "progressPhase", j->progress_phase, sizeof j->progress_phase);
  copy_str(doc, "reason", j->reason, sizeof j->reason);
  int64_t exit_code;
  j->has_exit_code = mongo_doc_number(doc, "exitCode", &exit_code);
  j->exit_code = (int)exit_code;
  copy_str(doc, "resultKey", j->result_key, sizeof j->result_key);
  copy_str(doc, "callbackUrl", j->callback_url, sizeof j->callback_url);
  copy_str(doc, "baseUrl", j->base_url, sizeof j->base_url);
  copy_str(doc, "owner", j->owner, sizeof j->owner);
  copy_str(doc, "contest", j->contest, sizeof j->contest);
  j->ballots = mongo_doc_int(doc, "ballots");
  j->input_bytes = mongo_doc_int(doc, "inputBytes");
  j->hook_pending = mongo_doc_bool(doc, "hookPending");
  j->hook_attempts = (int)mongo_doc_int(doc, "hookAttempts");
  j->hook_next_ms = mongo_doc_date(doc, "hookNextAt");
  j->hook_delivered_ms = mongo_doc_date(doc, "hookDeliveredAt");
  copy_str(doc, "hookError", j->hook_error, sizeof j->hook_error);
}

/* The projection of every job read: never the outbox. */
static bson_t *job_projection(void) {
  return BCON_NEW("projection", "{", "_outbox", BCON_INT32(0), "}");
}

static js_status read_job(job_store *s, mongoc_collection_t *coll, const bson_oid_t *oid,
                          job_info *out) {
  bson_t *filter = BCON_NEW("_id", BCON_OID(oid));
  bson_t *opts = job_projection();
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
  const bson_t *doc;
  bson_error_t error;
  js_status st = JS_NOT_FOUND;
  if (mongoc_cursor_next(cur, &doc)) {
    doc_to_info(doc, out);
    st = JS_OK;
  } else if (mongoc_cursor_error(cur, &error)) {
    st = db_error("read job", &error);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(filter);
  (void)s;
  return st;
}

/* One conditional update of a job document; JS_OK when it matched, JS_CONFLICT when not.
 * Written as the document's next revision (revclaim.h): the filter's conditions are
 * checked while this process holds the revision, so two replicas can never both win one
 * transition - FerretDB alone evaluates a filter and writes in separate steps, and the
 * in-process lock (doclock.h) does not reach another process. */
static js_status update_if(job_store *s, conn *c, const bson_t *filter, const bson_t *update,
                           const char *what) {
  bson_t guard = BSON_INITIALIZER;
  bson_value_t id = {.value_type = BSON_TYPE_EOD};
  bson_iter_t it;
  if (bson_iter_init(&it, filter)) {
    while (bson_iter_next(&it)) {
      if (strcmp(bson_iter_key(&it), "_id") == 0) bson_value_copy(bson_iter_value(&it), &id);
      else BSON_APPEND_VALUE(&guard, bson_iter_key(&it), bson_iter_value(&it));
    }
  }
  char revs_name[64];
  rev_collection_name(JOBS, revs_name, sizeof revs_name);
  mongoc_collection_t *revs = mongo_collection(s->db, c->client, revs_name);
  bson_t by_id = BSON_INITIALIZER;
  BSON_APPEND_VALUE(&by_id, "_id", &id);
  js_status st = JS_CONFLICT;
  bson_error_t error;
  for (int attempt = 0; attempt < 12; attempt++) {
    if (attempt) {
      struct timespec ts = {0, (long)(1 + rand() % (4 << (attempt < 5 ? attempt : 5))) * 1000000L};
      nanosleep(&ts, NULL);
    }
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c->coll, &by_id, NULL, NULL);
    const bson_t *doc;
    bool found = mongoc_cursor_next(cur, &doc);
    int64_t rev = found ? rev_of(doc) : 0;
    bool failed = !found && mongoc_cursor_error(cur, &error);
    mongoc_cursor_destroy(cur);
    if (failed) {
      st = db_error(what, &error);
      break;
    }
    if (!found) break; /* JS_CONFLICT, as a filter that matched nothing */
    rev_result r = rev_update(c->coll, revs, &id, rev, &guard, update, &error);
    if (r == REV_BUSY) continue;
    st = r == REV_APPLIED ? JS_OK : r == REV_UNMATCHED ? JS_CONFLICT : db_error(what, &error);
    break;
  }
  bson_destroy(&by_id);
  bson_destroy(&guard);
  if (id.value_type != BSON_TYPE_EOD) bson_value_destroy(&id);
  mongoc_collection_destroy(revs);
  return st;
}

/* The event announcing a final state, with the job's summary as data. */
static void build_event(job_store *s, ev_event *ev, const char *id, const char *status,
                        int64_t version, const char *reason, bool has_exit, int exit_code,
                        int attempts, const char *contest) {
  char type[32];
  snprintf(type, sizeof type, "job.%s", status);
  json_t *data = json_pack("{s:s, s:s, s:i, s:s}", "id", id, "status", status, "attempts",
                           attempts, "contest", contest ? contest : "");
  if (reason && *reason) json_object_set_new(data, "reason", json_string(reason));
  if (has_exit) json_object_set_new(data, "exitCode", json_integer(exit_code));
  ev_build(ev, type, s->source, id, version, data);
  json_decref(data);
}

/* Appends the $set members common to every final transition. */
static void set_final(bson_t *set, const char *status, const char *reason, int64_t version,
                      int64_t now, bool callback) {
  BSON_APPEND_UTF8(set, "status", status);
  if (reason) BSON_APPEND_UTF8(set, "reason", reason);
  BSON_APPEND_INT64(set, "version", version);
  BSON_APPEND_DATE_TIME(set, "finishedAt", now);
  BSON_APPEND_NULL(set, "leaseUntil");
  if (callback) {
    BSON_APPEND_BOOL(set, "hookPending", true);
    BSON_APPEND_INT32(set, "hookAttempts", 0);
    BSON_APPEND_DATE_TIME(set, "hookNextAt", now);
  }
  ev_outbox_set_pending(set);
}

/* ---- submission ---- */

static js_status insert_job(job_store *s, const bson_oid_t *oid, const job_new *in,
                            const char *rules_key, const char *ballots_key) {
  int64_t now = util_now_ms();
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_OID(&doc, "_id", oid);
  BSON_APPEND_UTF8(&doc, "kind", "tabulation");
  BSON_APPEND_UTF8(&doc, "status", "pending");
  BSON_APPEND_INT64(&doc, "version", 1);
  BSON_APPEND_INT32(&doc, "attempts", 0);
  BSON_APPEND_BOOL(&doc, "dispatched", false);
  BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
  BSON_APPEND_DATE_TIME(&doc, "queuedAt", now);
  BSON_APPEND_DATE_TIME(&doc, "notBefore", now);
  BSON_APPEND_UTF8(&doc, "progressPhase", "queued");
  BSON_APPEND_UTF8(&doc, "contest", in->contest ? in->contest : "");
  BSON_APPEND_INT64(&doc, "ballots", in->ballots_count);
  BSON_APPEND_INT64(&doc, "inputBytes", (int64_t)(in->rules_len + in->ballots_len));
  BSON_APPEND_UTF8(&doc, "rulesKey", rules_key);
  BSON_APPEND_UTF8(&doc, "ballotsKey", ballots_key);
  BSON_APPEND_UTF8(&doc, "baseUrl", in->base_url ? in->base_url : "");
  BSON_APPEND_UTF8(&doc, "bodyHash", in->body_hash);
  if (in->callback_url) BSON_APPEND_UTF8(&doc, "callbackUrl", in->callback_url);
  if (in->owner) BSON_APPEND_UTF8(&doc, "owner", in->owner);
  else BSON_APPEND_NULL(&doc, "owner");
  BSON_APPEND_BOOL(&doc, "hookPending", false);
  BSON_APPEND_BOOL(&doc, "_pending", false);
  conn c = open_coll(s, JOBS);
  bson_error_t error;
  js_status st = JS_OK;
  if (!mongoc_collection_insert_one(c.coll, &doc, NULL, NULL, &error))
    st = mongo_is_duplicate(&error) ? JS_CONFLICT : db_error("insert job", &error);
  close_coll(s, &c);
  bson_destroy(&doc);
  return st;
}

/* The idempotency record {_id: scoped key, job, _idem: body hash} (idem.h): returns JS_OK
 * with the job id to use (new or recorded), JS_MISMATCH when the caller used the key for
 * other inputs. The job's id is recorded rather than derived from the key: job ids are
 * handed out as capabilities, and a derived one could be guessed by whoever knows the key. */
static js_status claim_key(job_store *s, const job_new *in, char id[25], bool *recorded) {
  char key[65];
  idem_scope_hash(in->owner, in->idem_key, key); /* per caller: owner NULL is anonymous */
  *recorded = false;
  conn c = open_coll(s, KEYS);
  bson_t *doc = BCON_NEW("_id", BCON_UTF8(key), "job", BCON_UTF8(id), IDEM_FIELD,
                         BCON_UTF8(in->body_hash), "createdAt", BCON_DATE_TIME(util_now_ms()));
  bson_error_t error;
  bson_t *found = NULL;
  js_status st = JS_OK;
  switch (idem_insert(c.coll, doc, in->body_hash, "job", &found, &error)) {
  case IDEM_INSERTED: break;
  case IDEM_EXISTS: {
    char job[25];
    copy_str(found, "job", job, sizeof job);
    st = util_is_object_id(job) ? JS_OK : JS_UNAVAILABLE;
    if (st == JS_OK) {
      memcpy(id, job, 25);
      *recorded = true;
    }
    break;
  }
  case IDEM_MISMATCH: st = JS_MISMATCH; break;
  default: st = db_error("insert idempotency key", &error); break;
  }
  if (found) bson_destroy(found);
  bson_destroy(doc);
  close_coll(s, &c);
  return st;
}

/* A job id is a capability (an anonymous job is readable by whoever knows its id), so it
 * must not be guessable: 12 bytes from OpenSSL's CSPRNG in ObjectId form, instead of an
 * ObjectId's time, process id and counter, which give a neighbour's id away. */
static bool random_oid(bson_oid_t *oid) {
  uint8_t bytes[12];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return false;
  bson_oid_init_from_data(oid, bytes);
  return true;
}

js_status store_create(job_store *s, const job_new *in, job_info *out, bool *existing) {
  *existing = false;
  bson_oid_t oid;
  if (!random_oid(&oid)) return JS_UNAVAILABLE;
  char id[25];
  bson_oid_to_string(&oid, id);
  if (in->idem_key) {
    bool recorded;
    js_status st = claim_key(s, in, id, &recorded);
    if (st != JS_OK) return st;
    if (!recorded) CRASH_POINT("job.key-recorded"); /* the key names a job not yet stored */
    if (recorded) {
      /* The key's job; if a crash came between the key and the job, create it now. */
      st = store_get(s, id, out);
      if (st == JS_OK) {
        *existing = true;
        return JS_OK;
      }
      if (st != JS_NOT_FOUND) return st;
      metrics_counter_inc("idempotency_takeovers_total", "kind=\"job\"");
      bson_oid_init_from_string(&oid, id);
    }
  }
  /* Inputs first: a job document never points at data that is not there. */
  char rules_key[48], ballots_key[48];
  snprintf(rules_key, sizeof rules_key, "%s.rules", id);
  snprintf(ballots_key, sizeof ballots_key, "%s.ballots", id);
  js_status st = store_put_data(s, rules_key, id, in->rules, in->rules_len);
  if (st == JS_OK) st = store_put_data(s, ballots_key, id, in->ballots, in->ballots_len);
  if (st == JS_OK) st = insert_job(s, &oid, in, rules_key, ballots_key);
  if (st == JS_CONFLICT) { /* a concurrent retry with the same key created it */
    *existing = true;
    st = JS_OK;
  }
  if (st != JS_OK) return st;
  return store_get(s, id, out);
}

void store_set_dispatched(job_store *s, const char *id, bool dispatched) {
  bson_oid_t oid;
  if (!util_is_object_id(id)) return;
  bson_oid_init_from_string(&oid, id);
  conn c = open_coll(s, JOBS);
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "status", BCON_UTF8("pending"));
  bson_t *update = BCON_NEW("$set", "{", "dispatched", BCON_BOOL(dispatched), "queuedAt",
                            BCON_DATE_TIME(util_now_ms()), "}");
  doclock_lock(id);
  update_if(s, &c, filter, update, "mark dispatched");
  doclock_unlock(id);
  bson_destroy(filter);
  bson_destroy(update);
  close_coll(s, &c);
}

/* ---- reads ---- */

js_status store_get(job_store *s, const char *id, job_info *out) {
  if (!util_is_object_id(id)) return JS_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  conn c = open_coll(s, JOBS);
  js_status st = read_job(s, c.coll, &oid, out);
  close_coll(s, &c);
  return st;
}

js_status store_get_data(job_store *s, const char *key, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  conn c = open_coll(s, DATA);
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(key));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, filter, NULL, NULL);
  const bson_t *doc;
  bson_error_t error;
  js_status st = JS_NOT_FOUND;
  if (mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "data") && BSON_ITER_HOLDS_BINARY(&it)) {
      bson_subtype_t sub;
      uint32_t n;
      const uint8_t *bytes;
      bson_iter_binary(&it, &sub, &n, &bytes);
      *data = malloc((size_t)n + 1);
      if (*data) {
        memcpy(*data, bytes, n);
        (*data)[n] = 0;
        *len = n;
        st = JS_OK;
      } else {
        st = JS_UNAVAILABLE;
      }
    }
  } else if (mongoc_cursor_error(cur, &error)) {
    st = db_error("read data", &error);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  close_coll(s, &c);
  return st;
}

js_status store_list(job_store *s, const job_list_query *q, job_info **items, size_t *n,
                     int64_t *total) {
  *items = NULL;
  *n = 0;
  bson_t filter = BSON_INITIALIZER;
  if (q->owner) BSON_APPEND_UTF8(&filter, "owner", q->owner);
  else BSON_APPEND_NULL(&filter, "owner");
  if (q->status) BSON_APPEND_UTF8(&filter, "status", q->status);
  bson_t opts = BSON_INITIALIZER, sort, proj;
  BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
  bool has_id = false;
  for (int i = 0; i < q->nsort; i++) {
    BSON_APPEND_INT32(&sort, q->sort_fields[i], q->sort_dirs[i]);
    has_id |= strcmp(q->sort_fields[i], "_id") == 0;
  }
  if (q->nsort == 0) BSON_APPEND_INT32(&sort, "createdAt", -1);
  if (!has_id) BSON_APPEND_INT32(&sort, "_id", q->nsort == 0 ? -1 : 1);
  bson_append_document_end(&opts, &sort);
  BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
  BSON_APPEND_INT32(&proj, "_outbox", 0);
  bson_append_document_end(&opts, &proj);
  BSON_APPEND_INT64(&opts, "skip", q->page * q->size);
  BSON_APPEND_INT64(&opts, "limit", q->size);
  conn c = open_coll(s, JOBS);
  bson_error_t error;
  js_status st = JS_OK;
  *total = mongoc_collection_count_documents(c.coll, &filter, NULL, NULL, NULL, &error);
  if (*total < 0) {
    st = db_error("count jobs", &error);
  } else {
    size_t cap = 16;
    job_info *arr = xmalloc(cap * sizeof *arr);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, &filter, &opts, NULL);
    const bson_t *doc;
    while (arr && mongoc_cursor_next(cur, &doc)) {
      if (*n == cap) {
        job_info *bigger = xrealloc(arr, (cap *= 2) * sizeof *arr);
        if (!bigger) break;
        arr = bigger;
      }
      doc_to_info(doc, &arr[(*n)++]);
    }
    if (!arr || mongoc_cursor_error(cur, &error)) {
      st = arr ? db_error("list jobs", &error) : JS_UNAVAILABLE;
      free(arr);
      *n = 0;
    } else {
      *items = arr;
    }
    mongoc_cursor_destroy(cur);
  }
  close_coll(s, &c);
  bson_destroy(&opts);
  bson_destroy(&filter);
  return st;
}

/* ---- transitions ---- */

js_status store_claim(job_store *s, job_info *job, const char *worker, long lease_s) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, job->id);
  int64_t now = util_now_ms();
  bool takeover = strcmp(job->status, "running") == 0;
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "version", BCON_INT64(job->version),
                            "status", BCON_UTF8(job->status));
  if (takeover) BCON_APPEND(filter, "leaseUntil", "{", "$lt", BCON_DATE_TIME(now), "}");
  bson_t *update = BCON_NEW(
      "$set", "{", "status", BCON_UTF8("running"), "worker", BCON_UTF8(worker), "attempts",
      BCON_INT32(job->attempts + 1), "version", BCON_INT64(job->version + 1), "startedAt",
      BCON_DATE_TIME(now), "leaseUntil", BCON_DATE_TIME(now + lease_s * 1000), "progressPhase",
      BCON_UTF8("starting"), "progressDone", BCON_INT64(0), "progressTotal", BCON_INT64(0), "}");
  conn c = open_coll(s, JOBS);
  doclock_lock(job->id);
  js_status st = update_if(s, &c, filter, update, "claim job");
  if (st == JS_OK) st = read_job(s, c.coll, &oid, job);
  doclock_unlock(job->id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(update);
  return st;
}

/* {_id, status: running, worker, attempts}: the worker's own attempt. */
static bson_t *own_filter(const bson_oid_t *oid, const char *worker, int attempt) {
  return BCON_NEW("_id", BCON_OID(oid), "status", BCON_UTF8("running"), "worker",
                  BCON_UTF8(worker), "attempts", BCON_INT32(attempt));
}

js_status store_renew(job_store *s, const char *id, const char *worker, int attempt,
                      long lease_s, const char *phase, int64_t done, int64_t total) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  bson_t *filter = own_filter(&oid, worker, attempt);
  bson_t *update = BCON_NEW("$set", "{", "leaseUntil",
                            BCON_DATE_TIME(util_now_ms() + lease_s * 1000), "progressPhase",
                            BCON_UTF8(phase), "progressDone", BCON_INT64(done), "progressTotal",
                            BCON_INT64(total), "}");
  conn c = open_coll(s, JOBS);
  doclock_lock(id);
  js_status st = update_if(s, &c, filter, update, "renew lease");
  doclock_unlock(id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(update);
  return st;
}

js_status store_finish(job_store *s, const char *id, const char *worker, int attempt,
                       const job_outcome *o) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  conn c = open_coll(s, JOBS);
  doclock_lock(id);
  job_info cur;
  js_status st = read_job(s, c.coll, &oid, &cur);
  if (st == JS_OK && (strcmp(cur.status, "running") != 0 || strcmp(cur.worker, worker) != 0 ||
                      cur.attempts != attempt))
    st = JS_CONFLICT;
  if (st == JS_OK) {
    int64_t now = util_now_ms();
    ev_event ev;
    build_event(s, &ev, id, o->status, cur.version + 1, o->reason, o->has_exit_code,
                o->exit_code, attempt, cur.contest);
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    set_final(&set, o->status, o->reason, cur.version + 1, now, cur.callback_url[0] != 0);
    if (o->has_exit_code) BSON_APPEND_INT32(&set, "exitCode", o->exit_code);
    if (o->result_key) BSON_APPEND_UTF8(&set, "resultKey", o->result_key);
    BSON_APPEND_DOUBLE(&set, "runSeconds", o->run_seconds);
    BSON_APPEND_UTF8(&set, "progressPhase", "done");
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    bson_t *filter = own_filter(&oid, worker, attempt);
    BSON_APPEND_INT64(filter, "version", cur.version);
    st = update_if(s, &c, filter, &update, "finish job");
    bson_destroy(filter);
    bson_destroy(&update);
    ev_free(&ev);
  }
  doclock_unlock(id);
  close_coll(s, &c);
  if (st == JS_OK) ev_relay_kick(s->relay);
  return st;
}

js_status store_requeue_own(job_store *s, const char *id, const char *worker, int attempt,
                            int64_t not_before_ms, int uncount, const char *why) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  bson_t *filter = own_filter(&oid, worker, attempt);
  bson_t *update = BCON_NEW("$set", "{", "status", BCON_UTF8("pending"), "worker", BCON_NULL,
                            "leaseUntil", BCON_NULL, "dispatched", BCON_BOOL(false), "notBefore",
                            BCON_DATE_TIME(not_before_ms), "attempts",
                            BCON_INT32(attempt - uncount), "progressPhase", BCON_UTF8("queued"),
                            "lastError", BCON_UTF8(why), "}", "$inc", "{", "version",
                            BCON_INT64(1), "}");
  conn c = open_coll(s, JOBS);
  doclock_lock(id);
  js_status st = update_if(s, &c, filter, update, "requeue job");
  doclock_unlock(id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(update);
  return st;
}

static bson_t *expired_filter(const bson_oid_t *oid, const job_info *job) {
  return BCON_NEW("_id", BCON_OID(oid), "version", BCON_INT64(job->version), "status",
                  BCON_UTF8("running"), "leaseUntil", "{", "$lt", BCON_DATE_TIME(util_now_ms()),
                  "}");
}

js_status store_requeue_expired(job_store *s, const job_info *job) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, job->id);
  bson_t *filter = expired_filter(&oid, job);
  bson_t *update = BCON_NEW("$set", "{", "status", BCON_UTF8("pending"), "worker", BCON_NULL,
                            "leaseUntil", BCON_NULL, "dispatched", BCON_BOOL(false), "notBefore",
                            BCON_DATE_TIME(util_now_ms()), "progressPhase", BCON_UTF8("queued"),
                            "lastError", BCON_UTF8("the worker's lease expired"), "version",
                            BCON_INT64(job->version + 1), "}");
  conn c = open_coll(s, JOBS);
  doclock_lock(job->id);
  js_status st = update_if(s, &c, filter, update, "requeue expired job");
  doclock_unlock(job->id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(update);
  return st;
}

/* A final transition out of a state read earlier (version-conditioned). */
static js_status finalize_seen(job_store *s, const job_info *job, bson_t *filter,
                               const char *status, const char *reason) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, job->id);
  int64_t now = util_now_ms();
  ev_event ev;
  build_event(s, &ev, job->id, status, job->version + 1, reason, false, 0, job->attempts,
              job->contest);
  bson_t update = BSON_INITIALIZER, set;
  BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
  set_final(&set, status, reason, job->version + 1, now, job->callback_url[0] != 0);
  BSON_APPEND_UTF8(&set, "progressPhase", "done");
  bson_append_document_end(&update, &set);
  ev_outbox_update_ops(&update, &ev);
  conn c = open_coll(s, JOBS);
  doclock_lock(job->id);
  js_status st = update_if(s, &c, filter, &update, "finalize job");
  doclock_unlock(job->id);
  close_coll(s, &c);
  bson_destroy(&update);
  ev_free(&ev);
  if (st == JS_OK) ev_relay_kick(s->relay);
  return st;
}

js_status store_fail_expired(job_store *s, const job_info *job, const char *reason) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, job->id);
  bson_t *filter = expired_filter(&oid, job);
  js_status st = finalize_seen(s, job, filter, "failed", reason);
  bson_destroy(filter);
  return st;
}

js_status store_cancel(job_store *s, const job_info *job, const char *reason) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, job->id);
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "version", BCON_INT64(job->version),
                            "status", BCON_UTF8(job->status));
  js_status st = finalize_seen(s, job, filter, "cancelled", reason);
  bson_destroy(filter);
  return st;
}

void store_note_exit(job_store *s, const char *id, int attempt, int exit_code) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "status", BCON_UTF8("cancelled"),
                            "attempts", BCON_INT32(attempt));
  bson_t *update = BCON_NEW("$set", "{", "exitCode", BCON_INT32(exit_code), "}");
  conn c = open_coll(s, JOBS);
  doclock_lock(id);
  update_if(s, &c, filter, update, "note exit code");
  doclock_unlock(id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(update);
}

static js_status delete_many(job_store *s, const char *coll_name, const bson_t *filter) {
  conn c = open_coll(s, coll_name);
  bson_error_t error;
  js_status st = JS_OK;
  if (!mongoc_collection_delete_many(c.coll, filter, NULL, NULL, &error))
    st = db_error("delete", &error);
  close_coll(s, &c);
  return st;
}

js_status store_purge(job_store *s, const job_info *job) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, job->id);
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "version", BCON_INT64(job->version));
  bson_t *update = BCON_NEW("$set", "{", "status", BCON_UTF8("purged"), "outcome",
                            BCON_UTF8(job->status), "purgedAt", BCON_DATE_TIME(util_now_ms()),
                            "version", BCON_INT64(job->version + 1), "hookPending",
                            BCON_BOOL(false), "}", "$unset", "{", "resultKey", BCON_UTF8(""),
                            "}");
  conn c = open_coll(s, JOBS);
  doclock_lock(job->id);
  js_status st = update_if(s, &c, filter, update, "purge job");
  doclock_unlock(job->id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(update);
  if (st != JS_OK) return st;
  /* After the status: a reader never sees a succeeded job without its result. */
  bson_t *data = BCON_NEW("job", BCON_UTF8(job->id));
  bson_t *keys = BCON_NEW("job", BCON_UTF8(job->id));
  js_status d = delete_many(s, DATA, data);
  if (d == JS_OK) d = delete_many(s, KEYS, keys);
  bson_destroy(data);
  bson_destroy(keys);
  return d;
}

/* ---- data ---- */

js_status store_put_data(job_store *s, const char *key, const char *job_id, const char *data,
                         size_t len) {
  if (len > UINT32_MAX) return JS_UNAVAILABLE;
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(key));
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&doc, "_id", key);
  BSON_APPEND_UTF8(&doc, "job", job_id);
  BSON_APPEND_BINARY(&doc, "data", BSON_SUBTYPE_BINARY, (const uint8_t *)data, (uint32_t)len);
  BSON_APPEND_DATE_TIME(&doc, "createdAt", util_now_ms());
  bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
  conn c = open_coll(s, DATA);
  bson_error_t error;
  js_status st = JS_OK;
  if (!mongoc_collection_replace_one(c.coll, filter, &doc, opts, NULL, &error))
    st = db_error("write data", &error);
  close_coll(s, &c);
  bson_destroy(opts);
  bson_destroy(&doc);
  bson_destroy(filter);
  return st;
}

/* The results of earlier attempts that never reached a final state (the worker died between
 * writing its result and recording it) are deleted before this attempt's is written, so a
 * job that ends keeps exactly one result. None of them can still be recorded: recording is
 * conditioned on the job's current attempt, which is this one. */
js_status store_put_result(job_store *s, const char *job_id, int attempt, const char *data,
                           size_t len, char key[64]) {
  bson_t filter = BSON_INITIALIZER, in, ids;
  BSON_APPEND_UTF8(&filter, "job", job_id);
  BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
  BSON_APPEND_ARRAY_BEGIN(&in, "$in", &ids);
  for (int k = 1; k < attempt && k <= 1000; k++) {
    char index[16], stale[64];
    snprintf(index, sizeof index, "%d", k - 1);
    snprintf(stale, sizeof stale, "%s.result.%d", job_id, k);
    BSON_APPEND_UTF8(&ids, index, stale);
  }
  bson_append_array_end(&in, &ids);
  bson_append_document_end(&filter, &in);
  js_status st = attempt > 1 ? delete_many(s, DATA, &filter) : JS_OK;
  bson_destroy(&filter);
  snprintf(key, 64, "%s.result.%d", job_id, attempt);
  return st == JS_OK ? store_put_data(s, key, job_id, data, len) : st;
}

void store_delete_data(job_store *s, const char *key) {
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(key));
  delete_many(s, DATA, filter);
  bson_destroy(filter);
}

/* ---- scans ---- */

static int scan_ids(job_store *s, const bson_t *filter, char (*ids)[25], int max) {
  bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit",
                          BCON_INT64(max));
  conn c = open_coll(s, JOBS);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, filter, opts, NULL);
  const bson_t *doc;
  int n = 0;
  while (n < max && mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
      bson_oid_to_string(bson_iter_oid(&it), ids[n++]);
  }
  bson_error_t error;
  if (mongoc_cursor_error(cur, &error)) {
    db_error("scan jobs", &error);
    n = -1;
  }
  mongoc_cursor_destroy(cur);
  close_coll(s, &c);
  bson_destroy(opts);
  return n;
}

int store_scan_expired(job_store *s, int64_t now_ms, char (*ids)[25], int max) {
  bson_t *filter = BCON_NEW("status", BCON_UTF8("running"), "leaseUntil", "{", "$lt",
                            BCON_DATE_TIME(now_ms), "}");
  int n = scan_ids(s, filter, ids, max);
  bson_destroy(filter);
  return n;
}

int store_scan_undispatched(job_store *s, int64_t now_ms, int64_t stale_ms, char (*ids)[25],
                            int max) {
  /* Two queries rather than $or: plain equality/range filters use the indexes on both
   * servers. */
  bson_t *fresh = BCON_NEW("status", BCON_UTF8("pending"), "dispatched", BCON_BOOL(false),
                           "notBefore", "{", "$lte", BCON_DATE_TIME(now_ms), "}");
  int n = scan_ids(s, fresh, ids, max);
  bson_destroy(fresh);
  if (n < 0 || n == max) return n;
  bson_t *stale = BCON_NEW("status", BCON_UTF8("pending"), "dispatched", BCON_BOOL(true),
                           "queuedAt", "{", "$lt", BCON_DATE_TIME(stale_ms), "}");
  int m = scan_ids(s, stale, ids + n, max - n);
  bson_destroy(stale);
  return m < 0 ? n : n + m;
}

int store_scan_retention(job_store *s, int64_t before_ms, char (*ids)[25], int max) {
  bson_t *filter = BCON_NEW("status", "{", "$in", "[", BCON_UTF8("succeeded"),
                            BCON_UTF8("failed"), BCON_UTF8("cancelled"), "]", "}", "finishedAt",
                            "{", "$lt", BCON_DATE_TIME(before_ms), "}");
  int n = scan_ids(s, filter, ids, max);
  bson_destroy(filter);
  return n;
}

int store_scan_webhooks(job_store *s, int64_t now_ms, char (*ids)[25], int max) {
  bson_t *filter = BCON_NEW("hookPending", BCON_BOOL(true), "hookNextAt", "{", "$lte",
                            BCON_DATE_TIME(now_ms), "}");
  int n = scan_ids(s, filter, ids, max);
  bson_destroy(filter);
  return n;
}

js_status store_hook_claim(job_store *s, const char *id, int attempts_seen, int64_t retry_at_ms) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "hookPending", BCON_BOOL(true),
                            "hookAttempts", BCON_INT32(attempts_seen));
  bson_t *update = BCON_NEW("$set", "{", "hookAttempts", BCON_INT32(attempts_seen + 1),
                            "hookNextAt", BCON_DATE_TIME(retry_at_ms), "}");
  conn c = open_coll(s, JOBS);
  doclock_lock(id);
  js_status st = update_if(s, &c, filter, update, "claim webhook");
  doclock_unlock(id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(update);
  return st;
}

void store_hook_result(job_store *s, const char *id, bool delivered, int64_t next_ms,
                       const char *error) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "hookPending", BCON_BOOL(true));
  bson_t update = BSON_INITIALIZER, set;
  BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
  if (delivered) {
    BSON_APPEND_BOOL(&set, "hookPending", false);
    BSON_APPEND_DATE_TIME(&set, "hookDeliveredAt", util_now_ms());
  } else if (next_ms < 0) {
    BSON_APPEND_BOOL(&set, "hookPending", false);
    BSON_APPEND_UTF8(&set, "hookError", error ? error : "gave up");
  } else {
    BSON_APPEND_DATE_TIME(&set, "hookNextAt", next_ms);
    BSON_APPEND_UTF8(&set, "hookError", error ? error : "");
  }
  bson_append_document_end(&update, &set);
  conn c = open_coll(s, JOBS);
  doclock_lock(id);
  update_if(s, &c, filter, &update, "record webhook");
  doclock_unlock(id);
  close_coll(s, &c);
  bson_destroy(filter);
  bson_destroy(&update);
}
