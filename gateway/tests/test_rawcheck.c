/* test_rawcheck — the strict parser beside libmicrohttpd (rawcheck.h): what it refuses,
 * what it lets through, and that the way bytes are split across reads changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rawcheck.h"

/* The verdict on data fed whole, then one byte per read, then in two pieces at every cut:
 * all must agree; returns whether the bytes were refused. */
static bool refused(const char *data, size_t n) {
  gw_rawcheck whole;
  gw_rawcheck_init(&whole);
  gw_rawcheck_feed(&whole, data, n);
  gw_rawcheck bytes;
  gw_rawcheck_init(&bytes);
  for (size_t i = 0; i < n; i++) gw_rawcheck_feed(&bytes, data + i, 1);
  assert_int_equal(whole.bytes, n);
  assert_int_equal(bytes.bytes, n);
  assert_int_equal(whole.error != NULL, bytes.error != NULL);
  for (size_t cut = 1; cut < n; cut++) {
    gw_rawcheck two;
    gw_rawcheck_init(&two);
    gw_rawcheck_feed(&two, data, cut);
    gw_rawcheck_feed(&two, data + cut, n - cut);
    assert_int_equal(whole.error != NULL, two.error != NULL);
  }
  return whole.error != NULL;
}
#define REFUSED(s) refused(s, sizeof s - 1)

static void clean_streams_pass(void **state) {
  (void)state;
  assert_false(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_false(REFUSED("GET /a HTTP/1.0\r\n\r\n"));
  /* pipelined: a GET, a POST with a body holding NULs and CRs, a chunked POST with trailers */
  assert_false(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                       "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\n\0\r\0\n\0x"
                       "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5;ext=1\r\nhe\0lo\r\n0\r\nX-Checksum: 1\r\n\r\n"
                       "GET /d HTTP/1.1\r\nHost: h\r\n\r\n"));
  /* leading blank lines before a request line, as RFC 9112 lets servers ignore */
  assert_false(REFUSED("\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  /* a request asking for Upgrade: the gateway upgrades nothing, the next one is parsed */
  assert_false(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                       "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                      "GET /b HTTP/1.1\r\nHost: h\r\nX: 1\0\n\r\n"));
  /* an incomplete request is not an error: more may come */
  assert_false(REFUSED("POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc"));
  assert_false(REFUSED("GET /a HTTP/1.1\r\nHost: "));
}

static void a_nul_beside_a_line_end_is_refused(void **state) {
  (void)state;
  /* the spellings libmicrohttpd's buffer cannot show (admit.c) */
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\rY: 2\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\n\0\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\r\n\r\0\r\n"));
  assert_true(REFUSED("OPTIONS /a HTTP/1.0\r\0\r\nX: 5\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\0\nHost: h\r\n\r\n"));
  /* and a NUL anywhere else in a head */
  assert_true(REFUSED("GE\0T /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHo\0st: h\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\0h\r\n\r\n"));
}

static void control_characters_and_bare_cr_are_refused(void **state) {
  (void)state;
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: a\x01" "b\r\n\r\n"));
  /* the first byte of a value (http_parser 2.9 does not check it itself) */
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: \0\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX:\x7f\r\n\r\n"));
  /* whitespace in or after a field name, in a head or a trailer */
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nContent-Length : 0\r\n\r\n"));
  assert_true(REFUSED("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\nTransfer-Encoding : chunked\r\n\r\n"));
  /* obs-text and tabs in values are allowed */
  assert_false(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\t1\r\nY:\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\rHost: h\r\n\r\n"));
  /* in a pipelined head behind a clean request, and in a chunked body's trailer */
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nX: \x7f\r\n\r\n"));
  assert_true(REFUSED("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\nX: a\0\r\n\r\n"));
}

/* what Debian's lenient http_parser build lets through, and the head machine does not */
static void line_ends_are_crlf_only(void **state) {
  (void)state;
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost:\r\0\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\n\n"));
  assert_true(REFUSED("\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\r\n folded\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1\r\n Host: h\r\n\r\n"));
  assert_true(REFUSED("GET  /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /a  HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /a HTTP/1.1 \r\nHost: h\r\n\r\n"));
  assert_true(REFUSED(" GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(REFUSED("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"));
  /* in a trailer section, and in the head of a request pipelined behind a chunked one */
  assert_true(REFUSED("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\nX: 1\n\r\n"));
  assert_true(REFUSED("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: h\n\r\n"));
  assert_false(REFUSED("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: h\r\n\r\n"));
}

static void ambiguous_framing_is_refused(void **state) {
  (void)state;
  assert_true(REFUSED("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"));
  assert_true(REFUSED("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"));
  assert_true(REFUSED("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
}

static void once_refused_always_refused(void **state) {
  (void)state;
  gw_rawcheck r;
  gw_rawcheck_init(&r);
  gw_rawcheck_feed(&r, "GET /a HTTP/1.1\r\nX: 1\0\n", 23);
  const char *e = r.error;
  assert_non_null(e);
  gw_rawcheck_feed(&r, "\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n", 31);
  assert_ptr_equal(r.error, e);
  assert_int_equal(r.bytes, 54);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(clean_streams_pass),
      cmocka_unit_test(a_nul_beside_a_line_end_is_refused),
      cmocka_unit_test(control_characters_and_bare_cr_are_refused),
      cmocka_unit_test(line_ends_are_crlf_only),
      cmocka_unit_test(ambiguous_framing_is_refused),
      cmocka_unit_test(once_refused_always_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
