/* log — structured JSON logging; see log.h. */
#include "voter/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_service[64] = "voter";
static log_level log_min = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, const char *level) {
  if (service) snprintf(log_service, sizeof log_service, "%s", service);
  if (!level) return;
  for (int i = 0; i < 4; i++)
    if (strcasecmp(level, level_names[i]) == 0) log_min = (log_level)i;
}

static void format_time(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void log_fields(log_level level, const char *msg, json_t *fields) {
  if (level < log_min) {
    json_decref(fields);
    return;
  }
  char ts[40];
  format_time(ts, sizeof ts);
  json_t *line = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", level_names[level],
                           "service", log_service, "msg", msg ? msg : "");
  if (fields) {
    json_object_update_missing(line, fields);
    json_decref(fields);
  }
  char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(line);
  if (!text) return;
  size_t len = strlen(text);
  text[len] = '\n'; /* replace the terminator: one write per line */
  pthread_mutex_lock(&log_lock);
  fwrite(text, 1, len + 1, stderr);
  fflush(stderr);
  pthread_mutex_unlock(&log_lock);
  free(text);
}

void log_msg(log_level level, const char *fmt, ...) {
  if (level < log_min) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  log_fields(level, buf, NULL);
}
