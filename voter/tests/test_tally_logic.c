/* Unit tests for tally_logic: bucketing a chunk, the count/recount/nothing plan of a
 * (re)delivered chunk, when a retry finishes an interrupted vote, and results, totals and
 * winners from tally rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tally_logic.h"

static vote_in vote(const char *election, const char *candidate) {
  return (vote_in){.id = "", .candidate = candidate, .election = election};
}

static void buckets_count_each_candidate_of_each_election_once(void **state) {
  (void)state;
  vote_in v[] = {vote("E1", "Ann"), vote("E1", "Bob"), vote("E2", "Ann"), vote("E1", "Ann"),
                 vote("E2", "Ann"), vote("E1", "Ann")};
  tally_bucket b[6];
  size_t nb = tally_buckets(v, 6, b);
  assert_int_equal(nb, 3);
  /* first-seen order; the same candidate name in two elections is two buckets */
  assert_string_equal(b[0].election, "E1");
  assert_string_equal(b[0].candidate, "Ann");
  assert_int_equal(b[0].n, 3);
  assert_string_equal(b[1].candidate, "Bob");
  assert_int_equal(b[1].n, 1);
  assert_string_equal(b[2].election, "E2");
  assert_string_equal(b[2].candidate, "Ann");
  assert_int_equal(b[2].n, 2);
  int64_t sum = 0;
  for (size_t i = 0; i < nb; i++) sum += b[i].n;
  assert_int_equal(sum, 6); /* every vote in exactly one bucket */
}

/* Names that would collide if election and candidate were glued together naively. */
static void buckets_do_not_confuse_split_names(void **state) {
  (void)state;
  vote_in v[] = {vote("A", "B C"), vote("A B", "C")};
  tally_bucket b[2];
  assert_int_equal(tally_buckets(v, 2, b), 2);
  assert_int_equal(tally_buckets(v, 0, b), 0);
}

static void distinct_elections_keep_first_seen_order(void **state) {
  (void)state;
  vote_in v[] = {vote("E2", "a"), vote("E1", "b"), vote("E2", "c"), vote("E3", "a"),
                 vote("E1", "a")};
  const char *e[5];
  size_t n = tally_distinct_elections(v, 5, e);
  assert_int_equal(n, 3);
  assert_string_equal(e[0], "E2");
  assert_string_equal(e[1], "E1");
  assert_string_equal(e[2], "E3");
  assert_int_equal(tally_distinct_elections(v, 0, e), 0);
}

static void a_first_delivery_is_counted_from_its_buckets(void **state) {
  (void)state;
  assert_int_equal(tally_plan_chunk(true, false, 500), TALLY_CHUNK_COUNT);
  assert_int_equal(tally_plan_chunk(true, false, 0), TALLY_CHUNK_COUNT);
}

/* A redelivery after a crash between the marker and the tallies ("counting") recounts,
 * even when every vote was already inserted (inserted 0). */
static void a_redelivery_of_an_interrupted_chunk_recounts(void **state) {
  (void)state;
  assert_int_equal(tally_plan_chunk(false, false, 0), TALLY_CHUNK_RECOUNT);
  assert_int_equal(tally_plan_chunk(false, false, 12), TALLY_CHUNK_RECOUNT);
}

static void a_redelivery_of_a_counted_chunk_changes_nothing(void **state) {
  (void)state;
  assert_int_equal(tally_plan_chunk(false, true, 0), TALLY_CHUNK_NOTHING);
}

/* The reconciliation may close a marker whose votes never arrived; when they arrive later
 * they are in no tally, so the elections are recounted. */
static void votes_arriving_after_their_marker_closed_recount(void **state) {
  (void)state;
  assert_int_equal(tally_plan_chunk(false, true, 1), TALLY_CHUNK_RECOUNT);
}

static void a_retry_recounts_only_a_settled_uncounted_live_vote(void **state) {
  (void)state;
  int64_t now = 1000000;
  assert_true(tally_retry_recounts(false, false, now - TALLY_SETTLE_MS, now));
  assert_true(tally_retry_recounts(false, false, 0, now));
  /* younger: its own request may still be counting it */
  assert_false(tally_retry_recounts(false, false, now - TALLY_SETTLE_MS + 1, now));
  assert_false(tally_retry_recounts(false, false, now, now));
  assert_false(tally_retry_recounts(false, false, now + 60000, now)); /* clock skew */
  assert_false(tally_retry_recounts(true, false, 0, now));  /* already counted */
  assert_false(tally_retry_recounts(false, true, 0, now));  /* deleted: nothing to count */
}

static json_t *rows(const char *text) { return json_loads(text, 0, NULL); }

static void results_are_sorted_by_votes_then_name(void **state) {
  (void)state;
  json_t *r = tally_results(rows("[{\"candidate\":\"Cy\",\"votes\":2},"
                                 "{\"candidate\":\"Al\",\"votes\":5},"
                                 "{\"candidate\":\"Bo\",\"votes\":2},"
                                 "{\"candidate\":\"Ab\",\"votes\":2}]"));
  json_t *want = rows("[{\"candidate\":\"Al\",\"votes\":5},{\"candidate\":\"Ab\",\"votes\":2},"
                      "{\"candidate\":\"Bo\",\"votes\":2},{\"candidate\":\"Cy\",\"votes\":2}]");
  assert_true(json_equal(r, want));
  json_decref(r);
  json_decref(want);
}

/* A recount clears and rewrites tallies; rows left at zero or below never show. */
static void results_leave_out_empty_and_nameless_rows(void **state) {
  (void)state;
  json_t *r = tally_results(rows("[{\"candidate\":\"Zero\",\"votes\":0},"
                                 "{\"candidate\":\"Neg\",\"votes\":-1},"
                                 "{\"votes\":9},{\"candidate\":null,\"votes\":9},"
                                 "{\"candidate\":\"One\",\"votes\":1}]"));
  json_t *want = rows("[{\"candidate\":\"One\",\"votes\":1}]");
  assert_true(json_equal(r, want));
  json_decref(r);
  json_decref(want);
  json_t *empty = tally_results(json_array());
  assert_int_equal(json_array_size(empty), 0);
  json_decref(empty);
}

static void totals_add_every_result(void **state) {
  (void)state;
  json_t *r = rows("[{\"candidate\":\"A\",\"votes\":5},{\"candidate\":\"B\",\"votes\":3}]");
  assert_int_equal(tally_total(r), 8);
  json_decref(r);
  json_t *none = json_array();
  assert_int_equal(tally_total(none), 0);
  json_decref(none);
}

static void winners_are_everyone_tied_at_the_top(void **state) {
  (void)state;
  json_t *r = tally_results(rows("[{\"candidate\":\"B\",\"votes\":4},"
                                 "{\"candidate\":\"C\",\"votes\":1},"
                                 "{\"candidate\":\"A\",\"votes\":4}]"));
  int64_t max = -1;
  json_t *w = tally_winners(r, &max);
  json_t *want = rows("[{\"candidate\":\"A\",\"votes\":4},{\"candidate\":\"B\",\"votes\":4}]");
  assert_int_equal(max, 4);
  assert_true(json_equal(w, want));
  json_decref(w);
  json_decref(want);
  json_decref(r);
}

static void no_votes_means_no_winners(void **state) {
  (void)state;
  json_t *none = json_array();
  int64_t max = -1;
  json_t *w = tally_winners(none, &max);
  assert_int_equal(max, 0);
  assert_int_equal(json_array_size(w), 0);
  json_decref(w);
  json_decref(none);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(buckets_count_each_candidate_of_each_election_once),
      cmocka_unit_test(buckets_do_not_confuse_split_names),
      cmocka_unit_test(distinct_elections_keep_first_seen_order),
      cmocka_unit_test(a_first_delivery_is_counted_from_its_buckets),
      cmocka_unit_test(a_redelivery_of_an_interrupted_chunk_recounts),
      cmocka_unit_test(a_redelivery_of_a_counted_chunk_changes_nothing),
      cmocka_unit_test(votes_arriving_after_their_marker_closed_recount),
      cmocka_unit_test(a_retry_recounts_only_a_settled_uncounted_live_vote),
      cmocka_unit_test(results_are_sorted_by_votes_then_name),
      cmocka_unit_test(results_leave_out_empty_and_nameless_rows),
      cmocka_unit_test(totals_add_every_result),
      cmocka_unit_test(winners_are_everyone_tied_at_the_top),
      cmocka_unit_test(no_votes_means_no_winners),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
