/* Tests for the HTTP server over real loopback sockets: routing and path parameters,
 * 404/405 (and 405 for unknown methods, bounded metric labels), route guards, body limits,
 * CORS preflight, request ids, keep-alive, streamed responses. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "voter/http.h"
#include "voter/json.h"
#include "voter/log.h"
#include "voter/metrics.h"

static http_server *srv;

static void echo_param(void *ctx, const http_request *req, http_response *res) {
  (void)ctx;
  const char *q = http_query(req, "q");
  http_reply_json(res, 200, json_pack("{s:s, s:s, s:s?}", "param", req->params[0], "route",
                                      req->route, "q", q));
}

static void echo_body(void *ctx, const http_request *req, http_response *res) {
  (void)ctx;
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return;
  http_reply_json(res, 201, body);
}

/* A streamed response fed by the test: text waits in feed.pending until read. */
static struct {
  pthread_mutex_t lock;
  char pending[256];
  bool end, closed;
  http_stream *hs;
} feed = {.lock = PTHREAD_MUTEX_INITIALIZER};

static long feed_read(void *ctx, char *buf, size_t max) {
  (void)ctx;
  pthread_mutex_lock(&feed.lock);
  size_t n = strlen(feed.pending);
  if (n > max) n = max;
  memcpy(buf, feed.pending, n);
  memmove(feed.pending, feed.pending + n, strlen(feed.pending) - n + 1);
  long r = n ? (long)n : feed.end ? -1 : 0;
  pthread_mutex_unlock(&feed.lock);
  return r;
}

static void feed_closed(void *ctx) {
  (void)ctx;
  pthread_mutex_lock(&feed.lock);
  feed.closed = true;
  pthread_mutex_unlock(&feed.lock);
}

static void open_feed(void *ctx, const http_request *req, http_response *res) {
  (void)ctx, (void)req;
  pthread_mutex_lock(&feed.lock);
  strcpy(feed.pending, "first\n");
  feed.end = feed.closed = false;
  feed.hs = http_reply_stream(res, 200, "text/event-stream", feed_read, feed_closed, NULL);
  pthread_mutex_unlock(&feed.lock);
}

static void feed_put(const char *text, bool end) {
  pthread_mutex_lock(&feed.lock);
  strcat(feed.pending, text);
  feed.end = end;
  pthread_mutex_unlock(&feed.lock);
  http_stream_wake(feed.hs);
}

/* A guard that lets a request through only with "X-Let-In: yes"; counts the handler's runs. */
static int guarded_runs;

static bool let_in(const http_request *req, http_response *res) {
  const char *h = http_header(req, "X-Let-In");
  if (h && strcmp(h, "yes") == 0) return true;
  http_reply_problem(res, 403, "Forbidden", "not let in", NULL);
  return false;
}

static void guarded(void *ctx, const http_request *req, http_response *res) {
  (void)ctx, (void)req;
  guarded_runs++;
  http_reply_empty(res, 204);
}

static int setup(void **state) {
  (void)state;
  log_init("test", "error");
  http_options o = {.service = "test", .port = 0, .threads = 2, .timeout_s = 5, .max_body = 1000};
  srv = http_server_new(&o);
  http_route(srv, "GET", "/svc/items/{id}", echo_param, NULL);
  http_route(srv, "POST", "/svc/items", echo_body, NULL);
  http_route(srv, "GET", "/svc/feed", open_feed, NULL);
  http_route_guarded(srv, "POST", "/svc/drop", let_in, guarded, NULL);
  return http_server_start(srv);
}

static int teardown(void **state) {
  (void)state;
  http_server_free(srv);
  metrics_reset();
  return 0;
}

static int connect_server(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(srv))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* Reads one response (headers + Content-Length body) into buf. */
static void read_response(int fd, char *buf, size_t cap) {
  size_t len = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
    assert_true(n > 0);
    len += (size_t)n;
    buf[len] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end) continue;
    const char *cl = strstr(buf, "Content-Length: ");
    size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
    if (len >= (size_t)(end + 4 - buf) + body) return;
  }
}

static void roundtrip(const char *request, char *buf, size_t cap) {
  int fd = connect_server();
  assert_int_equal(send(fd, request, strlen(request), 0), (ssize_t)strlen(request));
  read_response(fd, buf, cap);
  close(fd);
}

static void a_second_server_cannot_take_a_port_in_use(void **state) {
  (void)state;
  /* SO_REUSEPORT would let a second live process share the port and half the requests. */
  http_options o = {.service = "other", .port = http_server_port(srv), .threads = 1,
                    .timeout_s = 5, .max_body = 1000};
  http_server *other = http_server_new(&o);
  assert_int_not_equal(http_server_start(other), 0);
  http_server_free(other);
}

static void path_parameters_are_decoded_per_segment(void **state) {
  (void)state;
  char buf[4096];
  roundtrip("GET /svc/items/2016%20Election%2C%20U.S.%2Fx?q=a+b%26c HTTP/1.1\r\nHost: t\r\n\r\n", buf,
            sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 200"));
  assert_non_null(strstr(buf, "\"param\":\"2016 Election, U.S./x\""));
  assert_non_null(strstr(buf, "\"route\":\"/svc/items/{id}\""));
  assert_non_null(strstr(buf, "\"q\":\"a b&c\""));
}

static void unknown_path_is_404_and_wrong_method_is_405_with_allow(void **state) {
  (void)state;
  char buf[4096];
  roundtrip("GET /svc/nothing HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 404"));
  assert_non_null(strstr(buf, "application/problem+json"));
  roundtrip("DELETE /svc/items HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 405"));
  assert_non_null(strstr(buf, "Allow: POST, OPTIONS"));
}

static void a_guard_answers_instead_of_the_handler(void **state) {
  (void)state;
  char buf[4096];
  guarded_runs = 0;
  roundtrip("POST /svc/drop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 403"));
  assert_non_null(strstr(buf, "not let in"));
  assert_int_equal(guarded_runs, 0);
  roundtrip("POST /svc/drop HTTP/1.1\r\nHost: x\r\nX-Let-In: yes\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n",
            buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 204"));
  assert_int_equal(guarded_runs, 1);
  /* the guard runs only once the method matched: a wrong method is still 405 */
  roundtrip("GET /svc/drop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 405"));
}

static void unknown_methods_are_405_and_counted_as_other(void **state) {
  (void)state;
  char buf[4096];
  roundtrip("BREW /svc/items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 405"));
  assert_non_null(strstr(buf, "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
  roundtrip("PROPFIND /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 405"));
  char *text = metrics_render();
  assert_non_null(strstr(text, "method=\"other\",status=\"405\""));
  assert_null(strstr(text, "BREW"));
  assert_null(strstr(text, "PROPFIND"));
  free(text);
}

static void content_length_over_limit_is_413_without_reading_the_body(void **state) {
  (void)state;
  char buf[4096];
  /* the body is never sent: the answer must come from the header alone */
  roundtrip("POST /svc/items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 5000\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 413"));
}

static void chunked_body_over_limit_is_413(void **state) {
  (void)state;
  char req[8192], buf[4096];
  int n = snprintf(req, sizeof req,
                   "POST /svc/items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; i++) {
    n += snprintf(req + n, sizeof req - (size_t)n, "258\r\n");
    memset(req + n, 'x', 600);
    n += 600;
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
  }
  snprintf(req + n, sizeof req - (size_t)n, "0\r\n\r\n");
  roundtrip(req, buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 413"));
}

static void json_body_is_parsed_and_bad_json_is_400(void **state) {
  (void)state;
  char buf[4096];
  roundtrip("POST /svc/items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 7\r\n\r\n{\"a\":1}", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 201"));
  assert_non_null(strstr(buf, "{\"a\":1}"));
  roundtrip("POST /svc/items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 5\r\n\r\n{\"a\":", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 400"));
  roundtrip("POST /svc/items HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
            "Content-Length: 7\r\n\r\n{\"a\":1}", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 415"));
}

static void preflight_is_answered_for_any_path(void **state) {
  (void)state;
  char buf[4096];
  roundtrip("OPTIONS /svc/items/1 HTTP/1.1\r\nHost: t\r\nOrigin: http://a.example\r\n"
            "Access-Control-Request-Method: GET\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "HTTP/1.1 204"));
  assert_non_null(strstr(buf, "Access-Control-Allow-Origin: http://a.example"));
  assert_non_null(strstr(buf, "Access-Control-Allow-Methods: GET, HEAD, OPTIONS"));
}

static void request_id_is_echoed_or_generated(void **state) {
  (void)state;
  char buf[4096];
  roundtrip("GET /svc/items/1 HTTP/1.1\r\nHost: t\r\nX-Request-ID: my-id-1\r\n\r\n", buf, sizeof buf);
  assert_non_null(strstr(buf, "X-Request-ID: my-id-1\r\n"));
  roundtrip("GET /svc/items/1 HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof buf);
  const char *id = strstr(buf, "X-Request-ID: ");
  assert_non_null(id);
  assert_int_equal(strcspn(id + 14, "\r"), 36);
}

static void keep_alive_serves_several_requests_on_one_connection(void **state) {
  (void)state;
  char buf[4096];
  int fd = connect_server();
  for (int i = 0; i < 3; i++) {
    const char *req = "GET /svc/items/k HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    read_response(fd, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_null(strstr(buf, "Connection: close"));
  }
  close(fd);
}

/* Reads until want appears in what the connection sent so far (buf keeps it all). */
static void read_until(int fd, char *buf, size_t cap, size_t *len, const char *want) {
  while (!strstr(buf, want)) {
    ssize_t n = recv(fd, buf + *len, cap - 1 - *len, 0);
    assert_true(n > 0);
    *len += (size_t)n;
    buf[*len] = 0;
  }
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void streamed_response_sleeps_until_woken_and_ends_when_the_body_is_complete(void **state) {
  (void)state;
  int fd = connect_server();
  const char *req = "GET /svc/feed HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
  char buf[4096] = "";
  size_t len = 0;
  read_until(fd, buf, sizeof buf, &len, "first\n");
  assert_non_null(strstr(buf, "HTTP/1.1 200"));
  assert_non_null(strstr(buf, "Transfer-Encoding: chunked"));
  /* nothing to send: the connection sleeps, it does not poll (returning 0 without
   * suspending made libmicrohttpd call again and again: 0.04 s of CPU in these 0.3 s) */
  double cpu = cpu_seconds();
  struct timespec nap = {0, 300 * 1000000L};
  nanosleep(&nap, NULL);
  assert_true(cpu_seconds() - cpu < 0.02); /* without suspending: ~0.04 s here */
  /* and a wake gets the new bytes out at once */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  feed_put("second\n", false);
  read_until(fd, buf, sizeof buf, &len, "second\n");
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  assert_true(waited < 0.25);
  feed_put("last\n", true);
  read_until(fd, buf, sizeof buf, &len, "last\n");
  read_until(fd, buf, sizeof buf, &len, "\r\n0\r\n\r\n"); /* the final chunk */
  close(fd);
  for (int i = 0; i < 100; i++) {
    pthread_mutex_lock(&feed.lock);
    bool closed = feed.closed;
    pthread_mutex_unlock(&feed.lock);
    if (closed) break;
    nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
  }
  assert_true(feed.closed);
  http_stream_release(feed.hs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(path_parameters_are_decoded_per_segment),
      cmocka_unit_test(unknown_path_is_404_and_wrong_method_is_405_with_allow),
      cmocka_unit_test(content_length_over_limit_is_413_without_reading_the_body),
      cmocka_unit_test(chunked_body_over_limit_is_413),
      cmocka_unit_test(json_body_is_parsed_and_bad_json_is_400),
      cmocka_unit_test(a_guard_answers_instead_of_the_handler),
      cmocka_unit_test(unknown_methods_are_405_and_counted_as_other),
      cmocka_unit_test(a_second_server_cannot_take_a_port_in_use),
      cmocka_unit_test(preflight_is_answered_for_any_path),
      cmocka_unit_test(request_id_is_echoed_or_generated),
      cmocka_unit_test(keep_alive_serves_several_requests_on_one_connection),
      cmocka_unit_test(streamed_response_sleeps_until_woken_and_ends_when_the_body_is_complete),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
