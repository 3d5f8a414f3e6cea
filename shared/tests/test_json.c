/* Unit tests for json: strict field validation and unsafe keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "voter/json.h"

static const jsonv_field fields[] = {
    {"title", JSONV_STRING, true, 10},
    {"count", JSONV_INTEGER, false, 0},
    {"flag", JSONV_BOOLEAN, false, 0},
    {NULL, 0, false, 0},
};

static int check(const char *text, bool allow_unknown, json_t **errors) {
  json_t *doc = json_loads(text, 0, NULL);
  assert_non_null(doc);
  *errors = json_array();
  int n = jsonv_check(doc, fields, allow_unknown, *errors);
  json_decref(doc);
  return n;
}

static const char *field_of(json_t *errors, size_t i) {
  return json_string_value(json_object_get(json_array_get(errors, i), "field"));
}

static void valid_document_has_no_errors(void **state) {
  (void)state;
  json_t *errors;
  assert_int_equal(check("{\"title\":\"abc\",\"count\":3,\"flag\":true}", false, &errors), 0);
  json_decref(errors);
  assert_int_equal(check("{\"title\":\"abc\",\"count\":null}", false, &errors), 0);
  json_decref(errors);
}

static void every_problem_is_reported_at_once(void **state) {
  (void)state;
  json_t *errors;
  assert_int_equal(check("{\"count\":\"3\",\"flag\":1,\"extra\":0}", false, &errors), 4);
  assert_string_equal(field_of(errors, 0), "title");
  assert_string_equal(field_of(errors, 1), "count");
  assert_string_equal(field_of(errors, 2), "flag");
  assert_string_equal(field_of(errors, 3), "extra");
  json_decref(errors);
}

static void unknown_fields_allowed_when_asked(void **state) {
  (void)state;
  json_t *errors;
  assert_int_equal(check("{\"title\":\"a\",\"extra\":0}", true, &errors), 0);
  json_decref(errors);
}

static void strings_are_length_checked_and_required_not_empty(void **state) {
  (void)state;
  json_t *errors;
  assert_int_equal(check("{\"title\":\"01234567890\"}", false, &errors), 1);
  json_decref(errors);
  assert_int_equal(check("{\"title\":\"\"}", false, &errors), 1);
  json_decref(errors);
  assert_int_equal(check("{\"title\":3.5}", false, &errors), 1);
  json_decref(errors);
}

static void dollar_and_dotted_keys_are_refused_anywhere(void **state) {
  (void)state;
  json_t *doc = json_loads("{\"a\":{\"$gt\":1},\"b.c\":1,\"d\":[{\"$x\":1}],\"ok\":{\"fine\":1}}", 0, NULL);
  json_t *errors = json_array();
  assert_int_equal(jsonv_check_keys(doc, "", errors), 3);
  assert_string_equal(field_of(errors, 0), "a.$gt");
  assert_string_equal(field_of(errors, 1), "b.c");
  assert_string_equal(field_of(errors, 2), "d[0].$x");
  json_decref(errors);
  json_decref(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(valid_document_has_no_errors),
      cmocka_unit_test(every_problem_is_reported_at_once),
      cmocka_unit_test(unknown_fields_allowed_when_asked),
      cmocka_unit_test(strings_are_length_checked_and_required_not_empty),
      cmocka_unit_test(dollar_and_dotted_keys_are_refused_anywhere),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
