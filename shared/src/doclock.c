/* doclock — striped in-process mutexes keyed by string; see doclock.h. */
#include "voter/doclock.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

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
