/* unit_tests.c — unit tests of the tabulator modules that the end-to-end cases cannot
 * reach precisely: the CSV reader at every buffer boundary, the java.util.Random
 * sequence, JSON positions, collapsing, tie-break narrowing and rules defaults, and the
 * exact decimals of the multi-winner counts (dec.h) at the edges of their range. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ballots.h"
#include "csv.h"
#include "dec.h"
#include "jsonpos.h"
#include "rules.h"
#include "tiebreak.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (cond) {                                                                       \
            passed++;                                                                     \
        } else {                                                                          \
            failed++;                                                                     \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

/* ---- a read function over memory, `chunk` bytes per call ---- */

typedef struct mem_src {
    const char *data;
    size_t len, pos, chunk;
} mem_src;

static long mem_read(void *ctx, char *buf, size_t cap, int *err)
{
    mem_src *m = ctx;
    size_t n = m->len - m->pos;

    (void)err;
    if (n > cap)
        n = cap;
    if (n > m->chunk)
        n = m->chunk;
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (long)n;
}

/* Parses text into "field|field|…\n" lines with "@line" per record, for comparison. */
static int csv_render(const char *text, size_t len, size_t bufsize, size_t chunk, char *out,
                      size_t cap, tab_error *err)
{
    mem_src m = {text, len, 0, chunk};
    csv_reader *r = csv_new(mem_read, &m, "mem", bufsize, 1 << 20);
    const csv_field *f;
    size_t n, used = 0;
    int rc;

    out[0] = '\0';
    while ((rc = csv_next(r, &f, &n, err)) > 0) {
        used += (size_t)snprintf(out + used, cap - used, "@%ld:", f[0].line);
        for (size_t i = 0; i < n; i++)
            used += (size_t)snprintf(out + used, cap - used, "%s%.*s", i ? "|" : "",
                                     (int)f[i].len, f[i].data);
        used += (size_t)snprintf(out + used, cap - used, "\n");
    }
    csv_free(r);
    return rc;
}

static void test_csv_boundaries(void)
{
    static const char input[] =
        "\xEF\xBB\xBFid,rank1,rank2\r\n"
        "1,\"Brennan, Michael F.\",\"Joe \"\"JJ\"\" Smith\"\r\n"
        "\"multi\nline\",A,\r\n"
        ",,\n"
        "4,\"\",B\r"
        "5,x,\"\"\"\"";
    static const char expected[] =
        "@1:id|rank1|rank2\n"
        "@2:1|Brennan, Michael F.|Joe \"JJ\" Smith\n"
        "@3:multi\nline|A|\n"
        "@5:||\n"
        "@6:4||B\n"
        "@7:5|x|\"\n";
    char out[1024];
    tab_error err;
    int bad = 0;

    for (size_t bufsize = 4; bufsize <= sizeof(input); bufsize++)
        for (size_t chunk = 1; chunk <= sizeof(input); chunk += (chunk < 8 ? 1 : 17)) {
            memset(&err, 0, sizeof(err));
            if (csv_render(input, sizeof(input) - 1, bufsize, chunk, out, sizeof(out),
                           &err) != 0 ||
                strcmp(out, expected) != 0) {
                if (!bad++)
                    fprintf(stderr, "bufsize %zu chunk %zu:\n%s\n(error: %s)\n", bufsize,
                            chunk, out, err.message);
            }
        }
    CHECK(bad == 0, "%d buffer/chunk combinations parsed differently", bad);
}

static void test_csv_errors(void)
{
    static const struct {
        const char *text;
        long line, column;
    } cases[] = {
        {"a,b\nc,d\"e\n", 2, 2},      /* quote inside an unquoted field */
        {"a,\"b\"x\n", 1, 2},        /* text after a closing quote */
        {"a\n\"b\nc\nd", 2, 1},      /* unterminated quote: reported where it opens */
        {"a,b\n\"x\ny\"z,1\n", 3, 1}, /* after a multi-line field: its closing line */
    };
    char out[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tab_error err;
        int rc;
        memset(&err, 0, sizeof(err));
        rc = csv_render(cases[i].text, strlen(cases[i].text), 4, 3, out, sizeof(out), &err);
        CHECK(rc == -1 && err.line == cases[i].line && err.column == cases[i].column,
              "case %zu: rc %d at %ld:%ld (%s)", i, rc, err.line, err.column, err.message);
    }
    {
        tab_error err;
        memset(&err, 0, sizeof(err));
        CHECK(csv_render("", 0, 16, 16, out, sizeof(out), &err) == 0 && out[0] == '\0',
              "empty input is no record");
        CHECK(csv_render("\xEF\xBB\xBF", 3, 16, 1, out, sizeof(out), &err) == 0 &&
                  out[0] == '\0', "a lone BOM is no record");
    }
}

static void test_jrandom(void)
{
    /* Printed by a JVM: new java.util.Random(seed).nextDouble(), five times. */
    static const struct {
        int64_t seed;
        double v[5];
    } vectors[] = {
        {0, {0.730967787376657, 0.24053641567148587, 0.6374174253501083, 0.5504370051176339,
             0.5975452777972018}},
        {42, {0.7275636800328681, 0.6832234717598454, 0.30871945533265976,
              0.27707849007413665, 0.6655489517945736}},
        {-7, {0.2691218093260761, 0.6731811902798038, 0.5214896372918163,
              0.8518782305056931, 0.08574465212415472}},
        {123456789, {0.664038103272266, 0.45695178590520646, 0.39050647939140426,
                     0.8933411602003871, 0.749641708001546}},
    };

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        jrandom g;
        jrandom_init(&g, vectors[i].seed);
        for (int k = 0; k < 5; k++) {
            double d = jrandom_next_double(&g);
            CHECK(d == vectors[i].v[k], "seed %lld draw %d: %.17g != %.17g",
                  (long long)vectors[i].seed, k, d, vectors[i].v[k]);
        }
    }
}

static void test_jsonpos(void)
{
    static const char text[] = "{\n"
                               "  \"a\": [1, {\"x\": \"[\\\"}\"}, {\"\\u00e9t\\u00e9\": true}],\n"
                               "  \"été\": null\n"
                               "}";
    jsonpos_seg p1[] = {{"a", 0}, {NULL, 2}, {"\xC3\xA9t\xC3\xA9", 0}};
    jsonpos_seg p2[] = {{"\xC3\xA9t\xC3\xA9", 0}};
    jsonpos_seg p3[] = {{"a", 0}, {NULL, 7}};
    char buf[64];
    long line, col;

    jsonpos_find(text, sizeof(text) - 1, p1, 3, &line, &col);
    CHECK(line == 2 && col == 45, "escaped key in array: %ld:%ld", line, col);
    jsonpos_find(text, sizeof(text) - 1, p2, 1, &line, &col);
    CHECK(line == 3 && col == 10, "UTF-8 key, columns in characters: %ld:%ld", line, col);
    jsonpos_find(text, sizeof(text) - 1, p3, 2, &line, &col);
    CHECK(line == 2 && col == 8, "missing element points at its array: %ld:%ld", line, col);
    jsonpos_format(p1, 3, buf, sizeof(buf));
    CHECK(strcmp(buf, "a[2].\xC3\xA9t\xC3\xA9") == 0, "format: %s", buf);
}

static void test_collapsing(void)
{
    ballot_store s;
    uint16_t a[] = {1, 1, 3, 2, 1, 4};
    uint16_t b[] = {1, 1, 3, 3, 1, 4}; /* same ids, different rank */

    ballots_init(&s);
    CHECK(ballots_add(&s, a, 6, 10) == 0, "add");
    CHECK(ballots_add(&s, a, 6, 5) == 0, "add");
    CHECK(ballots_add(&s, b, 6, 1) == 0, "add");
    CHECK(ballots_add(&s, NULL, 0, 1) == 0, "add undervote");
    CHECK(ballots_add(&s, NULL, 0, 1) == 0, "add undervote");
    CHECK(s.ngroups == 3, "groups %zu", s.ngroups);
    CHECK(s.groups[0].weight == 15 && s.groups[0].rows == 2, "merged weight %lld",
          (long long)s.groups[0].weight);
    CHECK(s.groups[2].len == 0 && s.groups[2].rows == 2, "undervotes collapse");
    CHECK(s.rows == 5 && s.total_weight == 18, "totals");
    for (int i = 0; i < 100000; i++) { /* many distinct rankings: the table grows */
        uint16_t m[] = {1, 1, (uint16_t)(i % 60000), 2, 1, (uint16_t)(i / 60000)};
        ballots_add(&s, m, 6, 1);
    }
    CHECK(s.ngroups == 3 + 100000, "distinct rankings kept apart: %zu", s.ngroups);
    ballots_free(&s);
    ballots_init(&s);
    CHECK(ballots_add(&s, a, 6, INT64_MAX) == 0 && ballots_add(&s, a, 6, 1) == -2,
          "weight overflow is reported");
    ballots_free(&s);
}

static int load_rules(rules *r, const char *text)
{
    tab_error err;
    memset(&err, 0, sizeof(err));
    if (rules_parse(r, text, strlen(text), "rules", &err) < 0) {
        fprintf(stderr, "rules: %s\n", err.message);
        return -1;
    }
    return 0;
}

static void test_rules_defaults_and_lookup(void)
{
    rules r;
    const char *text = "{\"contest\": \"c\", \"candidates\": [{\"name\": \"Ann\", "
                       "\"aliases\": [\"A. Smith\"]}, {\"name\": \"Bob\"}], \"overvote\": "
                       "\"exhaust_immediately\", \"max_skipped_ranks\": \"unlimited\", "
                       "\"max_rankings\": \"max\", \"tiebreak\": \"candidate_order\"}";

    if (load_rules(&r, text) < 0) {
        CHECK(0, "minimal rules load");
        return;
    }
    CHECK(r.ncand == 3 && !r.has_uwi && !r.cand[RULES_UWI].present, "ids");
    CHECK(r.decimal_places == 4 && r.scale == 10000, "decimal places default");
    CHECK(strcmp(r.overvote_label, "overvote") == 0 && strcmp(r.delimiter, "|") == 0,
          "label defaults");
    CHECK(r.max_skipped == -1 && r.max_rankings == 0 && r.winners == 1, "limits");
    CHECK(rules_lookup(&r, "A. Smith", 8) == 1 && rules_lookup(&r, "Bob", 3) == 2,
          "names and aliases");
    CHECK(rules_lookup(&r, "bob", 3) == RULES_UNKNOWN, "case-sensitive");
    CHECK(rules_lookup(&r, "overvote", 8) == RULES_OVERVOTE_LABEL, "overvote label");
    CHECK(rules_lookup(&r, "UWI", 3) == RULES_UNKNOWN, "no write-in label by default");
    rules_free(&r);
}

static void test_previous_round_narrowing(void)
{
    /* Tied now: 1, 2, 3. Round 2: 1 and 2 lowest (3 higher). Round 1: 2 lower than 1. */
    rules r;
    const char *text = "{\"contest\": \"c\", \"candidates\": [{\"name\": \"A\"}, {\"name\": "
                       "\"B\"}, {\"name\": \"C\"}], \"overvote\": \"exhaust_immediately\", "
                       "\"max_skipped_ranks\": 0, \"max_rankings\": 3, \"tiebreak\": "
                       "\"previous_round_then_candidate_order\"}";
    int64_t r1[4] = {0, 5, 4, 9}, r2[4] = {0, 6, 6, 7};
    const int64_t *hist[2] = {r1, r2};
    int tied[3] = {1, 2, 3};
    jrandom g;

    if (load_rules(&r, text) < 0) {
        CHECK(0, "rules load");
        return;
    }
    jrandom_init(&g, 0);
    CHECK(tb_choose(&r, &g, hist, 2, tied, 3, TB_ELIMINATE) == 2,
          "goes back a round while several remain");
    CHECK(tb_choose(&r, &g, hist, 2, tied, 3, TB_ELECT) == 3, "elect keeps the highest");
    CHECK(tb_choose(&r, &g, hist, 0, tied, 3, TB_ELIMINATE) == 3,
          "no history: the latest listed is eliminated");
    CHECK(tb_choose(&r, &g, hist, 0, tied, 3, TB_ELECT) == 1,
          "no history: the earliest listed is elected");
    rules_free(&r);
}

static const char *fmt(dec_u128 v, int places)
{
    static char buf[DEC_TEXT_MAX];
    dec_format(buf, v, places);
    return buf;
}

static void test_exact_decimals(void)
{
    dec_u128 one20 = dec_pow10(20), v, p10_38 = dec_pow10(38);
    char buf[DEC_TEXT_MAX];
    dec_u256 wide;
    int places;

    /* TABULATION-MULTI.md §4.8: trunc4(0.0937 × 0.2948 = 0.02762276) = 0.0276 */
    CHECK(dec_mul_trunc(937, 2948, 4) == 276, "worked example product");
    CHECK(dec_frac_trunc(7499, 80000, 4) == 937, "worked example fraction 0.7499/8");
    /* 20 places: 1 × f is f exactly; v × f needs 256 bits before the truncation */
    v = one20 - 1; /* 0.99999999999999999999 */
    CHECK(dec_mul_trunc(one20, v, 20) == v, "1 × f at 20 places");
    CHECK(dec_mul_trunc(v, v, 20) == one20 - 2, "0.99..9² truncated: %s",
          fmt(dec_mul_trunc(v, v, 20), 20));
    CHECK(dec_frac_trunc(1, 3, 20) == (one20 - 1) / 3, "1/3 to 20 places");
    CHECK(dec_frac_trunc(2, 3, 20) == (2 * one20 - 2) / 3, "2/3 truncated, not rounded");
    /* printing: exact, no exponent, no trailing zeros */
    CHECK(strcmp(fmt(72501, 4), "7.2501") == 0, "%s", fmt(72501, 4));
    CHECK(strcmp(fmt(60000, 4), "6") == 0, "%s", fmt(60000, 4));
    CHECK(strcmp(fmt(3, 4), "0.0003") == 0, "%s", fmt(3, 4));
    CHECK(strcmp(fmt(0, 9), "0") == 0, "%s", fmt(0, 9));
    CHECK(strcmp(fmt(1, 20), "0.00000000000000000001") == 0, "%s", fmt(1, 20));
    CHECK(strcmp(fmt(p10_38, 0), "100000000000000000000000000000000000000") == 0, "%s",
          fmt(p10_38, 0));
    wide = dec_mul_wide(p10_38, p10_38); /* 10^76 needs 253 bits */
    dec_format_wide(buf, wide, 70);
    CHECK(strcmp(buf, "1000000") == 0, "10^76 / 10^70: %s", buf);
    CHECK(dec_cmp_wide(dec_mul_wide(27, 15555), dec_mul_wide(419985, 1)) == 0,
          "27 × 15.555 = 419.985");
    /* parsing the JSON text of threshold_percentage */
    CHECK(dec_parse("15.555", 6, 20, &v, &places) && v == 15555 && places == 3, "15.555");
    CHECK(dec_parse("1.5e1", 5, 20, &v, &places) && v == 15 && places == 0, "1.5e1");
    CHECK(dec_parse("100.000", 7, 20, &v, &places) && v == 100 && places == 0, "100.000");
    CHECK(dec_parse("2E-3", 4, 20, &v, &places) && v == 2 && places == 3, "2E-3");
    CHECK(!dec_parse("-1", 2, 20, &v, &places), "negative refused");
    CHECK(!dec_parse("1e-30", 5, 20, &v, &places), "too many places refused");
}

int main(void)
{
    test_csv_boundaries();
    test_csv_errors();
    test_jrandom();
    test_jsonpos();
    test_collapsing();
    test_rules_defaults_and_lookup();
    test_previous_round_narrowing();
    test_exact_decimals();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
