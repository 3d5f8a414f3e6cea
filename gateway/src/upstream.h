/* upstream — the instance registry: addresses, health and ejection (prefix gw_instance_).
 *
 * One gw_instance per distinct (host:port, health path), created when a configuration first
 * names it and kept until exit, so health state and connection pools survive a reload that
 * keeps the instance. Health is a handful of atomics read by every loop without a lock:
 *
 *   passive: each proxied attempt reports success or failure; `failures` consecutive
 *            failures eject the instance for base·2^k (capped), k being the number of
 *            ejections since its last success, so a flapping instance stays out longer
 *            each time; once ejected, a single failure re-ejects it until it succeeds;
 *   active:  a health thread GETs the health path of every instance each interval; a 2xx
 *            re-admits an ejected instance at once, `failures` failed checks eject a
 *            healthy one.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct gw_conf;

typedef struct gw_instance {
  int id;                /* dense index, for per-loop pool arrays */
  char *name;            /* "host:port" as configured */
  char *health_path;
  char *host, *port;     /* name split, for re-resolution */
  bool numeric;          /* an address literal: never resolved again */
  /* The address: a host name is resolved again by the health thread every dns_refresh_ms
   * (a container recreated with a new IP, a DNS failover). Read it with gw_instance_addr. */
  pthread_mutex_t addr_lock;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  atomic_uint addr_gen;  /* bumped on a change: pooled connections to the old address go */
  int64_t resolved_ms;   /* health thread only */
  _Atomic int64_t ejected_until_ms; /* monotonic ms; 0 = in rotation */
  atomic_int failures;              /* consecutive failures */
  atomic_int ejections;             /* ejections since the last success */
  atomic_bool health_ok;            /* last active check result */
} gw_instance;

/* Finds or creates the instance (resolving host once). NULL with a message on error. */
gw_instance *gw_instance_get(const char *hostport, const char *health_path, char *err,
                           size_t errlen);
int gw_instance_count(void);
/* Copies the instance's current address; *gen receives its generation (addr_gen). */
void gw_instance_addr(gw_instance *r, struct sockaddr_storage *addr, socklen_t *len, unsigned *gen);

/* Monotonic clock in milliseconds, and in nanoseconds. */
int64_t gw_now_ms(void);
int64_t gw_now_ns(void);

bool gw_instance_available(const gw_instance *r, int64_t now_ms);
void gw_instance_success(gw_instance *r);
/* Counts a failure; ejects per the policy in conf. */
void gw_instance_failure(gw_instance *r, const struct gw_conf *c, const char *why);

/* The active health checker: one thread, started once; it reads the current configuration
 * through get_conf (which returns a referenced gw_conf). */
int gw_health_start(struct gw_conf *(*get_conf)(void));
void gw_health_stop(void);

/* Renders per-instance gauges into the shared metrics registry (for /gateway/metrics). */
void gw_instance_publish_metrics(void);

void gw_instance_free_all(void);

#endif
