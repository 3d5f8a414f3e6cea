/* resource — HTTP glue of entities; see resource.h. */
#include "voter/resource.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/hal.h"
#include "voter/json.h"

void resource_reply_unavailable(http_response *res) {
  http_reply_problem(res, 503, "Service Unavailable", "the database is not reachable", NULL);
  http_set_header(res, "Retry-After", "2");
}

void resource_reply_status(http_response *res, entity_status st, json_t *errors,
                           const resource_messages *m) {
  switch (st) {
  case ENTITY_NOT_FOUND: http_reply_problem(res, 404, "Not Found", m->not_found, NULL); break;
  case ENTITY_DUPLICATE: http_reply_problem(res, 409, "Conflict", m->duplicate, NULL); break;
  case ENTITY_PRECONDITION:
    http_reply_problem(res, 412, "Precondition Failed", m->precondition, NULL);
    break;
  case ENTITY_INVALID: jsonv_reply_invalid(res, json_incref(errors ? errors : json_array())); break;
  case ENTITY_MISMATCH:
    http_reply_problem(res, 422, "Unprocessable Content",
                       "this Idempotency-Key was used by this caller for another request", NULL);
    break;
  default: resource_reply_unavailable(res); break;
  }
}

/* -1 when absent or "*"; -2 when unparseable. */
static int64_t parse_if_match(const http_request *req) {
  const char *h = http_header(req, "If-Match");
  if (!h || strcmp(h, "*") == 0) return -1;
  if (strncmp(h, "W/", 2) == 0) h += 2;
  char buf[32];
  size_t n = strlen(h);
  if (n >= 2 && h[0] == '"' && h[n - 1] == '"') h++, n -= 2;
  if (n == 0 || n >= sizeof buf) return -2;
  memcpy(buf, h, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  long long v = strtoll(buf, &end, 10);
  return (errno || *end || v < 0) ? -2 : v;
}

bool resource_if_match(const http_request *req, http_response *res, const resource_messages *m,
                       int64_t *version) {
  *version = parse_if_match(req);
  if (*version != -2) return true;
  resource_reply_status(res, ENTITY_PRECONDITION, NULL, m);
  return false;
}

void resource_etag(const json_t *item, char out[40]) {
  snprintf(out, 40, "\"%lld\"", (long long)json_integer_value(json_object_get(item, "version")));
}

bool resource_not_modified(const http_request *req, http_response *res, const json_t *item) {
  const char *inm = http_header(req, "If-None-Match");
  char etag[40];
  resource_etag(item, etag);
  if (!inm || strcmp(inm, etag) != 0) return false;
  http_reply_empty(res, 304);
  http_set_header(res, "ETag", etag);
  return true;
}

json_t *resource_valid_body(const http_request *req, http_response *res,
                            int (*validate)(const json_t *body, const char *path_id, json_t *errors),
                            const char *path_id) {
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return NULL;
  json_t *errors = json_array();
  if (validate(body, path_id, errors) > 0) {
    jsonv_reply_invalid(res, errors);
    json_decref(body);
    return NULL;
  }
  json_decref(errors);
  return body;
}

void resource_reply_item(const http_request *req, http_response *res, int status, json_t *item,
                         const char *path, const char *singular) {
  char etag[40];
  resource_etag(item, etag);
  hal_item_links(req, item, path, singular);
  if (status == 201) {
    char loc[512];
    snprintf(loc, sizeof loc, "%s%s/%s", http_base_url(req), path,
             json_string_value(json_object_get(item, "id")));
    http_set_header(res, "Location", loc);
  }
  http_reply_hal(res, status, item);
  http_set_header(res, "ETag", etag);
}
