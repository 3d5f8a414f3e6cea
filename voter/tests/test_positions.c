/* Unit tests for positions_page: a page of the listing found by walking buckets from the
 * nearer end must be exactly the concatenated buckets cut into pages, for every page and
 * size, with empty buckets, gaps known to be empty, a failing read, and a total that is
 * off; and the first and the last page must read only the buckets at their end. The buckets here are in memory; the
 * database side is tests/test_voter_api.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "positions.h"

#define MAX_BUCKETS 64

/* Buckets low..low+n-1, bucket i holding count[i] items numbered in listing order. */
typedef struct {
  int64_t low;
  int n;
  int count[MAX_BUCKETS];
  int reads;
  int64_t fail_at; /* a bucket whose read fails, or INT64_MIN */
  positions_gap gaps[4];
  size_t ngaps;
} fake;

static positions_span span_of(fake *f) {
  return (positions_span){.low = f->low, .high = f->low + f->n - 1, .gaps = f->gaps, .ngaps = f->ngaps};
}

static int64_t fake_total(const fake *f) {
  int64_t t = 0;
  for (int i = 0; i < f->n; i++) t += f->count[i];
  return t;
}

static bool fake_read(void *ctx, int64_t bucket, json_t **items, bson_error_t *error) {
  fake *f = ctx;
  f->reads++;
  assert_true(bucket >= f->low && bucket < f->low + f->n); /* never outside low..high */
  for (size_t g = 0; g < f->ngaps; g++) /* never a bucket known to be empty */
    assert_false(bucket >= f->gaps[g].from && bucket <= f->gaps[g].to);
  if (bucket == f->fail_at) {
    bson_set_error(error, 1, 1, "read failed");
    return false;
  }
  int before = 0, i = (int)(bucket - f->low);
  for (int j = 0; j < i; j++) before += f->count[j];
  *items = json_array();
  for (int k = 0; k < f->count[i]; k++) json_array_append_new(*items, json_integer(before + k));
  return true;
}

/* The page read must be [first, first + expected) of the listing's items. */
static void assert_page(fake *f, int64_t total, int64_t page, int64_t size, int64_t first,
                        int64_t expected) {
  json_t *items;
  bson_error_t error;
  f->reads = 0;
  positions_span span = span_of(f);
  assert_true(positions_page(&span, total, page, size, fake_read, f, &items, &error));
  assert_int_equal(json_array_size(items), expected);
  for (int64_t i = 0; i < expected; i++)
    assert_int_equal(json_integer_value(json_array_get(items, (size_t)i)), first + i);
  json_decref(items);
}

static void every_page_of_every_size_is_the_listing_cut_in_pages(void **state) {
  (void)state;
  fake f = {.low = -1, .n = 9, .count = {3, 0, 5, 1, 0, 0, 4, 2, 0}, .fail_at = INT64_MIN};
  int64_t total = fake_total(&f); /* 15 */
  for (int64_t size = 1; size <= total + 2; size++)
    for (int64_t page = 0; page * size <= total + size; page++) {
      int64_t first = page * size;
      int64_t expected = first >= total ? 0 : (total - first < size ? total - first : size);
      assert_page(&f, total, page, size, first, expected);
    }
}

static void first_and_last_page_read_only_the_buckets_at_their_end(void **state) {
  (void)state;
  fake f = {.low = 0, .n = MAX_BUCKETS, .fail_at = INT64_MIN};
  for (int i = 0; i < f.n; i++) f.count[i] = 128;
  int64_t total = fake_total(&f);
  assert_page(&f, total, 0, 20, 0, 20);
  assert_int_equal(f.reads, 1);
  int64_t last = (total - 1) / 20;
  assert_page(&f, total, last, 20, last * 20, total - last * 20);
  assert_int_equal(f.reads, 1);
  /* a page that straddles two buckets reads both */
  assert_page(&f, total, 6, 20, 120, 20);
  assert_int_equal(f.reads, 2);
  /* the trailing buckets of a claim not yet used are read, and cost nothing else */
  f.count[f.n - 1] = 0;
  f.count[f.n - 2] = 0;
  total = fake_total(&f);
  last = (total - 1) / 20;
  assert_page(&f, total, last, 20, last * 20, total - last * 20);
  assert_int_equal(f.reads, 3);
}

/* The rest of each tip's claim above its bucket is known to be empty: never read, whether
 * the walk starts there, crosses it, or two gaps overlap or touch. */
static void gaps_are_skipped_from_either_end(void **state) {
  (void)state;
  fake f = {.low = -1, .n = 20, .count = {2, 3, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0},
            .fail_at = INT64_MIN,
            .gaps = {{2, 4}, {6, 9}, {8, 10}, {12, 18}},
            .ngaps = 4};
  int64_t total = fake_total(&f); /* 15, in buckets -1, 0, 1, 5 and 11 */
  for (int64_t size = 1; size <= total + 1; size++)
    for (int64_t page = 0; page * size <= total; page++) {
      int64_t first = page * size;
      int64_t expected = first >= total ? 0 : (total - first < size ? total - first : size);
      assert_page(&f, total, page, size, first, expected);
    }
  /* the last page of 1 starts at the highest tip's bucket (18 is in a gap: read from 11) */
  assert_page(&f, total, total - 1, 1, total - 1, 1);
  assert_int_equal(f.reads, 1);
}

static void past_the_end_or_no_bucket_reads_nothing(void **state) {
  (void)state;
  fake f = {.low = 0, .n = 2, .count = {2, 2}, .fail_at = INT64_MIN};
  assert_page(&f, 4, 2, 2, 4, 0);
  assert_int_equal(f.reads, 0);
  json_t *items;
  bson_error_t error;
  positions_span none = {.low = 0, .high = -1};
  assert_true(positions_page(&none, 4, 0, 2, fake_read, &f, &items, &error)); /* high < low */
  assert_int_equal(json_array_size(items), 0);
  assert_int_equal(f.reads, 0);
  json_decref(items);
}

/* The total comes from the tallies and can trail the votes stored (a vote between its
 * insert and its tally): read from the start a page is still full; read from the end it
 * shifts by the difference, and never holds more than the total leaves for it. */
static void a_total_below_the_stored_votes_shifts_pages_read_from_the_end(void **state) {
  (void)state;
  fake f = {.low = 0, .n = 3, .count = {4, 4, 4}, .fail_at = INT64_MIN};
  assert_page(&f, 10, 0, 3, 0, 3);  /* from the start: items 0-2 */
  assert_page(&f, 10, 3, 3, 11, 1); /* the last page of 10 is the last stored item */
  assert_page(&f, 10, 2, 3, 8, 3);  /* read from the end: shifted by the 2 uncounted */
}

static void a_failed_read_fails_the_page(void **state) {
  (void)state;
  fake f = {.low = 0, .n = 3, .count = {1, 1, 1}, .fail_at = 1};
  json_t *items = json_true();
  bson_error_t error;
  positions_span span = span_of(&f);
  assert_false(positions_page(&span, 3, 0, 3, fake_read, &f, &items, &error));
  assert_null(items);
  assert_string_equal(error.message, "read failed");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_page_of_every_size_is_the_listing_cut_in_pages),
      cmocka_unit_test(first_and_last_page_read_only_the_buckets_at_their_end),
      cmocka_unit_test(gaps_are_skipped_from_either_end),
      cmocka_unit_test(past_the_end_or_no_bucket_reads_nothing),
      cmocka_unit_test(a_total_below_the_stored_votes_shifts_pages_read_from_the_end),
      cmocka_unit_test(a_failed_read_fails_the_page),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
