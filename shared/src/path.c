/* path — the normal form of request paths; see voter/path.h. */
#include "voter/path.h"

#include <stdbool.h>
#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

/* RFC 3986 pchar less pct-encoded: unreserved / sub-delims / ":" / "@" */
static bool pchar(unsigned char c) {
  return unreserved(c) || strchr("!$&'()*+,;=:@", c) != NULL;
}

path_status path_normalize(const char *raw, size_t len, unsigned flags, char *out, size_t cap,
                           size_t *outlen) {
  if (len == 0 || raw[0] != '/') return PATH_NOT_ABSOLUTE;
  size_t o = 0;
  size_t i = 0;
  while (i < len) {
    if (raw[i] == '/') {
      i++;
      continue;
    }
    /* one segment: '/' then its bytes, decoded where that changes nothing */
    if (o + 1 >= cap) return PATH_TOO_LONG;
    out[o++] = '/';
    size_t seg = o;
    bool only_dots = true;
    for (; i < len && raw[i] != '/'; i++) {
      unsigned char c = (unsigned char)raw[i];
      if (c == '%') {
        if (i + 2 >= len) return PATH_BAD_ESCAPE;
        int a = hexval(raw[i + 1]), b = hexval(raw[i + 2]);
        if (a < 0 || b < 0 || (a == 0 && b == 0)) return PATH_BAD_ESCAPE;
        unsigned char d = (unsigned char)(a * 16 + b);
        if (d == '.') return PATH_ENCODED_DOT;
        if (d == '/' && (flags & PATH_REFUSE_ENCODED_SLASH)) return PATH_ENCODED_SLASH;
        i += 2;
        if (unreserved(d)) {
          if (o + 1 >= cap) return PATH_TOO_LONG;
          out[o++] = (char)d;
        } else {
          if (o + 3 >= cap) return PATH_TOO_LONG;
          out[o++] = '%';
          out[o++] = "0123456789ABCDEF"[d >> 4];
          out[o++] = "0123456789ABCDEF"[d & 15];
        }
        only_dots = false;
        continue;
      }
      if (!pchar(c)) return PATH_BAD_CHAR;
      if (c != '.') only_dots = false;
      if (o + 1 >= cap) return PATH_TOO_LONG;
      out[o++] = (char)c;
    }
    size_t n = o - seg;
    if (only_dots && (n == 1 || n == 2)) return PATH_DOT_SEGMENT;
  }
  if (o == 0) {
    if (cap < 2) return PATH_TOO_LONG;
    out[o++] = '/';
  }
  out[o] = 0;
  *outlen = o;
  return PATH_OK;
}

const char *path_status_text(path_status status) {
  switch (status) {
    case PATH_OK: return "ok";
    case PATH_NOT_ABSOLUTE: return "the path must start with /";
    case PATH_BAD_CHAR: return "the path holds a character that must be percent-encoded";
    case PATH_BAD_ESCAPE: return "malformed percent-encoding in the path";
    case PATH_ENCODED_DOT: return "encoded dots are not allowed in the path";
    case PATH_ENCODED_SLASH: return "encoded slashes are not allowed in the path";
    case PATH_DOT_SEGMENT: return "dot segments are not allowed in the path";
    case PATH_TOO_LONG: return "the path is too long";
  }
  return "invalid path";
}
