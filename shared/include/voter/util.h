/* util — small helpers every module needs: ids, time, text. Prefix util_. */
#ifndef VOTER_UTIL_H
#define VOTER_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Random UUID v4 (36 chars + NUL) from OpenSSL's CSPRNG. */
void util_uuid(char out[37]);

/* true when s is a 24-character hex ObjectId. */
bool util_is_object_id(const char *s);

/* Milliseconds since the epoch (wall clock) and a monotonic clock in seconds. */
int64_t util_now_ms(void);
double util_monotonic(void);

/* A condition variable whose timed waits use CLOCK_MONOTONIC (a wall-clock step neither
 * stretches nor cuts a wait), and the deadline ms from now on that clock for it. */
void util_cond_init_monotonic(pthread_cond_t *cond);
struct timespec util_monotonic_deadline(long ms);

/* Renders epoch milliseconds the way the original API did: 2016-11-08T00:00:00.000+0000. */
void util_format_date(int64_t ms, char out[32]);

/* Parses YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.fff](Z|+hhmm|+hh:mm) into epoch ms (UTC);
 * rejects impossible dates. 0 on success. */
int util_parse_date(const char *s, int64_t *ms);

/* Percent-decodes len bytes of s ('+' becomes a space when plus_is_space); NULL when the
 * encoding is malformed or decodes to a NUL byte. Caller frees. */
char *util_percent_decode(const char *s, size_t len, bool plus_is_space);

/* Percent-encodes a path segment (RFC 3986 unreserved kept). Caller frees. */
char *util_percent_encode(const char *s);

/* Escapes regex metacharacters so s matches literally inside a $regex. Caller frees. */
char *util_regex_escape(const char *s);

#endif
