/* mhd_sim — how libmicrohttpd 0.9.75 parses a request head in place, as observed (a probe
 * server printing its buffer after each spelling: bare LF, bare CR, NUL, extra spaces,
 * obs-fold, whitespace-only values, pipelined heads). Used by gateway/tests/test_admit.c and
 * gateway/fuzz/fuzz_admit.c to lay out a buffer the way the gateway finds it, so that
 * gw_admit_mhd_layout_ok can be checked without sockets. Header-only, for tests.
 *
 *   lines     end at the first CR or LF; a CR followed by LF is one end (two NULs), any other
 *             CR or LF one end (one NUL); a NUL does not end a line. An empty line, or one
 *             that starts with a NUL, ends the head.
 *   request   the first space becomes a NUL (end of the method), further spaces are skipped;
 *   line      the last space becomes a NUL (start of the version); the target is what lies
 *             between, as a string (a NUL in it cuts it short); a version that does not
 *             run to the end of the line (a NUL in it) is answered 400 by libmicrohttpd.
 *   fields    a line starting with SP or HTAB continues the previous field (obs-fold): its
 *             value is rebuilt elsewhere; otherwise the first ':' (looked for as a string)
 *             becomes a NUL — none: libmicrohttpd answers 400 itself — and the value starts
 *             after the SP/HTAB following it, running to the first NUL. */
#ifndef GW_MHD_SIM_H
#define GW_MHD_SIM_H

#include <stdbool.h>
#include <string.h>

#include "admit.h"

#define MHD_SIM_FIELDS 64

typedef struct {
  char buf[4096 + 8]; /* the head, parsed in place; zero beyond it */
  const char *method, *url, *version;
  size_t target_len, head_size;
  gw_field fields[MHD_SIM_FIELDS];
  int nfields;
} mhd_sim;

/* The next line from *pos: its start, NUL-terminated in place; NULL when no line end. */
static inline char *mhd_sim_line(mhd_sim *m, size_t len, size_t *pos) {
  size_t p = *pos;
  while (p < len && m->buf[p] != '\r' && m->buf[p] != '\n') p++;
  if (p >= len) return NULL;
  char *line = m->buf + *pos;
  if (m->buf[p] == '\r' && p + 1 < len && m->buf[p + 1] == '\n') m->buf[p++] = 0;
  m->buf[p++] = 0;
  *pos = p;
  return line;
}

/* Parses raw[0..len) as libmicrohttpd would; false when it would not hand the head over
 * (no complete head, no version, a line without a colon, too many fields for the sim). */
static inline bool mhd_sim_parse(mhd_sim *m, const char *raw, size_t len) {
  static const char folded[] = "folded value, elsewhere";
  memset(m, 0, sizeof *m);
  if (len > sizeof m->buf - 8) return false;
  memcpy(m->buf, raw, len);
  size_t pos = 0, line_len = 0;
  while (line_len < len && raw[line_len] != '\r' && raw[line_len] != '\n') line_len++;
  char *line = mhd_sim_line(m, len, &pos);
  if (!line) return false;
  char *sp = strchr(line, ' ');
  char *last = strrchr(line, ' ');
  if (!sp || sp == last) return false;
  *sp = 0;
  char *uri = sp + 1;
  while (*uri == ' ') uri++;
  *last = 0;
  /* the version is compared with the rest of the line: a NUL in it is libmicrohttpd's 400 */
  if (strlen(last + 1) != line_len - (size_t)(last + 1 - line)) return false;
  m->method = line;
  m->url = uri;
  m->version = last + 1;
  m->target_len = strlen(uri);
  for (;;) {
    line = mhd_sim_line(m, len, &pos);
    if (!line) return false;
    if (!line[0]) break;
    if (line[0] == ' ' || line[0] == '\t') {
      if (!m->nfields) return false;
      gw_field *f = &m->fields[m->nfields - 1];
      f->value = folded;
      f->vlen = sizeof folded - 1;
      continue;
    }
    char *colon = strchr(line, ':');
    if (!colon || m->nfields == MHD_SIM_FIELDS) return false;
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    m->fields[m->nfields++] = (gw_field){line, (size_t)(colon - line), v, strlen(v)};
  }
  m->head_size = (size_t)(m->buf + pos - m->method);
  /* what follows the head stays in the buffer (libmicrohttpd's is not cleared either) */
  return true;
}

static inline bool mhd_sim_layout_ok(const mhd_sim *m) {
  return gw_admit_mhd_layout_ok(m->method, m->url, m->target_len, m->version, m->fields,
                                m->nfields, false, m->head_size);
}

/* true for a head (up to and including its blank line, which must be there) that a strict
 * parser accepts line by line: CRLF only, no NUL, single spaces in the request line, no
 * line starting with whitespace. */
static inline bool mhd_sim_clean(const char *raw, size_t len) {
  const char *end = NULL;
  for (size_t i = 0; i + 3 < len && !end; i++)
    if (memcmp(raw + i, "\r\n\r\n", 4) == 0) end = raw + i + 4;
  if (!end) return false;
  int spaces = 0;
  bool first = true;
  for (const char *p = raw; p < end; p++) {
    if (*p == 0) return false;
    if (*p == '\r' && p[1] != '\n') return false;
    if (*p == '\n' && (p == raw || p[-1] != '\r')) return false;
    if (*p == '\n') {
      if (first && spaces != 2) return false;
      first = false;
      if (p + 1 < end && (p[1] == ' ' || p[1] == '\t')) return false;
    }
    if (first && *p == ' ') {
      spaces++;
      if (p[1] == ' ') return false;
    }
  }
  return true;
}

#endif
