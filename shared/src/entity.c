/* entity — versioned entities with tombstones and outbox events; see entity.h. */
#include "voter/entity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voter/doclock.h"
#include "voter/idem.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/revclaim.h"
#include "voter/util.h"
#include "voter/version.h"
#include "voter/xalloc.h"

/* A write that loses a race to a concurrent change is tried again this many times (with a
 * growing random pause: another replica may be writing the same document). */
#define MAX_ATTEMPTS 12

struct entity_store {
  mongo_db *db;
  ev_relay *relay;
  char *source;
  const entity_kind *kind;
  void *ctx;
};

entity_store *entity_store_open(mongo_db *db, ev_relay *relay, const char *source,
                                const entity_kind *kind, void *check_ctx) {
  entity_store *s = xcalloc(1, sizeof *s);
  if (!s) return NULL;
  s->db = db;
  s->relay = relay;
  s->source = xstrdup(source);
  s->kind = kind;
  s->ctx = check_ctx;
  return s;
}

void entity_store_close(entity_store *s) {
  if (!s) return;
  free(s->source);
  free(s);
}

mongo_db *entity_store_db(const entity_store *s) { return s->db; }

bool entity_store_init(entity_store *s) {
  bson_error_t error;
  bool ok = true;
  if (s->kind->unique_key) {
    bson_t *keys = BCON_NEW(s->kind->unique_key, BCON_INT32(1));
    char name[96];
    snprintf(name, sizeof name, "%s_unique", s->kind->unique_key);
    ok = mongo_create_index(s->db, s->kind->collection, name, keys, true, &error);
    bson_destroy(keys);
  }
  bson_t *pending = BCON_NEW("_pending", BCON_INT32(1));
  bson_t *deleted = BCON_NEW("deleted", BCON_INT32(1));
  ok = ok && mongo_create_index(s->db, s->kind->collection, "pending", pending, false, &error) &&
       mongo_create_index(s->db, s->kind->collection, "deleted", deleted, false, &error);
  if (!ok) log_warn("%s: cannot create indexes yet: %s", s->kind->name, error.message);
  bson_destroy(pending);
  bson_destroy(deleted);
  return ok;
}

static entity_status db_error(const entity_store *s, const char *what, const bson_error_t *e) {
  mongo_log_failure(s->kind->name, what, e);
  return ENTITY_UNAVAILABLE;
}

/* A short-lived handle on the entity collection. */
typedef struct {
  mongoc_client_t *client;
  mongoc_collection_t *coll;
  mongoc_collection_t *revs; /* the revision claims (revclaim.h) */
} handle;

static handle open_handle(entity_store *s) {
  handle h = {mongo_acquire(s->db), NULL, NULL};
  char revs[128];
  rev_collection_name(s->kind->collection, revs, sizeof revs);
  h.coll = mongo_collection(s->db, h.client, s->kind->collection);
  h.revs = mongo_collection(s->db, h.client, revs);
  return h;
}

static void close_handle(entity_store *s, handle *h) {
  mongoc_collection_destroy(h->coll);
  mongoc_collection_destroy(h->revs);
  mongo_release(s->db, h->client);
}

static void event_type(const entity_store *s, const char *action, char *out, size_t len) {
  snprintf(out, len, "%s.%s", s->kind->name, action);
}

/* Reads the document with this id, tombstones included. ENTITY_NOT_FOUND when absent. */
static entity_status read_doc(entity_store *s, mongoc_collection_t *coll, const bson_oid_t *oid,
                              bson_t **out) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_OID(&filter, "_id", oid);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
  const bson_t *doc;
  entity_status st = ENTITY_NOT_FOUND;
  *out = NULL;
  if (mongoc_cursor_next(cur, &doc)) {
    *out = bson_copy(doc);
    st = ENTITY_OK;
  } else {
    bson_error_t error;
    if (mongoc_cursor_error(cur, &error)) st = db_error(s, "read", &error);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  return st;
}

/* Writes update as the next revision of the document read as cur (revclaim.h: one writer
 * per revision across processes; the in-process lock alone would not do on FerretDB).
 * *matched is false when another writer got there first: the caller reads again. A taken
 * unique key is ENTITY_DUPLICATE. */
static entity_status conditional_update(entity_store *s, handle *h, const bson_oid_t *oid,
                                        const bson_t *cur, const bson_t *update, bool *matched) {
  bson_value_t id = {.value_type = BSON_TYPE_OID};
  bson_oid_copy(oid, &id.value.v_oid);
  bson_error_t error;
  rev_result r = rev_update(h->coll, h->revs, &id, rev_of(cur), NULL, update, &error);
  *matched = r == REV_APPLIED;
  if (r == REV_DUPLICATE) return ENTITY_DUPLICATE;
  if (r == REV_ERROR) return db_error(s, "update", &error);
  return ENTITY_OK;
}

/* A short pause before trying again after losing a revision to another writer, so two
 * replicas contending for one document do not retry in lockstep. */
static void backoff(int attempt) {
  struct timespec ts = {0, (long)(1 + rand() % (4 << (attempt < 5 ? attempt : 5))) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A new document at oid: fields, bookkeeping and its first event. */
static void new_doc(const entity_store *s, bson_t *doc, const bson_oid_t *oid,
                    const json_t *body, int64_t version, const ev_event *ev) {
  int64_t now = util_now_ms();
  BSON_APPEND_OID(doc, "_id", oid);
  s->kind->append_fields(doc, body);
  BSON_APPEND_INT64(doc, "version", version);
  BSON_APPEND_BOOL(doc, "deleted", false);
  BSON_APPEND_DATE_TIME(doc, "createdAt", now);
  BSON_APPEND_DATE_TIME(doc, "updatedAt", now);
  ev_outbox_insert_fields(doc, ev);
}

/* Inserts a new document. A duplicate-key error means a taken unique key unless the id
 * itself appeared meanwhile (FerretDB's message does not name the index, so re-read):
 * then *raced is set and the caller reads again. */
static entity_status insert_doc(entity_store *s, mongoc_collection_t *coll, const bson_oid_t *oid,
                                const bson_t *doc, bool *raced) {
  bson_error_t error;
  *raced = false;
  if (mongoc_collection_insert_one(coll, doc, NULL, NULL, &error)) return ENTITY_CREATED;
  if (!mongo_is_duplicate(&error)) return db_error(s, "insert", &error);
  bson_t *again = NULL;
  *raced = read_doc(s, coll, oid, &again) == ENTITY_OK;
  if (again) bson_destroy(again);
  return *raced ? ENTITY_UNAVAILABLE : ENTITY_DUPLICATE;
}

entity_status entity_create(entity_store *s, const json_t *body, json_t **item, json_t *errors) {
  *item = NULL;
  if (s->kind->check) {
    entity_status st = s->kind->check(s->ctx, NULL, body, errors);
    if (st != ENTITY_OK) return st;
  }
  bson_oid_t oid;
  char id[25], type[96];
  bson_oid_init(&oid, NULL);
  bson_oid_to_string(&oid, id);
  json_t *next = s->kind->body_to_item(body, id, 1);
  ev_event ev;
  event_type(s, "created", type, sizeof type);
  ev_build(&ev, type, s->source, id, 1, next);
  bson_t doc = BSON_INITIALIZER;
  new_doc(s, &doc, &oid, body, 1, &ev);
  handle h = open_handle(s);
  bool raced;
  entity_status st = insert_doc(s, h.coll, &oid, &doc, &raced);
  close_handle(s, &h);
  bson_destroy(&doc);
  ev_free(&ev);
  if (st != ENTITY_CREATED) {
    json_decref(next);
    return st;
  }
  *item = next;
  ev_relay_kick(s->relay);
  return st;
}

/* A keyed create (idem.h): the id is derived from the caller's key, the fingerprint of the
 * validated body is stored with the first state, and the first event rides in the same
 * insert (the outbox), so whatever point an earlier attempt reached, the entity and its
 * "created" event exist once. A retry is answered with the representation the first
 * attempt answered (version 1 of the same body), even if the entity changed or was
 * deleted since; the tombstone keeps the key's answer. */
entity_status entity_create_keyed(entity_store *s, const json_t *body, const char scoped[65],
                                  json_t **item, bool *replayed, json_t *errors) {
  *item = NULL;
  *replayed = false;
  bson_oid_t oid;
  char id[25], type[96], fp[65];
  idem_object_id(scoped, s->kind->name, &oid);
  bson_oid_to_string(&oid, id);
  idem_fingerprint(body, fp);
  handle h = open_handle(s);
  bson_t *found = NULL;
  /* an earlier attempt is answered before the checks: they may no longer pass */
  entity_status st = read_doc(s, h.coll, &oid, &found);
  if (st == ENTITY_OK) {
    *replayed = idem_same_request(found, fp);
    st = *replayed ? ENTITY_CREATED : ENTITY_MISMATCH;
    char labels[96];
    snprintf(labels, sizeof labels, "kind=\"%s\"", s->kind->name);
    metrics_counter_inc(*replayed ? "duplicates_detected_total" : "idempotency_mismatches_total",
                        labels);
  } else if (st == ENTITY_NOT_FOUND) {
    st = s->kind->check ? s->kind->check(s->ctx, NULL, body, errors) : ENTITY_OK;
  }
  if (found) bson_destroy(found);
  found = NULL;
  json_t *first = s->kind->body_to_item(body, id, 1);
  if (st == ENTITY_OK) {
    ev_event ev;
    event_type(s, "created", type, sizeof type);
    ev_build(&ev, type, s->source, id, 1, first);
    bson_t doc = BSON_INITIALIZER;
    new_doc(s, &doc, &oid, body, 1, &ev);
    BSON_APPEND_UTF8(&doc, IDEM_FIELD, fp);
    bson_error_t error;
    switch (idem_insert(h.coll, &doc, fp, s->kind->name, &found, &error)) {
    case IDEM_INSERTED: st = ENTITY_CREATED; break;
    case IDEM_EXISTS: /* a concurrent attempt of the same request won */
      st = ENTITY_CREATED;
      *replayed = true;
      break;
    case IDEM_MISMATCH: st = ENTITY_MISMATCH; break;
    case IDEM_TAKEN: st = ENTITY_DUPLICATE; break;
    default: st = db_error(s, "insert", &error); break;
    }
    if (found) bson_destroy(found);
    bson_destroy(&doc);
    ev_free(&ev);
  }
  close_handle(s, &h);
  if (st != ENTITY_CREATED) {
    json_decref(first);
    return st;
  }
  *item = first;
  if (!*replayed) ev_relay_kick(s->relay);
  return st;
}

entity_status entity_get(entity_store *s, const char *id, json_t **item) {
  *item = NULL;
  if (!util_is_object_id(id)) return ENTITY_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  handle h = open_handle(s);
  bson_t *doc;
  entity_status st = read_doc(s, h.coll, &oid, &doc);
  if (st == ENTITY_OK && mongo_doc_bool(doc, "deleted")) st = ENTITY_NOT_FOUND;
  if (st == ENTITY_OK) *item = s->kind->doc_to_item(doc);
  if (doc) bson_destroy(doc);
  close_handle(s, &h);
  return st;
}

/* One attempt at writing body as the new state of oid, with the document locked.
 * *again is set when a concurrent change won the race and the attempt may be repeated. */
static entity_status write_attempt(entity_store *s, handle *h, const bson_oid_t *oid, const json_t *body, int64_t if_match,
                                   bool create_ok, json_t **item, json_t *errors, bool *again) {
  char id[25], type[96];
  bson_oid_to_string(oid, id);
  *again = false;
  bson_t *cur = NULL;
  entity_status st = read_doc(s, h->coll, oid, &cur);
  if (st == ENTITY_UNAVAILABLE) return st;
  version_state stored = {.exists = cur != NULL,
                          .deleted = cur && mongo_doc_bool(cur, "deleted"),
                          .version = cur ? mongo_doc_int(cur, "version") : 0};
  bool live = stored.exists && !stored.deleted, creates;
  int64_t version = 0;
  version_write w = version_check_write(&stored, if_match, create_ok, &version, &creates);
  if (w == VERSION_WRITE_NOT_FOUND) st = ENTITY_NOT_FOUND;
  else if (w == VERSION_WRITE_PRECONDITION) st = ENTITY_PRECONDITION;
  else st = s->kind->check ? s->kind->check(s->ctx, live ? cur : NULL, body, errors) : ENTITY_OK;
  if (st != ENTITY_OK) {
    if (cur) bson_destroy(cur);
    return st;
  }
  json_t *next = s->kind->body_to_item(body, id, version);
  ev_event ev;
  event_type(s, creates ? "created" : "updated", type, sizeof type);
  ev_build(&ev, type, s->source, id, version, next);
  if (!cur) {
    bson_t doc = BSON_INITIALIZER;
    new_doc(s, &doc, oid, body, version, &ev);
    st = insert_doc(s, h->coll, oid, &doc, again);
    bson_destroy(&doc);
  } else {
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    s->kind->append_fields(&set, body);
    BSON_APPEND_INT64(&set, "version", version);
    BSON_APPEND_BOOL(&set, "deleted", false);
    BSON_APPEND_DATE_TIME(&set, "updatedAt", util_now_ms());
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    bool matched;
    st = conditional_update(s, h, oid, cur, &update, &matched);
    if (st == ENTITY_OK && matched) {
      st = creates ? ENTITY_CREATED : ENTITY_OK;
    } else if (st == ENTITY_OK) {
      /* someone else changed it after our read */
      st = if_match >= 0 ? ENTITY_PRECONDITION : ENTITY_UNAVAILABLE;
      *again = if_match < 0;
    }
    bson_destroy(&update);
  }
  ev_free(&ev);
  if (cur) bson_destroy(cur);
  if (st == ENTITY_OK || st == ENTITY_CREATED) *item = next;
  else json_decref(next);
  return st;
}

/* Writes body as the state of oid: insert when absent, else a version-conditioned update. */
static entity_status write_state(entity_store *s, const bson_oid_t *oid, const json_t *body,
                                 int64_t if_match, bool create_ok, json_t **item,
                                 json_t *errors) {
  char id[25];
  bson_oid_to_string(oid, id);
  handle h = open_handle(s);
  entity_status st = ENTITY_UNAVAILABLE;
  bool again = true;
  *item = NULL;
  doclock_lock(id);
  for (int attempt = 0; attempt < MAX_ATTEMPTS && again; attempt++) {
    if (attempt) backoff(attempt);
    st = write_attempt(s, &h, oid, body, if_match, create_ok, item, errors, &again);
  }
  doclock_unlock(id);
  close_handle(s, &h);
  if (*item) ev_relay_kick(s->relay);
  return st;
}

entity_status entity_put(entity_store *s, const char *id, const json_t *body, int64_t if_match,
                         json_t **item, json_t *errors) {
  *item = NULL;
  if (!util_is_object_id(id)) return ENTITY_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  return write_state(s, &oid, body, if_match, true, item, errors);
}

void entity_merge_patch(json_t *target, const json_t *patch) {
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)patch, key, value) {
    if (json_is_null(value)) {
      json_object_del(target, key);
    } else if (json_is_object(value) && json_is_object(json_object_get(target, key))) {
      entity_merge_patch(json_object_get(target, key), value);
    } else {
      json_object_set(target, key, value);
    }
  }
}

entity_status entity_patch(entity_store *s, const char *id, const json_t *patch,
                           int64_t if_match, json_t **item, json_t *errors) {
  *item = NULL;
  entity_status st = ENTITY_UNAVAILABLE;
  for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    json_t *current;
    st = entity_get(s, id, &current);
    if (st != ENTITY_OK) return st;
    int64_t seen = json_integer_value(json_object_get(current, "version"));
    if (if_match >= 0 && seen != if_match) {
      json_decref(current);
      return ENTITY_PRECONDITION;
    }
    s->kind->to_body(current);
    entity_merge_patch(current, patch);
    if (s->kind->validate(current, id, errors) > 0) {
      json_decref(current);
      return ENTITY_INVALID;
    }
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    /* Conditioned on the version the patch was merged into, so a concurrent change is
     * never overwritten by a merge computed from stale state: on a race, merge again. */
    st = write_state(s, &oid, current, seen, false, item, errors);
    json_decref(current);
    if (st != ENTITY_PRECONDITION || if_match >= 0) return st;
  }
  return ENTITY_UNAVAILABLE;
}

/* Tombstones the live document at oid with a "<name>.deleted" event (lock held). */
static entity_status delete_locked(entity_store *s, handle *h, const bson_oid_t *oid,
                                   int64_t if_match) {
  char id[25], type[96];
  bson_oid_to_string(oid, id);
  event_type(s, "deleted", type, sizeof type);
  for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (attempt) backoff(attempt);
    bson_t *cur;
    entity_status st = read_doc(s, h->coll, oid, &cur);
    if (st != ENTITY_OK) return st;
    version_state stored = {true, mongo_doc_bool(cur, "deleted"), mongo_doc_int(cur, "version")};
    int64_t next;
    version_write w = version_check_delete(&stored, if_match, &next);
    if (w != VERSION_WRITE_OK) {
      bson_destroy(cur);
      return w == VERSION_WRITE_NOT_FOUND ? ENTITY_NOT_FOUND : ENTITY_PRECONDITION;
    }
    json_t *data = json_pack("{s:s, s:I}", "id", id, "version", (json_int_t)next);
    ev_event ev;
    ev_build(&ev, type, s->source, id, next, data);
    json_decref(data);
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_BOOL(&set, "deleted", true);
    if (s->kind->unique_key) {
      char tomb[64];
      snprintf(tomb, sizeof tomb, "\x01" "deleted:%s", id);
      BSON_APPEND_UTF8(&set, s->kind->unique_key, tomb);
    }
    BSON_APPEND_INT64(&set, "version", next);
    BSON_APPEND_DATE_TIME(&set, "updatedAt", util_now_ms());
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    bool matched;
    st = conditional_update(s, h, oid, cur, &update, &matched);
    bson_destroy(cur);
    bson_destroy(&update);
    ev_free(&ev);
    if (st != ENTITY_OK) return st;
    if (matched) return ENTITY_OK;
    if (if_match >= 0) return ENTITY_PRECONDITION;
  }
  return ENTITY_UNAVAILABLE;
}

static entity_status delete_doc(entity_store *s, handle *h, const bson_oid_t *oid,
                                int64_t if_match) {
  char id[25];
  bson_oid_to_string(oid, id);
  doclock_lock(id);
  entity_status st = delete_locked(s, h, oid, if_match);
  doclock_unlock(id);
  return st;
}

entity_status entity_delete(entity_store *s, const char *id, int64_t if_match) {
  if (!util_is_object_id(id)) return ENTITY_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  handle h = open_handle(s);
  entity_status st = delete_doc(s, &h, &oid, if_match);
  close_handle(s, &h);
  if (st == ENTITY_OK) ev_relay_kick(s->relay);
  return st;
}

entity_status entity_find_page(entity_store *s, const bson_t *filter, const mongo_page *page,
                               json_t **items, int64_t *total) {
  bson_t live = BSON_INITIALIZER;
  if (filter) bson_concat(&live, filter);
  BSON_APPEND_BOOL(&live, "deleted", false);
  handle h = open_handle(s);
  bson_error_t error;
  entity_status st = ENTITY_OK;
  if (!mongo_find_page(h.coll, &live, page, s->kind->doc_to_item, items, total, &error))
    st = db_error(s, "find", &error);
  close_handle(s, &h);
  bson_destroy(&live);
  return st;
}

/* The ids of every live entity. */
static entity_status live_ids(entity_store *s, mongoc_collection_t *coll, bson_oid_t **ids,
                              size_t *n) {
  bson_t *filter = BCON_NEW("deleted", BCON_BOOL(false));
  bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
  size_t cap = 64;
  *n = 0;
  *ids = xmalloc(cap * sizeof **ids);
  const bson_t *doc;
  bson_iter_t it;
  while (mongoc_cursor_next(cur, &doc)) {
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it)) continue;
    if (*n == cap) {
      bson_oid_t *grown = xrealloc(*ids, (cap *= 2) * sizeof **ids);
      *ids = grown;
    }
    bson_oid_copy(bson_iter_oid(&it), &(*ids)[(*n)++]);
  }
  bson_error_t error;
  entity_status st = ENTITY_OK;
  if (mongoc_cursor_error(cur, &error)) st = db_error(s, "scan", &error);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(filter);
  return st;
}

entity_status entity_drop_all(entity_store *s, int64_t *count) {
  handle h = open_handle(s);
  bson_oid_t *ids;
  size_t n;
  entity_status st = live_ids(s, h.coll, &ids, &n);
  *count = 0;
  for (size_t i = 0; st == ENTITY_OK && i < n; i++) {
    entity_status d = delete_doc(s, &h, &ids[i], -1);
    if (d == ENTITY_OK) (*count)++;
    else if (d != ENTITY_NOT_FOUND) st = d; /* deleted concurrently is fine */
  }
  free(ids);
  close_handle(s, &h);
  if (*count) ev_relay_kick(s->relay);
  return st;
}

/* Pushes a "<name>.updated" event at the document's current version, unless it changed or
 * was deleted meanwhile (that change's own event carries the newer state). */
static entity_status replay_one(entity_store *s, handle *h, const bson_oid_t *oid,
                                bool *pushed) {
  char id[25], type[96];
  bson_oid_to_string(oid, id);
  event_type(s, "updated", type, sizeof type);
  *pushed = false;
  doclock_lock(id);
  bson_t *doc;
  entity_status st = read_doc(s, h->coll, oid, &doc);
  if (st == ENTITY_OK && !mongo_doc_bool(doc, "deleted")) {
    json_t *item = s->kind->doc_to_item(doc);
    int64_t version = mongo_doc_int(doc, "version");
    ev_event ev;
    ev_build(&ev, type, s->source, id, version, item);
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    st = conditional_update(s, h, oid, doc, &update, pushed);
    bson_destroy(&update);
    ev_free(&ev);
    json_decref(item);
  }
  doclock_unlock(id);
  if (doc) bson_destroy(doc);
  return st == ENTITY_UNAVAILABLE ? st : ENTITY_OK;
}

entity_status entity_replay(entity_store *s, int64_t *count) {
  handle h = open_handle(s);
  bson_oid_t *ids;
  size_t n;
  entity_status st = live_ids(s, h.coll, &ids, &n);
  *count = 0;
  for (size_t i = 0; st == ENTITY_OK && i < n; i++) {
    bool pushed;
    st = replay_one(s, &h, &ids[i], &pushed);
    if (pushed) (*count)++;
  }
  free(ids);
  close_handle(s, &h);
  if (*count) ev_relay_kick(s->relay);
  return st;
}
