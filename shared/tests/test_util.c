/* Unit tests for util: ids, dates, percent-coding, regex escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "voter/util.h"

static void uuid_is_v4_and_unique(void **state) {
  (void)state;
  char a[37], b[37];
  util_uuid(a);
  util_uuid(b);
  assert_int_equal(strlen(a), 36);
  assert_int_equal(a[14], '4');
  assert_true(strchr("89ab", a[19]) != NULL);
  assert_int_equal(a[8], '-');
  assert_string_not_equal(a, b);
}

static void object_id_validation(void **state) {
  (void)state;
  assert_true(util_is_object_id("65a1b2c3d4e5f60718293a4b"));
  assert_true(util_is_object_id("65A1B2C3D4E5F60718293A4B"));
  assert_false(util_is_object_id("65a1b2c3d4e5f60718293a4"));
  assert_false(util_is_object_id("65a1b2c3d4e5f60718293a4bb"));
  assert_false(util_is_object_id("65a1b2c3d4e5f60718293a4g"));
  assert_false(util_is_object_id(""));
  assert_false(util_is_object_id(NULL));
}

static void dates_parse_and_render_like_the_original(void **state) {
  (void)state;
  int64_t ms;
  char out[32];
  assert_int_equal(util_parse_date("2016-11-08", &ms), 0);
  assert_int_equal(ms, 1478563200000LL);
  util_format_date(ms, out);
  assert_string_equal(out, "2016-11-08T00:00:00.000+0000");
  assert_int_equal(util_parse_date("2016-11-08T00:00:00.000+0000", &ms), 0);
  assert_int_equal(ms, 1478563200000LL);
  assert_int_equal(util_parse_date("2016-11-08T01:30:00+01:30", &ms), 0);
  assert_int_equal(ms, 1478563200000LL);
  assert_int_equal(util_parse_date("2016-11-08T00:00:00.5Z", &ms), 0);
  assert_int_equal(ms, 1478563200500LL);
  assert_int_equal(util_parse_date("1969-12-31", &ms), 0);
  util_format_date(ms, out);
  assert_string_equal(out, "1969-12-31T00:00:00.000+0000");
  assert_int_equal(util_parse_date("2016-02-29", &ms), 0); /* leap year */
}

static void impossible_dates_are_rejected(void **state) {
  (void)state;
  int64_t ms;
  const char *bad[] = {"2015-02-29", "2016-13-01", "2016-00-10", "2016-04-31", "2016-11-8",
                       "16-11-08",   "2016/11/08", "2016-11-08T25:00:00", "2016-11-08x",
                       "2016-11-08T00:00:00.", "", "next tuesday", NULL};
  for (int i = 0; bad[i]; i++) assert_int_equal(util_parse_date(bad[i], &ms), -1);
  assert_int_equal(util_parse_date(NULL, &ms), -1);
}

static void percent_decoding(void **state) {
  (void)state;
  char *s = util_percent_decode("2016%20Presidential%2C%20Election.x", 35, false);
  assert_string_equal(s, "2016 Presidential, Election.x");
  free(s);
  s = util_percent_decode("a+b%2Fc", 7, true);
  assert_string_equal(s, "a b/c");
  free(s);
  s = util_percent_decode("a+b", 3, false);
  assert_string_equal(s, "a+b");
  free(s);
  assert_null(util_percent_decode("bad%2", 5, false));
  assert_null(util_percent_decode("bad%zz", 6, false));
  assert_null(util_percent_decode("nul%00", 6, false));
}

static void percent_encoding_round_trips(void **state) {
  (void)state;
  char *e = util_percent_encode("2016 Presidential, Election/x");
  assert_string_equal(e, "2016%20Presidential%2C%20Election%2Fx");
  char *d = util_percent_decode(e, strlen(e), false);
  assert_string_equal(d, "2016 Presidential, Election/x");
  free(e);
  free(d);
}

static void regex_escape_makes_metacharacters_literal(void **state) {
  (void)state;
  char *r = util_regex_escape("FED.*(x)|[y]^$\\");
  assert_string_equal(r, "FED\\.\\*\\(x\\)\\|\\[y\\]\\^\\$\\\\");
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(uuid_is_v4_and_unique),
      cmocka_unit_test(object_id_validation),
      cmocka_unit_test(dates_parse_and_render_like_the_original),
      cmocka_unit_test(impossible_dates_are_rejected),
      cmocka_unit_test(percent_decoding),
      cmocka_unit_test(percent_encoding_round_trips),
      cmocka_unit_test(regex_escape_makes_metacharacters_literal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
