/* rawcheck — the client's raw bytes, heads by a strict state machine, message boundaries by
 * http_parser (see rawcheck.h). */
#include "rawcheck.h"

#include <string.h>

#include "admit.h"

/* Where the head machine is: at a message's start (blank lines allowed), in the request line,
 * at a line's start, in a field name, in a field value, or after a CR (each CR must be
 * followed by LF: three states say what the LF completes). */
enum { START, START_CR, REQUEST_LINE, REQUEST_LINE_CR, LINE, NAME, VALUE, VALUE_CR, END_CR };

static bool vchar(unsigned char c) { return c > 0x20 && c != 0x7f; } /* obs-text included */

/* One byte of a head (or trailer section); 1 at its end, 0 to go on, -1 when refused. */
static int head_byte(gw_rawcheck *r, unsigned char c) {
  switch (r->line) {
  case START:
    if (c == '\r') return r->line = START_CR, 0;
    r->line = REQUEST_LINE;
    r->spaces = 0;
    if (c == ' ') return -1;
    /* fall through */
  case REQUEST_LINE:
    if (c == '\r') return r->line = REQUEST_LINE_CR, 0;
    if (c == ' ') return ++r->spaces > 2 ? -1 : 0;
    return vchar(c) && c < 0x80 ? 0 : -1;
  case START_CR:
    return c == '\n' ? (r->line = START, 0) : -1;
  case REQUEST_LINE_CR:
    return c == '\n' && r->spaces == 2 ? (r->line = LINE, 0) : -1;
  case LINE:
    if (c == '\r') return r->line = END_CR, 0;
    return gw_admit_tchar(c) ? (r->line = NAME, 0) : -1;
  case NAME:
    if (c == ':') return r->line = VALUE, 0;
    return gw_admit_tchar(c) ? 0 : -1;
  case VALUE:
    if (c == '\r') return r->line = VALUE_CR, 0;
    return c == ' ' || c == '\t' || vchar(c) ? 0 : -1;
  case VALUE_CR:
    return c == '\n' ? (r->line = LINE, 0) : -1;
  case END_CR:
    return c == '\n' ? 1 : -1;
  }
  return -1;
}

/* http_parser pauses right after a message's last byte, so the next one starts a head, and
 * right after the size line of a chunked body's last chunk, so that a trailer section is
 * checked as a head's fields are */
static int on_complete(http_parser *p) {
  ((gw_rawcheck *)p->data)->complete = true;
  http_parser_pause(p, 1);
  return 0;
}

static int on_chunk_header(http_parser *p) {
  if (p->content_length == 0) {
    ((gw_rawcheck *)p->data)->last_chunk = true;
    http_parser_pause(p, 1);
  }
  return 0;
}

static const http_parser_settings settings = {.on_message_complete = on_complete,
                                              .on_chunk_header = on_chunk_header};

static void parser_reset(gw_rawcheck *r) {
  http_parser_init(&r->parser, HTTP_REQUEST);
  r->parser.data = r;
}

void gw_rawcheck_init(gw_rawcheck *r) {
  memset(r, 0, sizeof *r);
  parser_reset(r);
}

/* data[0..n) through http_parser; the bytes it took (up to where it paused). */
static size_t parse(gw_rawcheck *r, const char *data, size_t n) {
  r->complete = r->last_chunk = false;
  size_t done = http_parser_execute(&r->parser, &settings, data, n);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  if (e == HPE_PAUSED) http_parser_pause(&r->parser, 0);
  else if (e != HPE_OK) r->error = http_errno_description(e);
  else if (done != n) r->error = "the parser stopped before the end of the bytes";
  return done;
}

/* How many of data[0..n) belong to the head (or trailer section) being read: all of them, or
 * up to its blank line (*end). 0 with r->error set when a byte is refused. */
static size_t head_bytes(gw_rawcheck *r, const char *data, size_t n, bool *end) {
  for (size_t i = 0; i < n; i++) {
    int v = head_byte(r, (unsigned char)data[i]);
    if (v < 0) {
      r->error = "the head is not strict HTTP/1.1 (a bare CR or LF, a NUL or control "
                 "character, whitespace in or before a field name, extra spaces)";
      return 0;
    }
    if (v > 0) {
      *end = true;
      return i + 1;
    }
  }
  return n;
}

void gw_rawcheck_feed(gw_rawcheck *r, const char *data, size_t n) {
  r->bytes += n;
  while (n && !r->error) {
    bool in_head = !r->in_body, end = false;
    size_t take = in_head ? head_bytes(r, data, n, &end) : n;
    if (r->error) return;
    size_t done = parse(r, data, take);
    if (r->error) return;
    if (in_head && (done != take || (r->complete && !end) || (r->trailers && end && !r->complete))) {
      /* the two parts disagree on where the head ends: trust neither */
      r->error = "the head's end is ambiguous";
      return;
    }
    if (in_head && end) r->in_body = true;
    if (r->last_chunk) { /* a trailer section follows: fields, then the blank line */
      r->in_body = false;
      r->trailers = true;
      r->line = LINE;
    }
    if (r->complete) { /* the message ended: the next byte starts a head */
      r->in_body = r->trailers = false;
      r->line = START;
      if (r->parser.upgrade) parser_reset(r); /* the gateway upgrades nothing */
    }
    data += done;
    n -= done;
  }
}

const char *gw_rawcheck_bytes(const char *data, size_t n) {
  gw_rawcheck r;
  gw_rawcheck_init(&r);
  gw_rawcheck_feed(&r, data, n);
  return r.error;
}
