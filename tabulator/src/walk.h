/* walk.h — the ballot walk of TABULATION.md, "How a round is counted".
 *
 * Given the marks of one distinct ranking (ballots.h) and the set of continuing
 * candidates, says whom the ballot counts for, or why it is inactive. Shared by the
 * single-winner count (count.c) and the multi-winner counts (multi.c), which differ only
 * in who is continuing (TABULATION-MULTI.md §3.1: elected candidates are not). Inline:
 * it is the innermost loop of every count, run once per distinct ranking in round 1. */
#ifndef TAB_WALK_H
#define TAB_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ballots.h"
#include "count.h"
#include "rules.h"

/* Where a ballot stands when it does not count for a candidate (ids are >= 0). */
#define WALK_INACTIVE(kind) (-1 - (int)(kind))
#define WALK_UNDERVOTE (-1 - COUNT_INACTIVE_KINDS)

typedef struct walk_state {
    const rules *r;
    size_t ncand;
    const unsigned char *continuing; /* [ncand] */
    uint32_t *seen;                  /* [ncand]: generation stamps for duplicates */
    uint32_t seen_gen;
} walk_state;

/* A candidate id, WALK_INACTIVE(kind) or WALK_UNDERVOTE. */
static inline int walk_ballot(walk_state *w, const uint16_t *m, uint32_t len)
{
    const rules *r = w->r;
    long last = 0;
    uint32_t i = 0;

    if (len == 0)
        return WALK_UNDERVOTE;
    if (r->exhaust_on_duplicate && ++w->seen_gen == 0) {
        memset(w->seen, 0, w->ncand * sizeof(*w->seen));
        w->seen_gen = 1;
    }
    while (i < len) {
        long rank = m[i];
        uint16_t k = m[i + 1];
        const uint16_t *ids = m + i + 2;
        bool is_last;

        i += 2u + k;
        is_last = i >= len;
        if (r->max_skipped >= 0 && rank - last > r->max_skipped + 1)
            return WALK_INACTIVE(INACTIVE_SKIPPED);
        last = rank;
        if (r->exhaust_on_duplicate) {
            for (uint16_t j = 0; j < k; j++)
                if (ids[j] != BALLOTS_OVERVOTE_LABEL && w->seen[ids[j]] == w->seen_gen)
                    return WALK_INACTIVE(INACTIVE_REPEATED);
            for (uint16_t j = 0; j < k; j++)
                if (ids[j] != BALLOTS_OVERVOTE_LABEL)
                    w->seen[ids[j]] = w->seen_gen;
        }
        if (k > 1 || ids[0] == BALLOTS_OVERVOTE_LABEL) {
            int only = -1, continuing = 0;
            switch (r->overvote) {
            case OVERVOTE_EXHAUST_IMMEDIATELY:
                return WALK_INACTIVE(INACTIVE_OVERVOTES);
            case OVERVOTE_ALWAYS_SKIP:
                break;
            case OVERVOTE_EXHAUST_IF_MULTIPLE:
                /* The reader refuses the overvote label under this rule. */
                for (uint16_t j = 0; j < k; j++)
                    if (ids[j] != BALLOTS_OVERVOTE_LABEL && w->continuing[ids[j]]) {
                        continuing++;
                        only = ids[j];
                    }
                if (continuing >= 2)
                    return WALK_INACTIVE(INACTIVE_OVERVOTES);
                if (continuing == 1)
                    return only;
                break;
            }
        } else if (w->continuing[ids[0]]) {
            return ids[0];
        }
        if (is_last)
            return WALK_INACTIVE(INACTIVE_EXHAUSTED);
    }
    return WALK_INACTIVE(INACTIVE_EXHAUSTED);
}

#endif
