/* tiebreak.c — tie-break modes of TABULATION.md (see tiebreak.h). */
#include "tiebreak.h"

#include <stdlib.h>
#include <string.h>

#define JR_MULT 0x5DEECE66Dull
#define JR_ADD 0xBull
#define JR_MASK ((1ull << 48) - 1)

void jrandom_init(jrandom *g, int64_t seed)
{
    g->state = ((uint64_t)seed ^ JR_MULT) & JR_MASK;
}

int32_t jrandom_next(jrandom *g, int bits)
{
    g->state = (g->state * JR_MULT + JR_ADD) & JR_MASK;
    return (int32_t)(uint32_t)(g->state >> (48 - bits));
}

double jrandom_next_double(jrandom *g)
{
    uint64_t hi = (uint64_t)jrandom_next(g, 26), lo = (uint64_t)jrandom_next(g, 27);
    return (double)((hi << 27) + lo) * (1.0 / (double)(1ull << 53));
}

static const rules *sort_rules; /* qsort has no context argument in C11 */

static int by_name(const void *a, const void *b)
{
    return strcmp(sort_rules->cand[*(const int *)a].name, sort_rules->cand[*(const int *)b].name);
}

/* Next UTF-16 code unit of a UTF-8 string (valid UTF-8: jansson checked it); *pending
 * holds the low surrogate of a character above U+FFFF. 0 at the end. */
static unsigned utf16_next(const unsigned char **p, unsigned *pending)
{
    const unsigned char *s = *p;
    unsigned cp;

    if (*pending) {
        cp = *pending;
        *pending = 0;
        return cp;
    }
    if (!*s)
        return 0;
    if (s[0] < 0x80)
        cp = s[0], s += 1;
    else if (s[0] < 0xE0)
        cp = (s[0] & 0x1Fu) << 6 | (s[1] & 0x3Fu), s += 2;
    else if (s[0] < 0xF0)
        cp = (s[0] & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu), s += 3;
    else
        cp = (s[0] & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 |
             (s[3] & 0x3Fu),
        s += 4;
    *p = s;
    if (cp >= 0x10000) {
        *pending = 0xDC00 + ((cp - 0x10000) & 0x3FF);
        return 0xD800 + ((cp - 0x10000) >> 10);
    }
    return cp;
}

/* Java's String.compareTo: by UTF-16 code units (TABULATION-MULTI.md §8). */
static int by_java_name(const void *a, const void *b)
{
    const unsigned char *x = (const unsigned char *)sort_rules->cand[*(const int *)a].name;
    const unsigned char *y = (const unsigned char *)sort_rules->cand[*(const int *)b].name;
    unsigned px = 0, py = 0;

    for (;;) {
        unsigned cx = utf16_next(&x, &px), cy = utf16_next(&y, &py);
        if (cx != cy || cx == 0)
            return cx < cy ? -1 : cx > cy;
    }
}

/* Java's String.hashCode, over UTF-16 code units, int arithmetic. */
static uint32_t java_hash(const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    unsigned pending = 0, unit;
    uint32_t h = 0;

    while ((unit = utf16_next(&s, &pending)) != 0)
        h = 31u * h + unit;
    return h;
}

/* Reorders set as a java.util.HashSet built from it iterates (TABULATION-MULTI.md §8,
 * [RCTab]): by bucket (h ^ h >>> 16) & (capacity - 1), insertion order within a bucket. */
static void hashset_order(const rules *r, int *set, size_t n)
{
    size_t want = (size_t)((double)n / 0.75) + 1, cap = 1;
    int *out = malloc(n * sizeof(*out));
    size_t k = 0;

    if (!out)
        return; /* only the order of an already valid set is lost; never hit in practice */
    if (want < 16)
        want = 16;
    while (cap < want)
        cap *= 2;
    for (size_t bucket = 0; bucket < cap && k < n; bucket++)
        for (size_t i = 0; i < n; i++) {
            uint32_t h = java_hash(r->cand[set[i]].name);
            if (((h ^ (h >> 16)) & (cap - 1)) == bucket)
                out[k++] = set[i];
        }
    memcpy(set, out, n * sizeof(*set));
    free(out);
}

static void sort_by_name(const rules *r, int *set, size_t n)
{
    sort_rules = r;
    qsort(set, n, sizeof(*set), rules_is_multi(r) ? by_java_name : by_name);
}

static int draw_index(jrandom *g, const int *set, size_t n)
{
    size_t index = (size_t)(jrandom_next_double(g) * (double)n);
    return set[index < n ? index : n - 1];
}

/* Narrows set to the candidates lowest (eliminate) or highest (elect) in the most recent
 * earlier round where they differ, going further back while several remain. With
 * hashset, the list is put in HashSet order before each round looked at. */
static size_t previous_rounds(const rules *r, tb_history_cmp cmp, const void *ctx,
                              size_t nprev, int *set, size_t n, enum tb_purpose purpose,
                              bool hashset)
{
    for (size_t i = nprev; i-- > 0 && n > 1;) {
        size_t kept = 0;
        int best;
        if (hashset)
            hashset_order(r, set, n);
        best = set[0];
        for (size_t k = 1; k < n; k++) {
            int c = cmp(ctx, i, set[k], best);
            if (purpose == TB_ELIMINATE ? c < 0 : c > 0)
                best = set[k];
        }
        for (size_t k = 0; k < n; k++)
            if (set[k] == best || cmp(ctx, i, set[k], best) == 0)
                set[kept++] = set[k];
        n = kept;
    }
    return n;
}

/* candidate_order: ids follow the rules' order with the write-in pseudo-candidate (id 0)
 * first, so the latest listed is eliminated and the earliest listed elected; the
 * pseudo-candidate is never elected while a listed candidate is tied with it. */
static int by_order(const int *set, size_t n, enum tb_purpose purpose)
{
    int chosen = -1;
    for (size_t k = 0; k < n; k++) {
        if (purpose == TB_ELIMINATE ? set[k] > chosen
                                    : set[k] != RULES_UWI && (chosen < 0 || set[k] < chosen))
            chosen = set[k];
    }
    return chosen < 0 ? set[0] : chosen;
}

int tb_choose_with(const rules *r, jrandom *g, tb_history_cmp cmp, const void *ctx,
                   size_t nprev, const int *tied, size_t ntied, enum tb_purpose purpose)
{
    int *set = malloc(ntied * sizeof(*set));
    int chosen = -1;
    size_t n = ntied;
    bool hashset = false;

    if (!set)
        return -2;
    memcpy(set, tied, ntied * sizeof(*set));
    switch (r->tiebreak) {
    case TIEBREAK_STOP:
        break;
    case TIEBREAK_PREVIOUS_ROUND_THEN_CANDIDATE_ORDER:
    case TIEBREAK_PREVIOUS_ROUND_THEN_RANDOM:
        if (r->tiebreak == TIEBREAK_PREVIOUS_ROUND_THEN_RANDOM && rules_is_multi(r)) {
            sort_by_name(r, set, n);
            hashset = nprev > 0;
        }
        n = previous_rounds(r, cmp, ctx, nprev, set, n, purpose, hashset);
        if (n == 1) {
            chosen = set[0];
            break;
        }
        if (r->tiebreak == TIEBREAK_PREVIOUS_ROUND_THEN_RANDOM) {
            if (!hashset)
                sort_by_name(r, set, n);
            chosen = draw_index(g, set, n);
            break;
        }
        chosen = by_order(set, n, purpose); /* candidate order among those still tied */
        break;
    case TIEBREAK_CANDIDATE_ORDER:
        chosen = by_order(set, n, purpose);
        break;
    case TIEBREAK_RANDOM:
        sort_by_name(r, set, n);
        chosen = draw_index(g, set, n);
        break;
    }
    free(set);
    return chosen;
}

static int cmp_int64(const void *ctx, size_t round, int a, int b)
{
    const int64_t *t = ((const int64_t *const *)ctx)[round];
    return t[a] < t[b] ? -1 : t[a] > t[b];
}

int tb_choose(const rules *r, jrandom *g, const int64_t *const *history, size_t nprev,
              const int *tied, size_t ntied, enum tb_purpose purpose)
{
    return tb_choose_with(r, g, cmp_int64, history, nprev, tied, ntied, purpose);
}
