/* replica_read — reads of replica (and other tombstoned) collections; see replica_read.h. */
#include "voter/replica_read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/util.h"

static const char *const candidate_summary_fields[] = {"fullName", "politicalParty", "election",
                                                       NULL};
static const char *const candidate_summary_sort[] = {"lastName", "firstName", NULL};

const replica_summary_spec replica_candidate_summary = {.collection = "candidates",
                                                       .match_field = "election",
                                                       .fields = candidate_summary_fields,
                                                       .sort = candidate_summary_sort};

static replica_read_status db_error(const char *what, const char *collection,
                                    const bson_error_t *error) {
  char op[160];
  snprintf(op, sizeof op, "%s of %s", what, collection);
  mongo_log_failure("replica", op, error);
  return REPLICA_READ_UNAVAILABLE;
}

/* A short-lived handle on one collection. */
typedef struct {
  mongo_db *db;
  mongoc_client_t *client;
  mongoc_collection_t *coll;
} handle;

static handle open_handle(mongo_db *db, const char *collection) {
  handle h = {db, mongo_acquire(db), NULL};
  h.coll = mongo_collection(db, h.client, collection);
  return h;
}

static void close_handle(handle *h) {
  mongoc_collection_destroy(h->coll);
  mongo_release(h->db, h->client);
}

json_t *replica_read_item(const bson_t *doc) {
  json_t *item = json_object();
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return item;
  while (bson_iter_next(&it)) {
    const char *key = bson_iter_key(&it);
    if (strcmp(key, "deleted") == 0 || strcmp(key, "appliedAt") == 0) continue;
    if (strcmp(key, "_id") == 0) key = "id";
    json_t *v;
    switch (bson_iter_type(&it)) {
    case BSON_TYPE_UTF8: v = json_string(bson_iter_utf8(&it, NULL)); break;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64: v = json_integer(bson_iter_as_int64(&it)); break;
    case BSON_TYPE_DOUBLE: v = json_real(bson_iter_double(&it)); break;
    case BSON_TYPE_BOOL: v = json_boolean(bson_iter_bool(&it)); break;
    default: v = json_null(); break;
    }
    json_object_set_new(item, key, v);
  }
  return item;
}

replica_read_status replica_read_list(mongo_db *db, const char *collection, const char *field,
                                      const char *contains, const mongo_page *page,
                                      mongo_render render, json_t **items, int64_t *total) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  char *pattern = NULL;
  if (field && contains) {
    pattern = util_regex_escape(contains);
    BSON_APPEND_REGEX(&filter, field, pattern, "");
  }
  handle h = open_handle(db, collection);
  bson_error_t error;
  replica_read_status st = REPLICA_READ_OK;
  if (!mongo_find_page(h.coll, &filter, page, render ? render : replica_read_item, items, total,
                       &error))
    st = db_error("list", collection, &error);
  close_handle(&h);
  bson_destroy(&filter);
  free(pattern);
  return st;
}

/* The first live document matching filter (deleted: false is added) into *found (a copy,
 * or NULL): OK, NOT_FOUND or UNAVAILABLE. */
static replica_read_status find_live(mongo_db *db, const char *collection, bson_t *filter,
                                     const bson_t *opts, bson_t **found) {
  BSON_APPEND_BOOL(filter, "deleted", false);
  handle h = open_handle(db, collection);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(h.coll, filter, opts, NULL);
  const bson_t *doc;
  bson_error_t error;
  replica_read_status st = REPLICA_READ_NOT_FOUND;
  *found = NULL;
  if (mongoc_cursor_next(cur, &doc)) {
    *found = bson_copy(doc);
    st = REPLICA_READ_OK;
  } else if (mongoc_cursor_error(cur, &error)) {
    st = db_error("read", collection, &error);
  }
  mongoc_cursor_destroy(cur);
  close_handle(&h);
  return st;
}

replica_read_status replica_read_get(mongo_db *db, const char *collection, const char *id,
                                     mongo_render render, json_t **item) {
  *item = NULL;
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, "_id", id);
  bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
  bson_t *doc;
  replica_read_status st = find_live(db, collection, &filter, opts, &doc);
  if (doc) {
    *item = (render ? render : replica_read_item)(doc);
    bson_destroy(doc);
  }
  bson_destroy(opts);
  bson_destroy(&filter);
  return st;
}

replica_read_status replica_read_known(mongo_db *db, const char *collection,
                                       const char *const *match, bool *known) {
  bson_t filter = BSON_INITIALIZER;
  for (size_t i = 0; match[i] && match[i + 1]; i += 2) BSON_APPEND_UTF8(&filter, match[i], match[i + 1]);
  /* Only whether one exists: no document travels back. */
  bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "projection", "{", "_id", BCON_INT32(1), "}");
  bson_t *doc;
  replica_read_status st = find_live(db, collection, &filter, opts, &doc);
  *known = doc != NULL;
  if (doc) bson_destroy(doc);
  bson_destroy(opts);
  bson_destroy(&filter);
  return st == REPLICA_READ_NOT_FOUND ? REPLICA_READ_OK : st;
}

/* The find options of a summary: its sort (then _id, so equal names keep one order) and a
 * projection of its fields. */
static bson_t *summary_opts(const replica_summary_spec *spec) {
  bson_t *opts = bson_new(), sort, projection;
  BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
  for (const char *const *f = spec->sort; *f; f++) BSON_APPEND_INT32(&sort, *f, 1);
  BSON_APPEND_INT32(&sort, "_id", 1);
  bson_append_document_end(opts, &sort);
  BSON_APPEND_DOCUMENT_BEGIN(opts, "projection", &projection);
  for (const char *const *f = spec->fields; *f; f++) BSON_APPEND_INT32(&projection, *f, 1);
  bson_append_document_end(opts, &projection);
  return opts;
}

static json_t *summary_row(const replica_summary_spec *spec, const bson_t *doc) {
  json_t *row = json_object();
  for (const char *const *f = spec->fields; *f; f++)
    json_object_set_new(row, *f, mongo_doc_json_str(doc, *f));
  return row;
}

replica_read_status replica_read_summary(mongo_db *db, const replica_summary_spec *spec,
                                         const char *value, json_t **rows) {
  *rows = NULL;
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  if (value) BSON_APPEND_UTF8(&filter, spec->match_field, value);
  bson_t *opts = summary_opts(spec);
  handle h = open_handle(db, spec->collection);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(h.coll, &filter, opts, NULL);
  json_t *arr = json_array();
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) json_array_append_new(arr, summary_row(spec, doc));
  bson_error_t error;
  replica_read_status st = REPLICA_READ_OK;
  if (mongoc_cursor_error(cur, &error)) {
    st = db_error("summary", spec->collection, &error);
    json_decref(arr);
  } else {
    *rows = arr;
  }
  mongoc_cursor_destroy(cur);
  close_handle(&h);
  bson_destroy(opts);
  bson_destroy(&filter);
  return st;
}

replica_read_status replica_read_clear(mongo_db *db, const char *collection, int64_t *count) {
  bson_t filter = BSON_INITIALIZER, reply;
  bson_error_t error;
  handle h = open_handle(db, collection);
  replica_read_status st = REPLICA_READ_OK;
  int64_t n = 0;
  if (mongoc_collection_delete_many(h.coll, &filter, NULL, &reply, &error))
    n = mongo_doc_int(&reply, "deletedCount");
  else
    st = db_error("clear", collection, &error);
  if (count) *count = n;
  bson_destroy(&reply);
  close_handle(&h);
  bson_destroy(&filter);
  return st;
}
