/* routes — HTTP handlers of the candidate service; see routes.h and docs/API.md. */
#include "routes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/authz.h"
#include "voter/hal.h"
#include "voter/idem.h"
#include "voter/json.h"
#include "voter/resource.h"
#include "voter/log.h"
#include "voter/util.h"

#define PATH "/candidate/candidates"
#define REPLICA_PATH "/candidate/elections"
#define VOTER_VIEW "candidateVoterView"

static const resource_messages messages = {
    .not_found = "no candidate with this id",
    .duplicate = "a candidate with this full name already stands in this election",
    .precondition = "If-Match does not match the candidate's current version",
};

static void reply_status(http_response *res, entity_status st, json_t *errors) {
  resource_reply_status(res, st, errors, &messages);
}

/* ?projection=candidateVoterView (Spring Data REST's name); false (and 400) for any other
 * projection. */
static bool parse_projection(const http_request *req, http_response *res, bool *voter_view) {
  const char *p = http_query(req, "projection");
  *voter_view = p && strcmp(p, VOTER_VIEW) == 0;
  if (!p || *voter_view) return true;
  http_reply_problem(res, 400, "Bad Request", "unknown projection (known: " VOTER_VIEW ")", NULL);
  return false;
}

/* Adds the item links and, for the voter view, reduces the item to fullName,
 * politicalParty and election. Returns the (possibly new) item, consuming the old. */
static json_t *present(const http_request *req, json_t *item, bool voter_view) {
  hal_item_links(req, item, PATH, "candidate");
  if (!voter_view) return item;
  json_t *view = json_pack("{s:O, s:O, s:O, s:O}", "fullName", json_object_get(item, "fullName"),
                           "politicalParty", json_object_get(item, "politicalParty"), "election",
                           json_object_get(item, "election"), "_links",
                           json_object_get(item, "_links"));
  json_decref(item);
  return view;
}

/* ---- candidates ---- */

/* Renders one candidate with its links and ETag, reduced to the voter view if asked. */
static void reply_item(const http_request *req, http_response *res, int status, json_t *item,
                       bool voter_view) {
  if (!voter_view) return resource_reply_item(req, res, status, item, PATH, "candidate");
  char etag[40];
  resource_etag(item, etag);
  http_reply_hal(res, status, present(req, item, true));
  http_set_header(res, "ETag", etag);
}

/* The collection and its search share everything but the filter and the self path. */
static void list_candidates(candidate_api *api, const http_request *req, http_response *res,
                            const char *election_contains, const char *self_path,
                            const char *search_path) {
  bool voter_view;
  if (!parse_projection(req, res, &voter_view)) return;
  hal_page page;
  if (hal_parse_page(req, res, candidate_sort_field, &page) != 0) return;
  json_t *items;
  int64_t total;
  entity_status st = candidate_list(api->store, &page, election_contains, &items, &total);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  json_t *shown = json_array();
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) {
    json_array_append_new(shown, present(req, json_incref(item), voter_view));
  }
  json_decref(items);
  http_reply_hal(res, 200, hal_collection(req, self_path, "candidates", shown, &page, total,
                                          search_path));
}

static void list(void *ctx, const http_request *req, http_response *res) {
  list_candidates(ctx, req, res, NULL, PATH, PATH "/search");
}

static void search_by_election(void *ctx, const http_request *req, http_response *res) {
  const char *election = http_query(req, "election");
  if (!election) {
    http_reply_problem(res, 400, "Bad Request", "query parameter election is required", NULL);
    return;
  }
  list_candidates(ctx, req, res, election, PATH "/search/findByElectionContains", NULL);
}

static void search_index(void *ctx, const http_request *req, http_response *res) {
  (void)ctx;
  char href[512], self[512];
  snprintf(href, sizeof href,
           "%s" PATH "/search/findByElectionContains{?election,page,size,sort,projection}",
           http_base_url(req));
  snprintf(self, sizeof self, "%s" PATH "/search", http_base_url(req));
  http_reply_hal(res, 200,
                 json_pack("{s:{s:{s:s, s:b}, s:{s:s}}}", "_links", "findByElectionContains",
                           "href", href, "templated", 1, "self", "href", self));
}

static void create(void *ctx, const http_request *req, http_response *res) {
  candidate_api *api = ctx;
  idem_key key;
  if (idem_from_request(req, res, &key) != 0) return;
  json_t *body = resource_valid_body(req, res, candidate_validate, NULL);
  if (!body) return;
  json_t *item, *errors = json_array();
  bool replayed = false;
  entity_status st = key.present
                         ? entity_create_keyed(api->store, body, key.scoped, &item, &replayed, errors)
                         : entity_create(api->store, body, &item, errors);
  json_decref(body);
  if (st != ENTITY_CREATED) reply_status(res, st, errors);
  else reply_item(req, res, 201, item, false);
  if (replayed) http_set_header(res, "Idempotent-Replayed", "true");
  json_decref(errors);
}

static void get_one(void *ctx, const http_request *req, http_response *res) {
  candidate_api *api = ctx;
  bool voter_view;
  if (!parse_projection(req, res, &voter_view)) return;
  json_t *item;
  entity_status st = entity_get(api->store, req->params[0], &item);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  if (resource_not_modified(req, res, item)) return json_decref(item);
  reply_item(req, res, 200, item, voter_view);
}

static void replace(void *ctx, const http_request *req, http_response *res) {
  candidate_api *api = ctx;
  const char *id = req->params[0];
  if (!util_is_object_id(id)) {
    http_reply_problem(res, 400, "Bad Request", "the id must be a 24-character hex ObjectId", NULL);
    return;
  }
  int64_t version;
  if (!resource_if_match(req, res, &messages, &version)) return;
  json_t *body = resource_valid_body(req, res, candidate_validate, id);
  if (!body) return;
  json_t *item, *errors = json_array();
  entity_status st = entity_put(api->store, id, body, version, &item, errors);
  json_decref(body);
  if (st != ENTITY_OK && st != ENTITY_CREATED) reply_status(res, st, errors);
  else reply_item(req, res, st == ENTITY_CREATED ? 201 : 200, item, false);
  json_decref(errors);
}

static void patch(void *ctx, const http_request *req, http_response *res) {
  candidate_api *api = ctx;
  int64_t version;
  if (!resource_if_match(req, res, &messages, &version)) return;
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return;
  json_t *errors = json_array(), *item;
  entity_status st = candidate_patch(api->store, req->params[0], body, version, &item, errors);
  json_decref(body);
  if (st != ENTITY_OK) reply_status(res, st, errors);
  else reply_item(req, res, 200, item, false);
  json_decref(errors);
}

static void delete_one(void *ctx, const http_request *req, http_response *res) {
  candidate_api *api = ctx;
  int64_t version;
  if (!resource_if_match(req, res, &messages, &version)) return;
  entity_status st = entity_delete(api->store, req->params[0], version);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_empty(res, 204);
}

static void reply_summary(candidate_api *api, const char *election, http_response *res) {
  json_t *list;
  entity_status st = candidate_summary(api->store, election, &list);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_json(res, 200, json_pack("{s:o}", "candidates", list));
}

static void summary(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  reply_summary(ctx, NULL, res);
}

/* The title arrives percent-decoded as one whole path segment: spaces, commas and dots
 * (even a trailing one) are part of it. */
static void summary_by_election(void *ctx, const http_request *req, http_response *res) {
  reply_summary(ctx, req->params[0], res);
}

static void drop_candidates(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  candidate_api *api = ctx;
  int64_t n;
  entity_status st = entity_drop_all(api->store, &n);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_empty(res, 204);
}

static void replay(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  candidate_api *api = ctx;
  int64_t n;
  entity_status st = entity_replay(api->store, &n);
  if (st != ENTITY_OK) return reply_status(res, st, NULL);
  http_reply_json(res, 202, json_pack("{s:I}", "republished", (json_int_t)n));
}

/* ---- the election replica (read-only) ---- */

static void replica_list_reply(candidate_api *api, const http_request *req, http_response *res,
                               const char *type_contains, const char *self_path,
                               const char *search_path) {
  hal_page page;
  if (hal_parse_page(req, res, elections_sort_field, &page) != 0) return;
  json_t *items;
  int64_t total;
  if (elections_list(api->replica, &page, type_contains, &items, &total) != ELECTIONS_OK)
    return resource_reply_unavailable(res);
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) hal_item_links(req, item, REPLICA_PATH, "election");
  http_reply_hal(res, 200, hal_collection(req, self_path, "elections", items, &page, total,
                                          search_path));
}

static void replica_list(void *ctx, const http_request *req, http_response *res) {
  replica_list_reply(ctx, req, res, NULL, REPLICA_PATH, REPLICA_PATH "/search");
}

static void replica_search_by_type(void *ctx, const http_request *req, http_response *res) {
  const char *type = http_query(req, "electionType");
  if (!type) {
    http_reply_problem(res, 400, "Bad Request", "query parameter electionType is required", NULL);
    return;
  }
  replica_list_reply(ctx, req, res, type, REPLICA_PATH "/search/findByElectionTypeContaining",
                     NULL);
}

static void replica_search_index(void *ctx, const http_request *req, http_response *res) {
  (void)ctx;
  char href[512], self[512];
  snprintf(href, sizeof href,
           "%s" REPLICA_PATH "/search/findByElectionTypeContaining{?electionType,page,size,sort}",
           http_base_url(req));
  snprintf(self, sizeof self, "%s" REPLICA_PATH "/search", http_base_url(req));
  http_reply_hal(res, 200,
                 json_pack("{s:{s:{s:s, s:b}, s:{s:s}}}", "_links", "findByElectionTypeContaining",
                           "href", href, "templated", 1, "self", "href", self));
}

static void replica_get(void *ctx, const http_request *req, http_response *res) {
  candidate_api *api = ctx;
  json_t *item;
  elections_status st = elections_get(api->replica, req->params[0], &item);
  if (st == ELECTIONS_NOT_FOUND) {
    http_reply_problem(res, 404, "Not Found", "no election with this id is known here", NULL);
    return;
  }
  if (st != ELECTIONS_OK) return resource_reply_unavailable(res);
  resource_reply_item(req, res, 200, item, REPLICA_PATH, "election");
}

/* Clears the replica, then asks the election service to replay. The replica is empty
 * either way, so the answer is 204 even when the election service cannot be reached; the
 * failure is logged and reported in a Warning header, and the request can be repeated. */
static void drop_elections(void *ctx, const http_request *req, http_response *res) {
  candidate_api *api = ctx;
  int64_t n;
  if (elections_clear(api->replica, &n) != ELECTIONS_OK) return resource_reply_unavailable(res);
  char err[512];
  authz_headers auth;
  bool signed_ok = authz_forward(req, "POST", "/election/events/replay", &auth) == 0;
  int rc = elections_request_replay(api->replica, req->request_id, signed_ok ? &auth : NULL, err,
                                    sizeof err);
  http_reply_empty(res, 204);
  if (rc != 0) {
    log_fields(LOG_WARN, "election replay request failed",
               json_pack("{s:s, s:s, s:I}", "requestId", req->request_id, "error", err,
                         "cleared", (json_int_t)n));
    http_set_header(res, "Warning",
                    "199 voter-candidate \"election replica cleared, but the election service "
                    "could not be asked to replay\"");
  } else {
    log_fields(LOG_INFO, "election replica cleared, replay requested",
               json_pack("{s:s, s:I}", "requestId", req->request_id, "cleared", (json_int_t)n));
  }
}

void candidate_routes(http_server *srv, candidate_api *api) {
  /* literal paths before {id}: the first matching route wins */
  http_route(srv, "GET", PATH, list, api);
  http_route(srv, "POST", PATH, create, api);
  http_route(srv, "GET", PATH "/search", search_index, api);
  http_route(srv, "GET", PATH "/search/findByElectionContains", search_by_election, api);
  http_route(srv, "GET", PATH "/summary", summary, api);
  http_route(srv, "GET", PATH "/summary/{election}", summary_by_election, api);
  http_route(srv, "GET", PATH "/{id}", get_one, api);
  http_route(srv, "PUT", PATH "/{id}", replace, api);
  http_route(srv, "PATCH", PATH "/{id}", patch, api);
  http_route(srv, "DELETE", PATH "/{id}", delete_one, api);
  http_route(srv, "GET", REPLICA_PATH, replica_list, api);
  http_route(srv, "GET", REPLICA_PATH "/search", replica_search_index, api);
  http_route(srv, "GET", REPLICA_PATH "/search/findByElectionTypeContaining",
             replica_search_by_type, api);
  http_route(srv, "GET", REPLICA_PATH "/{id}", replica_get, api);
  authz_route_admin(srv, "POST", "/candidate/drop/candidates", drop_candidates, api);
  authz_route_admin(srv, "POST", "/candidate/drop/elections", drop_elections, api);
  authz_route_admin(srv, "POST", "/candidate/events/replay", replay, api);
}
