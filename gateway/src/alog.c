/* alog — buffered JSON access log; see alog.h. */
#include "alog.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "voter/xalloc.h"

static void reserve(gw_alog *l, size_t more) {
  if (l->len + more <= l->cap) return;
  size_t cap = l->cap ? l->cap : 16384;
  while (cap < l->len + more) cap *= 2;
  char *nb = xrealloc(l->buf, cap);
  l->buf = nb;
  l->cap = cap;
}

void gw_alog_raw(gw_alog *l, const char *s, size_t n) {
  reserve(l, n);
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

void gw_alog_printf(gw_alog *l, const char *fmt, ...) {
  reserve(l, 256);
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, l->cap - l->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < l->cap - l->len) {
      l->len += (size_t)n;
      return;
    }
    reserve(l, (size_t)n + 1);
  }
}

void gw_json_str(gw_alog *l, const char *s, size_t n) {
  reserve(l, n * 6 + 2);
  char *o = l->buf + l->len;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      o += sprintf(o, "\\u%04x", c);
    } else if (c >= 0x80) {
      /* keep valid UTF-8 as is would need validation; escape bytes instead so every line
       * is valid JSON whatever a client sends */
      o += sprintf(o, "\\u%04x", c);
    } else {
      *o++ = (char)c;
    }
  }
  *o++ = '"';
  l->len = (size_t)(o - l->buf);
}

void gw_alog_begin(gw_alog *l) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != l->cached_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(l->cached_ts, sizeof l->cached_ts, "%Y-%m-%dT%H:%M:%S", &tm);
    l->cached_sec = ts.tv_sec;
  }
  static const char tail[] = "Z\",\"level\":\"info\",\"service\":\"gateway\",\"msg\":\"access\"";
  size_t tn = strlen(l->cached_ts);
  reserve(l, tn + sizeof tail + 16);
  char *o = l->buf + l->len;
  memcpy(o, "{\"ts\":\"", 7);
  o += 7;
  memcpy(o, l->cached_ts, tn);
  o += tn;
  long ms = ts.tv_nsec / 1000000;
  o[0] = '.';
  o[1] = (char)('0' + ms / 100);
  o[2] = (char)('0' + ms / 10 % 10);
  o[3] = (char)('0' + ms % 10);
  o += 4;
  memcpy(o, tail, sizeof tail - 1);
  o += sizeof tail - 1;
  l->len = (size_t)(o - l->buf);
}

/* The hot path formats numbers by hand: printf's machinery costs more than the rest of
 * the line. */
static size_t utoa(char *out, unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

static void put_key(gw_alog *l, const char *key) {
  size_t k = strlen(key);
  reserve(l, k + 64);
  char *o = l->buf + l->len;
  *o++ = ',';
  *o++ = '"';
  memcpy(o, key, k);
  o += k;
  *o++ = '"';
  *o++ = ':';
  l->len = (size_t)(o - l->buf);
}

void gw_alog_uint(gw_alog *l, const char *key, unsigned long long v) {
  put_key(l, key);
  l->len += utoa(l->buf + l->len, v);
}

void gw_alog_ms(gw_alog *l, const char *key, double seconds) {
  put_key(l, key);
  if (seconds < 0) seconds = 0;
  unsigned long long us = (unsigned long long)(seconds * 1e6 + 0.5);
  l->len += utoa(l->buf + l->len, us / 1000);
  char *o = l->buf + l->len;
  unsigned frac = (unsigned)(us % 1000);
  o[0] = '.';
  o[1] = (char)('0' + frac / 100);
  o[2] = (char)('0' + frac / 10 % 10);
  o[3] = (char)('0' + frac % 10);
  l->len += 4;
}

void gw_alog_null(gw_alog *l, const char *key) {
  put_key(l, key);
  gw_alog_raw(l, "null", 4);
}

void gw_alog_str(gw_alog *l, const char *key, const char *value) {
  put_key(l, key);
  if (value) gw_json_str(l, value, strlen(value));
  else gw_alog_raw(l, "null", 4);
}

void gw_alog_end(gw_alog *l) { gw_alog_raw(l, "}\n", 2); }

/* On a pipe, only writes up to PIPE_BUF are atomic: split there, at line ends, so lines
 * from several writers never interleave. On a file (O_APPEND) one write is enough. */
static int stderr_is_pipe = -1;

void gw_alog_flush(gw_alog *l) {
  if (stderr_is_pipe < 0) {
    struct stat st;
    stderr_is_pipe = fstat(2, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
  }
  size_t off = 0;
  while (off < l->len) {
    size_t n = l->len - off;
    if (stderr_is_pipe && n > PIPE_BUF) {
      size_t cut = PIPE_BUF;
      while (cut > 0 && l->buf[off + cut - 1] != '\n') cut--;
      if (cut == 0) { /* one line longer than PIPE_BUF: write it whole */
        const char *nl = memchr(l->buf + off, '\n', n);
        cut = nl ? (size_t)(nl - (l->buf + off)) + 1 : n;
      }
      n = cut;
    }
    ssize_t w = write(2, l->buf + off, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break; /* stderr gone: drop rather than block the loop */
    off += (size_t)w;
  }
  l->len = 0;
}

void gw_alog_free(gw_alog *l) {
  free(l->buf);
  l->buf = NULL;
  l->len = l->cap = 0;
}
