/* metrics — a small Prometheus registry: counters and histograms with labels.
 *
 * Series are created on first use and live until exit; label sets are passed
 * pre-rendered (`route="/x",status="200"`) because every caller knows its labels
 * statically and this keeps the hot path to one lock and one lookup. */
#ifndef VOTER_METRICS_H
#define VOTER_METRICS_H

#include <stddef.h>

/* Declares a family once (help text and type), e.g. at start-up. Re-declaring is harmless. */
void metrics_describe(const char *name, const char *type, const char *help);

void metrics_counter_add(const char *name, const char *labels, double delta);
#define metrics_counter_inc(name, labels) metrics_counter_add((name), (labels), 1.0)

/* Sets a gauge's value. */
void metrics_gauge_set(const char *name, const char *labels, double value);

/* Observes a value (seconds for latencies) into a histogram with fixed buckets
 * 1ms..10s. */
void metrics_histogram_observe(const char *name, const char *labels, double value);

/* Renders every family in Prometheus text format 0.0.4; caller frees. */
char *metrics_render(void);

/* The current value of a counter or gauge series (0 when absent); for tests. */
double metrics_value(const char *name, const char *labels);

/* Frees every series (at exit, keeps leak checkers quiet). */
void metrics_reset(void);

#endif
