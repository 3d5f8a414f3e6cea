/* webhook — completion callbacks (prefix webhooks_).
 *
 * When a job with a callbackUrl reaches a final state, the same write marks its webhook
 * pending (store.h). This thread finds pending webhooks (on any replica, so a delivery
 * survives a crash: at-least-once) and POSTs {id, status, statusUrl, resultUrl} with
 *     X-Signature: sha256=<hex HMAC-SHA256(JOBS_HMAC_SECRET, body)>
 * retrying non-2xx answers and transport errors with exponential back-off
 * (JOBS_WEBHOOK_BACKOFF_MS doubling) up to JOBS_WEBHOOK_ATTEMPTS deliveries. Each attempt
 * is claimed with a conditional update first, so two replicas rarely send the same one. */
#ifndef JOBS_WEBHOOK_H
#define JOBS_WEBHOOK_H

#include "app.h"

webhooks *webhooks_start(jobs_app *app);
void webhooks_kick(webhooks *w);
void webhooks_stop(webhooks *w);

/* The JSON body of the webhook for job j (a fresh signed result URL when succeeded). */
char *webhooks_body(const jobs_app *app, const job_info *j);

#endif
