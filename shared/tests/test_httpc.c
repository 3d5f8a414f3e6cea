/* Tests for the one HTTP client (httpc): the replay request one service sends another,
 * against the shared HTTP server on a loopback port (no other server needed): the key,
 * the request id and the forwarded headers are sent, no body and no form Content-Type,
 * any 2xx is success, anything else is a failure whose reason names the status and the
 * answer, and a refused connection is a failure too. */
#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "voter/http.h"
#include "voter/httpc.h"
#include "voter/log.h"
#include "voter/metrics.h"

static http_server *srv;
static char base[64];

/* What the last replay request carried. */
static struct {
  char key[64], request_id[64], proof[64], content_type[64];
  size_t body_len;
} seen;

static void copy_header(const http_request *req, const char *name, char *dst, size_t cap) {
  const char *v = http_header(req, name);
  snprintf(dst, cap, "%s", v ? v : "(none)");
}

/* Answers with the status named by the path: /s<status>/events/replay. */
static void replay(void *ctx, const http_request *req, http_response *res) {
  (void)ctx;
  copy_header(req, "X-API-Key", seen.key, sizeof seen.key);
  copy_header(req, "X-Request-ID", seen.request_id, sizeof seen.request_id);
  copy_header(req, "X-Test-Proof", seen.proof, sizeof seen.proof);
  copy_header(req, "Content-Type", seen.content_type, sizeof seen.content_type);
  seen.body_len = req->body_len;
  int status = atoi(req->params[0]);
  if (status == 204) return http_reply_empty(res, 204);
  http_reply_json(res, status, json_pack("{s:i}", "status", status));
}

static int setup(void **state) {
  (void)state;
  log_init("test", "error");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  http_options o = {.service = "test", .port = 0, .threads = 2, .timeout_s = 5, .max_body = 1000};
  srv = http_server_new(&o);
  http_route(srv, "POST", "/{status}/events/replay", replay, NULL);
  if (http_server_start(srv) != 0) return -1;
  snprintf(base, sizeof base, "http://127.0.0.1:%d//", http_server_port(srv));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  http_server_free(srv);
  metrics_reset();
  curl_global_cleanup();
  return 0;
}

static int replay_to(const char *path, const char *const *headers, char *err, size_t errlen) {
  memset(&seen, 0, sizeof seen);
  httpc_replay r = {.base_url = base, .path = path, .api_key = "k-123",
                    .request_id = "req-42", .headers = headers};
  return httpc_request_replay(&r, err, errlen);
}

static void replay_request_sends_key_request_id_and_forwarded_headers(void **state) {
  (void)state;
  const char *proof[] = {"X-Test-Proof: signed", NULL};
  char err[256] = "";
  assert_int_equal(replay_to("/202/events/replay", proof, err, sizeof err), 0);
  assert_string_equal(seen.key, "k-123");
  assert_string_equal(seen.request_id, "req-42");
  assert_string_equal(seen.proof, "signed");
  assert_string_equal(seen.content_type, "(none)"); /* no body, so no form type */
  assert_int_equal(seen.body_len, 0);
}

static void any_2xx_answer_is_success(void **state) {
  (void)state;
  char err[256];
  assert_int_equal(replay_to("/200/events/replay", NULL, err, sizeof err), 0);
  assert_int_equal(replay_to("/204/events/replay", NULL, err, sizeof err), 0);
  assert_string_equal(seen.proof, "(none)");
}

static void other_answers_fail_with_status_and_body_in_the_reason(void **state) {
  (void)state;
  char err[256] = "";
  assert_int_equal(replay_to("/403/events/replay", NULL, err, sizeof err), -1);
  assert_non_null(strstr(err, "answered 403"));
  assert_non_null(strstr(err, "\"status\""));
  assert_non_null(strstr(err, "/403/events/replay")); /* the base's trailing slashes dropped */
  assert_null(strstr(err, "//403"));
}

static void a_refused_connection_fails(void **state) {
  (void)state;
  char err[256] = "";
  httpc_replay r = {.base_url = "http://127.0.0.1:1", .path = "/x/events/replay"};
  assert_int_equal(httpc_request_replay(&r, err, sizeof err), -1);
  assert_non_null(strstr(err, "POST http://127.0.0.1:1/x/events/replay"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(replay_request_sends_key_request_id_and_forwarded_headers),
      cmocka_unit_test(any_2xx_answer_is_success),
      cmocka_unit_test(other_answers_fail_with_status_and_body_in_the_reason),
      cmocka_unit_test(a_refused_connection_fails),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
