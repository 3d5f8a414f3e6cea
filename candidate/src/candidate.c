/* candidate — validation, persistence and events of candidates; see candidate.h. */
#include "candidate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/json.h"
#include "voter/log.h"
#include "voter/util.h"

#define COLLECTION "candidates"
#define MAX_RETRIES 5
#define NAME_MAX_LEN 256
/* The wire name (sic) and the spelling also accepted on input. */
#define EXPERIENCE "politcalExperience"
#define EXPERIENCE_ALIAS "politicalExperience"

struct candidate_store {
  mongo_db *db;
  ev_relay *relay;
  elections *elections;
  char *source;
};

static const jsonv_field candidate_fields[] = {
    {"firstName", JSONV_STRING, true, NAME_MAX_LEN},
    {"lastName", JSONV_STRING, true, NAME_MAX_LEN},
    {"politicalParty", JSONV_STRING, false, 256},
    {"election", JSONV_STRING, true, 256},
    {"homeState", JSONV_STRING, false, 256},
    {EXPERIENCE, JSONV_STRING, false, 4096},
    {EXPERIENCE_ALIAS, JSONV_STRING, false, 4096},
    /* read-only members a client may send back from a GET: fullName must equal the
     * derived value, id must match the path, version is ignored (use If-Match) */
    {"fullName", JSONV_STRING, false, 2 * NAME_MAX_LEN + 1},
    {"id", JSONV_STRING, false, 24},
    {"version", JSONV_INTEGER, false, 0},
    {NULL, 0, false, 0},
};

candidate_store *candidate_store_open(mongo_db *db, ev_relay *relay, const char *source,
                                      elections *replica) {
  candidate_store *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->db = db;
  s->relay = relay;
  s->elections = replica;
  s->source = strdup(source);
  if (!s->source) {
    free(s);
    return NULL;
  }
  return s;
}

void candidate_store_close(candidate_store *s) {
  if (!s) return;
  free(s->source);
  free(s);
}

bool candidate_store_init(candidate_store *s) {
  bson_error_t error;
  bson_t *name = BCON_NEW("nameKey", BCON_INT32(1));
  bson_t *pending = BCON_NEW("_pending", BCON_INT32(1));
  bson_t *election = BCON_NEW("deleted", BCON_INT32(1), "election", BCON_INT32(1));
  bson_t *last = BCON_NEW("deleted", BCON_INT32(1), "lastName", BCON_INT32(1));
  bool ok = mongo_create_index(s->db, COLLECTION, "nameKey_unique", name, true, &error) &&
            mongo_create_index(s->db, COLLECTION, "pending", pending, false, &error) &&
            mongo_create_index(s->db, COLLECTION, "deleted_election", election, false, &error) &&
            mongo_create_index(s->db, COLLECTION, "deleted_lastName", last, false, &error);
  if (!ok) log_warn("candidate: cannot create indexes yet: %s", error.message);
  bson_destroy(name);
  bson_destroy(pending);
  bson_destroy(election);
  bson_destroy(last);
  return ok;
}

const char *candidate_sort_field(const char *p) {
  static const char *const allowed[] = {"firstName", "lastName",  "fullName",
                                        "politicalParty", "election", "homeState",
                                        EXPERIENCE,  "version",   NULL};
  if (strcmp(p, "id") == 0) return "_id";
  for (int i = 0; allowed[i]; i++)
    if (strcmp(p, allowed[i]) == 0) return allowed[i];
  return NULL;
}

/* "<first> <last>"; caller frees. */
static char *full_name(const char *first, const char *last) {
  size_t n = strlen(first) + strlen(last) + 2;
  char *out = malloc(n);
  if (!out) abort();
  snprintf(out, n, "%s %s", first, last);
  return out;
}

/* The experience from either spelling (validation made sure at most one is given). */
static const char *experience(const json_t *body) {
  const char *v = jsonv_str(body, EXPERIENCE);
  return v ? v : jsonv_str(body, EXPERIENCE_ALIAS);
}

int candidate_validate(const json_t *body, const char *path_id, json_t *errors) {
  int n = jsonv_check(body, candidate_fields, false, errors);
  if (jsonv_str(body, EXPERIENCE) && jsonv_str(body, EXPERIENCE_ALIAS))
    jsonv_error(errors, EXPERIENCE_ALIAS,
                "give " EXPERIENCE " or its alias " EXPERIENCE_ALIAS ", not both"), n++;
  const char *first = jsonv_str(body, "firstName"), *last = jsonv_str(body, "lastName");
  const char *given = jsonv_str(body, "fullName");
  if (given && first && last) {
    char *derived = full_name(first, last);
    if (strcmp(given, derived) != 0)
      jsonv_error(errors, "fullName", "is derived from firstName and lastName; omit it"), n++;
    free(derived);
  }
  const char *id = jsonv_str(body, "id");
  if (id && path_id && strcmp(id, path_id) != 0)
    jsonv_error(errors, "id", "does not match the id in the path"), n++;
  return n;
}

/* ---- documents <-> representations ---- */

/* The client-visible representation: id, the fields, fullName, version. */
static json_t *doc_to_item(const bson_t *doc) {
  bson_iter_t it;
  char id[25] = "";
  if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), id);
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "id", id, "firstName",
                   docs_json_str(doc, "firstName"), "lastName", docs_json_str(doc, "lastName"),
                   "fullName", docs_json_str(doc, "fullName"), "politicalParty",
                   docs_json_str(doc, "politicalParty"), "election",
                   docs_json_str(doc, "election"), "homeState", docs_json_str(doc, "homeState"),
                   EXPERIENCE, docs_json_str(doc, EXPERIENCE), "version",
                   (json_int_t)docs_int(doc, "version"));
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* The representation a validated body will have once stored at id/version, for the event
 * and the response. */
static json_t *body_to_item(const json_t *body, const char *id, int64_t version) {
  const char *first = jsonv_str(body, "firstName"), *last = jsonv_str(body, "lastName");
  char *full = full_name(first, last);
  json_t *item = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:I}", "id", id, "firstName",
                           first, "lastName", last, "fullName", full, "politicalParty",
                           string_or_null(jsonv_str(body, "politicalParty")), "election",
                           jsonv_str(body, "election"), "homeState",
                           string_or_null(jsonv_str(body, "homeState")), EXPERIENCE,
                           string_or_null(experience(body)), "version", (json_int_t)version);
  free(full);
  return item;
}

static void append_optional(bson_t *dst, const char *key, const char *value) {
  if (value) BSON_APPEND_UTF8(dst, key, value);
  else BSON_APPEND_NULL(dst, key);
}

/* Appends the entity's fields (and the uniqueness key) from a validated body. */
static void append_fields(bson_t *dst, const json_t *body) {
  const char *first = jsonv_str(body, "firstName"), *last = jsonv_str(body, "lastName");
  const char *election = jsonv_str(body, "election");
  char *full = full_name(first, last);
  size_t keylen = strlen(election) + strlen(full) + 2;
  char *key = malloc(keylen);
  if (!key) abort();
  snprintf(key, keylen, "%s\x1f%s", election, full);
  BSON_APPEND_UTF8(dst, "firstName", first);
  BSON_APPEND_UTF8(dst, "lastName", last);
  BSON_APPEND_UTF8(dst, "fullName", full);
  append_optional(dst, "politicalParty", jsonv_str(body, "politicalParty"));
  BSON_APPEND_UTF8(dst, "election", election);
  append_optional(dst, "homeState", jsonv_str(body, "homeState"));
  append_optional(dst, EXPERIENCE, experience(body));
  BSON_APPEND_UTF8(dst, "nameKey", key);
  free(key);
  free(full);
}

/* mongo_is_duplicate misses FerretDB's answer to an update that violates a unique index
 * (a SQLite "UNIQUE constraint failed" without code 11000); inserts are recognised. */
static bool is_duplicate(const bson_error_t *error) {
  return mongo_is_duplicate(error) || strstr(error->message, "UNIQUE constraint failed");
}

static cs_status db_error(const char *what, const bson_error_t *error) {
  log_warn("candidate: %s failed: %s", what, error->message);
  return CS_UNAVAILABLE;
}

/* CS_OK when the election replica has a live election with this title; otherwise
 * CS_INVALID with an "election" error, or CS_UNAVAILABLE. */
static cs_status check_election(candidate_store *s, const char *title, json_t *errors) {
  bool known = false;
  if (elections_title_known(s->elections, title, &known) != ELECTIONS_OK) return CS_UNAVAILABLE;
  if (known) return CS_OK;
  jsonv_error(errors, "election",
              "no election with this title is known to the candidate service (yet)");
  return CS_INVALID;
}

/* Reads the document with this id, tombstones included. CS_NOT_FOUND when absent. */
static cs_status read_doc(mongoc_collection_t *coll, const bson_oid_t *oid, bson_t **out) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_OID(&filter, "_id", oid);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
  const bson_t *doc;
  cs_status st = CS_NOT_FOUND;
  *out = NULL;
  if (mongoc_cursor_next(cur, &doc)) {
    *out = bson_copy(doc);
    st = CS_OK;
  } else {
    bson_error_t error;
    if (mongoc_cursor_error(cur, &error)) st = db_error("read", &error);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  return st;
}

/* Whether a document with this id exists. FerretDB names no index in a duplicate-key
 * error, so this is how an insert tells a taken id from a taken name. */
static bool id_exists(mongoc_collection_t *coll, const bson_oid_t *oid) {
  bson_t *doc = NULL;
  bool found = read_doc(coll, oid, &doc) == CS_OK;
  if (doc) bson_destroy(doc);
  return found;
}

/* Runs an update conditioned on the document's current version; *matched tells whether
 * the version was still current. Maps a taken full name to CS_DUPLICATE. */
static cs_status conditional_update(mongoc_collection_t *coll, const bson_oid_t *oid,
                                    int64_t version, const bson_t *update, bool *matched) {
  bson_t filter = BSON_INITIALIZER, reply;
  BSON_APPEND_OID(&filter, "_id", oid);
  BSON_APPEND_INT64(&filter, "version", version);
  bson_error_t error;
  bool ok = mongoc_collection_update_one(coll, &filter, update, NULL, &reply, &error);
  *matched = ok && docs_int(&reply, "matchedCount") > 0;
  bson_destroy(&reply);
  bson_destroy(&filter);
  if (!ok) return is_duplicate(&error) ? CS_DUPLICATE : db_error("update", &error);
  return CS_OK;
}

/* The new document for an insert at oid: fields, bookkeeping and its first event. */
static void new_doc(bson_t *doc, const bson_oid_t *oid, const json_t *body, int64_t version,
                    const ev_event *ev) {
  int64_t now = util_now_ms();
  BSON_APPEND_OID(doc, "_id", oid);
  append_fields(doc, body);
  BSON_APPEND_INT64(doc, "version", version);
  BSON_APPEND_BOOL(doc, "deleted", false);
  BSON_APPEND_DATE_TIME(doc, "createdAt", now);
  BSON_APPEND_DATE_TIME(doc, "updatedAt", now);
  ev_outbox_insert_fields(doc, ev);
}

cs_status candidate_create(candidate_store *s, const json_t *body, json_t **item,
                           json_t *errors) {
  *item = NULL;
  cs_status st = check_election(s, jsonv_str(body, "election"), errors);
  if (st != CS_OK) return st;
  bson_oid_t oid;
  char id[25];
  bson_oid_init(&oid, NULL);
  bson_oid_to_string(&oid, id);
  json_t *next = body_to_item(body, id, 1);
  ev_event ev;
  ev_build(&ev, "candidate.created", s->source, id, 1, next);
  bson_t doc = BSON_INITIALIZER;
  new_doc(&doc, &oid, body, 1, &ev);

  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_error_t error;
  st = CS_CREATED;
  if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error))
    st = is_duplicate(&error) ? CS_DUPLICATE : db_error("insert", &error);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  bson_destroy(&doc);
  ev_free(&ev);
  if (st != CS_CREATED) {
    json_decref(next);
    return st;
  }
  *item = next;
  ev_relay_kick(s->relay);
  return st;
}

cs_status candidate_get(candidate_store *s, const char *id, json_t **item) {
  *item = NULL;
  if (!util_is_object_id(id)) return CS_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_t *doc;
  cs_status st = read_doc(coll, &oid, &doc);
  if (st == CS_OK && docs_bool(doc, "deleted")) st = CS_NOT_FOUND;
  if (st == CS_OK) *item = doc_to_item(doc);
  if (doc) bson_destroy(doc);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  return st;
}

/* One attempt of write_state with the document's lock held: reads, checks, writes.
 * *done is false when a concurrent change won the race and the attempt may be repeated. */
static cs_status write_attempt(candidate_store *s, mongoc_collection_t *coll,
                               const bson_oid_t *oid, const json_t *body, int64_t if_match,
                               bool create_ok, json_t **item, json_t *errors, bool *done) {
  char id[25];
  bson_oid_to_string(oid, id);
  *done = true;
  bson_t *cur = NULL;
  cs_status st = read_doc(coll, oid, &cur);
  if (st == CS_UNAVAILABLE) return st;
  bool live = st == CS_OK && !docs_bool(cur, "deleted");
  if (!live && !create_ok) st = CS_NOT_FOUND;
  else if (if_match >= 0 && (!live || docs_int(cur, "version") != if_match)) st = CS_PRECONDITION;
  else st = CS_OK;
  /* Only a write that sets or changes the election needs it to exist. */
  const char *election = jsonv_str(body, "election");
  const char *stored = live ? docs_str(cur, "election") : NULL;
  if (st == CS_OK && (!stored || strcmp(stored, election) != 0))
    st = check_election(s, election, errors);
  if (st != CS_OK) {
    if (cur) bson_destroy(cur);
    return st;
  }

  int64_t version = cur ? docs_int(cur, "version") + 1 : 1;
  json_t *next = body_to_item(body, id, version);
  ev_event ev;
  ev_build(&ev, live ? "candidate.updated" : "candidate.created", s->source, id, version, next);
  bool matched = false;
  if (!cur) {
    bson_t doc = BSON_INITIALIZER;
    new_doc(&doc, oid, body, version, &ev);
    bson_error_t error;
    if (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
      st = CS_CREATED, matched = true;
    } else if (is_duplicate(&error) && id_exists(coll, oid)) {
      st = CS_OK; /* the id appeared concurrently (another replica): read again */
    } else {
      st = is_duplicate(&error) ? CS_DUPLICATE : db_error("insert", &error);
      matched = true;
    }
    bson_destroy(&doc);
  } else {
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    append_fields(&set, body);
    BSON_APPEND_INT64(&set, "version", version);
    BSON_APPEND_BOOL(&set, "deleted", false);
    BSON_APPEND_DATE_TIME(&set, "updatedAt", util_now_ms());
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    st = conditional_update(coll, oid, version - 1, &update, &matched);
    if (st == CS_OK) st = live ? CS_OK : CS_CREATED;
    else matched = true; /* a real error (a taken name, the database): no retry */
    bson_destroy(&update);
  }
  ev_free(&ev);
  if (cur) bson_destroy(cur);
  if (matched && (st == CS_OK || st == CS_CREATED)) {
    *item = next;
    return st;
  }
  json_decref(next);
  if (matched) return st; /* a real error */
  if (if_match >= 0) return CS_PRECONDITION; /* someone else changed it after our read */
  *done = false;
  return CS_UNAVAILABLE; /* unless a retry succeeds */
}

/* Writes body as the new state of the document at oid: insert when absent, otherwise a
 * version-conditioned update (re-creating a tombstone continues its version). Retries on
 * a concurrent change unless the caller gave If-Match. */
static cs_status write_state(candidate_store *s, const bson_oid_t *oid, const json_t *body,
                             int64_t if_match, bool create_ok, json_t **item, json_t *errors) {
  char id[25];
  bson_oid_to_string(oid, id);
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  cs_status st = CS_UNAVAILABLE;
  bool done = false;
  *item = NULL;
  ev_doc_lock(id);
  for (int attempt = 0; attempt < MAX_RETRIES && !done; attempt++)
    st = write_attempt(s, coll, oid, body, if_match, create_ok, item, errors, &done);
  ev_doc_unlock(id);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (*item) ev_relay_kick(s->relay);
  return st;
}

cs_status candidate_replace(candidate_store *s, const char *id, const json_t *body,
                            int64_t if_match, json_t **item, json_t *errors) {
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  return write_state(s, &oid, body, if_match, true, item, errors);
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

cs_status candidate_patch(candidate_store *s, const char *id, const json_t *patch,
                          int64_t if_match, json_t **item, json_t *errors) {
  *item = NULL;
  /* The alias names the stored field: a patch of it patches politcalExperience. */
  if (json_object_get(patch, EXPERIENCE) && json_object_get(patch, EXPERIENCE_ALIAS)) {
    jsonv_error(errors, EXPERIENCE_ALIAS,
                "give " EXPERIENCE " or its alias " EXPERIENCE_ALIAS ", not both");
    return CS_INVALID;
  }
  json_t *p = json_copy((json_t *)patch);
  json_t *alias = json_object_get(p, EXPERIENCE_ALIAS);
  if (alias) {
    json_object_set(p, EXPERIENCE, alias);
    json_object_del(p, EXPERIENCE_ALIAS);
  }
  cs_status st = CS_UNAVAILABLE;
  for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
    json_t *current;
    st = candidate_get(s, id, &current);
    if (st != CS_OK) break;
    int64_t seen = json_integer_value(json_object_get(current, "version"));
    if (if_match >= 0 && seen != if_match) {
      json_decref(current);
      st = CS_PRECONDITION;
      break;
    }
    /* Drop the read-only members (fullName is derived again from the merged names) and
     * the absent optional ones (null in the representation), so the merged body
     * validates like a client's. */
    json_object_del(current, "id");
    json_object_del(current, "version");
    json_object_del(current, "fullName");
    static const char *const optional[] = {"politicalParty", "homeState", EXPERIENCE};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
      if (json_is_null(json_object_get(current, optional[i])))
        json_object_del(current, optional[i]);
    merge_patch(current, p);
    if (candidate_validate(current, id, errors) > 0) {
      json_decref(current);
      st = CS_INVALID;
      break;
    }
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    /* Conditioned on the version the patch was applied to, so a concurrent change is
     * never overwritten by a merge computed from stale state: on a race, merge again. */
    st = write_state(s, &oid, current, seen, false, item, errors);
    json_decref(current);
    if (st != CS_PRECONDITION || if_match >= 0) break;
    st = CS_UNAVAILABLE;
  }
  json_decref(p);
  return st;
}

/* Tombstones the live document at oid with a candidate.deleted event. */
static cs_status delete_doc_locked(candidate_store *s, mongoc_collection_t *coll,
                                   const bson_oid_t *oid, int64_t if_match) {
  char id[25];
  bson_oid_to_string(oid, id);
  for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
    bson_t *cur;
    cs_status st = read_doc(coll, oid, &cur);
    if (st != CS_OK) return st;
    if (docs_bool(cur, "deleted")) {
      bson_destroy(cur);
      return CS_NOT_FOUND;
    }
    int64_t version = docs_int(cur, "version");
    bson_destroy(cur);
    if (if_match >= 0 && version != if_match) return CS_PRECONDITION;
    json_t *data = json_pack("{s:s, s:I}", "id", id, "version", (json_int_t)(version + 1));
    ev_event ev;
    ev_build(&ev, "candidate.deleted", s->source, id, version + 1, data);
    json_decref(data);
    char tomb[64];
    snprintf(tomb, sizeof tomb, "\x01" "deleted:%s", id);
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_BOOL(&set, "deleted", true);
    BSON_APPEND_UTF8(&set, "nameKey", tomb);
    BSON_APPEND_INT64(&set, "version", version + 1);
    BSON_APPEND_DATE_TIME(&set, "updatedAt", util_now_ms());
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    bool matched;
    st = conditional_update(coll, oid, version, &update, &matched);
    bson_destroy(&update);
    ev_free(&ev);
    if (st != CS_OK) return st;
    if (matched) return CS_OK;
    if (if_match >= 0) return CS_PRECONDITION;
  }
  return CS_UNAVAILABLE;
}

static cs_status delete_doc(candidate_store *s, mongoc_collection_t *coll, const bson_oid_t *oid,
                            int64_t if_match) {
  char id[25];
  bson_oid_to_string(oid, id);
  ev_doc_lock(id);
  cs_status st = delete_doc_locked(s, coll, oid, if_match);
  ev_doc_unlock(id);
  return st;
}

cs_status candidate_delete(candidate_store *s, const char *id, int64_t if_match) {
  if (!util_is_object_id(id)) return CS_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  cs_status st = delete_doc(s, coll, &oid, if_match);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (st == CS_OK) ev_relay_kick(s->relay);
  return st;
}

cs_status candidate_list(candidate_store *s, const candidate_query *q, json_t **items,
                         int64_t *total) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  char *pattern = NULL;
  if (q->election_contains) {
    pattern = util_regex_escape(q->election_contains);
    BSON_APPEND_REGEX(&filter, "election", pattern, "");
  }
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_error_t error;
  cs_status st = CS_OK;
  if (!docs_find_page(coll, &filter, &q->page, doc_to_item, items, total, &error))
    st = db_error("find", &error);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  bson_destroy(&filter);
  free(pattern);
  return st;
}

cs_status candidate_summary(candidate_store *s, const char *election, json_t **list) {
  *list = NULL;
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  if (election) BSON_APPEND_UTF8(&filter, "election", election);
  bson_t *opts = BCON_NEW("sort", "{", "lastName", BCON_INT32(1), "firstName", BCON_INT32(1),
                          "_id", BCON_INT32(1), "}", "projection", "{", "fullName",
                          BCON_INT32(1), "politicalParty", BCON_INT32(1), "election",
                          BCON_INT32(1), "}");
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
  json_t *arr = json_array();
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc))
    json_array_append_new(arr, json_pack("{s:o, s:o, s:o}", "fullName",
                                         docs_json_str(doc, "fullName"), "politicalParty",
                                         docs_json_str(doc, "politicalParty"), "election",
                                         docs_json_str(doc, "election")));
  bson_error_t error;
  cs_status st = CS_OK;
  if (mongoc_cursor_error(cur, &error)) {
    st = db_error("summary", &error);
    json_decref(arr);
  } else {
    *list = arr;
  }
  mongoc_cursor_destroy(cur);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  bson_destroy(opts);
  bson_destroy(&filter);
  return st;
}

/* Collects the ids of every live candidate. */
static cs_status live_ids(mongoc_collection_t *coll, bson_oid_t **ids, size_t *n) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
  size_t cap = 64;
  *n = 0;
  *ids = malloc(cap * sizeof **ids);
  if (!*ids) abort();
  const bson_t *doc;
  bson_iter_t it;
  while (mongoc_cursor_next(cur, &doc)) {
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it)) continue;
    if (*n == cap) {
      bson_oid_t *grown = realloc(*ids, (cap *= 2) * sizeof **ids);
      if (!grown) abort();
      *ids = grown;
    }
    bson_oid_copy(bson_iter_oid(&it), &(*ids)[(*n)++]);
  }
  bson_error_t error;
  cs_status st = CS_OK;
  if (mongoc_cursor_error(cur, &error)) st = db_error("scan", &error);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(&filter);
  return st;
}

cs_status candidate_drop_all(candidate_store *s, int64_t *count) {
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_oid_t *ids;
  size_t n;
  cs_status st = live_ids(coll, &ids, &n);
  *count = 0;
  for (size_t i = 0; st == CS_OK && i < n; i++) {
    cs_status d = delete_doc(s, coll, &ids[i], -1);
    if (d == CS_OK) (*count)++;
    else if (d != CS_NOT_FOUND) st = d; /* deleted concurrently is fine */
  }
  free(ids);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (*count) ev_relay_kick(s->relay);
  return st;
}

/* Pushes a candidate.updated event at the document's current version, unless it changed
 * or was deleted meanwhile (that change's own event carries the newer state). */
static cs_status replay_one(candidate_store *s, mongoc_collection_t *coll, const bson_oid_t *oid,
                            bool *pushed) {
  char id[25];
  bson_oid_to_string(oid, id);
  *pushed = false;
  ev_doc_lock(id);
  bson_t *doc;
  cs_status st = read_doc(coll, oid, &doc);
  if (st == CS_OK && !docs_bool(doc, "deleted")) {
    json_t *item = doc_to_item(doc);
    int64_t version = docs_int(doc, "version");
    ev_event ev;
    ev_build(&ev, "candidate.updated", s->source, id, version, item);
    bson_t update = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    ev_outbox_set_pending(&set);
    bson_append_document_end(&update, &set);
    ev_outbox_update_ops(&update, &ev);
    st = conditional_update(coll, oid, version, &update, pushed);
    bson_destroy(&update);
    ev_free(&ev);
    json_decref(item);
  }
  ev_doc_unlock(id);
  if (doc) bson_destroy(doc);
  return st == CS_UNAVAILABLE ? st : CS_OK;
}

cs_status candidate_replay(candidate_store *s, int64_t *count) {
  mongoc_client_t *client = mongo_acquire(s->db);
  mongoc_collection_t *coll = mongo_collection(s->db, client, COLLECTION);
  bson_oid_t *ids;
  size_t n;
  cs_status st = live_ids(coll, &ids, &n);
  *count = 0;
  for (size_t i = 0; st == CS_OK && i < n; i++) {
    bool pushed;
    st = replay_one(s, coll, &ids[i], &pushed);
    if (pushed) (*count)++;
  }
  free(ids);
  mongoc_collection_destroy(coll);
  mongo_release(s->db, client);
  if (*count) ev_relay_kick(s->relay);
  return st;
}
