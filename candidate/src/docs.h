/* docs — BSON reading helpers and the paged, sorted find with which both the candidate
 * store and the election replica answer collection requests (prefix docs_). */
#ifndef CANDIDATE_DOCS_H
#define CANDIDATE_DOCS_H

#include <jansson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stdint.h>

#define DOCS_MAX_SORT 4

/* One page of a sorted collection, in storage terms. */
typedef struct docs_page {
  int64_t page, size;
  const char *sort_fields[DOCS_MAX_SORT]; /* document field names */
  int sort_dirs[DOCS_MAX_SORT];           /* 1 or -1 */
  int nsort;
} docs_page;

/* A string member (NULL when absent or not a string). */
const char *docs_str(const bson_t *doc, const char *key);
/* A numeric member as int64 (0 when absent). */
int64_t docs_int(const bson_t *doc, const char *key);
/* true only for a boolean member that is true. */
bool docs_bool(const bson_t *doc, const char *key);
/* A string member as JSON, null when absent. */
json_t *docs_json_str(const bson_t *doc, const char *key);

/* Renders one stored document as its client representation (a new reference). */
typedef json_t *(*docs_render)(const bson_t *doc);

/* Counts the documents matching filter and renders the requested page of them, sorted by
 * q's fields with ties broken by _id so paging is stable. false (error set) on a database
 * failure. */
bool docs_find_page(mongoc_collection_t *coll, const bson_t *filter, const docs_page *q,
                    docs_render render, json_t **items, int64_t *total, bson_error_t *error);

#endif
