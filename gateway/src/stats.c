/* stats — per-loop metrics; see stats.h. */
#include "stats.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/xalloc.h"

#define NB 12
static const double bounds[NB] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,   0.25,   0.5,   1.0,  2.5,   10.0};
#define CHAINS 256

typedef struct series {
  struct series *next;     /* hash chain */
  struct series *all_next; /* insertion order */
  const char *family;      /* static string */
  char *labels;
  bool histogram;
  double value; /* counter value, or histogram sum */
  uint64_t count;
  uint64_t buckets[NB];
} series;

#define RCACHE 256
typedef struct {
  char route[96];
  int status;
  series *requests, *duration, *upstream;
} rentry;

struct gw_stats {
  pthread_mutex_t lock;
  rentry rcache[RCACHE];
  series *chains[CHAINS];
  series *all;
  series **all_tail;
};

static const struct {
  const char *name, *type, *help;
} families[] = {
    {"gateway_requests_total", "counter", "Requests answered, by route and status code."},
    {"gateway_request_duration_seconds", "histogram", "Client-side latency, by route."},
    {"gateway_upstream_duration_seconds", "histogram",
     "Time from the first upstream attempt to the upstream response headers, by route."},
    {"gateway_upstream_requests_total", "counter", "Upstream attempts, by upstream and outcome."},
    {"gateway_retries_total", "counter", "Retries on another instance, by route."},
    {"gateway_ratelimited_total", "counter", "Requests refused with 429, by route and tier."},
    {"gateway_rejected_total", "counter", "Requests refused by the gateway, by reason."},
    {NULL, NULL, NULL}};

gw_stats *gw_stats_new(void) {
  gw_stats *s = xcalloc(1, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  s->all_tail = &s->all;
  return s;
}

void gw_stats_free(gw_stats *s) {
  if (!s) return;
  series *e = s->all;
  while (e) {
    series *n = e->all_next;
    free(e->labels);
    free(e);
    e = n;
  }
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static unsigned hash2(const char *a, const char *b) {
  unsigned h = 2166136261u;
  for (; *a; a++) h = (h ^ (unsigned char)*a) * 16777619u;
  for (; *b; b++) h = (h ^ (unsigned char)*b) * 16777619u;
  return h;
}

/* Caller holds s->lock. */
static series *get(gw_stats *s, const char *family, const char *labels, bool histogram) {
  unsigned h = hash2(family, labels) % CHAINS;
  for (series *e = s->chains[h]; e; e = e->next)
    if (strcmp(e->family, family) == 0 && strcmp(e->labels, labels) == 0) return e;
  series *e = xcalloc(1, sizeof *e);
  e->family = family;
  e->labels = xstrdup(labels);
  e->histogram = histogram;
  e->next = s->chains[h];
  s->chains[h] = e;
  *s->all_tail = e;
  s->all_tail = &e->all_next;
  return e;
}

void gw_stats_add(gw_stats *s, const char *family, const char *labels, double delta) {
  pthread_mutex_lock(&s->lock);
  get(s, family, labels, false)->value += delta;
  pthread_mutex_unlock(&s->lock);
}

gw_counter *gw_stats_counter(gw_stats *s, const char *family, const char *labels) {
  pthread_mutex_lock(&s->lock);
  series *e = get(s, family, labels, false);
  pthread_mutex_unlock(&s->lock);
  return e;
}

void gw_counter_add(gw_stats *s, gw_counter *c, double delta) {
  pthread_mutex_lock(&s->lock);
  c->value += delta;
  pthread_mutex_unlock(&s->lock);
}

void gw_stats_observe(gw_stats *s, const char *family, const char *labels, double seconds) {
  pthread_mutex_lock(&s->lock);
  series *e = get(s, family, labels, true);
  e->value += seconds;
  e->count++;
  for (int i = 0; i < NB; i++)
    if (seconds <= bounds[i]) e->buckets[i]++;
  pthread_mutex_unlock(&s->lock);
}

static void observe(series *e, double seconds) {
  e->value += seconds;
  e->count++;
  for (int i = 0; i < NB; i++)
    if (seconds <= bounds[i]) e->buckets[i]++;
}

void gw_stats_request(gw_stats *s, const char *route, int status, double seconds,
                      double upstream_seconds) {
  unsigned h = (hash2(route, "") * 31u + (unsigned)status) % RCACHE;
  pthread_mutex_lock(&s->lock);
  rentry *e = &s->rcache[h];
  if (!e->requests || e->status != status || strcmp(e->route, route) != 0) {
    char labels[160];
    snprintf(e->route, sizeof e->route, "%s", route);
    e->status = status;
    snprintf(labels, sizeof labels, "route=\"%s\",code=\"%d\"", route, status);
    e->requests = get(s, "gateway_requests_total", labels, false);
    snprintf(labels, sizeof labels, "route=\"%s\"", route);
    e->duration = get(s, "gateway_request_duration_seconds", labels, true);
    e->upstream = get(s, "gateway_upstream_duration_seconds", labels, true);
  }
  e->requests->value += 1;
  observe(e->duration, seconds);
  if (upstream_seconds >= 0) observe(e->upstream, upstream_seconds);
  pthread_mutex_unlock(&s->lock);
}

typedef struct {
  char *buf;
  size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    b->cap = (b->cap + (size_t)n + 1) * 2;
    b->buf = xrealloc(b->buf, b->cap);
  }
}

char *gw_stats_render(gw_stats *const *all, int n) {
  /* merge into one list owned by loop 0's layout: a fresh gw_stats accumulates */
  gw_stats *m = gw_stats_new();
  for (int w = 0; w < n; w++) {
    pthread_mutex_lock(&all[w]->lock);
    for (series *e = all[w]->all; e; e = e->all_next) {
      series *t = get(m, e->family, e->labels, e->histogram);
      t->value += e->value;
      t->count += e->count;
      for (int i = 0; i < NB; i++) t->buckets[i] += e->buckets[i];
    }
    pthread_mutex_unlock(&all[w]->lock);
  }
  sbuf b = {.cap = 4096};
  b.buf = xmalloc(b.cap);
  b.buf[0] = 0;
  for (int f = 0; families[f].name; f++) {
    sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
              families[f].name, families[f].type);
    for (series *e = m->all; e; e = e->all_next) {
      if (strcmp(e->family, families[f].name) != 0) continue;
      const char *sep = e->labels[0] ? "," : "";
      if (!e->histogram) {
        sb_printf(&b, "%s{%s} %.17g\n", e->family, e->labels, e->value);
        continue;
      }
      for (int i = 0; i < NB; i++)
        sb_printf(&b, "%s_bucket{%s%sle=\"%g\"} %llu\n", e->family, e->labels, sep, bounds[i],
                  (unsigned long long)e->buckets[i]);
      sb_printf(&b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", e->family, e->labels, sep,
                (unsigned long long)e->count);
      sb_printf(&b, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", e->family, e->labels, e->value,
                e->family, e->labels, (unsigned long long)e->count);
    }
  }
  gw_stats_free(m);
  return b.buf;
}
