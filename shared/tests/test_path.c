/* Unit tests for path: the one normal form of request paths (services and gateway). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "voter/path.h"

static path_status norm(const char *in, unsigned flags, char *out, size_t cap) {
  size_t n = 0;
  path_status st = path_normalize(in, strlen(in), flags, out, cap, &n);
  if (st == PATH_OK) assert_int_equal(n, strlen(out));
  return st;
}

static void expect(const char *in, const char *want) {
  char out[256];
  assert_int_equal(norm(in, PATH_REFUSE_ENCODED_SLASH, out, sizeof out), PATH_OK);
  assert_string_equal(out, want);
}

static void spellings_of_one_path_have_one_normal_form(void **state) {
  (void)state;
  const char *spellings[] = {"/election/events/replay", "/election//events/replay",
                             "//election/events/replay", "/election/events/replay/",
                             "/election/%65vents/replay", "/%65%6c%65%63%74%69%6f%6e/events/replay",
                             "/election/%65%76%65%6E%74%73/replay", "///election///events///replay///"};
  for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++)
    expect(spellings[i], "/election/events/replay");
}

static void other_escapes_are_kept_in_upper_case(void **state) {
  (void)state;
  expect("/voter/results/2016%20Presidential%2c%20Election", "/voter/results/2016%20Presidential%2C%20Election");
  expect("/a/%c3%a9t%C3%A9", "/a/%C3%A9t%C3%A9");
  expect("/a/b.c/..d/...", "/a/b.c/..d/...");
  expect("/a/x:y@z!$&'()*+,;=", "/a/x:y@z!$&'()*+,;=");
  expect("/", "/");
  expect("//", "/");
}

static void refusals(void **state) {
  (void)state;
  char out[256];
  unsigned f = PATH_REFUSE_ENCODED_SLASH;
  assert_int_equal(norm("", f, out, sizeof out), PATH_NOT_ABSOLUTE);
  assert_int_equal(norm("a/b", f, out, sizeof out), PATH_NOT_ABSOLUTE);
  assert_int_equal(norm("/a/./b", f, out, sizeof out), PATH_DOT_SEGMENT);
  assert_int_equal(norm("/a/../b", f, out, sizeof out), PATH_DOT_SEGMENT);
  assert_int_equal(norm("/a/..", f, out, sizeof out), PATH_DOT_SEGMENT);
  assert_int_equal(norm("/a/%2e%2e/b", f, out, sizeof out), PATH_ENCODED_DOT);
  assert_int_equal(norm("/a/x%2Ey", f, out, sizeof out), PATH_ENCODED_DOT);
  assert_int_equal(norm("/a%2Fb", f, out, sizeof out), PATH_ENCODED_SLASH);
  assert_int_equal(norm("/a%2fb", f, out, sizeof out), PATH_ENCODED_SLASH);
  assert_int_equal(norm("/a%2Fb", 0, out, sizeof out), PATH_OK); /* services: data */
  assert_string_equal(out, "/a%2Fb");
  assert_int_equal(norm("/a%", f, out, sizeof out), PATH_BAD_ESCAPE);
  assert_int_equal(norm("/a%4", f, out, sizeof out), PATH_BAD_ESCAPE);
  assert_int_equal(norm("/a%zz", f, out, sizeof out), PATH_BAD_ESCAPE);
  assert_int_equal(norm("/a%00", f, out, sizeof out), PATH_BAD_ESCAPE);
  const char *bad[] = {"/a b", "/a\tb", "/a\rb", "/a\nb", "/a\x01", "/a\x7f", "/a\\b", "/a\"",
                       "/a<", "/a>", "/a^", "/a`", "/a{", "/a|", "/a}", "/a#b", "/a?b", "/\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_equal(norm(bad[i], f, out, sizeof out), PATH_BAD_CHAR);
  assert_int_equal(norm("/abcdef", f, out, 4), PATH_TOO_LONG);
  assert_string_equal(path_status_text(PATH_ENCODED_SLASH), "encoded slashes are not allowed in the path");
}

static void output_never_longer_than_input(void **state) {
  (void)state;
  const char *in = "/a//b/%41%42/c%20d/";
  char out[32];
  size_t n = 0;
  assert_int_equal(path_normalize(in, strlen(in), 0, out, strlen(in) + 2, &n), PATH_OK);
  assert_true(n <= strlen(in));
  assert_string_equal(out, "/a/b/AB/c%20d");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(spellings_of_one_path_have_one_normal_form),
      cmocka_unit_test(other_escapes_are_kept_in_upper_case),
      cmocka_unit_test(refusals),
      cmocka_unit_test(output_never_longer_than_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
