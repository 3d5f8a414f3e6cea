/* docs — BSON helpers and paged finds; see docs.h. */
#include "docs.h"

#include <string.h>

const char *docs_str(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

int64_t docs_int(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
    return bson_iter_as_int64(&it);
  return 0;
}

bool docs_bool(const bson_t *doc, const char *key) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

json_t *docs_json_str(const bson_t *doc, const char *key) {
  const char *s = docs_str(doc, key);
  return s ? json_string(s) : json_null();
}

bool docs_find_page(mongoc_collection_t *coll, const bson_t *filter, const docs_page *q,
                    docs_render render, json_t **items, int64_t *total, bson_error_t *error) {
  *items = NULL;
  *total = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, error);
  if (*total < 0) return false;
  bson_t opts = BSON_INITIALIZER, sort;
  BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
  bool has_id = false;
  for (int i = 0; i < q->nsort; i++) {
    BSON_APPEND_INT32(&sort, q->sort_fields[i], q->sort_dirs[i]);
    has_id |= strcmp(q->sort_fields[i], "_id") == 0;
  }
  if (!has_id) BSON_APPEND_INT32(&sort, "_id", 1);
  bson_append_document_end(&opts, &sort);
  BSON_APPEND_INT64(&opts, "skip", q->page * q->size);
  BSON_APPEND_INT64(&opts, "limit", q->size);
  json_t *arr = json_array();
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, &opts, NULL);
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) json_array_append_new(arr, render(doc));
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  bson_destroy(&opts);
  if (ok) *items = arr;
  else json_decref(arr);
  return ok;
}
