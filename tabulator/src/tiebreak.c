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

static int draw(const rules *r, jrandom *g, int *set, size_t n)
{
    size_t index;

    sort_rules = r;
    qsort(set, n, sizeof(*set), by_name);
    index = (size_t)(jrandom_next_double(g) * (double)n);
    return set[index < n ? index : n - 1];
}

/* Narrows set to the candidates lowest (eliminate) or highest (elect) in the most recent
 * earlier round where they differ, going further back while several remain. */
static size_t previous_rounds(const int64_t *const *history, size_t nprev, int *set,
                              size_t n, enum tb_purpose purpose)
{
    for (size_t i = nprev; i-- > 0 && n > 1;) {
        const int64_t *t = history[i];
        int64_t best = t[set[0]];
        size_t kept = 0;
        for (size_t k = 1; k < n; k++)
            if (purpose == TB_ELIMINATE ? t[set[k]] < best : t[set[k]] > best)
                best = t[set[k]];
        for (size_t k = 0; k < n; k++)
            if (t[set[k]] == best)
                set[kept++] = set[k];
        n = kept;
    }
    return n;
}

int tb_choose(const rules *r, jrandom *g, const int64_t *const *history, size_t nprev,
              const int *tied, size_t ntied, enum tb_purpose purpose)
{
    int *set = malloc(ntied * sizeof(*set));
    int chosen = -1;
    size_t n = ntied;

    if (!set)
        return -2;
    memcpy(set, tied, ntied * sizeof(*set));
    switch (r->tiebreak) {
    case TIEBREAK_STOP:
        break;
    case TIEBREAK_PREVIOUS_ROUND_THEN_CANDIDATE_ORDER:
    case TIEBREAK_PREVIOUS_ROUND_THEN_RANDOM:
        n = previous_rounds(history, nprev, set, n, purpose);
        if (n == 1) {
            chosen = set[0];
            break;
        }
        if (r->tiebreak == TIEBREAK_PREVIOUS_ROUND_THEN_RANDOM) {
            chosen = draw(r, g, set, n);
            break;
        }
        /* candidate order among those still tied */
        /* fall through */
    case TIEBREAK_CANDIDATE_ORDER:
        /* Ids follow the rules' order, the write-in pseudo-candidate (id 0) first:
         * the latest listed is eliminated, the earliest listed is elected. */
        chosen = set[0];
        for (size_t k = 1; k < n; k++)
            if (purpose == TB_ELIMINATE ? set[k] > chosen : set[k] < chosen)
                chosen = set[k];
        break;
    case TIEBREAK_RANDOM:
        chosen = draw(r, g, set, n);
        break;
    }
    free(set);
    return chosen;
}
