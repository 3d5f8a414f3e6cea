/* tiebreak.h — breaking ties between candidates, and the seeded random draw.
 *
 * The random draw uses the 48-bit linear congruential generator of java.util.Random so
 * a count can be reproduced by any tabulator that documents the same choice
 * (TABULATION.md): tied candidates sorted by name, index = floor(nextDouble() × n). */
#ifndef TAB_TIEBREAK_H
#define TAB_TIEBREAK_H

#include <stddef.h>
#include <stdint.h>

#include "rules.h"

typedef struct jrandom {
    uint64_t state; /* 48 bits */
} jrandom;

void jrandom_init(jrandom *g, int64_t seed);   /* new java.util.Random(seed) */
int32_t jrandom_next(jrandom *g, int bits);     /* Random.next(bits) */
double jrandom_next_double(jrandom *g);         /* Random.nextDouble() */

enum tb_purpose {
    TB_ELIMINATE, /* choose who goes: lowest tallies lose */
    TB_ELECT,     /* choose who wins: highest tallies win */
};

/* Chooses one of the tied candidates (ntied >= 2). history[i][c] is candidate c's tally
 * (fixed-point) in round i+1, for the nprev rounds before the current one. Returns the
 * chosen id, -1 when the rules say `stop` (a human must decide), -2 when out of
 * memory. */
int tb_choose(const rules *r, jrandom *g, const int64_t *const *history, size_t nprev,
              const int *tied, size_t ntied, enum tb_purpose purpose);

/* The same over tallies of any type: cmp(ctx, i, a, b) compares candidates a and b in
 * round i+1 (<0, 0, >0). In multi-winner counts (rules_is_multi) names sort in Java's
 * UTF-16 order and previous_round_then_random draws from HashSet order
 * (TABULATION-MULTI.md §8); single-winner counts keep TABULATION.md's byte order. */
typedef int (*tb_history_cmp)(const void *ctx, size_t round, int a, int b);
int tb_choose_with(const rules *r, jrandom *g, tb_history_cmp cmp, const void *ctx,
                   size_t nprev, const int *tied, size_t ntied, enum tb_purpose purpose);

#endif
