/* routes — HTTP handlers of the voter service; see routes.h and docs/API.md. */
#include "routes.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "replicas.h"
#include "votes.h"
#include "voter/authz.h"
#include "voter/hal.h"
#include "voter/httpc.h"
#include "voter/idem.h"
#include "voter/json.h"
#include "voter/log.h"
#include "voter/util.h"

#define VOTES_PATH "/voter/votes"

static void unavailable(http_response *res) {
  http_reply_problem(res, 503, "Service Unavailable", "the database is not reachable", NULL);
  http_set_header(res, "Retry-After", "2");
}

static void reply_status(http_response *res, vs_status st) {
  switch (st) {
  case VS_NOT_FOUND: http_reply_problem(res, 404, "Not Found", "no vote with this id", NULL); break;
  case VS_UNKNOWN_ELECTION: {
    json_t *errors = json_array();
    jsonv_error(errors, "election", "is not a known election");
    jsonv_reply_invalid(res, errors);
    break;
  }
  case VS_UNKNOWN_CANDIDATE: {
    json_t *errors = json_array();
    jsonv_error(errors, "candidate", "is not a known candidate in this election");
    jsonv_reply_invalid(res, errors);
    break;
  }
  case VS_MISMATCH:
    http_reply_problem(res, 422, "Unprocessable Content",
                       "this Idempotency-Key was used by this caller for another request", NULL);
    break;
  default: unavailable(res); break;
  }
}

/* ---- votes ---- */

static const char *vote_sort(const char *p) {
  if (strcmp(p, "id") == 0) return "_id";
  if (strcmp(p, "candidate") == 0) return "candidate";
  if (strcmp(p, "election") == 0) return "election";
  return NULL;
}

static void list_votes(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  hal_page page;
  if (hal_parse_page(req, res, vote_sort, &page) != 0) return;
  json_t *items;
  int64_t total;
  vs_status st = votes_list(app->db, &page, &items, &total);
  if (st != VS_OK) return reply_status(res, st);
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) hal_item_links(req, item, VOTES_PATH, "vote");
  http_reply_hal(res, 200, hal_collection(req, VOTES_PATH, "votes", items, &page, total, NULL));
}

static const jsonv_field vote_fields[] = {
    {"candidate", JSONV_STRING, true, 256},
    {"election", JSONV_STRING, true, 256},
    {"id", JSONV_STRING, false, 24}, /* ignored: ids are assigned by the service */
    {NULL, 0, false, 0},
};

static void render_vote(const http_request *req, http_response *res, int status, json_t *item) {
  char loc[512];
  snprintf(loc, sizeof loc, "%s%s/%s", http_base_url(req), VOTES_PATH,
           json_string_value(json_object_get(item, "id")));
  hal_item_links(req, item, VOTES_PATH, "vote");
  http_reply_hal(res, status, item);
  if (status == 201) http_set_header(res, "Location", loc);
}

/* A keyed request: the derived id and the fingerprint of what was asked (not of the bytes,
 * so a retry that serialises the same vote differently is still the same request). */
static void vote_key_of(const idem_key *k, const char *candidate, const char *election,
                        bson_oid_t *oid, char fp[65], vote_key *out) {
  json_t *request = json_pack("{s:s, s:s}", "candidate", candidate, "election", election);
  idem_fingerprint(request, fp);
  json_decref(request);
  idem_object_id(k->scoped, "vote", oid);
  *out = (vote_key){.id = oid, .fingerprint = fp};
}

static void create_vote(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return;
  json_t *errors = json_array();
  if (jsonv_check(body, vote_fields, false, errors) > 0) {
    json_decref(body);
    return jsonv_reply_invalid(res, errors);
  }
  json_decref(errors);
  idem_key k;
  if (idem_from_request(req, res, &k) != 0) return json_decref(body);
  const char *candidate = jsonv_str(body, "candidate"), *election = jsonv_str(body, "election");
  bson_oid_t oid;
  char fp[65];
  vote_key key;
  if (k.present) vote_key_of(&k, candidate, election, &oid, fp, &key);
  json_t *item = NULL;
  vs_status st = votes_check(app->db, candidate, election);
  if (st == VS_OK) {
    st = votes_create(app->db, candidate, election, k.present ? &key : NULL, &item);
  } else if (k.present && (st == VS_UNKNOWN_CANDIDATE || st == VS_UNKNOWN_ELECTION)) {
    /* a retry of a vote cast before its candidate went away is still answered with it */
    vs_status found = votes_find_keyed(app->db, &key, &item);
    if (found == VS_REPLAYED || found == VS_MISMATCH) st = found;
  }
  /* a replayed vote may have been finished (counted) just now: announce it too */
  if (st == VS_CREATED || st == VS_REPLAYED) stream_changed(app->stream, election);
  json_decref(body);
  if (st != VS_CREATED && st != VS_REPLAYED) return reply_status(res, st);
  render_vote(req, res, 201, item);
  if (st == VS_REPLAYED) http_set_header(res, "Idempotent-Replayed", "true");
}

static void get_vote(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  json_t *item;
  vs_status st = votes_get(app->db, req->params[0], &item);
  if (st != VS_OK) return reply_status(res, st);
  render_vote(req, res, 200, item);
}

static void delete_vote(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  vs_status st = votes_delete(app->db, req->params[0]);
  if (st != VS_OK) return reply_status(res, st);
  stream_changed(app->stream, NULL);
  http_reply_empty(res, 204);
}

/* ---- batch ---- */

static void submit_batch(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  const char *ct = http_header(req, "Content-Type");
  bool ndjson = ct && (strncasecmp(ct, "application/x-ndjson", 20) == 0 ||
                       strncasecmp(ct, "application/ndjson", 18) == 0 ||
                       strncasecmp(ct, "application/jsonl", 17) == 0);
  if (!ndjson && !http_is_json(req))
    return http_reply_problem(res, 415, "Unsupported Media Type",
                              "send application/x-ndjson (one vote per line) or application/json "
                              "(an array of votes)", NULL);
  if (req->body_len == 0) return http_reply_problem(res, 400, "Bad Request", "the body is empty", NULL);
  idem_key key;
  if (idem_from_request(req, res, &key) != 0) return;
  json_t *result;
  char detail[300] = "";
  bool replayed;
  batch_status st = batch_submit(app->batch, req->body, req->body_len, ndjson, &key, &result,
                                 &replayed, detail, sizeof detail);
  if (st == BATCH_BAD_REQUEST) return http_reply_problem(res, 400, "Bad Request", detail, NULL);
  if (st == BATCH_MISMATCH) return reply_status(res, VS_MISMATCH);
  if (st != BATCH_ACCEPTED) {
    http_reply_problem(res, 503, "Service Unavailable", *detail ? detail : "cannot record the batch", NULL);
    http_set_header(res, "Retry-After", "5");
    return;
  }
  char url[512];
  snprintf(url, sizeof url, "%s%s/batch/%s", http_base_url(req), VOTES_PATH,
           json_string_value(json_object_get(result, "id")));
  json_object_set_new(result, "statusUrl", json_string(url));
  http_reply_json(res, 202, result);
  http_set_header(res, "Location", url);
  http_set_header(res, "Retry-After", "1");
  if (replayed) http_set_header(res, "Idempotent-Replayed", "true");
}

static void get_batch(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  json_t *result;
  batch_status st = batch_get(app->batch, req->params[0], &result);
  if (st == BATCH_NOT_FOUND) return http_reply_problem(res, 404, "Not Found", "no batch with this id", NULL);
  if (st != BATCH_ACCEPTED) return unavailable(res);
  http_reply_json(res, 200, result);
}

/* ---- candidate and election replicas ---- */

static void replica_collection(const http_request *req, http_response *res, voter_app *app,
                               const char *collection, const char *path, const char *field,
                               const char *value, hal_sortable sortable, const char *search) {
  hal_page page;
  if (hal_parse_page(req, res, sortable, &page) != 0) return;
  json_t *items;
  int64_t total;
  if (!replicas_list(app->db, collection, field, value, &page, &items, &total)) return unavailable(res);
  const char *singular = strcmp(collection, "candidates") == 0 ? "candidate" : "election";
  const char *item_path = strcmp(collection, "candidates") == 0 ? "/voter/candidates" : "/voter/elections";
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) hal_item_links(req, item, item_path, singular);
  http_reply_hal(res, 200, hal_collection(req, path, collection, items, &page, total, search));
}

static void list_candidates(void *ctx, const http_request *req, http_response *res) {
  replica_collection(req, res, ctx, "candidates", "/voter/candidates", NULL, NULL,
                     replicas_candidate_sort, "/voter/candidates/search");
}

static void candidates_by_election_contains(void *ctx, const http_request *req, http_response *res) {
  const char *election = http_query(req, "election");
  if (!election)
    return http_reply_problem(res, 400, "Bad Request", "query parameter election is required", NULL);
  replica_collection(req, res, ctx, "candidates", "/voter/candidates/search/findByElectionContains",
                     "election", election, replicas_candidate_sort, NULL);
}

static void list_elections(void *ctx, const http_request *req, http_response *res) {
  replica_collection(req, res, ctx, "elections", "/voter/elections", NULL, NULL,
                     replicas_election_sort, NULL);
}

static void candidates_of_election(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  json_t *list;
  if (!replicas_candidate_summary(app->db, req->params[0], &list)) return unavailable(res);
  http_reply_json(res, 200, json_pack("{s:o}", "candidates", list));
}

/* ---- results ---- */

static json_t *results_or_reply(voter_app *app, const http_request *req, http_response *res) {
  json_t *results;
  if (votes_results(app->db, req->params[0], &results) != VS_OK) {
    unavailable(res);
    return NULL;
  }
  return results;
}

static void results(void *ctx, const http_request *req, http_response *res) {
  json_t *r = results_or_reply(ctx, req, res);
  if (r) http_reply_json(res, 200, json_pack("{s:o}", "results", r));
}

static void results_total(void *ctx, const http_request *req, http_response *res) {
  json_t *r = results_or_reply(ctx, req, res);
  if (!r) return;
  json_int_t total = 0;
  size_t i;
  json_t *row;
  json_array_foreach(r, i, row) total += json_integer_value(json_object_get(row, "votes"));
  json_decref(r);
  http_reply_json(res, 200, json_pack("{s:I}", "votes", total));
}

/* Every candidate tied at the maximum, from the same single read as the results. */
static json_t *winners_of(json_t *r, json_int_t *max) {
  *max = json_integer_value(json_object_get(json_array_get(r, 0), "votes"));
  json_t *w = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(r, i, row) if (json_integer_value(json_object_get(row, "votes")) == *max)
      json_array_append(w, row);
  return w;
}

static void winners(void *ctx, const http_request *req, http_response *res) {
  json_t *r = results_or_reply(ctx, req, res);
  if (!r) return;
  json_int_t max;
  json_t *w = winners_of(r, &max);
  json_decref(r);
  http_reply_json(res, 200, json_pack("{s:o}", "results", w));
}

static void winners_votes(void *ctx, const http_request *req, http_response *res) {
  json_t *r = results_or_reply(ctx, req, res);
  if (!r) return;
  json_int_t max;
  json_decref(winners_of(r, &max));
  json_decref(r);
  http_reply_json(res, 200, json_pack("{s:I}", "votes", max));
}

/* ---- simulation, drops ---- */

static void simulation(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  const char *election = req->params[0];
  json_t *candidates;
  if (!replicas_candidate_summary(app->db, election, &candidates)) return unavailable(res);
  /* No candidates known (yet) for this election: like the original, answer 200 with the
   * usual message and add nothing; the sample-data scripts simulate every election. */
  size_t cap = json_array_size(candidates) * 25, n = 0;
  vote_in *votes = calloc(cap ? cap : 1, sizeof *votes);
  if (!votes) abort(); /* out of memory: the code base's one policy */
  size_t i;
  json_t *c;
  json_array_foreach(candidates, i, c) {
    unsigned char r;
    RAND_bytes(&r, 1);
    int count = 3 + r % 23; /* 3..25 */
    for (int k = 0; k < count; k++, n++) {
      bson_oid_t oid;
      bson_oid_init(&oid, NULL);
      bson_oid_to_string(&oid, votes[n].id);
      votes[n].candidate = json_string_value(json_object_get(c, "fullName"));
      votes[n].election = election;
    }
  }
  int64_t written;
  char chunk[37];
  util_uuid(chunk); /* one simulation, one chunk */
  vs_status st = votes_insert_many(app->db, votes, n, chunk, &written);
  free(votes);
  json_decref(candidates);
  if (st != VS_OK) return unavailable(res);
  stream_changed(app->stream, election);
  http_reply_json(res, 200, json_pack("{s:s}", "message",
                                      "Simulation data created using eventual consistency!"));
}

static void drop_votes(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  voter_app *app = ctx;
  if (votes_drop_all(app->db) != VS_OK) return unavailable(res);
  stream_changed(app->stream, NULL);
  http_reply_empty(res, 204);
}

/* Asks the candidate service to re-publish its candidates so the cleared replica rebuilds:
 * the one replay request (httpc_request_replay), as the candidate service asks the
 * election service. */
static bool request_replay(const voter_app *app, const http_request *req) {
  /* A replay is an admin operation there too: pass on this caller's, signed for it. */
  authz_headers auth;
  const char *proof[] = {auth.consumer, auth.scopes, auth.proof, NULL};
  bool signed_ok = authz_forward(req, "POST", "/candidate/events/replay", &auth) == 0;
  httpc_replay r = {.base_url = app->candidate_url, .path = "/candidate/events/replay",
                    .api_key = app->candidate_api_key, .request_id = req->request_id,
                    .headers = signed_ok ? proof : NULL};
  char err[512];
  if (httpc_request_replay(&r, err, sizeof err) == 0) return true;
  log_fields(LOG_WARN, "replay request to the candidate service failed",
             json_pack("{s:s, s:s}", "requestId", req->request_id, "error", err));
  return false;
}

static void drop_candidates(void *ctx, const http_request *req, http_response *res) {
  voter_app *app = ctx;
  if (!replicas_clear(app->db, "candidates")) return unavailable(res);
  bool replayed = request_replay(app, req);
  http_reply_empty(res, 204);
  if (!replayed)
    http_set_header(res, "Warning", "199 - \"replica cleared; the candidate service did not accept the replay request\"");
}

void voter_routes(http_server *srv, voter_app *app) {
  http_route(srv, "GET", VOTES_PATH, list_votes, app);
  http_route(srv, "POST", VOTES_PATH, create_vote, app);
  http_route(srv, "POST", VOTES_PATH "/batch", submit_batch, app);
  http_route(srv, "GET", VOTES_PATH "/batch/{id}", get_batch, app);
  http_route(srv, "GET", VOTES_PATH "/{id}", get_vote, app);
  authz_route_admin(srv, "DELETE", VOTES_PATH "/{id}", delete_vote, app);
  http_route(srv, "GET", "/voter/candidates", list_candidates, app);
  http_route(srv, "GET", "/voter/candidates/search/findByElectionContains",
             candidates_by_election_contains, app);
  http_route(srv, "GET", "/voter/candidates/{election}", candidates_of_election, app);
  http_route(srv, "GET", "/voter/elections", list_elections, app);
  http_route(srv, "GET", "/voter/results/{election}", results, app);
  http_route(srv, "GET", "/voter/results/{election}/votes", results_total, app);
  http_route(srv, "GET", "/voter/winners/{election}", winners, app);
  http_route(srv, "GET", "/voter/winners/{election}/votes", winners_votes, app);
  authz_route_admin(srv, "POST", "/voter/simulation/{election}", simulation, app);
  authz_route_admin(srv, "GET", "/voter/simulation/{election}", simulation, app); /* the original's GET */
  authz_route_admin(srv, "POST", "/voter/drop/votes", drop_votes, app);
  authz_route_admin(srv, "POST", "/voter/drop/candidates", drop_candidates, app);
}
