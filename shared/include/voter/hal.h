/* hal — Spring Data REST compatible collections: paging parameters, HAL envelopes and
 * item links (prefix hal_). Kept apart from http.h because only resource collections
 * need it. */
#ifndef VOTER_HAL_H
#define VOTER_HAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "voter/http.h"
#include "voter/mongo.h"

#define HAL_MAX_SORT MONGO_MAX_SORT
#define HAL_DEFAULT_SIZE 20
#define HAL_MAX_SIZE 1000

/* The requested page in storage terms (sort fields are document field names). */
typedef mongo_page hal_page;

/* Maps an API property to a sortable storage field, or NULL. */
typedef const char *(*hal_sortable)(const char *property);

/* The one allow-list lookup behind every hal_sortable: "id" sorts by _id, a property in
 * allowed (NULL-terminated; API names that are also the document's field names) by that
 * field, anything else is not sortable (NULL). */
const char *hal_sort_field(const char *const *allowed, const char *property);

/* Parses page (>= 0), size (1..HAL_MAX_SIZE; larger is capped like Spring) and repeatable
 * sort=prop[,prop...][,asc|desc]. On a bad value answers 400 and returns -1. */
int hal_parse_page(const http_request *req, http_response *res, hal_sortable sortable,
                   hal_page *out);

/* {"_embedded":{rel:items},"_links":{self,profile,search,first/prev/next/last},"page":{...}}.
 * path is the collection path (e.g. "/election/elections"); items is stolen. search_path may be
 * NULL. */
json_t *hal_collection(const http_request *req, const char *path, const char *rel,
                       json_t *items, const hal_page *page, int64_t total,
                       const char *search_path);

/* The parsing of hal_parse_page without the request: page and size as given (NULL when
 * absent), the sort parameters in order. 0, or -1 with the reason for the 400 in detail. */
int hal_page_parse(const char *page, const char *size, const char *const *sorts, int nsorts,
                   hal_sortable sortable, hal_page *out, char *detail, size_t len);

/* hal_collection with the base URL given ("http://host:port"). */
json_t *hal_envelope(const char *base, const char *path, const char *rel, json_t *items,
                     const hal_page *page, int64_t total, const char *search_path);

/* Pages needed for total items of size each (0 for none). */
int64_t hal_page_count(int64_t total, int64_t size);

/* Adds _links {self, <singular>} pointing at base + path + "/" + id to item. */
void hal_item_links(const http_request *req, json_t *item, const char *path, const char *singular);

#endif
