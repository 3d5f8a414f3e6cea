/* Unit tests for doclock's read/write stripes: shared holders overlap, an exclusive taker
 * waits for them, a waiting exclusive taker goes before later shared ones (no starvation
 * of a recount), and sets take a stripe once however their keys repeat. A broken lock
 * shows as a flag not set (or set too early) within the waits below, not as a hang: what
 * is observed while a lock is held is asserted only after it is released and the helper
 * threads are joined. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>

#include <cmocka.h>

#include "voter/doclock.h"

#define KEY "tally\x1f" "Election A"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Whether *flag becomes nonzero within ms. */
static bool becomes_set(atomic_int *flag, long ms) {
  for (long waited = 0; waited < ms; waited += 5) {
    if (atomic_load(flag)) return true;
    sleep_ms(5);
  }
  return atomic_load(flag) != 0;
}

typedef struct {
  bool exclusive;
  long hold_ms;
  atomic_int got;       /* set once the lock is held */
  atomic_int *sequence; /* shared counter: the order in which takers got the lock */
  int order;
} taker;

static void *take(void *arg) {
  taker *t = arg;
  const char *key = KEY;
  if (t->exclusive) doclock_exclusive(key);
  else doclock_shared(key);
  if (t->sequence) t->order = atomic_fetch_add(t->sequence, 1);
  atomic_store(&t->got, 1);
  sleep_ms(t->hold_ms);
  doclock_release(key);
  return NULL;
}

static void shared_holders_overlap(void **state) {
  (void)state;
  doclock_shared(KEY);
  taker t = {.exclusive = false};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, take, &t), 0);
  /* the second shared taker gets in while this thread still holds the key */
  bool overlapped = becomes_set(&t.got, 2000);
  doclock_release(KEY);
  pthread_join(th, NULL);
  assert_true(overlapped);
}

static void exclusive_waits_for_shared_holders(void **state) {
  (void)state;
  doclock_shared(KEY);
  taker w = {.exclusive = true};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, take, &w), 0);
  bool waited = !becomes_set(&w.got, 150);
  doclock_release(KEY);
  pthread_join(th, NULL);
  assert_true(waited);
}

static void shared_waits_for_exclusive_holder(void **state) {
  (void)state;
  doclock_exclusive(KEY);
  taker r = {.exclusive = false};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, take, &r), 0);
  bool waited = !becomes_set(&r.got, 150);
  doclock_release(KEY);
  pthread_join(th, NULL);
  assert_true(waited);
}

/* A recount must not wait for ever behind chunks that keep overlapping: once it waits,
 * a later chunk waits behind it. */
static void waiting_exclusive_goes_before_later_shared(void **state) {
  (void)state;
  atomic_int sequence = 0;
  doclock_shared(KEY);
  taker w = {.exclusive = true, .hold_ms = 50, .sequence = &sequence};
  taker r = {.exclusive = false, .sequence = &sequence};
  pthread_t tw, tr;
  assert_int_equal(pthread_create(&tw, NULL, take, &w), 0);
  sleep_ms(100); /* the exclusive taker is waiting now */
  assert_int_equal(pthread_create(&tr, NULL, take, &r), 0);
  /* with reader preference the later shared taker would get in beside this thread */
  bool reader_waited = !becomes_set(&r.got, 150);
  bool writer_waited = !atomic_load(&w.got);
  doclock_release(KEY);
  pthread_join(tw, NULL);
  pthread_join(tr, NULL);
  assert_true(reader_waited);
  assert_true(writer_waited);
  assert_int_equal(w.order, 0);
  assert_int_equal(r.order, 1);
}

/* Keys repeated, or sharing a stripe, are taken once: taking a stripe twice would wait on
 * itself. Released, the key is free again for an exclusive taker. */
static void sets_take_each_stripe_once(void **state) {
  (void)state;
  const char *keys[] = {KEY, "tally\x1f" "Election B", KEY, KEY};
  doclock_exclusive_set(keys, 4);
  doclock_release_set(keys, 4);
  doclock_shared_set(keys, 4);
  taker w = {.exclusive = true};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, take, &w), 0);
  bool waited = !becomes_set(&w.got, 100);
  doclock_release_set(keys, 4);
  pthread_join(th, NULL);
  assert_true(waited);
}

/* The rwlock stripes are not the mutex stripes: a thread holding a key's mutex (a tally
 * write inside a chunk's shared hold) still lets others take the key shared. */
static void rw_stripes_are_apart_from_mutexes(void **state) {
  (void)state;
  doclock_lock(KEY);
  taker r = {.exclusive = true};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, take, &r), 0);
  bool got = becomes_set(&r.got, 2000);
  doclock_unlock(KEY);
  pthread_join(th, NULL);
  assert_true(got);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shared_holders_overlap),
      cmocka_unit_test(exclusive_waits_for_shared_holders),
      cmocka_unit_test(shared_waits_for_exclusive_holder),
      cmocka_unit_test(waiting_exclusive_goes_before_later_shared),
      cmocka_unit_test(sets_take_each_stripe_once),
      cmocka_unit_test(rw_stripes_are_apart_from_mutexes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
