/* routes — HTTP handlers of the election service; see routes.h and docs/API.md. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "voter/authz.h"
#include "voter/hal.h"
#include "voter/idem.h"
#include "voter/json.h"
#include "voter/resource.h"
#include "voter/util.h"

#define PATH "/election/elections"

static const resource_messages messages = {
    .not_found = "no election with this id",
    .duplicate = "an election with this title already exists",
    .precondition = "If-Match does not match the election's current version",
};

static void reply_status(http_response *res, entity_status st, json_t *errors) {
  resource_reply_status(res, st, errors, &messages);
}

static void reply_list(const http_request *req, http_response *res, entity_store *s,
                       const char *type, const char *self, const char *search) {
  hal_page page;
  if (hal_parse_page(req, res, election_sort_field, &page) != 0) return;
  json_t *items;
  int64_t total;
  entity_status st = election_list(s, &page, type, &items, &total);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) hal_item_links(req, item, PATH, "election");
  http_reply_hal(res, 200, hal_collection(req, self, "elections", items, &page, total, search));
}

static void list(void *ctx, const http_request *req, http_response *res) {
  reply_list(req, res, ctx, NULL, PATH, PATH "/search");
}

static void search_by_type(void *ctx, const http_request *req, http_response *res) {
  const char *type = http_query(req, "electionType");
  if (!type)
    return http_reply_problem(res, 400, "Bad Request", "query parameter electionType is required", NULL);
  reply_list(req, res, ctx, type, PATH "/search/findByElectionTypeContaining", NULL);
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

static void create(void *ctx, const http_request *req, http_response *res) {
  idem_key key;
  if (idem_from_request(req, res, &key) != 0) return;
  json_t *body = resource_valid_body(req, res, election_validate, NULL);
  if (!body) return;
  json_t *item, *errors = json_array();
  bool replayed = false;
  entity_status st = key.present ? entity_create_keyed(ctx, body, key.scoped, &item, &replayed, errors)
                                 : entity_create(ctx, body, &item, errors);
  if (st == ENTITY_CREATED) resource_reply_item(req, res, 201, item, PATH, "election");
  else reply_status(res, st, errors);
  if (replayed) http_set_header(res, "Idempotent-Replayed", "true");
  json_decref(errors);
  json_decref(body);
}

static void get_one(void *ctx, const http_request *req, http_response *res) {
  json_t *item;
  entity_status st = entity_get(ctx, req->params[0], &item);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  if (resource_not_modified(req, res, item)) return json_decref(item);
  resource_reply_item(req, res, 200, item, PATH, "election");
}

static void replace(void *ctx, const http_request *req, http_response *res) {
  const char *id = req->params[0];
  if (!util_is_object_id(id))
    return http_reply_problem(res, 400, "Bad Request", "the id must be a 24-character hex ObjectId", NULL);
  int64_t version;
  if (!resource_if_match(req, res, &messages, &version)) return;
  json_t *body = resource_valid_body(req, res, election_validate, id);
  if (!body) return;
  json_t *item, *errors = json_array();
  entity_status st = entity_put(ctx, id, body, version, &item, errors);
  if (st == ENTITY_OK || st == ENTITY_CREATED)
    resource_reply_item(req, res, st == ENTITY_CREATED ? 201 : 200, item, PATH, "election");
  else reply_status(res, st, errors);
  json_decref(errors);
  json_decref(body);
}

static void patch(void *ctx, const http_request *req, http_response *res) {
  int64_t version;
  if (!resource_if_match(req, res, &messages, &version)) return;
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return;
  json_t *item, *errors = json_array();
  entity_status st = entity_patch(ctx, req->params[0], body, version, &item, errors);
  if (st == ENTITY_OK) resource_reply_item(req, res, 200, item, PATH, "election");
  else reply_status(res, st, errors);
  json_decref(errors);
  json_decref(body);
}

static void delete_one(void *ctx, const http_request *req, http_response *res) {
  int64_t version;
  if (!resource_if_match(req, res, &messages, &version)) return;
  entity_status st = entity_delete(ctx, req->params[0], version);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_empty(res, 204);
}

static void summary(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  json_t *titles;
  entity_status st = election_titles(ctx, &titles);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_json(res, 200, json_pack("{s:o}", "elections", titles));
}

static void drop(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  int64_t n;
  entity_status st = entity_drop_all(ctx, &n);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_empty(res, 204);
}

static void replay(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  int64_t n;
  entity_status st = entity_replay(ctx, &n);
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
  authz_route_admin(srv, "POST", "/election/drop/elections", drop, s);
  authz_route_admin(srv, "POST", "/election/events/replay", replay, s);
}
