/* hal — paging and HAL envelopes; see hal.h. */
#include "voter/hal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "voter/xalloc.h"

static int parse_nonneg(const char *s, int64_t *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < 0 || s[0] == '+' || s[0] == ' ') return -1;
  *out = v;
  return 0;
}

const char *hal_sort_field(const char *const *allowed, const char *property) {
  if (strcmp(property, "id") == 0) return "_id";
  for (size_t i = 0; allowed[i]; i++)
    if (strcmp(property, allowed[i]) == 0) return allowed[i];
  return NULL;
}

/* Adds one sort=prop[,prop...][,asc|desc] parameter to out; -1 with a reason in detail. */
static int parse_sort(const char *param, hal_sortable sortable, hal_page *out, char *detail,
                      size_t len) {
  char *copy = xstrdup(param), *save = NULL;
  const char *props[HAL_MAX_SORT];
  int nprops = 0, dir = 1;
  bool bad = false;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (strcasecmp(tok, "asc") == 0 || strcasecmp(tok, "desc") == 0) {
      dir = strcasecmp(tok, "asc") == 0 ? 1 : -1;
      if (strtok_r(NULL, ",", &save)) bad = true; /* direction must come last */
      break;
    }
    if (nprops == HAL_MAX_SORT || !sortable(tok)) {
      snprintf(detail, len, "cannot sort by '%.80s'", tok);
      bad = true;
      break;
    }
    props[nprops++] = sortable(tok);
  }
  if (!bad && nprops == 0) {
    snprintf(detail, len, "sort needs a property: sort=property[,asc|desc]");
    bad = true;
  }
  for (int p = 0; !bad && p < nprops && out->nsort < HAL_MAX_SORT; p++) {
    out->sort_fields[out->nsort] = props[p];
    out->sort_dirs[out->nsort++] = dir;
  }
  free(copy);
  if (bad && (nprops == HAL_MAX_SORT || !strstr(detail, "cannot")))
    snprintf(detail, len, "invalid sort parameter '%.80s'", param);
  return bad ? -1 : 0;
}

int hal_page_parse(const char *page, const char *size, const char *const *sorts, int nsorts,
                   hal_sortable sortable, hal_page *out, char *detail, size_t len) {
  memset(out, 0, sizeof *out);
  out->size = HAL_DEFAULT_SIZE;
  if (len) *detail = '\0';
  if (page && parse_nonneg(page, &out->page) != 0) {
    snprintf(detail, len, "page must be a non-negative integer");
    return -1;
  }
  if (size && (parse_nonneg(size, &out->size) != 0 || out->size < 1)) {
    snprintf(detail, len, "size must be a positive integer");
    return -1;
  }
  if (out->size > HAL_MAX_SIZE) out->size = HAL_MAX_SIZE;
  if (out->page > INT64_MAX / (out->size + 1)) {
    snprintf(detail, len, "page is out of range");
    return -1;
  }
  for (int i = 0; i < nsorts; i++)
    if (parse_sort(sorts[i], sortable, out, detail, len) != 0) return -1;
  return 0;
}

int hal_parse_page(const http_request *req, http_response *res, hal_sortable sortable,
                   hal_page *out) {
  const char *sorts[HAL_MAX_SORT];
  int nsorts = http_query_all(req, "sort", sorts, HAL_MAX_SORT);
  char detail[200];
  if (hal_page_parse(http_query(req, "page"), http_query(req, "size"), sorts, nsorts, sortable,
                     out, detail, sizeof detail) == 0)
    return 0;
  http_reply_problem(res, 400, "Bad Request", detail, NULL);
  return -1;
}

static json_t *href_link(const char *href) { return json_pack("{s:s}", "href", href); }

static json_t *page_link(const char *base, const char *path, int64_t page, int64_t size) {
  char href[1024];
  snprintf(href, sizeof href, "%s%s?page=%lld&size=%lld", base, path, (long long)page,
           (long long)size);
  return href_link(href);
}

json_t *hal_envelope(const char *base, const char *path, const char *rel, json_t *items,
                     const hal_page *page, int64_t total, const char *search_path) {
  char href[1024];
  json_t *links = json_object();
  snprintf(href, sizeof href, "%s%s{?page,size,sort}", base, path);
  json_object_set_new(links, "self", json_pack("{s:s, s:b}", "href", href, "templated", 1));
  int64_t pages = hal_page_count(total, page->size);
  if (pages > 1) {
    json_object_set_new(links, "first", page_link(base, path, 0, page->size));
    if (page->page > 0)
      json_object_set_new(links, "prev", page_link(base, path, page->page - 1, page->size));
    if (page->page + 1 < pages)
      json_object_set_new(links, "next", page_link(base, path, page->page + 1, page->size));
    json_object_set_new(links, "last", page_link(base, path, pages - 1, page->size));
  }
  /* profile: /<context>/profile/<rel>, like Spring Data REST */
  const char *second = strchr(path + 1, '/');
  int ctx_len = second ? (int)(second - path) : (int)strlen(path);
  snprintf(href, sizeof href, "%s%.*s/profile/%s", base, ctx_len, path, rel);
  json_object_set_new(links, "profile", href_link(href));
  if (search_path) {
    snprintf(href, sizeof href, "%s%s", base, search_path);
    json_object_set_new(links, "search", href_link(href));
  }
  json_t *embedded = json_object();
  json_object_set_new(embedded, rel, items);
  return json_pack("{s:o, s:o, s:{s:I, s:I, s:I, s:I}}", "_embedded", embedded, "_links", links,
                   "page", "size", (json_int_t)page->size, "totalElements", (json_int_t)total,
                   "totalPages", (json_int_t)pages, "number", (json_int_t)page->page);
}

int64_t hal_page_count(int64_t total, int64_t size) {
  if (total <= 0 || size <= 0) return 0;
  return total / size + (total % size != 0); /* no overflow near INT64_MAX */
}

json_t *hal_collection(const http_request *req, const char *path, const char *rel,
                       json_t *items, const hal_page *page, int64_t total,
                       const char *search_path) {
  return hal_envelope(http_base_url(req), path, rel, items, page, total, search_path);
}

void hal_item_links(const http_request *req, json_t *item, const char *path,
                    const char *singular) {
  char href[1024];
  snprintf(href, sizeof href, "%s%s/%s", http_base_url(req), path,
           json_string_value(json_object_get(item, "id")));
  json_object_set_new(item, "_links", json_pack("{s:{s:s}, s:{s:s}}", "self", "href", href,
                                                singular, "href", href));
}
