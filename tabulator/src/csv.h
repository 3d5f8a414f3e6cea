/* csv.h — a small streaming RFC 4180 reader.
 *
 * Reads records one at a time through a caller-supplied read function, so a file of
 * millions of rows never sits in one buffer: memory is one buffer that holds the longest
 * record, not the file. Handles quoted fields (with "" escapes and line breaks inside),
 * CRLF / LF / CR line ends and a leading UTF-8 byte-order mark. */
#ifndef TAB_CSV_H
#define TAB_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Reads up to cap bytes into buf; returns the count, 0 at end of input, or -1 with an
 * errno-style code in *err. */
typedef long (*csv_read_fn)(void *ctx, char *buf, size_t cap, int *err);

typedef struct csv_field {
    const char *data; /* not NUL-terminated; valid until the next csv_next() */
    size_t len;
    long line;        /* physical line the field starts on */
} csv_field;

typedef struct csv_reader csv_reader;

/* name is used in error messages only (copied). bufsize is the initial buffer; it
 * grows for longer records up to max_record bytes. Returns NULL when out of memory. */
csv_reader *csv_new(csv_read_fn read, void *ctx, const char *name, size_t bufsize,
                    size_t max_record);
void csv_free(csv_reader *r);

/* Next record: 1 with *fields / *nfields set, 0 at end of input, -1 on a syntax or read
 * error (err filled in: line, column = 1-based field number). */
int csv_next(csv_reader *r, const csv_field **fields, size_t *nfields, tab_error *err);

/* Bytes of input consumed so far, for progress reports. */
uint64_t csv_bytes_read(const csv_reader *r);

/* The name given to csv_new(). */
const char *csv_name(const csv_reader *r);

/* Line on which the next record starts (after csv_next: the line after the record). */
long csv_line(const csv_reader *r);

/* A read function over a file descriptor (ctx points to an int). */
long csv_read_fd(void *ctx, char *buf, size_t cap, int *err);

#endif
