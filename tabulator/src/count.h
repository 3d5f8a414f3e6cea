/* count.h — counting the rounds of a ranked-choice contest.
 *
 * Input: validated rules and the collapsed ballots. Output: a count_result holding every
 * round (tallies, inactive ballots by category, who was elected or eliminated, where
 * their votes went), independent of any file format; output.c renders it.
 *
 * This is single-winner instant runoff with all the options of TABULATION.md, in int64
 * fixed-point (the fast path). The passes of a `sequential` count are such counts
 * (count_run_pass); the other multi-winner modes, with exact fractional values, are in
 * multi.h over the same ballot walk (walk.h). */
#ifndef TAB_COUNT_H
#define TAB_COUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ballots.h"
#include "error.h"
#include "progress.h"
#include "rules.h"

/* Why a ballot stopped counting, in the order results list them. */
enum count_inactive {
    INACTIVE_EXHAUSTED,
    INACTIVE_OVERVOTES,
    INACTIVE_SKIPPED,
    INACTIVE_REPEATED,
    COUNT_INACTIVE_KINDS
};

extern const char *const count_inactive_names[COUNT_INACTIVE_KINDS];

/* All vote amounts are fixed-point: votes × rules.scale. */
typedef struct count_round {
    int64_t threshold;           /* fixed-point, a whole number of votes */
    int64_t *tally;              /* [ncand]; meaningful where continuing[c] */
    unsigned char *continuing;   /* [ncand] */
    int64_t inactive[COUNT_INACTIVE_KINDS]; /* cumulative */
    int *elected;                /* ids, ascending */
    size_t nelected;
    int *eliminated;             /* ids, ascending (rules order, write-ins first) */
    size_t neliminated;
    /* [neliminated][ncand + 1]: votes of eliminated[i] that went to each candidate in
     * the next round; the last column is the votes that became inactive. */
    int64_t *transfers;
} count_round;

typedef struct count_result {
    size_t ncand;
    count_round *rounds;
    size_t nrounds, rounds_cap;
    int *winners;
    size_t nwinners;
    int64_t ballots;    /* fixed-point weight of all ballots */
    int64_t undervotes; /* fixed-point weight of ballots with no mark */
    /* Set when the count stopped before the end (exit 3). */
    bool stopped;
    char stop_reason[300];
    int *tied;          /* the tie that needs a human, if that was the reason */
    size_t ntied;
    bool tie_to_elect;  /* the tie decides a winner (else an elimination) */
} count_result;

/* Runs the count. Returns 0 when finished, 1 when it stopped early (res->stopped,
 * exit code 3), -1 on an internal error (err). res must be freed in every case. */
int count_run(const rules *r, const ballot_store *s, count_result *res, progress *prog,
              tab_error *err);

/* The same count with the candidates marked in out[ncand] treated as eliminated before
 * round 1: one pass of a `sequential` count (TABULATION-MULTI.md §7). */
int count_run_pass(const rules *r, const ballot_store *s, const unsigned char *out,
                   count_result *res, progress *prog, tab_error *err);

void count_result_free(count_result *res);

#endif
