/* routes — HTTP handlers of the job service; see routes.h and docs/jobs.md. */
#include "routes.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fsutil.h"
#include "sign.h"
#include "submit.h"
#include "voter/authz.h"
#include "voter/hal.h"
#include "voter/json.h"
#include "voter/idem.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"
#include "voter/xalloc.h"
#include "webhook.h"
#include "worker.h"


struct routes_ctx {
  jobs_app *app;
  atomic_int waiters; /* long polls holding an HTTP thread */
  int max_waiters;
};

static void unavailable(http_response *res) {
  http_reply_problem(res, 503, "Service Unavailable", "the database is not reachable", NULL);
  http_set_header(res, "Retry-After", "2");
}

static void not_found(http_response *res) {
  http_reply_problem(res, 404, "Not Found", "no job with this id", NULL);
}

static void gone(http_response *res) {
  http_reply_problem(res, 410, "Gone",
                     "the job's inputs, result and logs were purged after the retention period",
                     NULL);
}

static json_t *date_or_null(int64_t ms) {
  if (!ms) return json_null();
  char text[32];
  util_format_date(ms, text);
  return json_string(text);
}

static void add_link(json_t *links, const char *rel, const char *href) {
  json_object_set_new(links, rel, json_pack("{s:s}", "href", href));
}

/* The signed result URL, absolute. */
static void result_url(routes_ctx *c, const http_request *req, const char *id, char *out,
                       size_t cap) {
  char path[256];
  int64_t expires = util_now_ms() / 1000 + c->app->cfg->result_url_ttl_s;
  sign_result_path(c->app->cfg->hmac_secret, id, expires, path, sizeof path);
  snprintf(out, cap, "%s%s", http_base_url(req), path);
}

/* The status document: what GET /jobs/{id}?view=status and the list show. */
static json_t *status_doc(routes_ctx *c, const http_request *req, const job_info *j) {
  const char *base = http_base_url(req);
  char self[512], href[768];
  snprintf(self, sizeof self, "%s/jobs/%s", base, j->id);
  const char *message = j->progress_phase[0] ? j->progress_phase : j->status;
  json_t *doc = json_pack(
      "{s:s, s:s, s:s, s:I, s:{s:I, s:I, s:s}, s:i, s:o, s:o, s:o}", "id", j->id, "status",
      j->status, "contest", j->contest, "ballots", (json_int_t)j->ballots, "progress", "done",
      (json_int_t)j->progress_done, "total", (json_int_t)j->progress_total, "message", message,
      "attempts", j->attempts, "createdAt", date_or_null(j->created_ms), "startedAt",
      date_or_null(j->started_ms), "finishedAt", date_or_null(j->finished_ms));
  json_t *links = json_object();
  add_link(links, "self", self);
  if (strcmp(j->status, "pending") == 0 || strcmp(j->status, "running") == 0) {
    add_link(links, "cancel", self);
  } else if (strcmp(j->status, "purged") == 0) {
    json_object_set_new(doc, "outcome", json_string(j->outcome));
  } else {
    json_object_set_new(doc, "reason", j->reason[0] ? json_string(j->reason) : json_null());
    json_object_set_new(doc, "exitCode", j->has_exit_code ? json_integer(j->exit_code)
                                                          : json_null());
    snprintf(href, sizeof href, "%s/logs", self);
    json_object_set_new(doc, "logsUrl", json_string(href));
    add_link(links, "logs", href);
    if (strcmp(j->status, "succeeded") == 0) {
      result_url(c, req, j->id, href, sizeof href);
      json_object_set_new(doc, "resultUrl", json_string(href));
      add_link(links, "result", href);
    }
  }
  if (j->callback_url[0]) {
    json_t *hook = json_pack("{s:s, s:b, s:i}", "url", j->callback_url, "pending",
                             j->hook_pending, "attempts", j->hook_attempts);
    if (j->hook_delivered_ms) json_object_set_new(hook, "deliveredAt", date_or_null(j->hook_delivered_ms));
    if (j->hook_error[0]) json_object_set_new(hook, "lastError", json_string(j->hook_error));
    json_object_set_new(doc, "webhook", hook);
  }
  json_object_set_new(doc, "_links", links);
  return doc;
}

static bool active(const job_info *j) {
  return strcmp(j->status, "pending") == 0 || strcmp(j->status, "running") == 0;
}

/* 202 + Location (the status URL) + Retry-After. */
static void reply_accepted(routes_ctx *c, const http_request *req, http_response *res,
                           json_t *body, const char *id) {
  char loc[512], after[16];
  snprintf(loc, sizeof loc, "%s/jobs/%s", http_base_url(req), id);
  snprintf(after, sizeof after, "%ld", c->app->cfg->retry_after_s);
  http_reply_json(res, 202, body);
  http_set_header(res, "Location", loc);
  http_set_header(res, "Retry-After", after);
}

/* SHA-256 of the caller's API key: the owner recorded on jobs and used to list them.
 * Behind the gateway the key does not arrive; the gateway sends the same hash as
 * X-Consumer-ID instead (and drops any a client sends), so both paths agree. The header
 * counts only under the gateway's proof (authz_consumer): set by anyone else, it is
 * ignored, and the caller is whoever its X-API-Key (if any) says. */
static bool owner_of(const http_request *req, char out[65]) {
  const char *consumer = authz_consumer(req);
  if (consumer && strlen(consumer) == 64 && strspn(consumer, "0123456789abcdef") == 64) {
    memcpy(out, consumer, 65);
    return true;
  }
  const char *key = http_header(req, "X-API-Key");
  if (!key || !*key) return false;
  sign_sha256_hex(key, strlen(key), out);
  return true;
}

/* Who may see a job by its id (status, long poll, logs, cancel): anyone for an anonymous
 * job; for one submitted with an API key, only requests with the same key. Others get the
 * same 404 as for an unknown id, so ids of other callers' jobs are not confirmed. The
 * signed result URL stays a capability of its own. */
static bool visible(const http_request *req, const job_info *j) {
  if (!j->owner[0]) return true;
  char mine[65];
  if (!owner_of(req, mine)) return false;
  unsigned char diff = 0; /* constant time, out of habit */
  for (size_t i = 0; i < 64; i++) diff |= (unsigned char)(mine[i] ^ j->owner[i]);
  return diff == 0 && j->owner[64] == 0;
}

/* Whether the Accept header admits application/json: no header, or a range that is
 * application/json, "application/" + "*" or "*" + "/" + "*" with a q above 0 (other
 * parameters are ignored). */
static bool accepts_json(const http_request *req) {
  const char *accept = http_header(req, "Accept");
  if (!accept || !*accept) return true;
  const char *p = accept;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char range[128];
    if (len < sizeof range) {
      memcpy(range, p, len);
      range[len] = 0;
      char *params = strchr(range, ';');
      bool q_zero = false;
      if (params) {
        *params++ = 0;
        for (char *s = params; (s = strstr(s, "q=")) != NULL; s += 2) {
          bool at_start = s == params || s[-1] == ';' || s[-1] == ' ' || s[-1] == '\t';
          if (at_start && strtod(s + 2, NULL) <= 0) q_zero = true;
        }
      }
      char *type = range;
      while (*type == ' ' || *type == '\t') type++;
      size_t n = strlen(type);
      while (n && (type[n - 1] == ' ' || type[n - 1] == '\t')) type[--n] = 0;
      if (!q_zero && (strcasecmp(type, "application/json") == 0 ||
                      strcasecmp(type, "application/*") == 0 || strcmp(type, "*/*") == 0))
        return true;
    }
    if (!end) break;
    p = end + 1;
  }
  return false;
}

/* ---- POST /jobs/tabulations ---- */

static void submit(void *ctx, const http_request *req, http_response *res) {
  routes_ctx *c = ctx;
  jobs_app *app = c->app;
  const char *idem = http_header(req, "Idempotency-Key");
  if (idem) {
    if (!idem_key_valid(idem)) {
      http_reply_problem(res, 400, "Bad Request",
                         "Idempotency-Key must be 1 to 255 printable ASCII characters", NULL);
      return;
    }
  }
  tab_submission sub;
  if (submit_parse(req, res, &sub) != 0) {
    submit_free(&sub);
    return;
  }
  if (sub.callback_url) { /* the target policy (callback.h): before the costly validation */
    char why[200];
    if (cb_check(app->callbacks, sub.callback_url, NULL, 0, why, sizeof why) != 0) {
      json_t *errors = json_array();
      jsonv_error(errors, "callbackUrl", why);
      jsonv_reply_invalid(res, errors);
      submit_free(&sub);
      return;
    }
  }
  if (submit_validate(&sub, res) != 0) {
    submit_free(&sub);
    return;
  }
  char owner[65];
  bool has_owner = owner_of(req, owner);
  job_new in = {.rules = sub.rules,
                .rules_len = sub.rules_len,
                .ballots = sub.ballots,
                .ballots_len = sub.ballots_len,
                .callback_url = sub.callback_url,
                .base_url = http_base_url(req),
                .owner = has_owner ? owner : NULL,
                .idem_key = idem,
                .body_hash = sub.body_hash,
                .contest = sub.contest,
                .ballots_count = sub.ballots_count};
  job_info j;
  bool existing;
  js_status st = store_create(app->store, &in, &j, &existing);
  submit_free(&sub);
  if (st == JS_MISMATCH) {
    http_reply_problem(res, 409, "Conflict",
                       "this Idempotency-Key was used for a different submission", NULL);
    return;
  }
  if (st != JS_OK) return unavailable(res);
  if (!existing) {
    metrics_counter_inc("jobs_submitted_total", "");
    /* If the broker is away the job still stands: the sweeper sends its message later. */
    if (wq_publish(app->wq, j.id) == 0) store_set_dispatched(app->store, j.id, true);
    else log_fields(LOG_WARN, "work message not sent yet", json_pack("{s:s}", "job", j.id));
    log_fields(LOG_INFO, "job accepted",
               json_pack("{s:s, s:s, s:I}", "job", j.id, "contest", j.contest, "ballots",
                         (json_int_t)j.ballots));
  }
  char self[512];
  snprintf(self, sizeof self, "%s/jobs/%s", http_base_url(req), j.id);
  json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "id", j.id, "status", j.status, "statusUrl",
                           self, "cancelUrl", self);
  reply_accepted(c, req, res, body, j.id);
  if (existing) http_set_header(res, "Idempotent-Replayed", "true");
}

/* ---- GET /jobs/{id} ---- */

/* ?wait=N: 0..max_wait_s; -1 (and 400) when malformed. */
static long parse_wait(routes_ctx *c, const http_request *req, http_response *res) {
  const char *w = http_query(req, "wait");
  if (!w) return 0;
  char *end;
  errno = 0;
  long v = strtol(w, &end, 10);
  if (errno || *end || !*w || v < 0 || v > c->app->cfg->max_wait_s) {
    char detail[96];
    snprintf(detail, sizeof detail, "wait must be an integer from 0 to %ld (seconds)",
             c->app->cfg->max_wait_s);
    http_reply_problem(res, 400, "Bad Request", detail, NULL);
    return -1;
  }
  return v;
}

/* Long polling: holds the request until the job's status differs from the one first seen,
 * or wait_s pass. Local changes wake it at once; other replicas' within half a second. */
static js_status wait_for_change(routes_ctx *c, const char *id, job_info *j, long wait_s) {
  jobs_app *app = c->app;
  if (atomic_fetch_add(&c->waiters, 1) >= c->max_waiters) {
    atomic_fetch_sub(&c->waiters, 1);
    return JS_OK; /* every thread we may hold is holding: answer now */
  }
  char first[16];
  snprintf(first, sizeof first, "%s", j->status);
  double until = util_monotonic() + (double)wait_s;
  uint64_t seq = app_change_seq(app);
  js_status st = JS_OK;
  while (!atomic_load(&app->stopping)) {
    double left = until - util_monotonic();
    if (left <= 0) break;
    seq = app_wait_change(app, seq, left < 0.5 ? (long)(left * 1000) + 1 : 500);
    st = store_get(app->store, id, j);
    if (st != JS_OK || strcmp(j->status, first) != 0) break;
  }
  atomic_fetch_sub(&c->waiters, 1);
  return st;
}

static void get_job(void *ctx, const http_request *req, http_response *res) {
  routes_ctx *c = ctx;
  long wait_s = parse_wait(c, req, res);
  if (wait_s < 0) return;
  const char *view = http_query(req, "view");
  bool status_view = view && strcmp(view, "status") == 0;
  if (status_view && !accepts_json(req)) {
    http_reply_problem(res, 406, "Not Acceptable",
                       "?view=status answers application/json only (send Accept: "
                       "application/json)",
                       NULL);
    return;
  }
  job_info j;
  js_status st = store_get(c->app->store, req->params[0], &j);
  if (st == JS_OK && !visible(req, &j)) st = JS_NOT_FOUND;
  if (st == JS_OK && wait_s > 0 && active(&j)) st = wait_for_change(c, req->params[0], &j, wait_s);
  if (st == JS_NOT_FOUND) return not_found(res);
  if (st != JS_OK) return unavailable(res);
  if (status_view) {
    http_reply_json(res, 200, status_doc(c, req, &j));
    return;
  }
  if (active(&j)) {
    reply_accepted(c, req, res, status_doc(c, req, &j), j.id);
    return;
  }
  if (strcmp(j.status, "purged") == 0) return gone(res);
  if (strcmp(j.status, "succeeded") == 0) {
    char url[768];
    result_url(c, req, j.id, url, sizeof url);
    http_reply_json(res, 303, status_doc(c, req, &j));
    http_set_header(res, "Location", url);
    return;
  }
  http_reply_json(res, 200, status_doc(c, req, &j)); /* failed, cancelled */
}

/* ---- GET /jobs/{id}/result ---- */

static void get_result(void *ctx, const http_request *req, http_response *res) {
  routes_ctx *c = ctx;
  const char *id = req->params[0];
  int64_t now_s = util_now_ms() / 1000;
  const char *expires = http_query(req, "expires");
  sign_check_result sig = sign_check(c->app->cfg->hmac_secret, id, expires,
                                     http_query(req, "sig"), now_s);
  if (sig != SIGN_OK) {
    http_reply_problem(res, 403, "Forbidden",
                       sig == SIGN_EXPIRED ? "the result URL has expired: ask the status URL for a new one"
                       : sig == SIGN_MISSING ? "the result URL must carry expires and sig"
                                             : "the result URL's signature is not valid",
                       NULL);
    return;
  }
  job_info j;
  js_status st = store_get(c->app->store, id, &j);
  if (st == JS_NOT_FOUND) return not_found(res);
  if (st != JS_OK) return unavailable(res);
  if (strcmp(j.status, "purged") == 0) return gone(res);
  if (strcmp(j.status, "succeeded") != 0 || !j.result_key[0]) return not_found(res);
  char *data;
  size_t len;
  st = store_get_data(c->app->store, j.result_key, &data, &len);
  if (st == JS_NOT_FOUND) return gone(res); /* purged between the two reads */
  if (st != JS_OK) return unavailable(res);
  char cache[64];
  snprintf(cache, sizeof cache, "private, max-age=%lld", (long long)(strtoll(expires, NULL, 10) - now_s));
  http_reply(res, 200, "application/json", data, len);
  http_set_header(res, "Cache-Control", cache);
}

/* ---- GET /jobs/{id}/logs ---- */

static void get_logs(void *ctx, const http_request *req, http_response *res) {
  routes_ctx *c = ctx;
  const jobs_config *cfg = c->app->cfg;
  job_info j;
  js_status st = store_get(c->app->store, req->params[0], &j);
  if (st == JS_OK && !visible(req, &j)) st = JS_NOT_FOUND;
  if (st == JS_NOT_FOUND) return not_found(res);
  if (st != JS_OK) return unavailable(res);
  if (strcmp(j.status, "purged") == 0) return gone(res);
  char key[64], *data = NULL;
  size_t len = 0;
  snprintf(key, sizeof key, "%s.logs", j.id);
  st = store_get_data(c->app->store, key, &data, &len);
  if (st == JS_NOT_FOUND && strcmp(j.status, "running") == 0) {
    /* still running: what the program wrote so far, when it runs on this replica
     * (local runner) */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s-%d", cfg->work_dir, j.id, j.attempts);
    data = fs_tail_in(dir, "output.log", (size_t)cfg->logs_max);
    len = data ? strlen(data) : 0;
  } else if (st != JS_OK && st != JS_NOT_FOUND) {
    return unavailable(res);
  }
  if (!data) {
    data = xstrdup("");
    len = 0;
  }
  http_reply(res, 200, "text/plain; charset=utf-8", data, len);
}

/* ---- DELETE /jobs/{id} ---- */

static void cancel(void *ctx, const http_request *req, http_response *res) {
  routes_ctx *c = ctx;
  jobs_app *app = c->app;
  for (int attempt = 0; attempt < 8; attempt++) {
    job_info j;
    js_status st = store_get(app->store, req->params[0], &j);
    if (st == JS_OK && !visible(req, &j)) st = JS_NOT_FOUND;
    if (st == JS_NOT_FOUND) return not_found(res);
    if (st != JS_OK) return unavailable(res);
    if (strcmp(j.status, "purged") == 0) return gone(res);
    if (!active(&j)) {
      char detail[96];
      snprintf(detail, sizeof detail, "the job already finished (%s)", j.status);
      http_reply_problem(res, 409, "Conflict", detail, NULL);
      return;
    }
    st = store_cancel(app->store, &j, "cancelled by the client");
    if (st == JS_CONFLICT) continue; /* it moved on meanwhile: look again */
    if (st != JS_OK) return unavailable(res);
    /* Stop it now if it runs here; elsewhere its lease keeper notices within a second. */
    worker_cancel_local(app->pool, j.id);
    app_changed(app);
    webhooks_kick(app->hooks);
    metrics_counter_inc("jobs_total", "status=\"cancelled\"");
    log_fields(LOG_INFO, "job cancelled", json_pack("{s:s, s:s}", "job", j.id, "was", j.status));
    store_get(app->store, j.id, &j);
    reply_accepted(c, req, res, status_doc(c, req, &j), j.id);
    return;
  }
  unavailable(res);
}

/* ---- GET /jobs ---- */

static const char *sort_field(const char *p) {
  static const char *const allowed[] = {"createdAt", "finishedAt", "status", "contest", NULL};
  return hal_sort_field(allowed, p);
}

static void list(void *ctx, const http_request *req, http_response *res) {
  routes_ctx *c = ctx;
  static const char *const statuses[] = {"pending", "running", "succeeded", "failed",
                                         "cancelled", "purged", NULL};
  const char *status = http_query(req, "status");
  if (status) {
    int i = 0;
    while (statuses[i] && strcmp(statuses[i], status) != 0) i++;
    if (!statuses[i]) {
      http_reply_problem(res, 400, "Bad Request",
                         "status must be pending, running, succeeded, failed, cancelled or purged",
                         NULL);
      return;
    }
  }
  hal_page page;
  if (hal_parse_page(req, res, sort_field, &page) != 0) return;
  char owner[65];
  job_list_query q = {.owner = owner_of(req, owner) ? owner : NULL, .status = status,
                      .page = page.page, .size = page.size, .nsort = page.nsort};
  for (int i = 0; i < page.nsort && i < 4; i++) {
    q.sort_fields[i] = page.sort_fields[i];
    q.sort_dirs[i] = page.sort_dirs[i];
  }
  job_info *items;
  size_t n;
  int64_t total;
  if (store_list(c->app->store, &q, &items, &n, &total) != JS_OK) return unavailable(res);
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    json_t *doc = status_doc(c, req, &items[i]);
    hal_item_links(req, doc, JOBS_CONTEXT, "job");
    json_array_append_new(arr, doc);
  }
  free(items);
  http_reply_hal(res, 200, hal_collection(req, JOBS_CONTEXT, "jobs", arr, &page, total, NULL));
}

routes_ctx *jobs_routes(http_server *srv, jobs_app *app, int http_threads) {
  routes_ctx *c = xcalloc(1, sizeof *c);
  c->app = app;
  /* Long polls block their HTTP thread: keep at least one thread for everything else. */
  c->max_waiters = http_threads > 2 ? http_threads - 2 : 1;
  metrics_describe("jobs_submitted_total", "counter", "Jobs accepted");
  http_route(srv, "POST", JOBS_CONTEXT "/tabulations", submit, c);
  http_route(srv, "GET", JOBS_CONTEXT, list, c);
  http_route(srv, "GET", JOBS_CONTEXT "/{id}", get_job, c);
  authz_route_admin(srv, "DELETE", JOBS_CONTEXT "/{id}", cancel, c);
  http_route(srv, "GET", JOBS_CONTEXT "/{id}/result", get_result, c);
  http_route(srv, "GET", JOBS_CONTEXT "/{id}/logs", get_logs, c);
  return c;
}

void jobs_routes_free(routes_ctx *c) { free(c); }
