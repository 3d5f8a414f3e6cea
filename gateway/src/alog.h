/* alog — the access log: one JSON line per request on stderr (prefix gw_alog_).
 *
 * Lines are formatted by hand (no JSON library on the hot path) into a per-loop buffer
 * and written with one write(2) per event-loop iteration, so a busy loop logs many
 * requests per system call and lines from different loops never interleave (stderr is
 * appended whole lines at a time). */
#ifndef GW_ALOG_H
#define GW_ALOG_H

#include <stddef.h>

typedef struct gw_alog {
  char *buf;
  size_t len, cap;
  long cached_sec; /* the second cached_ts was rendered for */
  char cached_ts[32];
} gw_alog;

/* Appends s as a JSON string (quotes included), escaping as needed; n bytes of s. */
void gw_json_str(gw_alog *l, const char *s, size_t n);
void gw_alog_raw(gw_alog *l, const char *s, size_t n);
void gw_alog_printf(gw_alog *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts a line: {"ts":"…","level":"info","service":"gateway","msg":"access" */
void gw_alog_begin(gw_alog *l);
/* ,"key":"value" (value NULL renders null) */
void gw_alog_str(gw_alog *l, const char *key, const char *value);
/* ,"key":123  /  ,"key":12.345 (seconds rendered as milliseconds)  /  ,"key":null */
void gw_alog_uint(gw_alog *l, const char *key, unsigned long long v);
void gw_alog_ms(gw_alog *l, const char *key, double seconds);
void gw_alog_null(gw_alog *l, const char *key);
/* Ends the line with }\n. */
void gw_alog_end(gw_alog *l);
/* Writes out what was buffered. */
void gw_alog_flush(gw_alog *l);
void gw_alog_free(gw_alog *l);

#endif
