/* Unit tests for idem: key validation, per-caller scoping, derived ids, fingerprints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "voter/idem.h"

static void keys_are_1_to_255_printable_ascii(void **state) {
  (void)state;
  char long_key[IDEM_KEY_MAX + 2];
  memset(long_key, 'k', sizeof long_key);
  long_key[IDEM_KEY_MAX] = '\0';
  assert_true(idem_key_valid("k-1"));
  assert_true(idem_key_valid(long_key));
  long_key[IDEM_KEY_MAX] = 'k';
  long_key[IDEM_KEY_MAX + 1] = '\0';
  assert_false(idem_key_valid(long_key));
  assert_false(idem_key_valid(""));
  assert_false(idem_key_valid(NULL));
  assert_false(idem_key_valid("tab\there"));
  assert_false(idem_key_valid("caf\xc3\xa9"));
  assert_false(idem_key_valid("del\x7f"));
}

static void the_same_key_of_two_callers_is_two_keys(void **state) {
  (void)state;
  char a[65], b[65], anon[65], anon2[65], again[65];
  idem_scope_hash("consumer-a", "k-1", a);
  idem_scope_hash("consumer-b", "k-1", b);
  idem_scope_hash(NULL, "k-1", anon);
  idem_scope_hash("", "k-1", anon2);
  idem_scope_hash("consumer-a", "k-1", again);
  assert_int_equal(strlen(a), 64);
  assert_string_not_equal(a, b);
  assert_string_not_equal(a, anon);
  assert_string_equal(anon, anon2); /* absent and empty are both anonymous */
  assert_string_equal(a, again);
}

static void scope_and_key_do_not_run_into_each_other(void **state) {
  (void)state;
  char x[65], y[65];
  idem_scope_hash("ab", "c", x);
  idem_scope_hash("a", "bc", y);
  assert_string_not_equal(x, y);
}

static void jobs_records_keep_their_ids(void **state) {
  (void)state;
  /* sha256("-\nsubmit-42"): what the jobs service stored for an anonymous key before the
   * module was shared. */
  char out[65];
  idem_scope_hash(NULL, "submit-42", out);
  assert_string_equal(out, "6d5e8fc4f252f2a46c08700cf4c92191022c6a72a3aa0a725322182c809e2457");
}

static void derived_ids_differ_by_kind_and_key_and_repeat(void **state) {
  (void)state;
  char scoped[65], other[65];
  idem_scope_hash("c", "k-1", scoped);
  idem_scope_hash("c", "k-2", other);
  bson_oid_t v1, v2, e1, o1;
  idem_object_id(scoped, "vote", &v1);
  idem_object_id(scoped, "vote", &v2);
  idem_object_id(scoped, "election", &e1);
  idem_object_id(other, "vote", &o1);
  assert_true(bson_oid_equal(&v1, &v2));
  assert_false(bson_oid_equal(&v1, &e1));
  assert_false(bson_oid_equal(&v1, &o1));
  char text[25];
  bson_oid_to_string(&v1, text);
  assert_int_equal(strlen(text), 24);
}

static void child_ids_are_distinct_per_index(void **state) {
  (void)state;
  bson_oid_t a, b, a2, other;
  idem_child_id("65a1b2c3d4e5f60718293a4b", 0, &a);
  idem_child_id("65a1b2c3d4e5f60718293a4b", 1, &b);
  idem_child_id("65a1b2c3d4e5f60718293a4b", 0, &a2);
  idem_child_id("65a1b2c3d4e5f60718293a4c", 0, &other);
  assert_false(bson_oid_equal(&a, &b));
  assert_true(bson_oid_equal(&a, &a2));
  assert_false(bson_oid_equal(&a, &other));
}

static void fingerprints_ignore_member_order_and_whitespace(void **state) {
  (void)state;
  json_t *x = json_loads("{\"candidate\": \"Jill Stein\", \"election\": \"E\"}", 0, NULL);
  json_t *y = json_loads("{\"election\":\"E\",\n  \"candidate\":\"Jill Stein\"}", 0, NULL);
  json_t *z = json_loads("{\"election\":\"E\", \"candidate\":\"Gary Johnson\"}", 0, NULL);
  char fx[65], fy[65], fz[65], fnull[65];
  idem_fingerprint(x, fx);
  idem_fingerprint(y, fy);
  idem_fingerprint(z, fz);
  idem_fingerprint(NULL, fnull);
  assert_string_equal(fx, fy);
  assert_string_not_equal(fx, fz);
  assert_int_equal(strlen(fnull), 64);
  json_decref(x);
  json_decref(y);
  json_decref(z);
}

static void nested_values_are_canonical_too(void **state) {
  (void)state;
  json_t *x = json_loads("{\"a\": {\"y\": 1, \"x\": [1, 2]}}", 0, NULL);
  json_t *y = json_loads("{\"a\": {\"x\": [1, 2], \"y\": 1}}", 0, NULL);
  json_t *z = json_loads("{\"a\": {\"x\": [2, 1], \"y\": 1}}", 0, NULL);
  char fx[65], fy[65], fz[65];
  idem_fingerprint(x, fx);
  idem_fingerprint(y, fy);
  idem_fingerprint(z, fz);
  assert_string_equal(fx, fy);
  assert_string_not_equal(fx, fz); /* array order is meaning */
  json_decref(x);
  json_decref(y);
  json_decref(z);
}

static void stored_fingerprint_is_compared_exactly(void **state) {
  (void)state;
  char fp[65], other[65];
  idem_fingerprint_bytes("abc", 3, fp);
  idem_fingerprint_bytes("abd", 3, other);
  bson_t *doc = BCON_NEW(IDEM_FIELD, BCON_UTF8(fp));
  bson_t *bare = BCON_NEW("x", BCON_INT32(1));
  assert_true(idem_same_request(doc, fp));
  assert_false(idem_same_request(doc, other));
  assert_false(idem_same_request(bare, fp)); /* written without a key: never a replay */
  bson_destroy(doc);
  bson_destroy(bare);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keys_are_1_to_255_printable_ascii),
      cmocka_unit_test(the_same_key_of_two_callers_is_two_keys),
      cmocka_unit_test(scope_and_key_do_not_run_into_each_other),
      cmocka_unit_test(jobs_records_keep_their_ids),
      cmocka_unit_test(derived_ids_differ_by_kind_and_key_and_repeat),
      cmocka_unit_test(child_ids_are_distinct_per_index),
      cmocka_unit_test(fingerprints_ignore_member_order_and_whitespace),
      cmocka_unit_test(nested_values_are_canonical_too),
      cmocka_unit_test(stored_fingerprint_is_compared_exactly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
