/* multipart — multipart/form-data parsing; see multipart.h. */
#include "multipart.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *find(const char *hay, size_t hlen, const char *needle, size_t nlen) {
  if (nlen == 0 || hlen < nlen) return NULL;
  const char *end = hay + hlen - nlen;
  for (const char *p = hay; p <= end; p++) {
    p = memchr(p, needle[0], (size_t)(end - p) + 1);
    if (!p) return NULL;
    if (memcmp(p, needle, nlen) == 0) return p;
  }
  return NULL;
}

/* Copies parameter `name` (token or quoted string) of a header value into out. */
static bool header_param(const char *value, const char *name, char *out, size_t cap) {
  size_t nlen = strlen(name);
  for (const char *p = value; (p = strchr(p, ';')) != NULL;) {
    p++;
    while (*p == ' ' || *p == '\t') p++;
    if (strncasecmp(p, name, nlen) != 0 || p[nlen] != '=') continue;
    p += nlen + 1;
    size_t n = 0;
    if (*p == '"') {
      for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) p++;
        if (n + 1 < cap) out[n++] = *p;
      }
    } else {
      for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++)
        if (n + 1 < cap) out[n++] = *p;
    }
    out[n] = 0;
    return true;
  }
  return false;
}

int mp_boundary(const char *content_type, char *out, size_t cap) {
  if (!content_type) return -1;
  size_t n = strcspn(content_type, ";");
  while (n > 0 && content_type[n - 1] == ' ') n--;
  if (n != 19 || strncasecmp(content_type, "multipart/form-data", 19) != 0) return -1;
  if (!header_param(content_type, "boundary", out, cap)) return -1;
  size_t len = strlen(out);
  return len >= 1 && len <= 70 ? 0 : -1;
}

static void parse_headers(const char *h, size_t len, mp_part *part) {
  char line[1024];
  while (len > 0) {
    const char *eol = find(h, len, "\r\n", 2);
    size_t n = eol ? (size_t)(eol - h) : len;
    snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), h);
    char *colon = strchr(line, ':');
    if (colon) {
      *colon = 0;
      const char *value = colon + 1;
      while (*value == ' ' || *value == '\t') value++;
      if (strcasecmp(line, "Content-Disposition") == 0) {
        header_param(value, "name", part->name, sizeof part->name);
        header_param(value, "filename", part->filename, sizeof part->filename);
      } else if (strcasecmp(line, "Content-Type") == 0) {
        snprintf(part->content_type, sizeof part->content_type, "%s", value);
      }
    }
    if (!eol) break;
    len -= n + 2;
    h = eol + 2;
  }
}

int mp_parse(const char *body, size_t len, const char *boundary, mp_part *parts, int max,
             int *n, const char **error) {
  char delim[80];
  int dlen = snprintf(delim, sizeof delim, "--%s", boundary);
  *n = 0;
  const char *p = find(body, len, delim, (size_t)dlen);
  if (!p || (p != body && (p - body < 2 || memcmp(p - 2, "\r\n", 2) != 0))) {
    *error = "the body does not start with the multipart boundary";
    return -1;
  }
  const char *end = body + len;
  for (;;) {
    p += dlen;
    if (end - p >= 2 && memcmp(p, "--", 2) == 0) return 0; /* close delimiter */
    while (p < end && (*p == ' ' || *p == '\t')) p++;  /* transport padding */
    if (end - p < 2 || memcmp(p, "\r\n", 2) != 0) {
      *error = "malformed multipart delimiter line";
      return -1;
    }
    p += 2;
    const char *hend = find(p, (size_t)(end - p), "\r\n\r\n", 4);
    const char *data;
    if (end - p >= 2 && memcmp(p, "\r\n", 2) == 0) { /* a part without headers */
      hend = p;
      data = p + 2;
    } else if (!hend) {
      *error = "a multipart part has no end of headers";
      return -1;
    } else {
      data = hend + 4;
    }
    char next[84];
    int nlen = snprintf(next, sizeof next, "\r\n%s", delim);
    const char *stop = find(data, (size_t)(end - data), next, (size_t)nlen);
    if (!stop) {
      *error = "the multipart body is not terminated by its boundary";
      return -1;
    }
    if (*n == max) {
      *error = "too many multipart parts";
      return -1;
    }
    mp_part *part = &parts[(*n)++];
    memset(part, 0, sizeof *part);
    parse_headers(p, (size_t)(hend - p), part);
    part->data = data;
    part->len = (size_t)(stop - data);
    p = stop + 2;
  }
}
