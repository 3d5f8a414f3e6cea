/* cvr.c — ballots CSV → collapsing store (see cvr.h). */
#include "cvr.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum col_role { COL_ID, COL_WEIGHT, COL_PRECINCT, COL_RANK };

typedef struct column {
    enum col_role role;
    uint16_t rank; /* for COL_RANK */
    char *name;
} column;

typedef struct reader {
    const rules *r;
    const char *file;
    column *cols;
    size_t ncols;
    uint16_t *marks; /* the row being built */
    size_t nmarks, marks_cap;
    tab_error *err;
} reader;

static int cell_error(reader *rd, const csv_field *f, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int cell_error(reader *rd, const csv_field *f, size_t col, const char *fmt, ...)
{
    char msg[700];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tab_error_set(rd->err, TAB_EXIT_INPUT, rd->file, f->line, (long)col + 1, "%s: %s",
                  col < rd->ncols ? rd->cols[col].name : "row", msg);
    if (col < rd->ncols)
        snprintf(rd->err->field, sizeof(rd->err->field), "%s", rd->cols[col].name);
    return -1;
}

static int oom(reader *rd)
{
    return tab_error_set(rd->err, TAB_EXIT_INTERNAL, rd->file, 0, 0, "out of memory");
}

/* "rank7" → 7; 0 when the name is not a rank column (no leading zeros accepted). */
static unsigned long rank_number(const char *s, size_t len)
{
    unsigned long n = 0;

    if (len < 5 || memcmp(s, "rank", 4) != 0 || s[4] == '0')
        return 0;
    for (size_t i = 4; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || n > 1000000)
            return 0;
        n = n * 10 + (unsigned long)(s[i] - '0');
    }
    return n;
}

static int read_header(reader *rd, const csv_field *f, size_t n)
{
    bool seen[3] = {false, false, false};
    static const char *const names[3] = {"id", "weight", "precinct"};
    unsigned long next_rank = 1;

    rd->cols = calloc(n, sizeof(*rd->cols));
    if (!rd->cols)
        return oom(rd);
    rd->ncols = n;
    for (size_t i = 0; i < n; i++) {
        size_t len = f[i].len;
        const char *s = rules_trim(f[i].data, &len);
        char quoted[200] = "";
        unsigned long rank;
        int role = -1;

        rd->cols[i].name = strndup(s, len);
        if (!rd->cols[i].name)
            return oom(rd);
        for (int k = 0; k < 3; k++)
            if (len == strlen(names[k]) && memcmp(s, names[k], len) == 0)
                role = k;
        if (role >= 0) {
            if (seen[role])
                return cell_error(rd, &f[i], i, "column appears twice in the header");
            seen[role] = true;
            rd->cols[i].role = (enum col_role)role;
            continue;
        }
        rank = rank_number(s, len);
        tab_error_quote(quoted, sizeof(quoted), s, len);
        if (rank == 0)
            return cell_error(rd, &f[i], i,
                              "unknown header column %s (expected id, weight, precinct, "
                              "rank1 … rankN)", quoted);
        if (rank != next_rank)
            return cell_error(rd, &f[i], i, "rank columns must be rank1 … rankN in order; "
                                            "expected rank%lu", next_rank);
        if (rank > BALLOTS_MAX_RANK)
            return cell_error(rd, &f[i], i, "more than %u rank columns",
                              (unsigned)BALLOTS_MAX_RANK);
        rd->cols[i].role = COL_RANK;
        rd->cols[i].rank = (uint16_t)rank;
        next_rank++;
    }
    if (next_rank == 1)
        return tab_error_set(rd->err, TAB_EXIT_INPUT, rd->file, f[0].line, 1,
                             "the header has no rank columns (rank1 … rankN)");
    return 0;
}

/* Positive decimal → fixed-point with the rules' decimal places. */
static int parse_weight(reader *rd, const csv_field *f, size_t col, int64_t *out)
{
    size_t len = f->len, i = 0;
    const char *s = rules_trim(f->data, &len);
    int64_t whole = 0, frac = 0;
    int fdigits = 0;
    bool digits = false;
    char quoted[200];

    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (whole > (INT64_MAX - 9) / 10)
            goto bad;
        whole = whole * 10 + (s[i] - '0');
        digits = true;
    }
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            digits = true;
            if (s[i] == '0' && fdigits >= rd->r->weight_places)
                continue; /* trailing zeros beyond the precision are harmless */
            if (fdigits >= rd->r->weight_places) {
                quoted[0] = '\0';
                tab_error_quote(quoted, sizeof(quoted), s, len);
                if (rd->r->weight_places < rd->r->decimal_places)
                    return cell_error(rd, f, col, "weight %s has more than %d decimal "
                                                  "places, the most a weight may have",
                                      quoted, rd->r->weight_places);
                return cell_error(rd, f, col, "weight %s has more decimal places than "
                                              "the rules' decimal_places (%d)",
                                  quoted, rd->r->decimal_places);
            }
            frac = frac * 10 + (s[i] - '0');
            fdigits++;
        }
    }
    if (!digits || i != len)
        goto bad;
    for (; fdigits < rd->r->weight_places; fdigits++)
        frac *= 10;
    if (whole > (INT64_MAX - frac) / rd->r->scale)
        goto bad;
    *out = whole * rd->r->scale + frac;
    if (*out <= 0)
        goto bad;
    return 0;
bad:
    quoted[0] = '\0';
    tab_error_quote(quoted, sizeof(quoted), s, len);
    return cell_error(rd, f, col, "weight %s is not a positive number", quoted);
}

static int reserve(reader *rd, size_t extra)
{
    if (rd->nmarks + extra > rd->marks_cap) {
        size_t ncap = rd->marks_cap ? rd->marks_cap * 2 : 64;
        uint16_t *nm;
        while (ncap < rd->nmarks + extra)
            ncap *= 2;
        nm = realloc(rd->marks, ncap * sizeof(*nm));
        if (!nm)
            return oom(rd);
        rd->marks = nm;
        rd->marks_cap = ncap;
    }
    return 0;
}

/* memmem() without needing _GNU_SOURCE. */
static const char *find_sub(const char *s, size_t len, const char *sub, size_t sublen)
{
    const char *end = s + len;

    while (sublen <= (size_t)(end - s)) {
        const char *p = memchr(s, sub[0], (size_t)(end - s) - sublen + 1);
        if (!p)
            return NULL;
        if (memcmp(p, sub, sublen) == 0)
            return p;
        s = p + 1;
    }
    return NULL;
}

/* Insertion sort: an overvote names two or three candidates, qsort costs more. */
static void sort_ids(uint16_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint16_t v = a[i];
        size_t j = i;
        for (; j > 0 && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

/* Splits "A|B|C" into the ids of its names (sorted, distinct) after the marks. */
static int parse_overvote(reader *rd, const csv_field *f, size_t col, const char *s,
                          size_t len, size_t *k)
{
    const rules *r = rd->r;
    size_t dlen = strlen(r->delimiter), n = 0;
    const char *p = s, *end = s + len;

    for (;;) {
        const char *d = find_sub(p, (size_t)(end - p), r->delimiter, dlen);
        const char *pe = d ? d : end;
        size_t plen = (size_t)(pe - p);
        const char *part = rules_trim(p, &plen);
        char quoted[200];
        int id;

        if (plen == 0)
            return cell_error(rd, f, col, "empty name in an overvote (names joined by "
                                          "\"%s\")", r->delimiter);
        id = rules_lookup(r, part, plen);
        if (id == RULES_OVERVOTE_LABEL)
            return cell_error(rd, f, col, "the overvote label cannot be joined with names");
        if (id < 0) {
            quoted[0] = '\0';
            tab_error_quote(quoted, sizeof(quoted), part, plen);
            return cell_error(rd, f, col, "unknown candidate %s", quoted);
        }
        if (reserve(rd, 3 + n) < 0)
            return -1;
        rd->marks[rd->nmarks + 2 + n++] = (uint16_t)id;
        if (!d)
            break;
        p = d + dlen;
    }
    sort_ids(rd->marks + rd->nmarks + 2, n);
    *k = 0;
    for (size_t i = 0; i < n; i++) /* a name repeated in one cell is one mark */
        if (i == 0 || rd->marks[rd->nmarks + 2 + i] != rd->marks[rd->nmarks + 2 + i - 1])
            rd->marks[rd->nmarks + 2 + (*k)++] = rd->marks[rd->nmarks + 2 + i];
    return 0;
}

/* Appends the mark record of one rank cell (nothing when the cell is empty or beyond
 * max_rankings, which is still validated). */
static int parse_rank_cell(reader *rd, const csv_field *f, size_t col)
{
    const rules *r = rd->r;
    size_t len = f->len, k = 1;
    const char *s = rules_trim(f->data, &len);
    uint16_t rank = rd->cols[col].rank;
    int id;

    if (len == 0)
        return 0;
    if (reserve(rd, 3) < 0)
        return -1;
    id = rules_lookup(r, s, len);
    if (id >= 0) {
        rd->marks[rd->nmarks + 2] = (uint16_t)id;
    } else if (id == RULES_OVERVOTE_LABEL) {
        if (r->overvote == OVERVOTE_EXHAUST_IF_MULTIPLE)
            return cell_error(rd, f, col,
                              "the overvote label \"%s\" gives no names, but the rule "
                              "exhaust_if_multiple_continuing needs them",
                              r->overvote_label);
        rd->marks[rd->nmarks + 2] = BALLOTS_OVERVOTE_LABEL;
    } else if (r->delimiter && find_sub(s, len, r->delimiter, strlen(r->delimiter))) {
        if (parse_overvote(rd, f, col, s, len, &k) < 0)
            return -1;
    } else {
        char quoted[200] = "";
        tab_error_quote(quoted, sizeof(quoted), s, len);
        return cell_error(rd, f, col, "unknown candidate %s", quoted);
    }
    if (r->max_rankings > 0 && rank > r->max_rankings)
        return 0; /* validated, ignored */
    rd->marks[rd->nmarks] = rank;
    rd->marks[rd->nmarks + 1] = (uint16_t)k;
    rd->nmarks += 2 + k;
    return 0;
}

static int read_row(reader *rd, const csv_field *f, size_t n, ballot_store *store)
{
    int64_t weight = rd->r->scale;
    int rc;

    if (n != rd->ncols) {
        const csv_field *at = &f[n < rd->ncols ? n - 1 : rd->ncols];
        tab_error_set(rd->err, TAB_EXIT_INPUT, rd->file, at->line,
                      (long)(n < rd->ncols ? n : rd->ncols + 1),
                      "row has %zu fields but the header has %zu", n, rd->ncols);
        return -1;
    }
    rd->nmarks = 0;
    for (size_t i = 0; i < n; i++) {
        switch (rd->cols[i].role) {
        case COL_RANK:
            if (parse_rank_cell(rd, &f[i], i) < 0)
                return -1;
            break;
        case COL_WEIGHT:
            if (parse_weight(rd, &f[i], i, &weight) < 0)
                return -1;
            break;
        default: /* id and precinct are carried by the format, not used by the count */
            break;
        }
    }
    rc = ballots_add(store, rd->marks, (uint32_t)rd->nmarks, weight);
    if (rc == -2)
        return tab_error_set(rd->err, TAB_EXIT_INPUT, rd->file, f[0].line, 0,
                             "the total weight of the ballots is too large");
    if (rc < 0)
        return tab_error_set(rd->err, TAB_EXIT_INTERNAL, rd->file, f[0].line, 0,
                             "out of memory storing the ballots");
    return 0;
}

int cvr_read(const rules *r, csv_reader *csv, ballot_store *store, progress *prog,
             uint64_t total_bytes, tab_error *err)
{
    reader rd = {r, csv_name(csv), NULL, 0, NULL, 0, 0, err};
    const csv_field *f;
    size_t n;
    uint64_t rows = 0;
    int rc = csv_next(csv, &f, &n, err);

    if (rc < 0)
        return -1;
    if (rc == 0)
        return tab_error_set(err, TAB_EXIT_INPUT, rd.file, 1, 1,
                             "the ballots file is empty: a header row is required");
    rc = read_header(&rd, f, n);
    while (rc == 0 && (rc = csv_next(csv, &f, &n, err)) > 0) {
        rc = read_row(&rd, f, n, store);
        if ((++rows & 0xFFFF) == 0)
            progress_report(prog, "reading", csv_bytes_read(csv), total_bytes, false);
    }
    for (size_t i = 0; i < rd.ncols; i++)
        free(rd.cols[i].name);
    free(rd.cols);
    free(rd.marks);
    return rc < 0 ? -1 : 0;
}
