/* count.c — the rounds of a single-winner ranked-choice count (see count.h).
 *
 * Each distinct ranking (a ballot group) sits in the list of the candidate it counts for.
 * When candidates are eliminated, only the groups in their lists are walked again, so a
 * round costs in proportion to the ballots that move, not to all ballots. */
#include "count.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiebreak.h"
#include "walk.h"

const char *const count_inactive_names[COUNT_INACTIVE_KINDS] = {
    "exhausted_choices", "overvotes", "skipped_rankings", "repeated_rankings"};

typedef struct group_list {
    uint32_t *items;
    size_t len, cap;
} group_list;

typedef struct counter {
    const rules *r;
    const ballot_store *s;
    count_result *res;
    size_t ncand;
    unsigned char *continuing; /* [ncand] */
    unsigned char *elected;    /* [ncand] */
    int64_t *tally;            /* [ncand], current */
    int64_t inactive[COUNT_INACTIVE_KINDS];
    group_list *lists;         /* [ncand]: groups counting for each candidate */
    walk_state walker;         /* over continuing */
    int *scratch;              /* [ncand] */
    const int64_t **history;   /* [ncand + 2] round tallies for tie-breaks */
    jrandom rng;
    progress *prog;
    tab_error *err;
} counter;

static int list_push(group_list *l, uint32_t g)
{
    if (l->len == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        uint32_t *ni = realloc(l->items, ncap * sizeof(*ni));
        if (!ni)
            return -1;
        l->items = ni;
        l->cap = ncap;
    }
    l->items[l->len++] = g;
    return 0;
}

/* Puts group g where walk() says; adds its weight to *transfer_row when given. */
static int place(counter *cn, uint32_t g, int64_t *transfer_row)
{
    const ballot_group *bg = &cn->s->groups[g];
    int where = walk_ballot(&cn->walker, ballots_marks(cn->s, bg), bg->len);

    if (where >= 0) {
        cn->tally[where] += bg->weight;
        if (transfer_row)
            transfer_row[where] += bg->weight;
        return list_push(&cn->lists[where], g);
    }
    if (where == WALK_UNDERVOTE) {
        cn->res->undervotes += bg->weight;
        return 0;
    }
    cn->inactive[-1 - where] += bg->weight;
    if (transfer_row)
        transfer_row[cn->ncand] += bg->weight;
    return 0;
}

/* ---- rounds ---- */

static int oom(counter *cn)
{
    return tab_error_set(cn->err, TAB_EXIT_INTERNAL, "", 0, 0, "out of memory while counting");
}

static count_round *new_round(counter *cn)
{
    count_result *res = cn->res;
    count_round *rd;

    if (res->nrounds == res->rounds_cap) {
        size_t ncap = res->rounds_cap ? res->rounds_cap * 2 : 8;
        count_round *nr = realloc(res->rounds, ncap * sizeof(*nr));
        if (!nr)
            return NULL;
        res->rounds = nr;
        res->rounds_cap = ncap;
    }
    rd = &res->rounds[res->nrounds];
    memset(rd, 0, sizeof(*rd));
    rd->tally = malloc(cn->ncand * sizeof(*rd->tally));
    rd->continuing = malloc(cn->ncand);
    if (!rd->tally || !rd->continuing) {
        free(rd->tally);
        free(rd->continuing);
        return NULL;
    }
    res->nrounds++;
    memcpy(rd->tally, cn->tally, cn->ncand * sizeof(*rd->tally));
    memcpy(rd->continuing, cn->continuing, cn->ncand);
    memcpy(rd->inactive, cn->inactive, sizeof(rd->inactive));
    return rd;
}

static size_t continuing_ids(const counter *cn, int *out)
{
    size_t n = 0;
    for (size_t c = 0; c < cn->ncand; c++)
        if (cn->continuing[c])
            out[n++] = (int)c;
    return n;
}

/* Earlier rounds' tallies, oldest first, for tb_choose(). */
static size_t history(counter *cn)
{
    size_t n = cn->res->nrounds - 1;
    for (size_t i = 0; i < n; i++)
        cn->history[i] = cn->res->rounds[i].tally;
    return n;
}

static int stop_on_tie(counter *cn, const int *tied, size_t n, bool to_elect)
{
    count_result *res = cn->res;

    res->tied = malloc(n * sizeof(*res->tied));
    if (!res->tied)
        return oom(cn);
    memcpy(res->tied, tied, n * sizeof(*tied));
    res->ntied = n;
    res->tie_to_elect = to_elect;
    res->stopped = true;
    snprintf(res->stop_reason, sizeof(res->stop_reason),
             "round %zu: %zu candidates are tied %s and the rules say tiebreak \"stop\"",
             res->nrounds, n, to_elect ? "for the win" : "for elimination");
    return 1;
}

/* "Deciding a winner". Returns 0 with *winner set (-1: nobody this round), 1 to stop. */
static int decide_winner(counter *cn, int64_t threshold, int *winner)
{
    const rules *r = cn->r;
    int *ids = cn->scratch;
    size_t n = continuing_ids(cn, ids);

    *winner = -1;
    if (r->has_uwi && cn->continuing[RULES_UWI] && cn->tally[RULES_UWI] > 0)
        return 0; /* the write-ins are eliminated first */
    for (size_t i = 0; i < n; i++)
        if (ids[i] != RULES_UWI && cn->tally[ids[i]] >= threshold) {
            *winner = ids[i];
            return 0;
        }
    if (n == 2) {
        int a = ids[0], b = ids[1], choice;
        if (a == RULES_UWI || b == RULES_UWI) /* it can never win */
            *winner = a == RULES_UWI ? b : a;
        else if (cn->tally[a] != cn->tally[b])
            *winner = cn->tally[a] > cn->tally[b] ? a : b;
        else {
            choice = tb_choose(r, &cn->rng, cn->history, history(cn), ids, 2, TB_ELECT);
            if (choice == -2)
                return oom(cn);
            if (choice < 0)
                return stop_on_tie(cn, ids, 2, true);
            *winner = choice;
        }
    } else if (n == 1 && ids[0] != RULES_UWI) {
        *winner = ids[0];
    }
    return 0;
}

static const int64_t *sort_tally; /* qsort has no context argument in C11 */

static int by_tally(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    if (sort_tally[x] != sort_tally[y])
        return sort_tally[x] < sort_tally[y] ? -1 : 1;
    return x - y;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* "Winning and eliminating", the elimination part: fills out[] (ids) and *nout. Returns
 * 0, or 1 when the count must stop. */
static int choose_eliminations(counter *cn, int64_t threshold, int *out, size_t *nout)
{
    const rules *r = cn->r;
    int *ids = cn->scratch;
    size_t n = continuing_ids(cn, ids), m = 0;
    int64_t lowest;

    *nout = 0;
    if (r->has_uwi && cn->continuing[RULES_UWI] && cn->tally[RULES_UWI] > 0) {
        out[(*nout)++] = RULES_UWI;
        return 0;
    }
    if (cn->res->nrounds == 1 && r->minimum_votes > 0) {
        size_t real_left = 0;
        for (size_t i = 0; i < n; i++) {
            if (cn->tally[ids[i]] < r->minimum_votes && !cn->elected[ids[i]])
                out[(*nout)++] = ids[i];
            else if (ids[i] != RULES_UWI)
                real_left++;
        }
        if (*nout > 0 && real_left == 0) {
            cn->res->stopped = true;
            snprintf(cn->res->stop_reason, sizeof(cn->res->stop_reason),
                     "every candidate is below minimum_vote_threshold in round 1");
            return 1;
        }
        if (*nout > 0)
            return 0;
    }
    if (r->cutoff_elimination) { /* TABULATION-MULTI.md §7.1: all below the threshold */
        for (size_t i = 0; i < n; i++)
            if (cn->tally[ids[i]] < threshold && !cn->elected[ids[i]])
                out[(*nout)++] = ids[i];
        if (*nout > 0)
            return 0;
    }
    if (r->batch_elimination && n >= 3) {
        int64_t below = 0;
        size_t best = 0;
        sort_tally = cn->tally;
        qsort(ids, n, sizeof(*ids), by_tally);
        for (size_t i = 1; i < n; i++) {
            below += cn->tally[ids[i - 1]];
            if (cn->elected[ids[i - 1]])
                break; /* a winner is never eliminable */
            if (below < cn->tally[ids[i]] && i >= 2 && (!r->continue_until_two || n - i >= 2))
                best = i;
        }
        if (best >= 2) {
            memcpy(out, ids, best * sizeof(*ids));
            *nout = best;
            qsort(out, best, sizeof(*out), cmp_int);
            return 0;
        }
        n = continuing_ids(cn, ids);
    }
    lowest = INT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (!cn->elected[ids[i]] && cn->tally[ids[i]] < lowest)
            lowest = cn->tally[ids[i]];
    for (size_t i = 0; i < n; i++)
        if (!cn->elected[ids[i]] && cn->tally[ids[i]] == lowest)
            ids[m++] = ids[i];
    if (m == 1) {
        out[(*nout)++] = ids[0];
    } else {
        int choice = tb_choose(r, &cn->rng, cn->history, history(cn), ids, m, TB_ELIMINATE);
        if (choice == -2)
            return oom(cn);
        if (choice < 0)
            return stop_on_tie(cn, ids, m, false);
        out[(*nout)++] = choice;
    }
    return 0;
}

/* Eliminates rd->eliminated and walks their groups again, recording the transfers. */
static int eliminate(counter *cn, count_round *rd)
{
    size_t width = cn->ncand + 1;

    rd->transfers = calloc(rd->neliminated * width, sizeof(*rd->transfers));
    if (!rd->transfers)
        return oom(cn);
    for (size_t i = 0; i < rd->neliminated; i++)
        cn->continuing[rd->eliminated[i]] = 0;
    for (size_t i = 0; i < rd->neliminated; i++) {
        int e = rd->eliminated[i];
        group_list moving = cn->lists[e];

        memset(&cn->lists[e], 0, sizeof(cn->lists[e]));
        cn->tally[e] = 0;
        for (size_t k = 0; k < moving.len; k++)
            if (place(cn, moving.items[k], rd->transfers + i * width) < 0) {
                free(moving.items);
                return oom(cn);
            }
        free(moving.items);
    }
    return 0;
}

#ifndef NDEBUG
/* Every ballot is in exactly one place: a tally, an inactive category or undervotes. */
static void check_conservation(const counter *cn)
{
    int64_t sum = cn->res->undervotes;
    for (size_t c = 0; c < cn->ncand; c++)
        sum += cn->tally[c];
    for (int k = 0; k < COUNT_INACTIVE_KINDS; k++)
        sum += cn->inactive[k];
    assert(sum == cn->s->total_weight);
}
#else
#define check_conservation(cn) ((void)0)
#endif

static int run_rounds(counter *cn)
{
    const rules *r = cn->r;
    count_result *res = cn->res;
    int winner = -1, rc = 0;
    int64_t frozen = -1;
    size_t initially = 0;
    int *elim = malloc(cn->ncand * sizeof(*elim));

    if (!elim)
        return oom(cn);
    for (size_t c = 0; c < cn->ncand; c++)
        initially += cn->continuing[c];
    for (;;) {
        count_round *rd;
        int64_t active = 0, threshold;
        size_t ncont = 0, nelim = 0;

        check_conservation(cn);
        rd = new_round(cn);
        if (!rd)
            goto nomem;
        for (size_t c = 0; c < cn->ncand; c++)
            if (cn->continuing[c]) {
                active += cn->tally[c];
                ncont++;
            }
        threshold = (active / (2 * r->scale) + 1) * r->scale;
        if (frozen >= 0)
            threshold = frozen;
        else if (r->first_round_threshold && res->nrounds > 1)
            threshold = res->rounds[0].threshold;
        rd->threshold = threshold;

        if (winner < 0) {
            rc = decide_winner(cn, threshold, &winner);
            if (rc != 0)
                goto done_rc;
            if (winner >= 0) {
                rd->elected = malloc(sizeof(*rd->elected));
                if (!rd->elected)
                    goto nomem;
                rd->elected[0] = winner;
                rd->nelected = 1;
                cn->elected[winner] = 1;
                if (!r->continue_until_two || ncont <= 2)
                    break;
                frozen = threshold; /* the winning round eliminates nobody */
                progress_report(cn->prog, "tabulating", res->nrounds, initially + 1, false);
                continue;
            }
        } else if (ncont <= 2) {
            break; /* continue_until_two: the last round shows the final two */
        }
        rc = choose_eliminations(cn, threshold, elim, &nelim);
        if (rc != 0)
            goto done_rc;
        rd->eliminated = malloc(nelim * sizeof(*rd->eliminated));
        if (!rd->eliminated)
            goto nomem;
        memcpy(rd->eliminated, elim, nelim * sizeof(*elim));
        rd->neliminated = nelim;
        if (nelim == ncont) { /* only cutoff_elimination can remove everybody */
            res->stopped = true;
            snprintf(res->stop_reason, sizeof(res->stop_reason), "no continuing candidate left");
            free(elim);
            return 1;
        }
        if (eliminate(cn, rd) < 0) {
            free(elim);
            return -1;
        }
        progress_report(cn->prog, "tabulating", res->nrounds, initially + 1, false);
    }
    free(elim);
    res->winners = malloc(sizeof(*res->winners));
    if (!res->winners)
        return oom(cn);
    res->winners[0] = winner;
    res->nwinners = 1;
    return 0;
done_rc:
    free(elim);
    return rc;
nomem:
    free(elim);
    return oom(cn);
}

int count_run(const rules *r, const ballot_store *s, count_result *res, progress *prog,
              tab_error *err)
{
    return count_run_pass(r, s, NULL, res, prog, err);
}

int count_run_pass(const rules *r, const ballot_store *s, const unsigned char *out,
                   count_result *res, progress *prog, tab_error *err)
{
    counter cn;
    int rc = -1;

    memset(res, 0, sizeof(*res));
    memset(&cn, 0, sizeof(cn));
    cn.r = r;
    cn.s = s;
    cn.res = res;
    cn.err = err;
    cn.prog = prog;
    cn.ncand = r->ncand;
    res->ncand = r->ncand;
    res->ballots = s->total_weight;
    cn.continuing = calloc(cn.ncand, 1);
    cn.elected = calloc(cn.ncand, 1);
    cn.tally = calloc(cn.ncand, sizeof(*cn.tally));
    cn.lists = calloc(cn.ncand, sizeof(*cn.lists));
    cn.walker.seen = calloc(cn.ncand, sizeof(*cn.walker.seen));
    cn.scratch = calloc(cn.ncand, sizeof(*cn.scratch));
    cn.history = calloc(cn.ncand + 2, sizeof(*cn.history));
    if (!cn.continuing || !cn.elected || !cn.tally || !cn.lists || !cn.walker.seen || !cn.scratch ||
        !cn.history) {
        oom(&cn);
        goto out;
    }
    cn.walker.r = r;
    cn.walker.ncand = cn.ncand;
    cn.walker.continuing = cn.continuing;
    jrandom_init(&cn.rng, r->random_seed);
    for (size_t c = 0; c < cn.ncand; c++)
        cn.continuing[c] = r->cand[c].present && !r->cand[c].excluded && !(out && out[c]);
    for (size_t g = 0; g < s->ngroups; g++)
        if (place(&cn, (uint32_t)g, NULL) < 0) {
            oom(&cn);
            goto out;
        }
    rc = run_rounds(&cn);
out:
    if (cn.lists)
        for (size_t c = 0; c < cn.ncand; c++)
            free(cn.lists[c].items);
    free(cn.continuing);
    free(cn.elected);
    free(cn.tally);
    free(cn.lists);
    free(cn.walker.seen);
    free(cn.scratch);
    free(cn.history);
    return rc;
}

void count_result_free(count_result *res)
{
    for (size_t i = 0; i < res->nrounds; i++) {
        free(res->rounds[i].tally);
        free(res->rounds[i].continuing);
        free(res->rounds[i].elected);
        free(res->rounds[i].eliminated);
        free(res->rounds[i].transfers);
    }
    free(res->rounds);
    free(res->winners);
    free(res->tied);
    memset(res, 0, sizeof(*res));
}
