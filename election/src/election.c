/* election — validation, persistence and events of elections; see election.h. */
#include "election.h"

#include <stdlib.h>
#include <string.h>

#include "voter/json.h"
#include "voter/log.h"
#include "voter/util.h"

#define COLLECTION "elections"
#define MAX_RETRIES 5

struct election_store {
  mongo_db *db;
  ev_relay *relay;
  char *source;
};

static const jsonv_field election_fields[] = {
    {"title", JSONV_STRING, true, 256},
    {"date", JSONV_STRING, true, 64},
    {"electionType", JSONV_STRING, false, 64},
    {"description", JSONV_STRING, false, 4096},
    /* read-only members a client may send back from a GET; id must match, version is ignored
     * (use If-Match for optimistic concurrency) */
    {"id", JSONV_STRING, false, 24},
    {"version", JSONV_INTEGER, false, 0},
    {NULL, 0, false, 0},
};

election_store *election_store_open(mongo_db *db, ev_relay *relay, const char *source) {
  election_store *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->db = db;
  s->relay = relay;
  s->source = strdup(source);
  return s;
}

void election_store_close(election_store *s) {
  if (!s) return;
  free(s->source);
  free(s);
}

bool election_store_init(election_store *s) {
  bson_error_t error;
  bson_t *title = BCON_NEW("titleKey", BCON_INT32(1));
  bson_t *pending = BCON_NEW("_pending", BCON_INT32(1));
  bson_t *type = BCON_NEW("deleted", BCON_INT32(1), "electionType", BCON_INT32(1));
  bool ok = mongo_create_index(s->db, COLLECTION, "titleKey_unique", title, true, &error) &&
            mongo_create_index(s->db, COLLECTION, "pending", pending, false, &error) &&
            mongo_create_index(s->db, COLLECTION, "deleted_type", type, false, &error);
  if (!ok) log_warn("election: cannot create indexes yet: %s", error.message);
  bson_destroy(title);
  bson_destroy(pending);
  bson_destroy(type);
  return ok;
}

const char *election_sort_field(const char *p) {
  static const char *const allowed[] = {"title", "date", "electionType", "description", "version",
                                        NULL};
  if (strcmp(p, "id") == 0) return "_id";
  for (int i = 0; allowed[i]; i++)
    if (strcmp(p, allowed[i]) == 0) return allowed[i];
  return NULL;
}

int election_validate(const json_t *body, const char *path_id, json_t *errors) {
  int n = jsonv_check(body, election_fields, false, errors);
  const char *date = jsonv_str(body, "date");
  int64_t ms;
  if (date && util_parse_date(date, &ms) != 0)
    jsonv_error(errors, "date", "must be a date (YYYY-MM-DD or ISO 8601)"), n++;
  const char *id = jsonv_str(body, "id");
  if (id && path_id && strcmp(id, path_id) != 0)
    jsonv_error(errors, "id", "does not match the id in the path"), n++;
  return n;
}

/* ---- documents <-> representations ---- */

static const char *iter_utf8(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

static int64_t iter_int(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
    return bson_iter_as_int64(&it);
  return 0;
}

static bool iter_bool(const bson_t *doc, const char *key) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* The client-visible representation: id, title, date, electionType, description, version. */
static json_t *doc_to_item(const bson_t *doc) {
  bson_iter_t it;
  char id[25] = "";
  if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), id);
  char date[32] = "";
  json_t *date_json = json_null();
  if (bson_iter_init_find(&it, doc, "date") && BSON_ITER_HOLDS_DATE_TIME(&it)) {
    util_format_date(bson_iter_date_time(&it), date);
    json_decref(date_json);
    date_json = json_string(date);
  }
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:I}", "id", id, "title",
                   string_or_null(iter_utf8(doc, "title")), "date", date_json, "electionType",
                   string_or_null(iter_utf8(doc, "electionType")), "description",
                   string_or_null(iter_utf8(doc, "description")), "version",
                   (json_int_t)iter_int(doc, "version"));
}

/* Appends the entity's fields from a validated body. */
static void append_fields(bson_t *dst, const json_t *body) {
  const char *title = jsonv_str(body, "title");
  int64_t ms = 0;
  util_parse_date(jsonv_str(body, "date"), &ms);
  BSON_APPEND_UTF8(dst, "title", title);
  BSON_APPEND_UTF8(dst, "titleKey", title);
  BSON_APPEND_DATE_TIME(dst, "date", ms);
  const char *type = jsonv_str(body, "electionType");
  const char *desc = jsonv_str(body, "description");
  if (type) BSON_APPEND_UTF8(dst, "electionType", type);
  else BSON_APPEND_NULL(dst, "electionType");
  if (desc) BSON_APPEND_UTF8(dst, "description", desc);
  else BSON_APPEND_NULL(dst, "description");
}

/* The representation a body will have once stored at id/version, for the event. */
static json_t *body_to_item(const json_t *body, const char *id, int64_t version) {
  int64_t ms = 0;
  char date[32];
  util_parse_date(jsonv_str(body, "date"), &ms);
  util_format_date(ms, date);
  return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I}", "id", id, "title", jsonv_str(body, "title"),
                   "date", date, "electionType", string_or_null(jsonv_str(body, "electionType")),
                   "description", string_or_null(jsonv_str(body, "description")), "version",
                   (json_int_t)version);
}

static es_status db_error(const char *what, const bson_error_t *error) {
  log_warn("election: %s failed: %s", what, error->message);
  return ES_UNAVAILABLE;
}

/* Reads the document with this id, tombstones included. ES_NOT_FOUND when absent. */
static es_status read_doc(election_store *s, mongoc_collection_t *coll, const bson_oid_t *oid,
                          bson_t **out) {
  (void)s;
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_OID(&filter, "_id", oid);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
  const bson_t *doc;
  es_status st = ES_NOT_FOUND;
  *out = NULL;
  if (mongoc_cursor_next(cur, &doc)) {
    *out = bson_copy(doc);
    st = ES_OK;
  } else {
    bson_error_t error;
    if (mongoc_cursor_error(cur, &error)) st = db_error("read", &error);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  return st;
}

/* Runs an update conditioned on the document's current version; *matched tells whether
 * the version was still current. Maps duplicate titles to ES_DUPLICATE. */
static es_status conditional_update(mongoc_collection_t *coll, const bson_oid_t *oid,
                                    int64_t version, const bson_t *update, bool *matched) {
  bson_t filter = BSON_INITIALIZER, reply;
  BSON_APPEND_OID(&filter, "_id", oid);
  BSON_APPEND_INT64(&filter, "version", version);
  bson_error_t error;
  bool ok = mongoc_collection_update_one(coll, &filter, update, NULL, &reply, &error);
  *matched = ok && iter_int(&reply, "matchedCount") > 0;
  bson_destroy(&reply);
  bson_destroy(&filter);
  if (!ok) return mongo_is_duplicate(&error) ? ES_DUPLICATE : db_error("update", &error);
  return ES_OK;
}

es_status election_create(election_store *s, const json_t *body, json_t **item) {
  bson_oid_t oid;
  char id[25];
  bson_oid_init(&oid, NULL);
  bson_oid_to_string(&oid, id);
  *item = body_to_item(body, id, 1);
  ev_event ev;
  ev_build(&ev, "election.created", s->source, id, 1, *item);

  int64_t now = util_now_ms();
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_OID(&doc, "_id", &oid);
  append_fields(&doc, body);
  BSON_APPEND_INT64(&doc, "version", 1);
  BSON_APPEND_BOOL(&doc, "deleted", false);
  BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
  BSON_APPEND_DATE_TIME(&doc, "updatedAt", now);
  ev_outbox_insert_fields(&doc, &ev);

  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_error_t error;
  es_status st = ES_CREATED;
  if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error))
    st = mongo_is_duplicate(&error) ? ES_DUPLICATE : db_error("insert", &error);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  bson_destroy(&doc);
  ev_free(&ev);
  if (st != ES_CREATED) {
    json_decref(*item);
    *item = NULL;
    return st;
  }
  ev_relay_kick(s->relay);
  return st;
}

es_status election_get(election_store *s, const char *id, json_t **item) {
  *item = NULL;
  if (!util_is_object_id(id)) return ES_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_t *doc;
  es_status st = read_doc(s, coll, &oid, &doc);
  if (st == ES_OK && iter_bool(doc, "deleted")) st = ES_NOT_FOUND;
  if (st == ES_OK) *item = doc_to_item(doc);
  if (doc) bson_destroy(doc);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  return st;
}

/* Writes body as the new state of the document at oid: insert when absent, otherwise a
 * version-conditioned update (re-creating a tombstone continues its version). Retries on
 * a concurrent change unless the caller gave If-Match. */
static es_status write_state(election_store *s, const bson_oid_t *oid, const json_t *body,
                             int64_t if_match, bool create_ok, json_t **item) {
  char id[25];
  bson_oid_to_string(oid, id);
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  es_status st = ES_UNAVAILABLE;
  *item = NULL;
  ev_doc_lock(id);
  for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
    bson_t *cur = NULL;
    st = read_doc(s, coll, oid, &cur);
    if (st == ES_UNAVAILABLE) break;
    bool live = st == ES_OK && !iter_bool(cur, "deleted");
    if (!live && !create_ok) {
      st = ES_NOT_FOUND;
      if (cur) bson_destroy(cur);
      break;
    }
    if (if_match >= 0 && (!live || iter_int(cur, "version") != if_match)) {
      st = ES_PRECONDITION;
      if (cur) bson_destroy(cur);
      break;
    }
    int64_t version = cur ? iter_int(cur, "version") + 1 : 1;
    int64_t now = util_now_ms();
    json_t *next = body_to_item(body, id, version);
    ev_event ev;
    ev_build(&ev, live ? "election.updated" : "election.created", s->source, id, version, next);
    bool matched = false;
    if (!cur) {
      bson_t doc = BSON_INITIALIZER;
      BSON_APPEND_OID(&doc, "_id", oid);
      append_fields(&doc, body);
      BSON_APPEND_INT64(&doc, "version", version);
      BSON_APPEND_BOOL(&doc, "deleted", false);
      BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
      BSON_APPEND_DATE_TIME(&doc, "updatedAt", now);
      ev_outbox_insert_fields(&doc, &ev);
      bson_error_t error;
      bson_t *again = NULL;
      if (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
        st = ES_CREATED, matched = true;
      } else if (!mongo_is_duplicate(&error)) {
        st = db_error("insert", &error), matched = true;
      } else if (read_doc(s, coll, oid, &again) == ES_OK) {
        st = ES_OK; /* the id appeared concurrently: read again */
      } else {
        /* FerretDB's duplicate-key message does not name the index: the id is free, so
         * the title is taken */
        st = ES_DUPLICATE, matched = true;
      }
      if (again) bson_destroy(again);
      bson_destroy(&doc);
    } else {
      bson_t update = BSON_INITIALIZER, set;
      BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
      append_fields(&set, body);
      BSON_APPEND_INT64(&set, "version", version);
      BSON_APPEND_BOOL(&set, "deleted", false);
      BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
      ev_outbox_set_pending(&set);
      bson_append_document_end(&update, &set);
      ev_outbox_update_ops(&update, &ev);
      st = conditional_update(coll, oid, version - 1, &update, &matched);
      if (st == ES_OK) st = live ? ES_OK : ES_CREATED;
      if (st == ES_DUPLICATE || st == ES_UNAVAILABLE) matched = true; /* no retry: a real error */
      bson_destroy(&update);
    }
    ev_free(&ev);
    if (cur) bson_destroy(cur);
    if (matched && (st == ES_OK || st == ES_CREATED)) {
      *item = next;
      break;
    }
    json_decref(next);
    if (matched) break;         /* a real error */
    if (if_match >= 0) {        /* someone else changed it after our read */
      st = ES_PRECONDITION;
      break;
    }
    st = ES_UNAVAILABLE; /* unless a retry succeeds */
  }
  ev_doc_unlock(id);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (*item) ev_relay_kick(s->relay);
  return st;
}

es_status election_replace(election_store *s, const char *id, const json_t *body,
                           int64_t if_match, json_t **item) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  return write_state(s, &oid, body, if_match, true, item);
}

/* RFC 7396: null removes, objects merge recursively, anything else replaces. */
static void merge_patch(json_t *target, const json_t *patch) {
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)patch, key, value) {
    if (json_is_null(value)) {
      json_object_del(target, key);
    } else if (json_is_object(value) && json_is_object(json_object_get(target, key))) {
      merge_patch(json_object_get(target, key), value);
    } else {
      json_object_set(target, key, value);
    }
  }
}

es_status election_patch(election_store *s, const char *id, const json_t *patch,
                         int64_t if_match, json_t **item, json_t *errors) {
  *item = NULL;
  es_status st = ES_UNAVAILABLE;
  for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
    json_t *current;
    st = election_get(s, id, &current);
    if (st != ES_OK) return st;
    int64_t seen = json_integer_value(json_object_get(current, "version"));
    if (if_match >= 0 && seen != if_match) {
      json_decref(current);
      return ES_PRECONDITION;
    }
    json_object_del(current, "version");
    json_object_del(current, "id");
    /* absent optional fields are null in the representation; drop them so the merged
     * body validates like a client's */
    if (json_is_null(json_object_get(current, "electionType")))
      json_object_del(current, "electionType");
    if (json_is_null(json_object_get(current, "description")))
      json_object_del(current, "description");
    merge_patch(current, patch);
    if (election_validate(current, id, errors) > 0) {
      json_decref(current);
      return ES_INVALID;
    }
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    /* Conditioned on the version the patch was applied to, so a concurrent change is
     * never overwritten by a merge computed from stale state: on a race, merge again. */
    st = write_state(s, &oid, current, seen, false, item);
    json_decref(current);
    if (st != ES_PRECONDITION || if_match >= 0) return st;
  }
  return ES_UNAVAILABLE;
}

/* Tombstones the live document at oid with an election.deleted event. */
static es_status delete_doc_locked(election_store *s, mongoc_collection_t *coll,
                                   const bson_oid_t *oid, int64_t if_match) {
  char id[25];
  bson_oid_to_string(oid, id);
  for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
    bson_t *cur;
    es_status st = read_doc(s, coll, oid, &cur);
    if (st != ES_OK) return st;
    if (iter_bool(cur, "deleted")) {
      bson_destroy(cur);
      return ES_NOT_FOUND;
    }
    int64_t version = iter_int(cur, "version");
    bson_destroy(cur);
    if (if_match >= 0 && version != if_match) return ES_PRECONDITION;
    json_t *data = json_pack("{s:s, s:I}", "id", id, "version", (json_int_t)(version + 1));
    ev_event ev;
    ev_build(&ev, "election.deleted", s->source, id, version + 1, data);
    json_decref(data);
    char tomb[64];
    snprintf(tomb, sizeof tomb, "\x01" "deleted:%s", id);
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_BOOL(&set, "deleted", true);
    BSON_APPEND_UTF8(&set, "titleKey", tomb);
    BSON_APPEND_INT64(&set, "version", version + 1);
    BSON_APPEND_DATE_TIME(&set, "updatedAt", util_now_ms());
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    bool matched;
    st = conditional_update(coll, oid, version, &update, &matched);
    bson_destroy(&update);
    ev_free(&ev);
    if (st != ES_OK) return st;
    if (matched) return ES_OK;
    if (if_match >= 0) return ES_PRECONDITION;
  }
  return ES_UNAVAILABLE;
}

static es_status delete_doc(election_store *s, mongoc_collection_t *coll, const bson_oid_t *oid,
                            int64_t if_match) {
  char id[25];
  bson_oid_to_string(oid, id);
  ev_doc_lock(id);
  es_status st = delete_doc_locked(s, coll, oid, if_match);
  ev_doc_unlock(id);
  return st;
}

es_status election_delete(election_store *s, const char *id, int64_t if_match) {
  if (!util_is_object_id(id)) return ES_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  es_status st = delete_doc(s, coll, &oid, if_match);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (st == ES_OK) ev_relay_kick(s->relay);
  return st;
}

es_status election_list(election_store *s, const election_query *q, json_t **items,
                        int64_t *total) {
  *items = NULL;
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  char *pattern = NULL;
  if (q->type_contains) {
    pattern = util_regex_escape(q->type_contains);
    BSON_APPEND_REGEX(&filter, "electionType", pattern, "");
  }
  bson_t opts = BSON_INITIALIZER, sort;
  BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
  for (int i = 0; i < q->nsort; i++) BSON_APPEND_INT32(&sort, q->sort_fields[i], q->sort_dirs[i]);
  /* a stable order for paging: ties broken by id */
  bool has_id = false;
  for (int i = 0; i < q->nsort; i++) has_id |= strcmp(q->sort_fields[i], "_id") == 0;
  if (!has_id) BSON_APPEND_INT32(&sort, "_id", 1);
  bson_append_document_end(&opts, &sort);
  BSON_APPEND_INT64(&opts, "skip", q->page * q->size);
  BSON_APPEND_INT64(&opts, "limit", q->size);

  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_error_t error;
  es_status st = ES_OK;
  *total = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, &error);
  if (*total < 0) {
    st = db_error("count", &error);
  } else {
    json_t *arr = json_array();
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) json_array_append_new(arr, doc_to_item(doc));
    if (mongoc_cursor_error(cur, &error)) {
      st = db_error("find", &error);
      json_decref(arr);
    } else {
      *items = arr;
    }
    mongoc_cursor_destroy(cur);
  }
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  bson_destroy(&opts);
  bson_destroy(&filter);
  free(pattern);
  return st;
}

es_status election_titles(election_store *s, json_t **titles) {
  election_query q = {.page = 0, .size = 100000, .sort_fields = {"title"}, .sort_dirs = {1},
                      .nsort = 1};
  json_t *items;
  int64_t total;
  es_status st = election_list(s, &q, &items, &total);
  if (st != ES_OK) return st;
  *titles = json_array();
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) json_array_append(*titles, json_object_get(item, "title"));
  json_decref(items);
  return ES_OK;
}

/* Collects the ids of every live election. */
static es_status live_ids(mongoc_collection_t *coll, bson_oid_t **ids, size_t *n) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
  size_t cap = 64;
  *n = 0;
  *ids = malloc(cap * sizeof **ids);
  const bson_t *doc;
  bson_iter_t it;
  while (mongoc_cursor_next(cur, &doc)) {
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it)) continue;
    if (*n == cap) *ids = realloc(*ids, (cap *= 2) * sizeof **ids);
    bson_oid_copy(bson_iter_oid(&it), &(*ids)[(*n)++]);
  }
  bson_error_t error;
  es_status st = ES_OK;
  if (mongoc_cursor_error(cur, &error)) st = db_error("scan", &error);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(&filter);
  return st;
}

es_status election_drop_all(election_store *s, int64_t *count) {
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_oid_t *ids;
  size_t n;
  es_status st = live_ids(coll, &ids, &n);
  *count = 0;
  for (size_t i = 0; st == ES_OK && i < n; i++) {
    es_status d = delete_doc(s, coll, &ids[i], -1);
    if (d == ES_OK) (*count)++;
    else if (d != ES_NOT_FOUND) st = d; /* deleted concurrently is fine */
  }
  free(ids);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (*count) ev_relay_kick(s->relay);
  return st;
}

es_status election_replay(election_store *s, int64_t *count) {
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_oid_t *ids;
  size_t n;
  es_status st = live_ids(coll, &ids, &n);
  *count = 0;
  for (size_t i = 0; st == ES_OK && i < n; i++) {
    char id[25];
    bson_oid_to_string(&ids[i], id);
    ev_doc_lock(id);
    bson_t *doc;
    es_status r = read_doc(s, coll, &ids[i], &doc);
    if (r != ES_OK || iter_bool(doc, "deleted")) {
      ev_doc_unlock(id);
      if (doc) bson_destroy(doc);
      if (r == ES_UNAVAILABLE) st = r;
      continue;
    }
    json_t *item = doc_to_item(doc);
    int64_t version = iter_int(doc, "version");
    ev_event ev;
    ev_build(&ev, "election.updated", s->source, id, version, item);
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    bool matched;
    /* If it changed meanwhile, that change's own event carries the newer state. */
    if (conditional_update(coll, &ids[i], version, &update, &matched) == ES_OK && matched)
      (*count)++;
    ev_doc_unlock(id);
    bson_destroy(&update);
    ev_free(&ev);
    json_decref(item);
    bson_destroy(doc);
  }
  free(ids);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (*count) ev_relay_kick(s->relay);
  return st;
}
