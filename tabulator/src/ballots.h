/* ballots.h — the collapsing ballot store.
 *
 * Identical rankings are kept once, with the sum of their weights: memory grows with the
 * number of distinct rankings, not with the number of ballots, and a round of counting
 * touches each distinct ranking once.
 *
 * A ranking is a sequence of uint16_t "marks", one record per marked rank, in rank order:
 *
 *     rank, k, id_1 … id_k
 *
 * where rank is the 1-based rank number (gaps are unmarked ranks), k >= 1 the number of
 * names at that rank (k > 1 is an overvote, ids sorted ascending and distinct), and an id
 * is a candidate id or BALLOTS_OVERVOTE_LABEL for "overvote, names unknown". An empty
 * sequence is an undervote. */
#ifndef TAB_BALLOTS_H
#define TAB_BALLOTS_H

#include <stddef.h>
#include <stdint.h>

#define BALLOTS_OVERVOTE_LABEL 0xFFFFu
#define BALLOTS_MAX_RANK 0xFFFEu

typedef struct ballot_group {
    uint32_t off;   /* first mark in ballot_store.marks */
    uint32_t len;   /* number of uint16_t marks */
    uint64_t hash;
    int64_t weight; /* fixed-point sum of the weights of the identical ballots */
    int64_t rows;   /* number of CSV rows collapsed into this group */
} ballot_group;

typedef struct ballot_store {
    uint16_t *marks;
    size_t nmarks, marks_cap;
    ballot_group *groups;
    size_t ngroups, groups_cap;
    uint32_t *table; /* group index + 1; 0 = empty; capacity a power of two */
    size_t table_cap;
    int64_t rows;         /* ballots read */
    int64_t total_weight; /* fixed-point */
} ballot_store;

void ballots_init(ballot_store *s);
void ballots_free(ballot_store *s);

/* Adds one ballot with the given ranking and fixed-point weight, merging it with an
 * identical ranking already stored. Returns 0; -2 when the total weight would overflow
 * int64 (an input problem); -1 when out of memory or past the store's limits (2^32 marks,
 * 2^31 distinct rankings). */
int ballots_add(ballot_store *s, const uint16_t *marks, uint32_t len, int64_t weight);

/* NULL-safe: a store of only empty rankings never allocates marks, and an offset added
 * to a null pointer is undefined even when it is zero. */
static inline const uint16_t *ballots_marks(const ballot_store *s, const ballot_group *g)
{
    return s->marks ? s->marks + g->off : s->marks;
}

#endif
