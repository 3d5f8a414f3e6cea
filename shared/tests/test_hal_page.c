/* Unit tests for hal paging: page/size parsing (negative, huge, malformed, capped), sort
 * parsing (directions, several properties, unknown and unsafe properties, misplaced
 * directions) and the HAL envelope's page links (first, prev, next, last; a page beyond
 * the end; no items). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "voter/hal.h"

static const char *sortable(const char *p) {
  static const char *const allowed[] = {"title", "date", "electionType", "description", "version",
                                        NULL};
  if (strcmp(p, "id") == 0) return "_id";
  for (int i = 0; allowed[i]; i++)
    if (strcmp(p, allowed[i]) == 0) return allowed[i];
  return NULL;
}

static char detail[200];

static int parse(const char *page, const char *size, const char *const *sorts, int nsorts,
                 hal_page *out) {
  return hal_page_parse(page, size, sorts, nsorts, sortable, out, detail, sizeof detail);
}

static void no_parameters_is_the_first_page_of_20_unsorted(void **state) {
  (void)state;
  hal_page p;
  assert_int_equal(parse(NULL, NULL, NULL, 0, &p), 0);
  assert_int_equal(p.page, 0);
  assert_int_equal(p.size, HAL_DEFAULT_SIZE);
  assert_int_equal(p.nsort, 0);
}

static void page_must_be_a_plain_non_negative_integer(void **state) {
  (void)state;
  hal_page p;
  assert_int_equal(parse("3", NULL, NULL, 0, &p), 0);
  assert_int_equal(p.page, 3);
  const char *bad[] = {"-1", "+1", " 1", "1 ", "1.0", "one", "", "0x10", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(parse(bad[i], NULL, NULL, 0, &p), -1);
    assert_string_equal(detail, "page must be a non-negative integer");
  }
}

static void size_must_be_positive_and_is_capped(void **state) {
  (void)state;
  hal_page p;
  assert_int_equal(parse(NULL, "1", NULL, 0, &p), 0);
  assert_int_equal(p.size, 1);
  assert_int_equal(parse(NULL, "1000", NULL, 0, &p), 0);
  assert_int_equal(p.size, 1000);
  assert_int_equal(parse(NULL, "1001", NULL, 0, &p), 0);
  assert_int_equal(p.size, HAL_MAX_SIZE); /* capped like Spring, not refused */
  assert_int_equal(parse(NULL, "9223372036854775807", NULL, 0, &p), 0);
  assert_int_equal(p.size, HAL_MAX_SIZE);
  const char *bad[] = {"0", "-20", "-9223372036854775808", "20abc", "", "1e3",
                       "9223372036854775808"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(parse(NULL, bad[i], NULL, 0, &p), -1);
    assert_string_equal(detail, "size must be a positive integer");
  }
}

/* page * size must stay far from overflow: the skip is computed from it. */
static void huge_pages_are_out_of_range(void **state) {
  (void)state;
  hal_page p;
  char page[32];
  snprintf(page, sizeof page, "%lld", (long long)(INT64_MAX / 21));
  assert_int_equal(parse(page, "20", NULL, 0, &p), 0);
  snprintf(page, sizeof page, "%lld", (long long)(INT64_MAX / 21 + 1));
  assert_int_equal(parse(page, "20", NULL, 0, &p), -1);
  assert_string_equal(detail, "page is out of range");
  assert_int_equal(parse("9223372036854775807", "1000", NULL, 0, &p), -1);
  assert_string_equal(detail, "page is out of range");
}

static void sort_takes_properties_then_one_direction(void **state) {
  (void)state;
  hal_page p;
  const char *one[] = {"title"};
  assert_int_equal(parse(NULL, NULL, one, 1, &p), 0);
  assert_int_equal(p.nsort, 1);
  assert_string_equal(p.sort_fields[0], "title");
  assert_int_equal(p.sort_dirs[0], 1);
  const char *desc[] = {"date,title,DESC"};
  assert_int_equal(parse(NULL, NULL, desc, 1, &p), 0);
  assert_int_equal(p.nsort, 2);
  assert_string_equal(p.sort_fields[0], "date");
  assert_string_equal(p.sort_fields[1], "title");
  assert_int_equal(p.sort_dirs[0], -1);
  assert_int_equal(p.sort_dirs[1], -1);
  const char *id[] = {"id,asc"};
  assert_int_equal(parse(NULL, NULL, id, 1, &p), 0);
  assert_string_equal(p.sort_fields[0], "_id"); /* API name to storage name */
  assert_int_equal(p.sort_dirs[0], 1);
}

static void repeated_sort_parameters_add_up_to_the_maximum(void **state) {
  (void)state;
  hal_page p;
  const char *two[] = {"version,desc", "title"};
  assert_int_equal(parse(NULL, NULL, two, 2, &p), 0);
  assert_int_equal(p.nsort, 2);
  assert_string_equal(p.sort_fields[0], "version");
  assert_int_equal(p.sort_dirs[0], -1);
  assert_string_equal(p.sort_fields[1], "title");
  assert_int_equal(p.sort_dirs[1], 1);
  const char *many[] = {"title,date", "version,description", "electionType"};
  assert_int_equal(parse(NULL, NULL, many, 3, &p), 0);
  assert_int_equal(p.nsort, HAL_MAX_SORT); /* the fifth is dropped, not refused */
  assert_string_equal(p.sort_fields[3], "description");
}

static void a_direction_before_a_property_is_refused(void **state) {
  (void)state;
  hal_page p;
  const char *asc_x[] = {"asc,title"};
  assert_int_equal(parse(NULL, NULL, asc_x, 1, &p), -1);
  assert_string_equal(detail, "invalid sort parameter 'asc,title'");
  const char *middle[] = {"title,desc,date"};
  assert_int_equal(parse(NULL, NULL, middle, 1, &p), -1);
  assert_string_equal(detail, "invalid sort parameter 'title,desc,date'");
  const char *only[] = {"desc"};
  assert_int_equal(parse(NULL, NULL, only, 1, &p), -1);
  assert_string_equal(detail, "invalid sort parameter 'desc'");
}

static void empty_and_unknown_sorts_are_refused(void **state) {
  (void)state;
  hal_page p;
  const char *empty[] = {""};
  assert_int_equal(parse(NULL, NULL, empty, 1, &p), -1);
  assert_string_equal(detail, "invalid sort parameter ''");
  const char *commas[] = {",,"};
  assert_int_equal(parse(NULL, NULL, commas, 1, &p), -1);
  const char *unknown[] = {"title", "nope,desc"};
  assert_int_equal(parse(NULL, NULL, unknown, 2, &p), -1);
  assert_string_equal(detail, "cannot sort by 'nope'");
  const char *dollar[] = {"$where"};
  assert_int_equal(parse(NULL, NULL, dollar, 1, &p), -1);
  assert_string_equal(detail, "cannot sort by '$where'");
  const char *storage[] = {"_id"}; /* only API names are sortable */
  assert_int_equal(parse(NULL, NULL, storage, 1, &p), -1);
  const char *five[] = {"title,date,version,description,electionType"};
  assert_int_equal(parse(NULL, NULL, five, 1, &p), -1);
  assert_string_equal(detail, "invalid sort parameter 'title,date,version,description,electionType'");
}

static void empty_tokens_between_commas_are_skipped(void **state) {
  (void)state;
  hal_page p;
  const char *gaps[] = {"title,,desc"};
  assert_int_equal(parse(NULL, NULL, gaps, 1, &p), 0);
  assert_int_equal(p.nsort, 1);
  assert_int_equal(p.sort_dirs[0], -1);
}

static void page_counts_round_up(void **state) {
  (void)state;
  assert_int_equal(hal_page_count(0, 20), 0);
  assert_int_equal(hal_page_count(1, 20), 1);
  assert_int_equal(hal_page_count(20, 20), 1);
  assert_int_equal(hal_page_count(21, 20), 2);
  assert_int_equal(hal_page_count(INT64_MAX, 1000), INT64_MAX / 1000 + 1);
  assert_int_equal(hal_page_count(INT64_MAX, 1), INT64_MAX);
}

static const char *link_href(const json_t *env, const char *rel) {
  return json_string_value(json_object_get(json_object_get(json_object_get(env, "_links"), rel),
                                           "href"));
}

static json_int_t page_member(const json_t *env, const char *key) {
  return json_integer_value(json_object_get(json_object_get(env, "page"), key));
}

static json_t *envelope(int64_t page, int64_t size, int64_t total, const char *search) {
  hal_page p = {.page = page, .size = size};
  return hal_envelope("http://h:1", "/voter/votes", "votes", json_array(), &p, total, search);
}

static void the_middle_page_links_all_around(void **state) {
  (void)state;
  json_t *env = envelope(1, 20, 45, "/voter/votes/search");
  assert_string_equal(link_href(env, "self"), "http://h:1/voter/votes{?page,size,sort}");
  assert_string_equal(link_href(env, "first"), "http://h:1/voter/votes?page=0&size=20");
  assert_string_equal(link_href(env, "prev"), "http://h:1/voter/votes?page=0&size=20");
  assert_string_equal(link_href(env, "next"), "http://h:1/voter/votes?page=2&size=20");
  assert_string_equal(link_href(env, "last"), "http://h:1/voter/votes?page=2&size=20");
  assert_string_equal(link_href(env, "profile"), "http://h:1/voter/profile/votes");
  assert_string_equal(link_href(env, "search"), "http://h:1/voter/votes/search");
  assert_int_equal(page_member(env, "totalPages"), 3);
  assert_int_equal(page_member(env, "totalElements"), 45);
  assert_int_equal(page_member(env, "number"), 1);
  assert_true(json_is_array(json_object_get(json_object_get(env, "_embedded"), "votes")));
  json_decref(env);
}

static void a_page_beyond_the_end_is_empty_and_links_back(void **state) {
  (void)state;
  json_t *env = envelope(7, 20, 45, NULL);
  assert_int_equal(page_member(env, "number"), 7);
  assert_int_equal(page_member(env, "totalPages"), 3);
  assert_null(link_href(env, "next"));
  assert_string_equal(link_href(env, "prev"), "http://h:1/voter/votes?page=6&size=20");
  assert_string_equal(link_href(env, "last"), "http://h:1/voter/votes?page=2&size=20");
  assert_null(link_href(env, "search"));
  json_decref(env);
}

static void one_page_or_none_has_no_page_links(void **state) {
  (void)state;
  json_t *one = envelope(0, 20, 20, NULL), *none = envelope(0, 20, 0, NULL);
  const char *rels[] = {"first", "prev", "next", "last"};
  for (int i = 0; i < 4; i++) {
    assert_null(link_href(one, rels[i]));
    assert_null(link_href(none, rels[i]));
  }
  assert_int_equal(page_member(one, "totalPages"), 1);
  assert_int_equal(page_member(none, "totalPages"), 0);
  assert_non_null(link_href(none, "self"));
  json_decref(one);
  json_decref(none);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(no_parameters_is_the_first_page_of_20_unsorted),
      cmocka_unit_test(page_must_be_a_plain_non_negative_integer),
      cmocka_unit_test(size_must_be_positive_and_is_capped),
      cmocka_unit_test(huge_pages_are_out_of_range),
      cmocka_unit_test(sort_takes_properties_then_one_direction),
      cmocka_unit_test(repeated_sort_parameters_add_up_to_the_maximum),
      cmocka_unit_test(a_direction_before_a_property_is_refused),
      cmocka_unit_test(empty_and_unknown_sorts_are_refused),
      cmocka_unit_test(empty_tokens_between_commas_are_skipped),
      cmocka_unit_test(page_counts_round_up),
      cmocka_unit_test(the_middle_page_links_all_around),
      cmocka_unit_test(a_page_beyond_the_end_is_empty_and_links_back),
      cmocka_unit_test(one_page_or_none_has_no_page_links),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
