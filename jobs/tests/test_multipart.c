/* Unit tests of the multipart/form-data parser and the result URL signatures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "multipart.h"
#include "sign.h"

static void boundary_is_read_from_the_content_type(void **state) {
  (void)state;
  char b[128];
  assert_int_equal(mp_boundary("multipart/form-data; boundary=abc123", b, sizeof b), 0);
  assert_string_equal(b, "abc123");
  assert_int_equal(mp_boundary("Multipart/Form-Data;boundary=\"q u\\\"x\"", b, sizeof b), 0);
  assert_string_equal(b, "q u\"x");
  assert_int_equal(mp_boundary("multipart/mixed; boundary=abc", b, sizeof b), -1);
  assert_int_equal(mp_boundary("multipart/form-data", b, sizeof b), -1);
  assert_int_equal(mp_boundary(NULL, b, sizeof b), -1);
}

static void parts_point_into_the_body(void **state) {
  (void)state;
  const char body[] =
      "preamble\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"rules\"; filename=\"r.json\"\r\n"
      "Content-Type: application/json\r\n"
      "\r\n"
      "{\"a\":1}\r\n"
      "--XyZ\r\n"
      "content-disposition: form-data; name=ballots\r\n"
      "\r\n"
      "id,rank1\r\nb1,A\r\n\r\n"
      "--XyZ--\r\n"
      "epilogue";
  mp_part parts[4];
  int n;
  const char *err = NULL;
  assert_int_equal(mp_parse(body, sizeof body - 1, "XyZ", parts, 4, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(parts[0].name, "rules");
  assert_string_equal(parts[0].filename, "r.json");
  assert_string_equal(parts[0].content_type, "application/json");
  assert_int_equal(parts[0].len, 7);
  assert_memory_equal(parts[0].data, "{\"a\":1}", 7);
  assert_string_equal(parts[1].name, "ballots");
  /* the CRLF before the delimiter belongs to it; the data's own trailing CRLF stays */
  assert_int_equal(parts[1].len, strlen("id,rank1\r\nb1,A\r\n"));
}

static void malformed_bodies_are_refused(void **state) {
  (void)state;
  mp_part parts[2];
  int n;
  const char *err;
  const char *unterminated = "--b\r\nContent-Disposition: form-data; name=x\r\n\r\ndata";
  assert_int_equal(mp_parse(unterminated, strlen(unterminated), "b", parts, 2, &n, &err), -1);
  const char *nostart = "hello";
  assert_int_equal(mp_parse(nostart, strlen(nostart), "b", parts, 2, &n, &err), -1);
  const char *many = "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--";
  assert_int_equal(mp_parse(many, strlen(many), "b", parts, 2, &n, &err), -1);
  /* the boundary inside data but not after CRLF is data */
  const char *inside = "--b\r\n\r\nx--by\r\n--b--";
  assert_int_equal(mp_parse(inside, strlen(inside), "b", parts, 2, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_int_equal(parts[0].len, 5);
}

static void signatures_check_id_expiry_and_mac(void **state) {
  (void)state;
  char path[256];
  sign_result_path("k", "65a1b2c3d4e5f60718293a4b", 2000000000, path, sizeof path);
  const char *sig = strstr(path, "sig=") + 4;
  assert_int_equal(sign_check("k", "65a1b2c3d4e5f60718293a4b", "2000000000", sig, 1700000000),
                   SIGN_OK);
  assert_int_equal(sign_check("k", "65a1b2c3d4e5f60718293a4b", "2000000000", sig, 2000000001),
                   SIGN_EXPIRED);
  assert_int_equal(sign_check("k", "65a1b2c3d4e5f60718293a4c", "2000000000", sig, 1700000000),
                   SIGN_BAD);
  assert_int_equal(sign_check("k", "65a1b2c3d4e5f60718293a4b", "2000000001", sig, 1700000000),
                   SIGN_BAD);
  assert_int_equal(sign_check("other", "65a1b2c3d4e5f60718293a4b", "2000000000", sig, 1700000000),
                   SIGN_BAD);
  assert_int_equal(sign_check("k", "65a1b2c3d4e5f60718293a4b", "2e9", sig, 1700000000), SIGN_BAD);
  assert_int_equal(sign_check("k", "65a1b2c3d4e5f60718293a4b", NULL, sig, 1700000000),
                   SIGN_MISSING);
  /* HMAC-SHA256 test vector (RFC 4231, case 2) through the same function */
  char mac[65];
  sign_hmac_hex("Jefe", "what do ya want for nothing?", 28, mac);
  assert_string_equal(mac, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(boundary_is_read_from_the_content_type),
      cmocka_unit_test(parts_point_into_the_body),
      cmocka_unit_test(malformed_bodies_are_refused),
      cmocka_unit_test(signatures_check_id_expiry_and_mac),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
