/* authz — admin operations need the gateway's proof with the admin scope; see authz.h. */
#include "voter/authz.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/log.h"
#include "voter/util.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *secret; /* NULL when unset or too short: fail closed */
static size_t secret_len;
static const char *previous; /* the secret being rotated out (NULL: none) */
static size_t previous_len;

/* The previous secret (docs/operations.md, rotation): accepted besides the current one
 * while it is set; one too short is ignored, and said so. */
static void load_previous(void) {
  const char *s = getenv(PROOF_SECRET_PREVIOUS_ENV);
  size_t n = s ? strlen(s) : 0;
  if (!n) return;
  if (n < PROOF_MIN_SECRET) {
    log_fields(LOG_WARN, PROOF_SECRET_PREVIOUS_ENV " is shorter than 16 bytes: ignored",
               json_pack("{s:i}", "minBytes", PROOF_MIN_SECRET));
    return;
  }
  previous = s;
  previous_len = n;
  log_fields(LOG_INFO, "gateway proofs signed with " PROOF_SECRET_PREVIOUS_ENV " are accepted too "
             "(rotation: unset it once the gateway signs with the new secret)", NULL);
}

static void load(void) {
  const char *s = getenv(PROOF_SECRET_ENV);
  size_t n = s ? strlen(s) : 0;
  if (n >= PROOF_MIN_SECRET) {
    secret = s; /* the environment outlives every request */
    secret_len = n;
    load_previous();
    return;
  }
  log_fields(LOG_WARN,
             n ? PROOF_SECRET_ENV " is shorter than 16 bytes: admin operations are refused"
               : PROOF_SECRET_ENV " is not set: admin operations are refused",
             json_pack("{s:i}", "minBytes", PROOF_MIN_SECRET));
}

static proof_status verify(const http_request *req, const char *consumer, const char *scopes) {
  return proof_verify_rotating(secret, secret_len, previous, previous_len,
                               http_header(req, PROOF_HEADER), req->method, req->path, consumer,
                               scopes, util_now_ms() / 1000);
}

void authz_init(void) { pthread_once(&once, load); }

static const char *header_or_empty(const http_request *req, const char *name) {
  const char *v = http_header(req, name);
  return v ? v : "";
}

bool authz_admin(const http_request *req, http_response *res) {
  authz_init();
  const char *consumer = header_or_empty(req, PROOF_CONSUMER_HEADER);
  const char *scopes = header_or_empty(req, PROOF_SCOPES_HEADER);
  proof_status st = verify(req, consumer, scopes);
  const char *why = NULL;
  if (st != PROOF_OK) why = proof_status_text(st);
  else if (!proof_scope_has(scopes, "admin")) why = "the caller's scopes do not include admin";
  if (!why) return true;
  char detail[256];
  snprintf(detail, sizeof detail, "this is an admin operation: %s", why);
  http_reply_problem(res, 403, "Forbidden", detail, NULL);
  log_fields(LOG_WARN, "admin operation refused",
             json_pack("{s:s, s:s, s:s, s:s}", "requestId", req->request_id, "method",
                       req->method, "path", req->path, "reason", why));
  return false;
}

const char *authz_consumer(const http_request *req) {
  authz_init();
  const char *consumer = http_header(req, PROOF_CONSUMER_HEADER);
  if (!consumer || !*consumer) return NULL;
  proof_status st = verify(req, consumer, header_or_empty(req, PROOF_SCOPES_HEADER));
  return st == PROOF_OK ? consumer : NULL;
}

int authz_route_admin(http_server *s, const char *method, const char *pattern, http_handler fn,
                      void *ctx) {
  return http_route_guarded(s, method, pattern, authz_admin, fn, ctx);
}

int authz_forward(const http_request *req, const char *method, const char *path,
                  authz_headers *out) {
  authz_init();
  const char *consumer = header_or_empty(req, PROOF_CONSUMER_HEADER);
  const char *scopes = header_or_empty(req, PROOF_SCOPES_HEADER);
  char proof[PROOF_TEXT_MAX];
  if (proof_sign(secret, secret_len, method, path, consumer, scopes, util_now_ms() / 1000,
                 proof) != 0)
    return -1;
  int a = snprintf(out->consumer, sizeof out->consumer, PROOF_CONSUMER_HEADER ": %s", consumer);
  int b = snprintf(out->scopes, sizeof out->scopes, PROOF_SCOPES_HEADER ": %s", scopes);
  snprintf(out->proof, sizeof out->proof, PROOF_HEADER ": %s", proof);
  if (a < 0 || (size_t)a >= sizeof out->consumer || b < 0 || (size_t)b >= sizeof out->scopes)
    return -1;
  return 0;
}
