/* replicas — replica reads; see replicas.h. */
#include "replicas.h"

#include <stdlib.h>
#include <string.h>

#include "voter/hal.h"
#include "voter/log.h"
#include "voter/util.h"

const char *const replicas_candidate_required[] = {"fullName", "election", NULL};
const char *const replicas_election_required[] = {"title", NULL};

const char *replicas_candidate_sort(const char *p) {
  static const char *const allowed[] = {"firstName", "lastName", "fullName", "politicalParty",
                                        "election", "homeState", "version", NULL};
  return hal_sort_field(allowed, p);
}

const char *replicas_election_sort(const char *p) {
  static const char *const allowed[] = {"title", "date", "electionType", "description", "version",
                                        NULL};
  return hal_sort_field(allowed, p);
}

/* The replica document as the source service rendered it: _id becomes id, bookkeeping
 * fields are dropped. */
static json_t *doc_to_item(const bson_t *doc) {
  json_t *item = json_object();
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return item;
  while (bson_iter_next(&it)) {
    const char *key = bson_iter_key(&it);
    if (strcmp(key, "deleted") == 0 || strcmp(key, "appliedAt") == 0) continue;
    if (strcmp(key, "_id") == 0) key = "id";
    switch (bson_iter_type(&it)) {
    case BSON_TYPE_UTF8: json_object_set_new(item, key, json_string(bson_iter_utf8(&it, NULL))); break;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64: json_object_set_new(item, key, json_integer(bson_iter_as_int64(&it))); break;
    case BSON_TYPE_DOUBLE: json_object_set_new(item, key, json_real(bson_iter_double(&it))); break;
    case BSON_TYPE_BOOL: json_object_set_new(item, key, json_boolean(bson_iter_bool(&it))); break;
    default: json_object_set_new(item, key, json_null()); break;
    }
  }
  return item;
}

bool replicas_list(mongo_db *db, const char *collection, const char *field, const char *value,
                   const hal_page *page, json_t **items, int64_t *total) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  char *pattern = NULL;
  if (field && value) {
    pattern = util_regex_escape(value);
    BSON_APPEND_REGEX(&filter, field, pattern, "");
  }
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *coll = mongo_collection(db, client, collection);
  bson_error_t error;
  bool ok = mongo_find_page(coll, &filter, page, doc_to_item, items, total, &error);
  if (!ok) log_warn("replicas: reading %s failed: %s", collection, error.message);
  mongoc_collection_destroy(coll);
  mongo_release(db, client);
  bson_destroy(&filter);
  free(pattern);
  return ok;
}

bool replicas_candidate_summary(mongo_db *db, const char *election, json_t **candidates) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  if (election) BSON_APPEND_UTF8(&filter, "election", election);
  bson_t *opts = BCON_NEW("sort", "{", "lastName", BCON_INT32(1), "firstName", BCON_INT32(1),
                          "_id", BCON_INT32(1), "}");
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *coll = mongo_collection(db, client, "candidates");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
  json_t *arr = json_array();
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) {
    json_t *item = doc_to_item(doc);
    json_array_append_new(arr, json_pack("{s:O, s:O, s:O}", "fullName",
                                         json_object_get(item, "fullName") ?: json_null(),
                                         "politicalParty",
                                         json_object_get(item, "politicalParty") ?: json_null(),
                                         "election", json_object_get(item, "election") ?: json_null()));
    json_decref(item);
  }
  bson_error_t error;
  bool ok = !mongoc_cursor_error(cur, &error);
  if (!ok) {
    log_warn("replicas: candidate summary failed: %s", error.message);
    json_decref(arr);
    arr = NULL;
  }
  *candidates = arr;
  mongoc_cursor_destroy(cur);
  mongoc_collection_destroy(coll);
  mongo_release(db, client);
  bson_destroy(opts);
  bson_destroy(&filter);
  return ok;
}

bool replicas_clear(mongo_db *db, const char *collection) {
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *coll = mongo_collection(db, client, collection);
  bson_t empty = BSON_INITIALIZER;
  bson_error_t error;
  bool ok = mongoc_collection_delete_many(coll, &empty, NULL, NULL, &error);
  if (!ok) log_warn("replicas: clearing %s failed: %s", collection, error.message);
  mongoc_collection_destroy(coll);
  mongo_release(db, client);
  return ok;
}
