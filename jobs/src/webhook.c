/* webhook — completion callbacks with signatures and retries; see webhook.h. */
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voter/httpc.h"
#include "sign.h"
#include "ticker.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define BATCH 32
#define POLL_MS 500

struct webhooks {
  jobs_app *app;
  ticker *ticker;
};

char *webhooks_body(const jobs_app *app, const job_info *j) {
  char status_url[512], result_path[256], result_url[768];
  snprintf(status_url, sizeof status_url, "%s/jobs/%s", j->base_url, j->id);
  json_t *body = json_pack("{s:s, s:s, s:s}", "id", j->id, "status", j->status, "statusUrl",
                           status_url);
  if (strcmp(j->status, "succeeded") == 0) {
    int64_t expires = util_now_ms() / 1000 + app->cfg->result_url_ttl_s;
    sign_result_path(app->cfg->hmac_secret, j->id, expires, result_path, sizeof result_path);
    snprintf(result_url, sizeof result_url, "%s%s", j->base_url, result_path);
    json_object_set_new(body, "resultUrl", json_string(result_url));
  } else {
    json_object_set_new(body, "resultUrl", json_null());
    if (j->reason[0]) json_object_set_new(body, "reason", json_string(j->reason));
  }
  char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(body);
  return text;
}

static void deliver(webhooks *w, const char *id) {
  jobs_app *app = w->app;
  const jobs_config *cfg = app->cfg;
  job_info j;
  if (store_get(app->store, id, &j) != JS_OK || !j.hook_pending || !j.callback_url[0]) return;
  int64_t now = util_now_ms();
  /* Claim this attempt; the claim's next time covers a sender that dies mid-request. */
  if (store_hook_claim(app->store, id, j.hook_attempts,
                       now + (cfg->webhook_timeout_s + 5) * 1000) != JS_OK)
    return;
  int attempt = j.hook_attempts + 1;
  char *body = webhooks_body(app, &j);
  if (!body) return;
  char mac[65], sig[96], hid[48], hattempt[48];
  sign_hmac_hex(cfg->hmac_secret, body, strlen(body), mac);
  snprintf(sig, sizeof sig, "X-Signature: sha256=%s", mac);
  snprintf(hid, sizeof hid, "X-Job-Id: %s", j.id);
  snprintf(hattempt, sizeof hattempt, "X-Webhook-Attempt: %d", attempt);
  const char *headers[] = {sig, hid, hattempt, "User-Agent: voter-jobs", NULL};
  /* The target is checked again at every delivery (the policy may have changed, the name
   * may point elsewhere now) and the connection goes to the address checked (pin). */
  char pin[1024], refused[200];
  bool allowed = cb_check(app->callbacks, j.callback_url, pin, sizeof pin, refused,
                          sizeof refused) == 0;
  httpc_request req = {.method = "POST",
                       .url = j.callback_url,
                       .connect_to = pin,
                       .content_type = "application/json",
                       .body = body,
                       .body_len = strlen(body),
                       .headers = headers,
                       .timeout_ms = cfg->webhook_timeout_s * 1000,
                       .max_response = 4096};
  httpc_response res = {0};
  int rc = allowed ? httpc_do(&req, &res) : -1;
  if (!allowed) snprintf(res.error, sizeof res.error, "callback target refused: %s", refused);
  bool ok = rc == 0 && res.status >= 200 && res.status < 300;
  char error[256] = "";
  if (!ok) {
    if (rc != 0) snprintf(error, sizeof error, "%s", res.error);
    else snprintf(error, sizeof error, "HTTP %ld", res.status);
  }
  httpc_response_free(&res);
  free(body);
  int64_t next = -1;
  if (!ok && attempt < cfg->webhook_attempts) {
    long delay = cfg->webhook_backoff_ms << (attempt - 1 < 10 ? attempt - 1 : 10);
    next = util_now_ms() + delay;
  }
  store_hook_result(app->store, id, ok, next, error);
  metrics_counter_inc("jobs_webhooks_total", ok ? "result=\"delivered\""
                                           : next < 0 ? "result=\"abandoned\""
                                                      : "result=\"retry\"");
  log_fields(ok ? LOG_INFO : LOG_WARN, ok ? "webhook delivered" : "webhook failed",
             json_pack("{s:s, s:i, s:s}", "job", id, "attempt", attempt, "error", error));
}

/* One round: every POLL_MS, or at once when kicked. */
static void deliver_due(void *arg) {
  webhooks *w = arg;
  char ids[BATCH][25];
  int n = store_scan_webhooks(w->app->store, util_now_ms(), ids, BATCH);
  for (int i = 0; i < n; i++) deliver(w, ids[i]);
}

webhooks *webhooks_start(jobs_app *app) {
  webhooks *w = xcalloc(1, sizeof *w);
  w->app = app;
  metrics_describe("jobs_webhooks_total", "counter", "Webhook delivery attempts by result");
  if (!(w->ticker = ticker_start(deliver_due, w, POLL_MS))) {
    free(w);
    return NULL;
  }
  return w;
}

void webhooks_kick(webhooks *w) {
  if (w) ticker_kick(w->ticker);
}

void webhooks_stop(webhooks *w) {
  if (!w) return;
  ticker_stop(w->ticker);
  free(w);
}
