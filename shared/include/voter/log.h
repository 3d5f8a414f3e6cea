/* log — structured JSON logging to stderr, one object per line.
 *
 * Every line carries ts, level, service and msg; callers add fields as a jansson
 * object (stolen) so values are always escaped correctly. Thread-safe: a line is
 * written with one fwrite under a lock so lines from threads never interleave. */
#ifndef VOTER_LOG_H
#define VOTER_LOG_H

#include <jansson.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Sets the service name and the minimum level ("debug", "info", "warn", "error"). */
void log_init(const char *service, const char *level);

/* Logs msg with extra fields (may be NULL; the reference is stolen). */
void log_fields(log_level level, const char *msg, json_t *fields);

/* printf-style convenience without extra fields. */
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
