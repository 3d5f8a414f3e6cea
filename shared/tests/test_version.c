/* Unit tests for version: replica ordering (duplicates, stale and out-of-order states,
 * tombstones) and the owner's write and delete preconditions (If-Match, re-creation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "voter/version.h"

static const version_state absent = {false, false, 0};

static void nothing_stored_accepts_any_version(void **state) {
  (void)state;
  assert_int_equal(version_compare(-1, 1), VERSION_APPLY);
  assert_int_equal(version_compare(-1, 7), VERSION_APPLY); /* first seen is a late update */
}

static void equal_versions_are_a_duplicate(void **state) {
  (void)state;
  assert_int_equal(version_compare(1, 1), VERSION_DUPLICATE);
  assert_int_equal(version_compare(42, 42), VERSION_DUPLICATE);
}

static void older_versions_are_stale_newer_apply(void **state) {
  (void)state;
  assert_int_equal(version_compare(5, 4), VERSION_STALE);
  assert_int_equal(version_compare(5, 1), VERSION_STALE);
  assert_int_equal(version_compare(5, 6), VERSION_APPLY);
  assert_int_equal(version_compare(5, 100), VERSION_APPLY); /* gaps are fine: 6..99 were lost */
  assert_int_equal(version_compare(INT64_MAX - 1, INT64_MAX), VERSION_APPLY);
}

/* Events of one entity delivered out of order: created 1, updated 2, updated 3 arriving as
 * 3, 1, 2 leave version 3, each later arrival refused. */
static void out_of_order_delivery_keeps_the_newest(void **state) {
  (void)state;
  int64_t stored = -1;
  const int64_t arrivals[] = {3, 1, 2, 3};
  const version_order expected[] = {VERSION_APPLY, VERSION_STALE, VERSION_STALE, VERSION_DUPLICATE};
  for (int i = 0; i < 4; i++) {
    version_order o = version_compare(stored, arrivals[i]);
    assert_int_equal(o, expected[i]);
    if (o == VERSION_APPLY) stored = arrivals[i];
  }
  assert_int_equal(stored, 3);
}

/* The replica keeps a tombstone at the delete's version: an update older than the delete
 * arriving late cannot bring the entity back; the delete again is a duplicate; a
 * re-creation continues the sequence and is accepted. */
static void tombstone_then_older_update_is_stale(void **state) {
  (void)state;
  int64_t tombstone = 4; /* created 1 .. updated 3, deleted 4 */
  assert_int_equal(version_compare(tombstone, 3), VERSION_STALE);
  assert_int_equal(version_compare(tombstone, 2), VERSION_STALE);
  assert_int_equal(version_compare(tombstone, 4), VERSION_DUPLICATE);
  assert_int_equal(version_compare(tombstone, 5), VERSION_APPLY);
}

static void write_to_absent_id_creates_version_1_only_when_allowed(void **state) {
  (void)state;
  int64_t next = -1;
  bool creates = false;
  assert_int_equal(version_check_write(&absent, -1, true, &next, &creates), VERSION_WRITE_OK);
  assert_int_equal(next, 1);
  assert_true(creates);
  assert_int_equal(version_check_write(&absent, -1, false, &next, &creates),
                   VERSION_WRITE_NOT_FOUND); /* PATCH of nothing */
  /* If-Match on something that does not exist never matches */
  assert_int_equal(version_check_write(&absent, 1, true, &next, &creates),
                   VERSION_WRITE_PRECONDITION);
}

static void write_to_live_entity_bumps_its_version(void **state) {
  (void)state;
  version_state live = {true, false, 3};
  int64_t next = 0;
  bool creates = true;
  assert_int_equal(version_check_write(&live, -1, false, &next, &creates), VERSION_WRITE_OK);
  assert_int_equal(next, 4);
  assert_false(creates);
  assert_int_equal(version_check_write(&live, 3, true, &next, &creates), VERSION_WRITE_OK);
  assert_int_equal(next, 4);
}

static void if_match_must_equal_the_live_version(void **state) {
  (void)state;
  version_state live = {true, false, 3};
  int64_t next = 0;
  bool creates;
  assert_int_equal(version_check_write(&live, 2, false, &next, &creates),
                   VERSION_WRITE_PRECONDITION);
  assert_int_equal(version_check_write(&live, 4, false, &next, &creates),
                   VERSION_WRITE_PRECONDITION);
  assert_int_equal(version_check_write(&live, 0, false, &next, &creates),
                   VERSION_WRITE_PRECONDITION); /* If-Match: 0 is a version, not "none" */
  assert_int_equal(next, 0);                    /* untouched when refused */
}

/* PUT on a deleted id re-creates it after the tombstone's version, so replicas holding the
 * tombstone accept the new state; PATCH (no creation) finds nothing; If-Match matches no
 * tombstone. */
static void write_over_tombstone_continues_the_sequence(void **state) {
  (void)state;
  version_state tomb = {true, true, 4};
  int64_t next = 0;
  bool creates = false;
  assert_int_equal(version_check_write(&tomb, -1, true, &next, &creates), VERSION_WRITE_OK);
  assert_int_equal(next, 5);
  assert_true(creates);
  assert_int_equal(version_compare(tomb.version, next), VERSION_APPLY);
  assert_int_equal(version_check_write(&tomb, -1, false, &next, &creates), VERSION_WRITE_NOT_FOUND);
  assert_int_equal(version_check_write(&tomb, 4, true, &next, &creates),
                   VERSION_WRITE_PRECONDITION);
}

static void delete_tombstones_at_the_next_version(void **state) {
  (void)state;
  version_state live = {true, false, 2}, tomb = {true, true, 3};
  int64_t next = 0;
  assert_int_equal(version_check_delete(&live, -1, &next), VERSION_WRITE_OK);
  assert_int_equal(next, 3);
  assert_int_equal(version_check_delete(&live, 2, &next), VERSION_WRITE_OK);
  assert_int_equal(version_check_delete(&live, 1, &next), VERSION_WRITE_PRECONDITION);
  assert_int_equal(version_check_delete(&tomb, -1, &next), VERSION_WRITE_NOT_FOUND); /* twice */
  assert_int_equal(version_check_delete(&tomb, 3, &next), VERSION_WRITE_NOT_FOUND);
  assert_int_equal(version_check_delete(&absent, -1, &next), VERSION_WRITE_NOT_FOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(nothing_stored_accepts_any_version),
      cmocka_unit_test(equal_versions_are_a_duplicate),
      cmocka_unit_test(older_versions_are_stale_newer_apply),
      cmocka_unit_test(out_of_order_delivery_keeps_the_newest),
      cmocka_unit_test(tombstone_then_older_update_is_stale),
      cmocka_unit_test(write_to_absent_id_creates_version_1_only_when_allowed),
      cmocka_unit_test(write_to_live_entity_bumps_its_version),
      cmocka_unit_test(if_match_must_equal_the_live_version),
      cmocka_unit_test(write_over_tombstone_continues_the_sequence),
      cmocka_unit_test(delete_tombstones_at_the_next_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
