/* rawcheck — every byte a client sends, checked strictly beside libmicrohttpd's own parse
 * (prefix gw_rawcheck).
 *
 * libmicrohttpd 0.9.75 parses a request head in place and hands the gateway strings: what
 * the client actually sent is gone by then. admit.c reads most irregular spellings back from
 * the layout of that buffer (gw_admit_mhd_layout_ok), but not all: a NUL standing beside a
 * bare CR or LF ("X: 1\0\n", "Host:\r\0\r\n") leaves exactly the NULs a CRLF leaves. So the
 * gateway also sees the raw bytes: rawhook.c interposes recv(), which libmicrohttpd calls for
 * every read from a client, and feeds what it returns here, one checker per connection.
 *
 * Two parts, in lock-step over the same bytes:
 *   heads   a byte-at-a-time state machine, RFC 9112 without leniency: every line ends with
 *           CRLF; the request line is three parts split by exactly two single spaces, of
 *           visible ASCII; a field line is a token, a colon, then VCHAR/obs-text/SP/HTAB; no
 *           NUL or other control character anywhere; no line starting with whitespace
 *           (obs-fold); leading empty lines (CRLF) before a request line are allowed.
 *   bodies  http_parser (Debian's libhttp-parser 2.9; its Debian build is lenient about
 *           line ends, hence the machine above) follows every message to its end —
 *           Content-Length, chunked with extensions and trailers, pipelining — and refuses
 *           framing no request may have (two Content-Lengths, Transfer-Encoding with one,
 *           a bad chunk size). Trailers are heads for this purpose: checked the same way.
 *
 * A connection whose bytes were refused once is bad for the rest of its life: the request
 * being admitted is refused with 400 and the connection closed (gw_head.raw_error), whether
 * the refused bytes belong to its head or to a request pipelined behind it (a client that
 * sends such bytes is not one whose earlier requests deserve the benefit of the doubt).
 * This module is pure (no sockets, no globals): rawhook.c owns the registry and the hook; the
 * unit tests (gateway/tests/test_rawcheck.c) and fuzz_admit call it directly. */
#ifndef GW_RAWCHECK_H
#define GW_RAWCHECK_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_rawcheck {
  http_parser parser;
  uint64_t bytes;    /* received on the connection so far */
  const char *error; /* NULL while every byte passed; else what was refused */
  uint8_t line;      /* where the head machine is (rawcheck.c) */
  uint8_t spaces;    /* spaces seen in the request line */
  bool in_body;      /* past a head: http_parser alone until the message ends */
  bool trailers;     /* in a chunked body's trailer section (checked as head fields) */
  bool complete;     /* http_parser paused at the end of a message */
  bool last_chunk;   /* http_parser paused after the size line of a last chunk */
} gw_rawcheck;

void gw_rawcheck_init(gw_rawcheck *r);

/* The next n bytes the client sent, in order. Once an error is set, bytes are only counted. */
void gw_rawcheck_feed(gw_rawcheck *r, const char *data, size_t n);

/* The whole of data[0..n) through a fresh checker: its error, or NULL (tests and the fuzzer). */
const char *gw_rawcheck_bytes(const char *data, size_t n);

#endif
