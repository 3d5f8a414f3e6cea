/* util — ids, time, text; see util.h. */
#include "voter/util.h"
#include "voter/xalloc.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void util_uuid(char out[37]) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    /* The CSPRNG failing is not recoverable in any sensible way for id generation. */
    abort();
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

bool util_is_object_id(const char *s) {
  if (!s || strlen(s) != 24) return false;
  for (int i = 0; i < 24; i++)
    if (!isxdigit((unsigned char)s[i])) return false;
  return true;
}

int64_t util_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double util_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void util_cond_init_monotonic(pthread_cond_t *cond) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(cond, &attr);
  pthread_condattr_destroy(&attr);
}

struct timespec util_monotonic_deadline(long ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  return until;
}

void util_format_date(int64_t ms, char out[32]) {
  time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int millis = (int)(ms - (int64_t)secs * 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03d+0000", millis);
}

static int days_in_month(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : d[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian); Howard Hinnant's algorithm. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int util_parse_date(const char *s, int64_t *ms) {
  if (!s || strlen(s) < 10 || s[4] != '-' || s[7] != '-') return -1;
  int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return -1;
  int h = 0, mi = 0, sec = 0, frac = 0, offset_min = 0;
  const char *p = s + 10;
  if (*p == 'T' || *p == ' ') {
    p++;
    if (strlen(p) < 8 || p[2] != ':' || p[5] != ':') return -1;
    h = digits(p, 2), mi = digits(p + 3, 2), sec = digits(p + 6, 2);
    if (h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) return -1;
    p += 8;
    if (*p == '.') {
      p++;
      int n = 0, scale = 100;
      while (isdigit((unsigned char)*p)) {
        if (n < 3) frac += (*p - '0') * scale, scale /= 10;
        p++, n++;
      }
      if (n == 0) return -1;
    }
    if (*p == 'Z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      int sign = *p == '-' ? -1 : 1;
      p++;
      int oh = digits(p, 2);
      if (oh < 0) return -1;
      p += 2;
      if (*p == ':') p++;
      int om = digits(p, 2);
      if (om < 0 || oh > 14 || om > 59) return -1;
      p += 2;
      offset_min = sign * (oh * 60 + om);
    }
  }
  if (*p) return -1;
  int64_t days = days_from_civil(y, mo, d);
  *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - (int64_t)offset_min * 60) * 1000 + frac;
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char *util_percent_decode(const char *s, size_t len, bool plus_is_space) {
  char *out = xmalloc(len + 1), *o = out;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '%') {
      if (i + 2 >= len) {
        free(out);
        return NULL;
      }
      int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
      if (a < 0 || b < 0 || (a == 0 && b == 0)) {
        free(out);
        return NULL;
      }
      *o++ = (char)(a * 16 + b);
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      *o++ = ' ';
    } else {
      *o++ = s[i];
    }
  }
  *o = 0;
  return out;
}

char *util_percent_encode(const char *s) {
  size_t n = strlen(s);
  char *out = xmalloc(n * 3 + 1), *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
      *o++ = (char)*p;
    } else {
      o += sprintf(o, "%%%02X", *p);
    }
  }
  *o = 0;
  return out;
}

char *util_regex_escape(const char *s) {
  size_t n = strlen(s);
  char *out = xmalloc(n * 2 + 1), *o = out;
  for (; *s; s++) {
    if (strchr("\\^$.|?*+()[]{}", *s)) *o++ = '\\';
    *o++ = *s;
  }
  *o = 0;
  return out;
}
