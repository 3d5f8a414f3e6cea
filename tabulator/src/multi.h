/* multi.h — the multi-winner counts of TABULATION-MULTI.md with exact decimals:
 * STV with fractional surplus transfers (multiple_winners_per_round,
 * one_winner_per_round, §4), bottoms_up (§5), bottoms_up_percentage (§6) and sequential
 * (§7, passes of the single-winner count of count.h).
 *
 * Vote amounts are dec_u128 integers counting units of 10^-places, where places is
 * decimal_places plus the decimals the ballots' weights actually use (0 when every weight
 * is whole): a ballot's value has decimal_places digits, a row of weight w contributes
 * w × value. The only roundings are the ones the spec names (threshold, surplus fraction,
 * the part of one ballot's value that moves on). Identical rankings stay merged: a group
 * of n ballots keeps one per-ballot value and moves n × trunc(v × f). */
#ifndef TAB_MULTI_H
#define TAB_MULTI_H

#include <stdbool.h>
#include <stddef.h>

#include "ballots.h"
#include "count.h"
#include "dec.h"
#include "error.h"
#include "progress.h"
#include "rules.h"

typedef struct multi_round {
    dec_u256 threshold;                    /* units of 10^-threshold_places */
    dec_u128 *tally;                       /* [ncand], where shown[c] */
    unsigned char *shown;                  /* [ncand]: in this round's tally */
    dec_u128 inactive[COUNT_INACTIVE_KINDS]; /* cumulative */
    dec_u128 final_surplus;                /* STV: final_round_surplus, cumulative */
    int *elected, *eliminated;             /* ids, display order */
    size_t nelected, neliminated;
    /* Where the votes of this round's elected and eliminated candidates went in the next
     * round: movers[i]'s row transfers[i * (ncand + 1) ...], the last column exhausted. */
    int *movers;
    size_t nmovers;
    dec_u128 *transfers;
    dec_u128 *residual;                    /* [nmovers]: STV residual surplus */
    int pass;                              /* sequential: 1-based pass, else 0 */
    size_t number;                         /* round number (within its pass) */
} multi_round;

typedef struct multi_pass {
    int winner;
    size_t rounds;
    dec_u256 threshold;
} multi_pass;

typedef struct multi_result {
    size_t ncand;
    int places;           /* vote amounts: units of 10^-places */
    int threshold_places; /* thresholds: units of 10^-threshold_places */
    multi_round *rounds;
    size_t nrounds, rounds_cap;
    int *winners;         /* in order of election */
    size_t nwinners;
    multi_pass *passes;   /* sequential only */
    size_t npasses;
    dec_u128 ballots, undervotes; /* units of 10^-places_weights */
    int weight_places;
    /* Set when the count could not finish (exit 3): a tie with tiebreak "stop" (tied,
     * ntied, tie_to_elect) or another reason (error). */
    bool stopped;
    char error[400];
    int *tied;
    size_t ntied;
    bool tie_to_elect;
} multi_result;

/* Runs the count of r->mode (any mode but single_winner). Returns 0 when finished, 1
 * when it stopped (res->stopped, exit 3), -1 with err on an input error (amounts too
 * large for exact arithmetic) or an internal error. res must be freed in every case. */
int multi_run(const rules *r, const ballot_store *s, multi_result *res, progress *prog,
              tab_error *err);

void multi_result_free(multi_result *res);

#endif
