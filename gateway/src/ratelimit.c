/* ratelimit — sharded token buckets; see ratelimit.h. */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "voter/xalloc.h"

#define SHARDS 64
#define CHAINS 1024 /* per shard */

typedef struct bucket {
  struct bucket *next;
  uint64_t hash;
  double tokens;
  double last_s;
  double full_at_s; /* after this, the bucket is as good as new */
  char key[];
} bucket;

typedef struct {
  pthread_mutex_t lock;
  bucket *chains[CHAINS];
} shard;

static shard shards[SHARDS] = {[0 ... SHARDS - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER}};

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

void gw_rl_take(const gw_limit *l, const char *tier, const char *identity, double now_s,
                gw_rl_result *out) {
  memset(out, 0, sizeof *out);
  if (!l || l->unlimited) return;
  /* the policy's numbers are part of the key (l->key): a reload that changes them starts
   * afresh */
  char key[512];
  size_t klen = 0;
  const char *parts[5] = {l->key, "\x1f", tier ? tier : "", "\x1f", identity ? identity : ""};
  for (int i = 0; i < 5; i++) {
    size_t n = strlen(parts[i]);
    if (klen + n >= sizeof key) n = sizeof key - 1 - klen;
    memcpy(key + klen, parts[i], n);
    klen += n;
  }
  key[klen] = 0;
  uint64_t h = fnv1a(key, klen);
  shard *s = &shards[h % SHARDS];
  double rate = l->count / l->window_s; /* tokens per second */
  pthread_mutex_lock(&s->lock);
  bucket **chain = &s->chains[(h / SHARDS) % CHAINS];
  bucket *b = NULL;
  for (bucket **pp = chain; *pp;) {
    bucket *e = *pp;
    if (e->hash == h && strncmp(e->key, key, klen) == 0 && e->key[klen] == 0) {
      b = e;
      pp = &e->next;
    } else if (e->full_at_s <= now_s) { /* refilled: forget it */
      *pp = e->next;
      free(e);
    } else {
      pp = &e->next;
    }
  }
  if (!b) {
    b = xmalloc(sizeof *b + klen + 1);
    memcpy(b->key, key, klen);
    b->key[klen] = 0;
    b->hash = h;
    b->tokens = l->burst;
    b->last_s = now_s;
    b->next = *chain;
    *chain = b;
  }
  double elapsed = now_s - b->last_s;
  if (elapsed > 0) b->tokens = fmin(l->burst, b->tokens + elapsed * rate);
  b->last_s = now_s;
  if (b->tokens >= 1.0) {
    b->tokens -= 1.0;
  } else {
    out->limited = true;
    out->retry_after_s = (long)ceil((1.0 - b->tokens) / rate);
    if (out->retry_after_s < 1) out->retry_after_s = 1;
  }
  out->remaining = (long)floor(b->tokens);
  double to_full = (l->burst - b->tokens) / rate;
  b->full_at_s = now_s + to_full;
  out->reset_s = (long)ceil(to_full);
  pthread_mutex_unlock(&s->lock);
}

static size_t put_long(char *o, long v) {
  char tmp[24];
  size_t n = 0;
  unsigned long u = v < 0 ? 0 : (unsigned long)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  for (size_t i = 0; i < n; i++) o[i] = tmp[n - 1 - i];
  return n;
}

int gw_rl_format(const gw_limit *l, const gw_rl_result *r, char *policy, size_t policylen,
                 char *ratelimit, size_t ratelimitlen) {
  size_t pn = strlen(l->policy), nn = strlen(l->name);
  if (pn + 1 > policylen || nn + 60 > ratelimitlen) return -1;
  memcpy(policy, l->policy, pn + 1);
  char *o = ratelimit;
  *o++ = '"';
  memcpy(o, l->name, nn);
  o += nn;
  memcpy(o, "\";r=", 4);
  o += 4;
  o += put_long(o, r->remaining);
  memcpy(o, ";t=", 3);
  o += 3;
  o += put_long(o, r->reset_s);
  *o = 0;
  return 0;
}

void gw_rl_free_all(void) {
  for (int i = 0; i < SHARDS; i++) {
    pthread_mutex_lock(&shards[i].lock);
    for (int c = 0; c < CHAINS; c++) {
      bucket *b = shards[i].chains[c];
      while (b) {
        bucket *next = b->next;
        free(b);
        b = next;
      }
      shards[i].chains[c] = NULL;
    }
    pthread_mutex_unlock(&shards[i].lock);
  }
}
