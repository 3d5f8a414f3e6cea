/* Unit tests for proof: the gateway's signature over a forwarded request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "voter/proof.h"

#define SECRET "0123456789abcdef-test-secret"
#define SLEN (sizeof SECRET - 1)
#define NOW 1800000000

/* Pins the wire format: computed independently with Python's hmac module. */
static void signature_matches_the_documented_format(void **state) {
  (void)state;
  char out[PROOF_TEXT_MAX];
  assert_int_equal(proof_sign(SECRET, SLEN, "POST", "/election/drop/elections", "key-7",
                              "read vote write admin", NOW, out),
                   0);
  assert_string_equal(out, "t=1800000000,sig="
                           "995c7fb992d4fdea0ccf3d182b7f83faf40f03122bed934cc686cfc12224b70c");
}

static void valid_proof_verifies(void **state) {
  (void)state;
  char out[PROOF_TEXT_MAX];
  assert_int_equal(proof_sign(SECRET, SLEN, "DELETE", "/voter/votes/1", NULL, "admin", NOW, out),
                   0);
  assert_int_equal(
      proof_verify(SECRET, SLEN, out, "DELETE", "/voter/votes/1", "", "admin", NOW + 10),
      PROOF_OK);
}

static void any_changed_field_breaks_it(void **state) {
  (void)state;
  char out[PROOF_TEXT_MAX];
  proof_sign(SECRET, SLEN, "POST", "/voter/drop/votes", "k", "read admin", NOW, out);
  assert_int_equal(proof_verify(SECRET, SLEN, out, "PUT", "/voter/drop/votes", "k",
                                "read admin", NOW),
                   PROOF_BAD_SIGNATURE);
  assert_int_equal(proof_verify(SECRET, SLEN, out, "POST", "/voter/drop/vote", "k",
                                "read admin", NOW),
                   PROOF_BAD_SIGNATURE);
  assert_int_equal(proof_verify(SECRET, SLEN, out, "POST", "/voter/drop/votes", "k2",
                                "read admin", NOW),
                   PROOF_BAD_SIGNATURE);
  assert_int_equal(proof_verify(SECRET, SLEN, out, "POST", "/voter/drop/votes", "k",
                                "read admin write", NOW),
                   PROOF_BAD_SIGNATURE);
  assert_int_equal(proof_verify("0123456789abcdef-other", 22, out, "POST", "/voter/drop/votes",
                                "k", "read admin", NOW),
                   PROOF_BAD_SIGNATURE);
}

/* Rotation: a proof made with the previous secret passes only while that secret is given
 * as the previous one; the current one always passes; a previous secret alone (no current)
 * or a short one admits nothing; other failures are not retried with the previous one. */
static void previous_secret_accepted_only_while_configured(void **state) {
  (void)state;
  static const char OLD[] = "0123456789abcdef-old-secret";
  const size_t OLEN = sizeof OLD - 1;
  char old[PROOF_TEXT_MAX], cur[PROOF_TEXT_MAX], other[PROOF_TEXT_MAX];
  proof_sign(OLD, OLEN, "POST", "/voter/drop/votes", "k", "admin", NOW, old);
  proof_sign(SECRET, SLEN, "POST", "/voter/drop/votes", "k", "admin", NOW, cur);
  proof_sign("0123456789abcdef-unrelated", 26, "POST", "/voter/drop/votes", "k", "admin", NOW, other);
#define V(proof, prev, plen) \
  proof_verify_rotating(SECRET, SLEN, prev, plen, proof, "POST", "/voter/drop/votes", "k", "admin", NOW)
  assert_int_equal(V(old, OLD, OLEN), PROOF_OK);              /* during the overlap */
  assert_int_equal(V(cur, OLD, OLEN), PROOF_OK);
  assert_int_equal(V(other, OLD, OLEN), PROOF_BAD_SIGNATURE);
  assert_int_equal(V(old, NULL, 0), PROOF_BAD_SIGNATURE);     /* after it */
  assert_int_equal(V(cur, NULL, 0), PROOF_OK);
  assert_int_equal(V(old, "short", 5), PROOF_BAD_SIGNATURE);  /* too short: none */
#undef V
  /* the previous secret never stands in for a missing current one */
  assert_int_equal(proof_verify_rotating(NULL, 0, OLD, OLEN, old, "POST", "/voter/drop/votes", "k",
                                         "admin", NOW),
                   PROOF_NO_SECRET);
  /* an old proof is still bound to its request and its window */
  assert_int_equal(proof_verify_rotating(SECRET, SLEN, OLD, OLEN, old, "POST", "/voter/drop/vote",
                                         "k", "admin", NOW),
                   PROOF_BAD_SIGNATURE);
  assert_int_equal(proof_verify_rotating(SECRET, SLEN, OLD, OLEN, old, "POST", "/voter/drop/votes",
                                         "k", "admin", NOW + 301),
                   PROOF_EXPIRED);
}

static void window_and_format_are_strict(void **state) {
  (void)state;
  char out[PROOF_TEXT_MAX];
  proof_sign(SECRET, SLEN, "POST", "/p", "", "", NOW, out);
  assert_int_equal(proof_verify(SECRET, SLEN, out, "POST", "/p", "", "", NOW + 301),
                   PROOF_EXPIRED);
  assert_int_equal(proof_verify(SECRET, SLEN, out, "POST", "/p", "", "", NOW - 301),
                   PROOF_EXPIRED);
  assert_int_equal(proof_verify(SECRET, SLEN, NULL, "POST", "/p", "", "", NOW), PROOF_MISSING);
  assert_int_equal(proof_verify(SECRET, SLEN, "", "POST", "/p", "", "", NOW), PROOF_MISSING);
  const char *bad[] = {"t=1800000000", "t=-1,sig=00", "t=1800000000 ,sig=" /* space */,
                       "T=1800000000,sig=995c7fb992d4fdea0ccf3d182b7f83faf40f03122bed934cc686cfc12224b70c",
                       "t=1800000000,sig=995C7FB992D4FDEA0CCF3D182B7F83FAF40F03122BED934CC686CFC12224B70C",
                       "t=1800000000,sig=995c7fb992d4fdea0ccf3d182b7f83faf40f03122bed934cc686cfc12224b70c0"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(proof_verify(SECRET, SLEN, bad[i], "POST", "/p", "", "", NOW),
                     PROOF_MALFORMED);
  assert_int_equal(proof_verify(SECRET, SLEN, out, "POST", "/p\n", "", "", NOW),
                   PROOF_MALFORMED);
}

static void short_or_missing_secret_signs_and_accepts_nothing(void **state) {
  (void)state;
  char out[PROOF_TEXT_MAX];
  assert_int_equal(proof_sign("short", 5, "GET", "/", "", "", NOW, out), -1);
  assert_int_equal(proof_sign(NULL, 0, "GET", "/", "", "", NOW, out), -1);
  assert_int_equal(proof_verify(NULL, 0, "t=1,sig=00", "GET", "/", "", "", NOW),
                   PROOF_NO_SECRET);
  assert_int_equal(proof_sign(SECRET, SLEN, "GET", "/a\r\nX: y", "", "", NOW, out), -1);
}

static void scopes_match_whole_words(void **state) {
  (void)state;
  assert_true(proof_scope_has("read vote admin", "admin"));
  assert_true(proof_scope_has("admin", "admin"));
  assert_true(proof_scope_has("  read  admin ", "read"));
  assert_false(proof_scope_has("read vote", "admin"));
  assert_false(proof_scope_has("administrator", "admin"));
  assert_false(proof_scope_has("xadmin", "admin"));
  assert_false(proof_scope_has("", "admin"));
  assert_false(proof_scope_has(NULL, "admin"));
  assert_false(proof_scope_has("read", ""));
}

/* The gateway's signer (pads hashed once) writes exactly what proof_sign writes. */
static void signer_matches_proof_sign(void **state) {
  (void)state;
  char a[PROOF_TEXT_MAX], b[PROOF_TEXT_MAX];
  const char *secrets[] = {SECRET, "a-secret-longer-than-one-sha256-block-0123456789-0123456789-0123456789"};
  for (size_t i = 0; i < 2; i++) {
    proof_signer *s = proof_signer_new(secrets[i], strlen(secrets[i]));
    assert_non_null(s);
    assert_int_equal(proof_sign(secrets[i], strlen(secrets[i]), "POST", "/election/drop/elections",
                                "key-7", "read vote write admin", NOW, a), 0);
    assert_int_equal(proof_signer_sign(s, "POST", "/election/drop/elections", "key-7",
                                       "read vote write admin", NOW, b), 0);
    assert_string_equal(a, b);
    assert_int_equal(proof_signer_sign(s, "GET", "/a\nb", NULL, NULL, NOW, b), -1);
    proof_signer_free(s);
  }
  assert_null(proof_signer_new("short", 5));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(signer_matches_proof_sign),
      cmocka_unit_test(signature_matches_the_documented_format),
      cmocka_unit_test(valid_proof_verifies),
      cmocka_unit_test(any_changed_field_breaks_it),
      cmocka_unit_test(window_and_format_are_strict),
      cmocka_unit_test(previous_secret_accepted_only_while_configured),
      cmocka_unit_test(short_or_missing_secret_signs_and_accepts_nothing),
      cmocka_unit_test(scopes_match_whole_words),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
