/* Unit tests for how a keyed request is told apart from another (idem): what it creates is
 * addressed by (consumer, key, kind) and what it asked is its fingerprint, so a retry is
 * recognised and everything else is not - another body, another route (kind), another
 * consumer. Only POST routes that create accept a key, one kind each, so the method and
 * path reach the identity through the kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "voter/idem.h"

/* What a keyed request is: the _id it writes and the fingerprint stored with it. */
typedef struct {
  bson_oid_t id;
  char fp[65];
} identity;

static identity keyed(const char *consumer, const char *key, const char *kind, const char *body) {
  identity out;
  char scoped[65];
  idem_scope_hash(consumer, key, scoped);
  idem_object_id(scoped, kind, &out.id);
  json_t *request = json_loads(body, 0, NULL);
  assert_non_null(request);
  idem_fingerprint(request, out.fp);
  json_decref(request);
  return out;
}

static bool same_document(identity a, identity b) { return bson_oid_equal(&a.id, &b.id); }

static void a_retry_is_the_same_document_and_request(void **state) {
  (void)state;
  identity first = keyed("c-1", "k", "vote", "{\"candidate\":\"A\",\"election\":\"E\"}");
  identity retry = keyed("c-1", "k", "vote", "{ \"election\": \"E\", \"candidate\": \"A\" }");
  assert_true(same_document(first, retry));
  assert_string_equal(first.fp, retry.fp);
}

/* Same consumer and key, another body: the same _id (so it collides) with another
 * fingerprint (so it is refused, 422), never a second vote. */
static void another_body_under_the_key_is_a_mismatch(void **state) {
  (void)state;
  identity first = keyed("c-1", "k", "vote", "{\"candidate\":\"A\",\"election\":\"E\"}");
  const char *others[] = {"{\"candidate\":\"B\",\"election\":\"E\"}",
                          "{\"candidate\":\"A\",\"election\":\"F\"}",
                          "{\"candidate\":\"A\",\"election\":\"E\",\"extra\":1}",
                          "{\"candidate\":\"a\",\"election\":\"E\"}",
                          "{\"candidate\":\"A \",\"election\":\"E\"}",
                          "{\"candidate\":\"A\"}",
                          "{}"};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    identity other = keyed("c-1", "k", "vote", others[i]);
    assert_true(same_document(first, other));
    assert_string_not_equal(first.fp, other.fp);
  }
}

/* The same key on another route creates another kind of thing: no collision at all. */
static void the_same_key_on_another_route_is_another_document(void **state) {
  (void)state;
  const char *body = "{\"title\":\"E\"}";
  const char *kinds[] = {"vote", "batch", "election", "candidate", "job"};
  identity ids[5];
  for (int i = 0; i < 5; i++) ids[i] = keyed("c-1", "k", kinds[i], body);
  for (int i = 0; i < 5; i++)
    for (int j = i + 1; j < 5; j++) assert_false(same_document(ids[i], ids[j]));
}

/* Two consumers using the same key with the same body share nothing; the anonymous scope
 * (no X-Consumer-ID) is one more consumer. */
static void the_same_key_of_another_consumer_is_another_document(void **state) {
  (void)state;
  const char *body = "{\"candidate\":\"A\",\"election\":\"E\"}";
  identity a = keyed("c-1", "k", "vote", body), b = keyed("c-2", "k", "vote", body);
  identity anon = keyed(NULL, "k", "vote", body), also_anon = keyed("", "k", "vote", body);
  assert_false(same_document(a, b));
  assert_false(same_document(a, anon));
  assert_true(same_document(anon, also_anon));
  assert_string_equal(a.fp, b.fp); /* the request is the same; its owner is not */
}

static void keys_differing_only_in_case_or_spaces_are_different(void **state) {
  (void)state;
  const char *body = "{}";
  identity k = keyed("c", "Key-1", "vote", body);
  assert_false(same_document(k, keyed("c", "key-1", "vote", body)));
  assert_false(same_document(k, keyed("c", "Key-1 ", "vote", body)));
}

/* Fingerprints are of values, not bytes: numbers keep their type, null is a value. */
static void fingerprints_tell_types_apart(void **state) {
  (void)state;
  identity one = keyed("c", "k", "vote", "{\"n\":1}");
  identity one_text = keyed("c", "k", "vote", "{\"n\":\"1\"}");
  identity one_real = keyed("c", "k", "vote", "{\"n\":1.0}");
  identity null = keyed("c", "k", "vote", "{\"n\":null}");
  identity absent = keyed("c", "k", "vote", "{}");
  assert_string_not_equal(one.fp, one_text.fp);
  assert_string_not_equal(one.fp, one_real.fp);
  assert_string_not_equal(null.fp, absent.fp);
  /* a batch's fingerprint is of its bytes and of how they are to be read */
  char as_ndjson[65], as_json[65];
  json_t *a = json_pack("{s:b, s:s}", "ndjson", 1, "body", "[]");
  json_t *b = json_pack("{s:b, s:s}", "ndjson", 0, "body", "[]");
  idem_fingerprint(a, as_ndjson);
  idem_fingerprint(b, as_json);
  assert_string_not_equal(as_ndjson, as_json);
  json_decref(a);
  json_decref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_retry_is_the_same_document_and_request),
      cmocka_unit_test(another_body_under_the_key_is_a_mismatch),
      cmocka_unit_test(the_same_key_on_another_route_is_another_document),
      cmocka_unit_test(the_same_key_of_another_consumer_is_another_document),
      cmocka_unit_test(keys_differing_only_in_case_or_spaces_are_different),
      cmocka_unit_test(fingerprints_tell_types_apart),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
