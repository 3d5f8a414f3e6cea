/* mongo — pool, helpers and BSON<->JSON; see mongo.h. */
#include "voter/mongo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "voter/log.h"
#include "voter/xalloc.h"

struct mongo_db {
  mongoc_client_pool_t *pool;
  char *name;
};

/* Routes the driver's own log lines into the JSON log. FerretDB does not implement
 * endSessions, which the driver calls at shutdown: that warning is noise. */
static void driver_log(mongoc_log_level_t level, const char *domain, const char *message,
                       void *data) {
  (void)data;
  if (level > MONGOC_LOG_LEVEL_WARNING || strstr(message, "endSessions")) return;
  log_fields(level <= MONGOC_LOG_LEVEL_ERROR ? LOG_ERROR : LOG_WARN, "mongoc",
             json_pack("{s:s, s:s}", "domain", domain, "detail", message));
}

void mongo_global_init(void) {
  mongoc_log_set_handler(driver_log, NULL);
  mongoc_init();
}
void mongo_global_cleanup(void) { mongoc_cleanup(); }

static struct {
  pthread_mutex_t mutex;
  pthread_cond_t freed;
  int in_flight;
} bulk_bound = {.mutex = PTHREAD_MUTEX_INITIALIZER, .freed = PTHREAD_COND_INITIALIZER};

uint32_t mongo_bulk_execute(mongoc_bulk_operation_t *bulk, bson_t *reply, bson_error_t *error) {
  pthread_mutex_lock(&bulk_bound.mutex);
  while (bulk_bound.in_flight >= MONGO_BULK_UPDATES_IN_FLIGHT)
    pthread_cond_wait(&bulk_bound.freed, &bulk_bound.mutex);
  bulk_bound.in_flight++;
  pthread_mutex_unlock(&bulk_bound.mutex);
  uint32_t r = mongoc_bulk_operation_execute(bulk, reply, error);
  pthread_mutex_lock(&bulk_bound.mutex);
  bulk_bound.in_flight--;
  pthread_cond_signal(&bulk_bound.freed);
  pthread_mutex_unlock(&bulk_bound.mutex);
  return r;
}

mongo_db *mongo_db_open(const char *uri_text, const char *database, const char *appname) {
  bson_error_t error;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_text, &error);
  if (!uri) {
    log_error("mongo: invalid MONGODB_URI: %s", error.message);
    return NULL;
  }
  /* Fail requests fast when the database is down instead of hanging the HTTP thread for
   * the driver's 30 s default; the caller answers 503 and the client retries. */
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 3000);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 2000);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 10000);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTRYONCE))
    mongoc_uri_set_option_as_bool(uri, MONGOC_URI_SERVERSELECTIONTRYONCE, false);
  mongo_db *db = xcalloc(1, sizeof *db);
  if (!db) goto err;
  db->pool = mongoc_client_pool_new(uri);
  if (!db->pool) goto err;
  mongoc_client_pool_set_error_api(db->pool, MONGOC_ERROR_API_VERSION_2);
  if (appname) mongoc_client_pool_set_appname(db->pool, appname);
  db->name = xstrdup(database);
  mongoc_uri_destroy(uri);
  return db;
err:
  free(db);
  mongoc_uri_destroy(uri);
  return NULL;
}

void mongo_db_close(mongo_db *db) {
  if (!db) return;
  mongoc_client_pool_destroy(db->pool);
  free(db->name);
  free(db);
}

const char *mongo_db_name(const mongo_db *db) { return db->name; }

mongoc_client_t *mongo_acquire(mongo_db *db) { return mongoc_client_pool_pop(db->pool); }

void mongo_release(mongo_db *db, mongoc_client_t *client) {
  if (client) mongoc_client_pool_push(db->pool, client);
}

mongoc_collection_t *mongo_collection(mongo_db *db, mongoc_client_t *client, const char *name) {
  return mongoc_client_get_collection(client, db->name, name);
}

bool mongo_ping(mongo_db *db, bson_error_t *error) {
  mongoc_client_t *client = mongo_acquire(db);
  bson_t cmd = BSON_INITIALIZER;
  BSON_APPEND_INT32(&cmd, "ping", 1);
  bool ok = mongoc_client_command_simple(client, db->name, &cmd, NULL, NULL, error);
  bson_destroy(&cmd);
  mongo_release(db, client);
  return ok;
}

bool mongo_create_index(mongo_db *db, const char *collection, const char *name, const bson_t *keys,
                        bool unique, bson_error_t *error) {
  mongoc_client_t *client = mongo_acquire(db);
  bson_t cmd = BSON_INITIALIZER, indexes, index;
  BSON_APPEND_UTF8(&cmd, "createIndexes", collection);
  BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
  BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
  BSON_APPEND_DOCUMENT(&index, "key", keys);
  BSON_APPEND_UTF8(&index, "name", name);
  if (unique) BSON_APPEND_BOOL(&index, "unique", true);
  bson_append_document_end(&indexes, &index);
  bson_append_array_end(&cmd, &indexes);
  bool ok = mongoc_client_write_command_with_opts(client, db->name, &cmd, NULL, NULL, error);
  bson_destroy(&cmd);
  mongo_release(db, client);
  return ok;
}

/* MongoDB says E11000/11000. FerretDB says the same for inserts, but an update that breaks
 * a unique index surfaces SQLite's "UNIQUE constraint failed" with no code. */
bool mongo_is_duplicate(const bson_error_t *error) {
  return error->code == 11000 || error->code == 11001 || strstr(error->message, "E11000") ||
         strstr(error->message, "duplicate key") || strstr(error->message, "UNIQUE constraint failed");
}

const char *mongo_doc_str(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

void mongo_log_failure(const char *module, const char *what, const bson_error_t *error) {
  log_warn("%s: %s failed: %s", module, what, error->message);
}

bool mongo_doc_number(const bson_t *doc, const char *key, int64_t *out) {
  bson_iter_t it;
  bool found = bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it);
  *out = found ? bson_iter_as_int64(&it) : 0;
  return found;
}

int64_t mongo_doc_int(const bson_t *doc, const char *key) {
  int64_t v;
  mongo_doc_number(doc, key, &v);
  return v;
}

int64_t mongo_doc_date(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DATE_TIME(&it))
    return bson_iter_date_time(&it);
  return 0;
}

bool mongo_doc_bool(const bson_t *doc, const char *key) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

void mongo_append_str_or_null(bson_t *dst, const char *key, const char *value) {
  if (value) BSON_APPEND_UTF8(dst, key, value);
  else BSON_APPEND_NULL(dst, key);
}

json_t *mongo_doc_json_str(const bson_t *doc, const char *key) {
  const char *s = mongo_doc_str(doc, key);
  return s ? json_string(s) : json_null();
}

/* Appends the page's sort (dir = 1 as asked, -1 every direction reversed), then _id. */
static void append_sort(bson_t *opts, const mongo_page *q, int dir) {
  bson_t sort;
  BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
  bool has_id = false;
  for (int i = 0; i < q->nsort; i++) {
    BSON_APPEND_INT32(&sort, q->sort_fields[i], dir * q->sort_dirs[i]);
    has_id |= strcmp(q->sort_fields[i], "_id") == 0;
  }
  if (!has_id) BSON_APPEND_INT32(&sort, "_id", dir);
  bson_append_document_end(opts, &sort);
}

/* The documents at [skip, skip + limit) in the page's order, or (reversed) in the reversed
 * order, rendered in the page's order. */
static bool find_window(mongoc_collection_t *coll, const bson_t *filter, const mongo_page *q,
                        bool reversed, int64_t skip, int64_t limit, mongo_render render,
                        json_t **items, bson_error_t *error) {
  bson_t opts = BSON_INITIALIZER;
  append_sort(&opts, q, reversed ? -1 : 1);
  if (skip > 0) BSON_APPEND_INT64(&opts, "skip", skip);
  BSON_APPEND_INT64(&opts, "limit", limit);
  json_t *arr = json_array();
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, &opts, NULL);
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) {
    if (reversed) json_array_insert_new(arr, 0, render(doc));
    else json_array_append_new(arr, render(doc));
  }
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  bson_destroy(&opts);
  if (ok) *items = arr;
  else json_decref(arr);
  return ok;
}

bool mongo_find_page_of(mongoc_collection_t *coll, const bson_t *filter, const mongo_page *q,
                        int64_t total, mongo_render render, json_t **items, bson_error_t *error) {
  *items = NULL;
  int64_t first = q->page * q->size;
  if (first >= total) { /* past the end: nothing to read */
    *items = json_array();
    return true;
  }
  int64_t on_page = total - first < q->size ? total - first : q->size;
  if (first + on_page / 2 <= total / 2) /* nearer the start */
    return find_window(coll, filter, q, false, first, q->size, render, items, error);
  /* nearer the end: read backwards from it, skipping what follows this page */
  return find_window(coll, filter, q, true, total - first - on_page, on_page, render, items, error);
}

bool mongo_find_page(mongoc_collection_t *coll, const bson_t *filter, const mongo_page *q,
                     mongo_render render, json_t **items, int64_t *total, bson_error_t *error) {
  *items = NULL;
  *total = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, error);
  if (*total < 0) return false;
  return find_window(coll, filter, q, false, q->page * q->size, q->size, render, items, error);
}

json_t *mongo_bson_to_json(const bson_t *doc) {
  size_t len;
  char *text = bson_as_relaxed_extended_json(doc, &len);
  if (!text) return NULL;
  json_t *out = json_loadb(text, len, 0, NULL);
  bson_free(text);
  return out;
}

bool mongo_json_to_bson(const json_t *obj, bson_t *out) {
  char *text = json_dumps(obj, JSON_COMPACT);
  if (!text) return false;
  bson_error_t error;
  bool ok = bson_init_from_json(out, text, -1, &error);
  free(text);
  return ok;
}
