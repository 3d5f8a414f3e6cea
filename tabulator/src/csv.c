/* csv.c — streaming RFC 4180 reader (see csv.h).
 *
 * The buffer holds the current record from its first byte. A record is parsed in place;
 * if it runs past the data read so far, the partial record is moved to the front of the
 * buffer, more input is read and the record is parsed again from its start. Only the one
 * record that straddles a refill is scanned twice, so the cost stays one pass. Fields with
 * "" escapes are unescaped into a side arena so the buffer itself is never modified (a
 * re-parse must see the original bytes). */
#include "csv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct csv_reader {
    csv_read_fn read;
    void *ctx;
    char *name;
    char *buf;
    size_t cap, max_record;
    size_t start; /* first byte of the current record */
    size_t end;   /* end of valid data */
    bool eof, bom_checked;
    long line;         /* line of the record at buf[start] */
    uint64_t consumed; /* input bytes that were before buf[0] */
    csv_field *fields;
    size_t nfields, fields_cap;
    char *arena; /* same capacity as buf: an unescaped field is never longer than raw */
};

enum { PARSE_OK, PARSE_MORE, PARSE_ERROR };

/* Bytes that end an unquoted field; a table keeps the hot loop to one load per byte. */
static const unsigned char csv_special[256] = {
    [','] = 1, ['"'] = 1, ['\r'] = 1, ['\n'] = 1,
};

csv_reader *csv_new(csv_read_fn read, void *ctx, const char *name, size_t bufsize,
                    size_t max_record)
{
    csv_reader *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    if (bufsize < 4)
        bufsize = 4;
    if (max_record < bufsize)
        max_record = bufsize;
    r->read = read;
    r->ctx = ctx;
    r->cap = bufsize;
    r->max_record = max_record;
    r->line = 1;
    r->name = strdup(name ? name : "");
    r->buf = malloc(bufsize);
    r->arena = malloc(bufsize);
    r->fields_cap = 16;
    r->fields = malloc(r->fields_cap * sizeof(*r->fields));
    if (!r->name || !r->buf || !r->arena || !r->fields)
        goto err;
    return r;
err:
    csv_free(r);
    return NULL;
}

void csv_free(csv_reader *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->buf);
    free(r->arena);
    free(r->fields);
    free(r);
}

uint64_t csv_bytes_read(const csv_reader *r)
{
    return r->consumed + r->start;
}

const char *csv_name(const csv_reader *r)
{
    return r->name;
}

long csv_line(const csv_reader *r)
{
    return r->line;
}

long csv_read_fd(void *ctx, char *buf, size_t cap, int *err)
{
    int fd = *(int *)ctx;
    ssize_t n;

    do
        n = read(fd, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        *err = errno;
    return (long)n;
}

/* Line breaks inside a quoted field: LF, CRLF and a lone CR each count once. */
static long count_breaks(const char *p, size_t n)
{
    long lines = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n')
            lines++;
        else if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
            lines++;
    }
    return lines;
}

static int push_field(csv_reader *r, const char *data, size_t len, long line)
{
    if (r->nfields == r->fields_cap) {
        size_t ncap = r->fields_cap * 2;
        csv_field *nf = realloc(r->fields, ncap * sizeof(*nf));
        if (!nf)
            return -1;
        r->fields = nf;
        r->fields_cap = ncap;
    }
    r->fields[r->nfields].data = data;
    r->fields[r->nfields].len = len;
    r->fields[r->nfields].line = line;
    r->nfields++;
    return 0;
}

static int parse_record(csv_reader *r, tab_error *err)
{
    const char *p = r->buf + r->start;
    const char *end = r->buf + r->end;
    size_t arena_used = 0;
    long line = r->line;

    r->nfields = 0;
    for (;;) {
        const char *data;
        size_t len;
        long field_line = line;
        long column = (long)r->nfields + 1;

        if (p < end && *p == '"') {
            const char *content = p + 1, *q = p + 1, *dq;
            bool escaped = false;

            for (;;) {
                dq = memchr(q, '"', (size_t)(end - q));
                if (!dq) {
                    if (!r->eof)
                        return PARSE_MORE;
                    tab_error_set(err, TAB_EXIT_INPUT, r->name, field_line, column,
                                  "quoted field is not closed before the end of the file");
                    return PARSE_ERROR;
                }
                if (dq + 1 == end && !r->eof)
                    return PARSE_MORE; /* can't tell "" from a closing quote yet */
                if (dq + 1 < end && dq[1] == '"') {
                    escaped = true;
                    q = dq + 2;
                    continue;
                }
                break;
            }
            len = (size_t)(dq - content);
            line += count_breaks(content, len);
            p = dq + 1;
            if (p < end && *p != ',' && *p != '\r' && *p != '\n') {
                tab_error_set(err, TAB_EXIT_INPUT, r->name, line, column,
                              "unexpected character after the closing quote of a field "
                              "(a quote inside a quoted field is written as \"\")");
                return PARSE_ERROR;
            }
            if (escaped) {
                char *out = r->arena + arena_used;
                size_t o = 0;
                for (size_t i = 0; i < len; i++) {
                    out[o++] = content[i];
                    if (content[i] == '"')
                        i++; /* skip the second quote of "" */
                }
                data = out;
                len = o;
                arena_used += o;
            } else {
                data = content;
            }
        } else {
            const char *q = p;
            while (q < end && !csv_special[(unsigned char)*q])
                q++;
            if (q < end && *q == '"') {
                tab_error_set(err, TAB_EXIT_INPUT, r->name, line, column,
                              "quote inside an unquoted field (quote the whole field and "
                              "write the quote as \"\")");
                return PARSE_ERROR;
            }
            if (q == end && !r->eof)
                return PARSE_MORE;
            data = p;
            len = (size_t)(q - p);
            p = q;
        }
        if (push_field(r, data, len, field_line) < 0) {
            tab_error_set(err, TAB_EXIT_INTERNAL, r->name, line, column, "out of memory");
            return PARSE_ERROR;
        }
        if (p == end) /* only reached at end of input: the last record has no line end */
            break;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\r') {
            if (p + 1 == end && !r->eof)
                return PARSE_MORE; /* CRLF split by the refill */
            p++;
            if (p < end && *p == '\n')
                p++;
        } else {
            p++; /* '\n' */
        }
        line++;
        break;
    }
    r->start = (size_t)(p - r->buf);
    r->line = line;
    return PARSE_OK;
}

/* Moves the current record to the front of the buffer and reads more input. */
static int refill(csv_reader *r, tab_error *err)
{
    long n;
    int code = 0;

    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->consumed += r->start;
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        size_t ncap = r->cap * 2;
        char *nb, *na;
        if (r->cap >= r->max_record)
            return tab_error_set(err, TAB_EXIT_INPUT, r->name, r->line, 0,
                                 "record longer than %zu bytes (is a quote not closed?)",
                                 r->max_record);
        if (ncap > r->max_record)
            ncap = r->max_record;
        nb = realloc(r->buf, ncap);
        if (!nb)
            return tab_error_set(err, TAB_EXIT_INTERNAL, r->name, r->line, 0,
                                 "out of memory");
        r->buf = nb;
        na = realloc(r->arena, ncap);
        if (!na)
            return tab_error_set(err, TAB_EXIT_INTERNAL, r->name, r->line, 0,
                                 "out of memory");
        r->arena = na;
        r->cap = ncap;
    }
    n = r->read(r->ctx, r->buf + r->end, r->cap - r->end, &code);
    if (n < 0)
        return tab_error_set(err, TAB_EXIT_INPUT, r->name, 0, 0, "cannot read: %s",
                             strerror(code));
    if (n == 0)
        r->eof = true;
    r->end += (size_t)n;
    return 0;
}

int csv_next(csv_reader *r, const csv_field **fields, size_t *nfields, tab_error *err)
{
    for (;;) {
        if (!r->bom_checked) {
            if (r->end - r->start < 3 && !r->eof) {
                if (refill(r, err) < 0)
                    return -1;
                continue;
            }
            if (r->end - r->start >= 3 && memcmp(r->buf + r->start, "\xEF\xBB\xBF", 3) == 0)
                r->start += 3;
            r->bom_checked = true;
        }
        if (r->start == r->end) {
            if (r->eof)
                return 0;
            if (refill(r, err) < 0)
                return -1;
            continue;
        }
        switch (parse_record(r, err)) {
        case PARSE_OK:
            *fields = r->fields;
            *nfields = r->nfields;
            return 1;
        case PARSE_ERROR:
            return -1;
        default:
            if (refill(r, err) < 0)
                return -1;
        }
    }
}
