/* doclock — striped in-process mutexes and rwlocks keyed by string; see doclock.h. */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np: writer preference */
#include "voter/doclock.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define STRIPES 64

static pthread_mutex_t stripes[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

/* FNV-1a of the key picks the stripe: unrelated keys may share one (a little waiting).
 * A thread must not lock two keys one by one (they may share a stripe: a self-deadlock);
 * doclock_lock_set takes a set's stripes once each, in order. */
static unsigned stripe_of(const char *key) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
  return h % STRIPES;
}

void doclock_lock(const char *key) { pthread_mutex_lock(&stripes[stripe_of(key)]); }
void doclock_unlock(const char *key) { pthread_mutex_unlock(&stripes[stripe_of(key)]); }

/* Which stripes a set of keys needs. */
static void stripes_of(const char *const *keys, unsigned n, bool used[STRIPES]) {
  for (unsigned s = 0; s < STRIPES; s++) used[s] = false;
  for (unsigned i = 0; i < n; i++) used[stripe_of(keys[i])] = true;
}

void doclock_lock_set(const char *const *keys, unsigned n) {
  bool used[STRIPES];
  stripes_of(keys, n, used);
  for (unsigned s = 0; s < STRIPES; s++)
    if (used[s]) pthread_mutex_lock(&stripes[s]);
}

void doclock_unlock_set(const char *const *keys, unsigned n) {
  bool used[STRIPES];
  stripes_of(keys, n, used);
  for (unsigned s = STRIPES; s-- > 0;)
    if (used[s]) pthread_mutex_unlock(&stripes[s]);
}

/* ---- read/write stripes ---- */

static pthread_rwlock_t rw_stripes[STRIPES];
static pthread_once_t rw_once = PTHREAD_ONCE_INIT;

/* glibc's default kind prefers readers: a recount (exclusive) could wait for ever behind
 * overlapping chunks (shared). */
static void rw_init(void) {
  pthread_rwlockattr_t attr;
  if (pthread_rwlockattr_init(&attr) != 0 ||
      pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) != 0)
    abort();
  for (unsigned s = 0; s < STRIPES; s++)
    if (pthread_rwlock_init(&rw_stripes[s], &attr) != 0) abort();
  pthread_rwlockattr_destroy(&attr);
}

static void rw_take_set(const char *const *keys, unsigned n, bool exclusive) {
  pthread_once(&rw_once, rw_init);
  bool used[STRIPES];
  stripes_of(keys, n, used);
  for (unsigned s = 0; s < STRIPES; s++) {
    if (!used[s]) continue;
    if (exclusive) pthread_rwlock_wrlock(&rw_stripes[s]);
    else pthread_rwlock_rdlock(&rw_stripes[s]);
  }
}

void doclock_shared_set(const char *const *keys, unsigned n) { rw_take_set(keys, n, false); }
void doclock_exclusive_set(const char *const *keys, unsigned n) { rw_take_set(keys, n, true); }

void doclock_release_set(const char *const *keys, unsigned n) {
  bool used[STRIPES];
  stripes_of(keys, n, used);
  for (unsigned s = STRIPES; s-- > 0;)
    if (used[s]) pthread_rwlock_unlock(&rw_stripes[s]);
}
