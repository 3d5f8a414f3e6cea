/* Unit tests for metrics: counters, gauges, histograms and the text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "voter/metrics.h"

static int teardown(void **state) {
  (void)state;
  metrics_reset();
  return 0;
}

static void counters_accumulate_per_label_set(void **state) {
  (void)state;
  metrics_describe("jobs_total", "counter", "Jobs");
  metrics_counter_inc("jobs_total", "status=\"ok\"");
  metrics_counter_add("jobs_total", "status=\"ok\"", 2);
  metrics_counter_inc("jobs_total", "status=\"failed\"");
  assert_true(metrics_value("jobs_total", "status=\"ok\"") == 3.0);
  assert_true(metrics_value("jobs_total", "status=\"failed\"") == 1.0);
  assert_true(metrics_value("jobs_total", "status=\"none\"") == 0.0);
  char *text = metrics_render();
  assert_non_null(strstr(text, "# HELP jobs_total Jobs\n# TYPE jobs_total counter\n"));
  assert_non_null(strstr(text, "jobs_total{status=\"ok\"} 3\n"));
  assert_non_null(strstr(text, "jobs_total{status=\"failed\"} 1\n"));
  free(text);
}

static void gauges_are_set_not_added(void **state) {
  (void)state;
  metrics_gauge_set("queue_depth", "", 5);
  metrics_gauge_set("queue_depth", "", 2);
  char *text = metrics_render();
  assert_non_null(strstr(text, "# TYPE queue_depth gauge\nqueue_depth 2\n"));
  free(text);
}

static void histograms_have_cumulative_buckets_sum_and_count(void **state) {
  (void)state;
  metrics_histogram_observe("lat_seconds", "route=\"/x\"", 0.003);
  metrics_histogram_observe("lat_seconds", "route=\"/x\"", 0.2);
  metrics_histogram_observe("lat_seconds", "route=\"/x\"", 20);
  char *text = metrics_render();
  assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"0.001\"} 0\n"));
  assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"0.005\"} 1\n"));
  assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"0.25\"} 2\n"));
  assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"10\"} 2\n"));
  assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n"));
  assert_non_null(strstr(text, "lat_seconds_count{route=\"/x\"} 3\n"));
  assert_non_null(strstr(text, "lat_seconds_sum{route=\"/x\"} 20.20"));
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(counters_accumulate_per_label_set, teardown),
      cmocka_unit_test_teardown(gauges_are_set_not_added, teardown),
      cmocka_unit_test_teardown(histograms_have_cumulative_buckets_sum_and_count, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
