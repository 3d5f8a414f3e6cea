/* metrics — Prometheus registry; see metrics.h.
 *
 * A family holds series keyed by their rendered label string. Lookups are linear:
 * a service has a few dozen series, and one mutex keeps it simple and correct. */
#include "voter/metrics.h"
#include "voter/xalloc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 12
static const double bucket_bounds[BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,   0.25,   0.5,   1.0,  2.5,   10.0};

typedef struct series {
  struct series *next;
  char *labels;
  double value; /* counter/gauge value, or histogram sum */
  unsigned long long count;
  unsigned long long buckets[BUCKETS];
} series;

typedef struct family {
  struct family *next;
  char *name;
  char *type; /* counter, gauge, histogram */
  char *help;
  series *series;
} family;

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static family *families;

static family *family_get(const char *name, const char *type, const char *help) {
  for (family *f = families; f; f = f->next)
    if (strcmp(f->name, name) == 0) return f;
  family *f = xcalloc(1, sizeof *f);
  f->name = xstrdup(name);
  f->type = xstrdup(type);
  f->help = xstrdup(help ? help : name);
  /* append so families render in declaration order */
  family **tail = &families;
  while (*tail) tail = &(*tail)->next;
  *tail = f;
  return f;
}

static series *series_get(family *f, const char *labels) {
  labels = labels ? labels : "";
  for (series *s = f->series; s; s = s->next)
    if (strcmp(s->labels, labels) == 0) return s;
  series *s = xcalloc(1, sizeof *s);
  s->labels = xstrdup(labels);
  series **tail = &f->series;
  while (*tail) tail = &(*tail)->next;
  *tail = s;
  return s;
}

void metrics_describe(const char *name, const char *type, const char *help) {
  pthread_mutex_lock(&metrics_lock);
  family *f = family_get(name, type, help);
  if (help && strcmp(f->help, help) != 0) {
    free(f->help);
    f->help = xstrdup(help);
  }
  pthread_mutex_unlock(&metrics_lock);
}

void metrics_counter_add(const char *name, const char *labels, double delta) {
  pthread_mutex_lock(&metrics_lock);
  series_get(family_get(name, "counter", NULL), labels)->value += delta;
  pthread_mutex_unlock(&metrics_lock);
}

void metrics_gauge_set(const char *name, const char *labels, double value) {
  pthread_mutex_lock(&metrics_lock);
  series_get(family_get(name, "gauge", NULL), labels)->value = value;
  pthread_mutex_unlock(&metrics_lock);
}

void metrics_histogram_observe(const char *name, const char *labels, double value) {
  pthread_mutex_lock(&metrics_lock);
  series *s = series_get(family_get(name, "histogram", NULL), labels);
  s->value += value;
  s->count++;
  for (int i = 0; i < BUCKETS; i++)
    if (value <= bucket_bounds[i]) s->buckets[i]++;
  pthread_mutex_unlock(&metrics_lock);
}

double metrics_value(const char *name, const char *labels) {
  double v = 0;
  pthread_mutex_lock(&metrics_lock);
  for (family *f = families; f; f = f->next) {
    if (strcmp(f->name, name) != 0) continue;
    for (series *s = f->series; s; s = s->next)
      if (strcmp(s->labels, labels ? labels : "") == 0) v = s->value;
  }
  pthread_mutex_unlock(&metrics_lock);
  return v;
}

/* Growable string for rendering. */
typedef struct {
  char *buf;
  size_t len, cap;
} strbuf;

static void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *sb, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sb->cap - sb->len) {
      sb->len += (size_t)n;
      return;
    }
    sb->cap = sb->cap * 2 + (size_t)n + 1;
    sb->buf = xrealloc(sb->buf, sb->cap);
  }
}

/* Renders `name{labels,extra}` with the right commas. */
static void sb_series_name(strbuf *sb, const char *name, const char *suffix, const char *labels,
                           const char *extra) {
  int has_labels = labels && *labels, has_extra = extra && *extra;
  sb_printf(sb, "%s%s", name, suffix);
  if (has_labels || has_extra)
    sb_printf(sb, "{%s%s%s}", has_labels ? labels : "", has_labels && has_extra ? "," : "",
              has_extra ? extra : "");
}

char *metrics_render(void) {
  strbuf sb = {xmalloc(4096), 0, 4096};
  sb.buf[0] = 0;
  pthread_mutex_lock(&metrics_lock);
  for (family *f = families; f; f = f->next) {
    sb_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
    for (series *s = f->series; s; s = s->next) {
      if (strcmp(f->type, "histogram") != 0) {
        sb_series_name(&sb, f->name, "", s->labels, NULL);
        sb_printf(&sb, " %.17g\n", s->value);
        continue;
      }
      char le[32];
      for (int i = 0; i < BUCKETS; i++) {
        snprintf(le, sizeof le, "le=\"%g\"", bucket_bounds[i]);
        sb_series_name(&sb, f->name, "_bucket", s->labels, le);
        sb_printf(&sb, " %llu\n", s->buckets[i]);
      }
      sb_series_name(&sb, f->name, "_bucket", s->labels, "le=\"+Inf\"");
      sb_printf(&sb, " %llu\n", s->count);
      sb_series_name(&sb, f->name, "_sum", s->labels, NULL);
      sb_printf(&sb, " %.17g\n", s->value);
      sb_series_name(&sb, f->name, "_count", s->labels, NULL);
      sb_printf(&sb, " %llu\n", s->count);
    }
  }
  pthread_mutex_unlock(&metrics_lock);
  return sb.buf;
}

void metrics_reset(void) {
  pthread_mutex_lock(&metrics_lock);
  while (families) {
    family *f = families;
    families = f->next;
    while (f->series) {
      series *s = f->series;
      f->series = s->next;
      free(s->labels);
      free(s);
    }
    free(f->name);
    free(f->type);
    free(f->help);
    free(f);
  }
  pthread_mutex_unlock(&metrics_lock);
}
