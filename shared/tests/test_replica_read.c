/* Unit tests for replica_read's rendering of a replica document (the reads themselves need
 * a database: tests/test_voter_api.py and tests/test_candidate_api.py): the source's id,
 * no bookkeeping, scalar types kept, anything else null. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "voter/replica_read.h"

static void the_source_id_and_fields_come_back_without_bookkeeping(void **state) {
  (void)state;
  bson_t *doc = BCON_NEW("_id", BCON_UTF8("65a1b2c3d4e5f60718293a4b"), "fullName",
                         BCON_UTF8("Jill Stein"), "politicalParty", BCON_NULL, "version",
                         BCON_INT64(3), "deleted", BCON_BOOL(false), "appliedAt",
                         BCON_DATE_TIME(1700000000000));
  json_t *item = replica_read_item(doc);
  json_t *want = json_pack("{s:s, s:s, s:n, s:I}", "id", "65a1b2c3d4e5f60718293a4b", "fullName",
                           "Jill Stein", "politicalParty", "version", (json_int_t)3);
  assert_true(json_equal(item, want));
  json_decref(item);
  json_decref(want);
  bson_destroy(doc);
}

static void scalars_keep_their_type_the_rest_is_null(void **state) {
  (void)state;
  bson_t *doc = BCON_NEW("_id", BCON_UTF8("e"), "n32", BCON_INT32(-7), "real", BCON_DOUBLE(0.5),
                         "flag", BCON_BOOL(true), "nested", "{", "a", BCON_INT32(1), "}", "list",
                         "[", BCON_INT32(1), "]");
  json_t *item = replica_read_item(doc);
  assert_int_equal(json_integer_value(json_object_get(item, "n32")), -7);
  assert_true(json_is_real(json_object_get(item, "real")));
  assert_true(json_is_true(json_object_get(item, "flag")));
  assert_true(json_is_null(json_object_get(item, "nested")));
  assert_true(json_is_null(json_object_get(item, "list")));
  assert_null(json_object_get(item, "_id"));
  json_decref(item);
  bson_destroy(doc);
}

static void the_candidate_summary_is_one_shape(void **state) {
  (void)state;
  const replica_summary_spec *s = &replica_candidate_summary;
  assert_string_equal(s->collection, "candidates");
  assert_string_equal(s->match_field, "election");
  assert_string_equal(s->fields[0], "fullName");
  assert_string_equal(s->fields[1], "politicalParty");
  assert_string_equal(s->fields[2], "election");
  assert_null(s->fields[3]);
  assert_string_equal(s->sort[0], "lastName");
  assert_string_equal(s->sort[1], "firstName");
  assert_null(s->sort[2]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_source_id_and_fields_come_back_without_bookkeeping),
      cmocka_unit_test(scalars_keep_their_type_the_rest_is_null),
      cmocka_unit_test(the_candidate_summary_is_one_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
