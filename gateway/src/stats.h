/* stats — per-loop Prometheus counters and histograms (prefix gw_stats_).
 *
 * Every loop owns a gw_stats and updates it under its own mutex (uncontended: only the
 * /gateway/metrics renderer ever takes another loop's lock), so the per-request cost is
 * one uncontended lock and a hash lookup, never a process-wide lock. Rendering merges the
 * series of all loops by (family, labels). */
#ifndef GW_STATS_H
#define GW_STATS_H

typedef struct gw_stats gw_stats;

gw_stats *gw_stats_new(void);
void gw_stats_free(gw_stats *s);

/* Adds delta to counter `family{labels}`. */
void gw_stats_add(gw_stats *s, const char *family, const char *labels, double delta);

/* A counter found once, for a hot path that keeps adding to the same series: valid as
 * long as s. */
typedef struct series gw_counter;
gw_counter *gw_stats_counter(gw_stats *s, const char *family, const char *labels);
void gw_counter_add(gw_stats *s, gw_counter *c, double delta);
/* Observes seconds into histogram `family{labels}` (buckets 1ms .. 10s). */
void gw_stats_observe(gw_stats *s, const char *family, const char *labels, double seconds);

/* The per-request series: requests_total{route,code}, request_duration{route} and, when
 * upstream_seconds >= 0, upstream_duration{route}. Labels are rendered once per (route,
 * code) and cached, so the hot path does no formatting. */
void gw_stats_request(gw_stats *s, const char *route, int status, double seconds,
                      double upstream_seconds);

/* Renders the merged series of n loops in text format 0.0.4, family by family, with the
 * HELP/TYPE lines declared in stats.c. Caller frees. */
char *gw_stats_render(gw_stats *const *all, int n);

#endif
