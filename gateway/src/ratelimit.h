/* ratelimit — token buckets with any window, shared by all loops (prefix gw_rl_).
 *
 * A bucket per (limit, tier, identity) where identity is the API key or else the client
 * address. Buckets live in a hash table split into shards, each with its own mutex, so two
 * loops contend only when they hit the same shard at the same moment (never a global
 * lock). A bucket that has refilled completely is indistinguishable from a new one, so such
 * entries are dropped whenever their chain is walked: memory follows recent activity. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

typedef struct gw_rl_result {
  bool limited;
  long remaining;     /* whole tokens left after this request */
  long reset_s;       /* seconds until the bucket is full again (RateLimit t=) */
  long retry_after_s; /* when limited: seconds until one token is available */
} gw_rl_result;

/* Takes one token for identity from the bucket of limit l in tier (a name). now_s is a
 * monotonic clock in seconds. */
void gw_rl_take(const gw_limit *l, const char *tier, const char *identity, double now_s,
                gw_rl_result *out);

/* Renders the IETF draft fields (draft-ietf-httpapi-ratelimit-headers):
 *   RateLimit-Policy: "name";q=QUOTA;w=WINDOW_SECONDS
 *   RateLimit:        "name";r=REMAINING;t=RESET_SECONDS
 * 0 on success, -1 if a buffer is too small. */
int gw_rl_format(const gw_limit *l, const gw_rl_result *r, char *policy, size_t policylen,
                 char *ratelimit, size_t ratelimitlen);

/* Frees every bucket (at exit). */
void gw_rl_free_all(void);

#endif
