/* routes — HTTP handlers of the election service; see routes.h and docs/API.md. */
#include "routes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/hal.h"
#include "voter/json.h"
#include "voter/util.h"

#define PATH "/election/elections"

/* Answers the non-success domain statuses uniformly. */
static void reply_status(http_response *res, entity_status st, json_t *errors) {
  switch (st) {
  case ENTITY_NOT_FOUND:
    http_reply_problem(res, 404, "Not Found", "no election with this id", NULL);
    break;
  case ENTITY_DUPLICATE:
    http_reply_problem(res, 409, "Conflict", "an election with this title already exists", NULL);
    break;
  case ENTITY_PRECONDITION:
    http_reply_problem(res, 412, "Precondition Failed",
                       "If-Match does not match the election's current version", NULL);
    break;
  case ENTITY_INVALID:
    jsonv_reply_invalid(res, json_incref(errors));
    break;
  default:
    http_reply_problem(res, 503, "Service Unavailable", "the database is not reachable", NULL);
    http_set_header(res, "Retry-After", "2");
    break;
  }
}

/* Renders one election with its links and ETag. */
static void reply_item(const http_request *req, http_response *res, int status, json_t *item) {
  char etag[40];
  snprintf(etag, sizeof etag, "\"%lld\"", (long long)json_integer_value(json_object_get(item, "version")));
  hal_item_links(req, item, PATH, "election");
  if (status == 201) {
    char loc[512];
    snprintf(loc, sizeof loc, "%s%s/%s", http_base_url(req), PATH,
             json_string_value(json_object_get(item, "id")));
    http_set_header(res, "Location", loc);
  }
  http_reply_hal(res, status, item);
  http_set_header(res, "ETag", etag);
}

/* If-Match: "<version>", W/"<version>", a bare number or *. -1 when absent or "*"; -2 when
 * unparseable (can never match). */
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

/* The If-Match version for a conditional write; false (and 412) when it cannot match. */
static bool if_match(const http_request *req, http_response *res, int64_t *version) {
  *version = parse_if_match(req);
  if (*version != -2) return true;
  reply_status(res, ENTITY_PRECONDITION, NULL);
  return false;
}

static void list(void *ctx, const http_request *req, http_response *res) {
  entity_store *s = ctx;
  hal_page page;
  if (hal_parse_page(req, res, election_sort_field, &page) != 0) return;
  json_t *items;
  int64_t total;
  entity_status st = election_list(s, &page, NULL, &items, &total);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) hal_item_links(req, item, PATH, "election");
  http_reply_hal(res, 200, hal_collection(req, PATH, "elections", items, &page, total,
                                          PATH "/search"));
}

static void search_by_type(void *ctx, const http_request *req, http_response *res) {
  entity_store *s = ctx;
  const char *type = http_query(req, "electionType");
  if (!type) {
    http_reply_problem(res, 400, "Bad Request", "query parameter electionType is required", NULL);
    return;
  }
  hal_page page;
  if (hal_parse_page(req, res, election_sort_field, &page) != 0) return;
  json_t *items;
  int64_t total;
  entity_status st = election_list(s, &page, type, &items, &total);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) hal_item_links(req, item, PATH, "election");
  http_reply_hal(res, 200, hal_collection(req, PATH "/search/findByElectionTypeContaining",
                                          "elections", items, &page, total, NULL));
}

static void search_index(void *ctx, const http_request *req, http_response *res) {
  (void)ctx;
  char href[512], self[512];
  snprintf(href, sizeof href, "%s" PATH "/search/findByElectionTypeContaining{?electionType,page,size,sort}",
           http_base_url(req));
  snprintf(self, sizeof self, "%s" PATH "/search", http_base_url(req));
  http_reply_hal(res, 200,
                 json_pack("{s:{s:{s:s, s:b}, s:{s:s}}}", "_links", "findByElectionTypeContaining",
                           "href", href, "templated", 1, "self", "href", self));
}

/* Parses and validates a full representation; on failure the response is set. */
static json_t *valid_body(const http_request *req, http_response *res, const char *path_id) {
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return NULL;
  json_t *errors = json_array();
  if (election_validate(body, path_id, errors) > 0) {
    jsonv_reply_invalid(res, errors);
    json_decref(body);
    return NULL;
  }
  json_decref(errors);
  return body;
}

static void create(void *ctx, const http_request *req, http_response *res) {
  entity_store *s = ctx;
  json_t *body = valid_body(req, res, NULL);
  if (!body) return;
  json_t *item, *errors = json_array();
  entity_status st = entity_create(s, body, &item, errors);
  json_decref(body);
  if (st != ENTITY_CREATED) reply_status(res, st, errors);
  json_decref(errors);
  if (st != ENTITY_CREATED) return;
  reply_item(req, res, 201, item);
}

static void get_one(void *ctx, const http_request *req, http_response *res) {
  entity_store *s = ctx;
  json_t *item;
  entity_status st = entity_get(s, req->params[0], &item);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  const char *inm = http_header(req, "If-None-Match");
  char etag[40];
  snprintf(etag, sizeof etag, "\"%lld\"", (long long)json_integer_value(json_object_get(item, "version")));
  if (inm && strcmp(inm, etag) == 0) {
    json_decref(item);
    http_reply_empty(res, 304);
    http_set_header(res, "ETag", etag);
    return;
  }
  reply_item(req, res, 200, item);
}

static void replace(void *ctx, const http_request *req, http_response *res) {
  entity_store *s = ctx;
  const char *id = req->params[0];
  if (!util_is_object_id(id)) {
    http_reply_problem(res, 400, "Bad Request", "the id must be a 24-character hex ObjectId", NULL);
    return;
  }
  int64_t version;
  if (!if_match(req, res, &version)) return;
  json_t *body = valid_body(req, res, id);
  if (!body) return;
  json_t *item, *errors = json_array();
  entity_status st = entity_put(s, id, body, version, &item, errors);
  json_decref(body);
  if (st != ENTITY_OK && st != ENTITY_CREATED) reply_status(res, st, errors);
  json_decref(errors);
  if (st != ENTITY_OK && st != ENTITY_CREATED) return;
  reply_item(req, res, st == ENTITY_CREATED ? 201 : 200, item);
}

static void patch(void *ctx, const http_request *req, http_response *res) {
  entity_store *s = ctx;
  int64_t version;
  if (!if_match(req, res, &version)) return;
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return;
  json_t *errors = json_array(), *item;
  entity_status st = entity_patch(s, req->params[0], body, version, &item, errors);
  json_decref(body);
  if (st != ENTITY_OK) reply_status(res, st, errors);
  else reply_item(req, res, 200, item);
  json_decref(errors);
}

static void delete_one(void *ctx, const http_request *req, http_response *res) {
  entity_store *s = ctx;
  int64_t version;
  if (!if_match(req, res, &version)) return;
  entity_status st = entity_delete(s, req->params[0], version);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_empty(res, 204);
}

static void summary(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  entity_store *s = ctx;
  json_t *titles;
  entity_status st = election_titles(s, &titles);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_json(res, 200, json_pack("{s:o}", "elections", titles));
}

static void drop(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  entity_store *s = ctx;
  int64_t n;
  entity_status st = entity_drop_all(s, &n);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_empty(res, 204);
}

static void replay(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  entity_store *s = ctx;
  int64_t n;
  entity_status st = entity_replay(s, &n);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_json(res, 202, json_pack("{s:I}", "republished", (json_int_t)n));
}

void election_routes(http_server *srv, entity_store *s) {
  http_route(srv, "GET", PATH, list, s);
  http_route(srv, "POST", PATH, create, s);
  http_route(srv, "GET", PATH "/search", search_index, s);
  http_route(srv, "GET", PATH "/search/findByElectionTypeContaining", search_by_type, s);
  http_route(srv, "GET", PATH "/{id}", get_one, s);
  http_route(srv, "PUT", PATH "/{id}", replace, s);
  http_route(srv, "PATCH", PATH "/{id}", patch, s);
  http_route(srv, "DELETE", PATH "/{id}", delete_one, s);
  http_route(srv, "GET", "/election/summary", summary, s);
  http_route(srv, "POST", "/election/drop/elections", drop, s);
  http_route(srv, "POST", "/election/events/replay", replay, s);
}
