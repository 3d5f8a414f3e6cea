/* multi.c — the multi-winner counts (see multi.h; TABULATION-MULTI.md §3 to §8).
 *
 * Like count.c, each distinct ranking (group) sits in the list of the candidate it counts
 * for, and a round walks again only the groups of the candidates elected or eliminated
 * in the round before; each group also carries its per-ballot value. */
#include "multi.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiebreak.h"
#include "walk.h"

typedef struct group_list {
    uint32_t *items;
    size_t len, cap;
} group_list;

typedef struct mcount {
    const rules *r;
    const ballot_store *s;
    multi_result *res;
    size_t ncand;
    int seats;
    unsigned char *continuing; /* [ncand] */
    unsigned char *elected;    /* [ncand] */
    dec_u128 *tally;           /* [ncand]: continuing candidates, counted */
    dec_u128 *fixed;           /* [ncand]: STV winners from the round after their election */
    dec_u128 inactive[COUNT_INACTIVE_KINDS];
    dec_u128 final_surplus;
    group_list *lists;         /* [ncand] */
    dec_u128 *value;           /* [ngroups]: the value of one ballot, units of 10^-D */
    int64_t weight_div;        /* group weight / weight_div = ballots, units 10^-k */
    dec_u128 one;              /* 10^D: a whole ballot's value */
    dec_u128 quota;            /* Q (STV, bottoms_up), units of 10^-places */
    int *scratch;              /* [ncand] */
    walk_state walker;
    jrandom rng;
    progress *prog;
    tab_error *err;
} mcount;

static int oom(mcount *mc)
{
    return tab_error_set(mc->err, TAB_EXIT_INTERNAL, "", 0, 0, "out of memory while counting");
}

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

/* The group's weight in units of 10^-k, times its per-ballot value: its amount. */
static dec_u128 amount(const mcount *mc, uint32_t g)
{
    int64_t w = mc->s->groups[g].weight;
    if (mc->weight_div > 1)
        w /= mc->weight_div;
    return (dec_u128)(uint64_t)w * mc->value[g];
}

/* Walks group g (§3.3) and puts its amount where the walk says; row (may be NULL) is the
 * transfer row of the candidate it leaves. */
static int place(mcount *mc, uint32_t g, dec_u128 *row)
{
    const ballot_group *bg = &mc->s->groups[g];
    int where = walk_ballot(&mc->walker, ballots_marks(mc->s, bg), bg->len);
    dec_u128 a = amount(mc, g);

    if (where >= 0) {
        mc->tally[where] += a;
        if (row)
            row[where] += a;
        return list_push(&mc->lists[where], g);
    }
    if (where == WALK_UNDERVOTE) {
        mc->res->undervotes += (dec_u128)bg->weight;
        return 0;
    }
    mc->inactive[-1 - where] += a;
    if (row)
        row[mc->ncand] += a;
    return 0;
}

static size_t continuing_ids(const mcount *mc, int *out)
{
    size_t n = 0;
    for (size_t c = 0; c < mc->ncand; c++)
        if (mc->continuing[c])
            out[n++] = (int)c;
    return n;
}

static bool uwi_holds_votes(const mcount *mc)
{
    return mc->r->has_uwi && mc->continuing[RULES_UWI] && mc->tally[RULES_UWI] > 0;
}

/* ---- rounds ---- */

static multi_round *new_round(mcount *mc, size_t number)
{
    multi_result *res = mc->res;
    multi_round *rd;

    if (res->nrounds == res->rounds_cap) {
        size_t ncap = res->rounds_cap ? res->rounds_cap * 2 : 8;
        multi_round *nr = realloc(res->rounds, ncap * sizeof(*nr));
        if (!nr)
            return NULL;
        res->rounds = nr;
        res->rounds_cap = ncap;
    }
    rd = &res->rounds[res->nrounds];
    memset(rd, 0, sizeof(*rd));
    rd->tally = calloc(mc->ncand, sizeof(*rd->tally));
    rd->shown = calloc(mc->ncand, 1);
    rd->elected = malloc(mc->ncand * sizeof(*rd->elected));
    rd->eliminated = malloc(mc->ncand * sizeof(*rd->eliminated));
    if (!rd->tally || !rd->shown || !rd->elected || !rd->eliminated) {
        free(rd->tally);
        free(rd->shown);
        free(rd->elected);
        free(rd->eliminated);
        return NULL;
    }
    res->nrounds++;
    rd->number = number;
    for (size_t c = 0; c < mc->ncand; c++) {
        if (mc->continuing[c]) {
            rd->tally[c] = mc->tally[c];
            rd->shown[c] = 1;
        } else if (mc->elected[c] && rules_is_stv(mc->r)) {
            rd->tally[c] = mc->fixed[c]; /* set below for this round's winners */
            rd->shown[c] = 1;
        }
    }
    memcpy(rd->inactive, mc->inactive, sizeof(rd->inactive));
    rd->final_surplus = mc->final_surplus;
    return rd;
}

static dec_u256 widen(dec_u128 v)
{
    dec_u256 w = {{(uint64_t)v, (uint64_t)(v >> 64), 0, 0}};
    return w;
}

/* Q of §4.1 (and §5's Droop), from V, the value counting for a candidate in round 1. */
static dec_u128 quota(const mcount *mc, dec_u128 v)
{
    const rules *r = mc->r;
    int places = mc->res->places, extra = places - r->decimal_places;
    dec_u128 unit = dec_pow10(places), s = (dec_u128)r->winners;

    if (r->hare_quota) /* ⌈V / S⌉ */
        return (v / (s * unit) + (v % (s * unit) != 0)) * unit;
    if (r->non_integer_threshold) /* trunc_D(V / (S+1)) + 10^-D */
        return (v / ((s + 1) * dec_pow10(extra)) + 1) * dec_pow10(extra);
    return (v / ((s + 1) * unit) + 1) * unit; /* Droop: ⌊V / (S+1)⌋ + 1 */
}

static int cmp_round_tally(const void *ctx, size_t round, int a, int b)
{
    const dec_u128 *t = ((const multi_result *)ctx)->rounds[round].tally;
    return t[a] < t[b] ? -1 : t[a] > t[b];
}

static int stop_on_tie(mcount *mc, const int *tied, size_t n, bool to_elect)
{
    multi_result *res = mc->res;

    res->tied = malloc(n * sizeof(*res->tied));
    if (!res->tied)
        return oom(mc);
    memcpy(res->tied, tied, n * sizeof(*tied));
    res->ntied = n;
    res->tie_to_elect = to_elect;
    res->stopped = true;
    snprintf(res->error, sizeof(res->error),
             "round %zu: %zu candidates are tied %s and the rules say tiebreak \"stop\"",
             res->rounds[res->nrounds - 1].number, n,
             to_elect ? "for the win" : "for elimination");
    return 1;
}

static int stop_with(mcount *mc, const char *why)
{
    mc->res->stopped = true;
    snprintf(mc->res->error, sizeof(mc->res->error), "%s", why);
    return 1;
}

/* Chooses one of n tied candidates (n >= 2) into *chosen. Returns 0, 1 to stop, -1. */
static int break_tie(mcount *mc, int *tied, size_t n, enum tb_purpose purpose, int *chosen)
{
    int c = tb_choose_with(mc->r, &mc->rng, cmp_round_tally, mc->res, mc->res->nrounds - 1,
                           tied, n, purpose);
    if (c == -2)
        return oom(mc);
    if (c < 0)
        return stop_on_tie(mc, tied, n, purpose == TB_ELECT);
    *chosen = c;
    return 0;
}

/* Display order: listed candidates by rules order, the pseudo-candidate last. */
static size_t display_order(const mcount *mc, const unsigned char *mark, int *out)
{
    size_t n = 0;
    for (size_t i = 1; i <= mc->ncand; i++) {
        size_t c = i < mc->ncand ? i : RULES_UWI;
        if (mark[c])
            out[n++] = (int)c;
    }
    return n;
}

/* Who is elected in this round (§4.3, §5, §6): fills rd->elected. */
static int choose_winners(mcount *mc, multi_round *rd, const dec_u256 *pct_threshold)
{
    const rules *r = mc->r;
    int *ids = mc->scratch;
    size_t n = continuing_ids(mc, ids), m = 0, open = (size_t)mc->seats - mc->res->nwinners;
    unsigned char *mark = calloc(mc->ncand, 1);
    int rc = 0;

    if (!mark)
        return oom(mc);
    if (mc->res->nwinners > (size_t)mc->seats)
        open = 0;
    if (uwi_holds_votes(mc) || n == 0)
        goto out;
    if (r->mode == MODE_BOTTOMS_UP_PERCENTAGE) { /* every one strictly above Q_r */
        dec_u128 scale = dec_pow10(r->percentage_places + 2);
        for (size_t i = 0; i < n; i++)
            if (dec_cmp_wide(dec_mul_wide(mc->tally[ids[i]], scale), *pct_threshold) <= 0)
                goto out;
        m = n;
    } else if (n <= open) { /* §4.3a, §5: all of them, whatever their tallies [RCTab] */
        m = n;
    } else if (rules_is_stv(r)) { /* §4.3b */
        for (size_t i = 0; i < n; i++)
            if (ids[i] != RULES_UWI && mc->tally[ids[i]] >= mc->quota)
                ids[m++] = ids[i];
    }
    if (r->mode == MODE_MULTIPLE_PER_ROUND && m > open) {
        /* [choice] Only a threshold of 0 (hare_quota, no active votes) lets more
         * candidates reach it than there are seats; the spec elects nobody beyond them. */
        rc = stop_with(mc, "more candidates reach the threshold than seats remain "
                           "(hare_quota with no active votes gives a threshold of 0)");
        goto out;
    }
    if (r->mode == MODE_ONE_PER_ROUND && m > 1) { /* keep the highest, break a tie */
        dec_u128 best = 0;
        size_t k = 0;
        int chosen;
        for (size_t i = 0; i < m; i++)
            if (mc->tally[ids[i]] > best)
                best = mc->tally[ids[i]];
        for (size_t i = 0; i < m; i++)
            if (mc->tally[ids[i]] == best)
                ids[k++] = ids[i];
        m = k;
        if (m > 1) {
            rc = break_tie(mc, ids, m, TB_ELECT, &chosen);
            if (rc != 0)
                goto out;
            ids[0] = chosen;
            m = 1;
        }
    }
    for (size_t i = 0; i < m; i++)
        mark[ids[i]] = 1;
    rd->nelected = display_order(mc, mark, rd->elected);
out:
    free(mark);
    return rc;
}

/* §4.7: the pseudo-candidate with votes; with cutoff_elimination every continuing
 * candidate below the threshold; else the lowest (a tie broken as an elimination). */
static int choose_eliminations(mcount *mc, multi_round *rd, const dec_u256 *threshold)
{
    const rules *r = mc->r;
    int *ids = mc->scratch;
    size_t n = continuing_ids(mc, ids), m = 0;
    unsigned char *mark = calloc(mc->ncand, 1);
    dec_u128 lowest = 0;
    int rc = 0;

    if (!mark)
        return oom(mc);
    if (uwi_holds_votes(mc)) {
        mark[RULES_UWI] = 1;
    } else {
        if (r->cutoff_elimination) {
            dec_u128 scale = r->mode == MODE_BOTTOMS_UP_PERCENTAGE
                                 ? dec_pow10(r->percentage_places + 2) : 1;
            for (size_t i = 0; i < n; i++)
                if (dec_cmp_wide(dec_mul_wide(mc->tally[ids[i]], scale), *threshold) < 0)
                    mark[ids[i]] = 1, m++;
        }
        if (m == 0 && n > 0) {
            int chosen = ids[0];
            lowest = mc->tally[ids[0]];
            for (size_t i = 1; i < n; i++)
                if (mc->tally[ids[i]] < lowest)
                    lowest = mc->tally[ids[i]];
            for (size_t i = 0; i < n; i++)
                if (mc->tally[ids[i]] == lowest)
                    ids[m++] = ids[i];
            if (m > 1)
                rc = break_tie(mc, ids, m, TB_ELIMINATE, &chosen);
            else
                chosen = ids[0];
            if (rc == 0)
                mark[chosen] = 1;
        }
    }
    rd->neliminated = display_order(mc, mark, rd->eliminated);
    free(mark);
    return rc;
}

/* §4.4: the surplus fraction of winner w with tally t; every ballot's value becomes the
 * part that moves on. Returns the total that moves on (Σ n × t). */
static dec_u128 apply_surplus(mcount *mc, int w)
{
    dec_u128 total = mc->tally[w], f = 0, moved = 0;
    const group_list *l = &mc->lists[w];
    int d = mc->r->decimal_places;

    if (total > mc->quota)
        f = dec_frac_trunc(total - mc->quota, total, d);
    for (size_t k = 0; k < l->len; k++) {
        uint32_t g = l->items[k];
        mc->value[g] = f == 0 ? 0 : dec_mul_trunc(mc->value[g], f, d);
        moved += amount(mc, g);
    }
    return moved;
}

/* Moves the ballots of the round's movers into the next round (§3.3, §3.4): eliminated
 * candidates' and (STV) winners' groups are walked again; with final, winners' ballots
 * become final_round_surplus instead. Fills rd's transfers and residual surpluses. */
static int move_ballots(mcount *mc, multi_round *rd, bool final)
{
    size_t width = mc->ncand + 1, n = 0;

    rd->movers = malloc((rd->nelected + rd->neliminated) * sizeof(*rd->movers));
    rd->transfers = calloc((rd->nelected + rd->neliminated) * width, sizeof(*rd->transfers));
    rd->residual = calloc(rd->nelected + rd->neliminated + 1, sizeof(*rd->residual));
    if (!rd->movers || !rd->transfers || !rd->residual)
        return oom(mc);
    for (size_t i = 0; i < rd->neliminated; i++)
        mc->continuing[rd->eliminated[i]] = 0;
    for (size_t i = 0; i < rd->nelected + rd->neliminated; i++) {
        bool winner = i < rd->nelected;
        int c = winner ? rd->elected[i] : rd->eliminated[i - rd->nelected];
        dec_u128 *row = rd->transfers + n * width;
        group_list moving = mc->lists[c];

        rd->movers[n] = c;
        if (winner && rules_is_stv(mc->r)) {
            dec_u128 moved = apply_surplus(mc, c), kept = mc->tally[c] - moved;
            mc->fixed[c] = kept > mc->quota ? mc->quota : kept;
            rd->residual[n] = kept > mc->quota ? kept - mc->quota : 0;
        }
        memset(&mc->lists[c], 0, sizeof(mc->lists[c]));
        mc->tally[c] = 0;
        for (size_t k = 0; k < moving.len; k++) {
            if (final) {
                dec_u128 a = amount(mc, moving.items[k]);
                mc->final_surplus += a;
                row[mc->ncand] += a;
            } else if (place(mc, moving.items[k], row) < 0) {
                free(moving.items);
                return oom(mc);
            }
        }
        free(moving.items);
        n++;
    }
    rd->nmovers = n;
    return 0;
}

#ifndef NDEBUG
/* §9.3 and the property: tallies + inactive + residual + undervotes = ballots. */
static void check_conservation(const mcount *mc, const multi_round *rd)
{
    dec_u128 sum = mc->final_surplus, whole = 0;
    for (size_t c = 0; c < mc->ncand; c++)
        if (rd->shown[c])
            sum += rd->tally[c];
    for (int k = 0; k < COUNT_INACTIVE_KINDS; k++)
        sum += rd->inactive[k];
    for (size_t i = 0; i + 1 < mc->res->nrounds; i++)
        for (size_t k = 0; k < mc->res->rounds[i].nmovers; k++)
            sum += mc->res->rounds[i].residual ? mc->res->rounds[i].residual[k] : 0;
    for (size_t g = 0; g < mc->s->ngroups; g++)
        if (mc->s->groups[g].len > 0)
            whole += (dec_u128)(uint64_t)(mc->s->groups[g].weight / mc->weight_div) * mc->one;
    assert(sum == whole);
}
#else
#define check_conservation(mc, rd) ((void)0)
#endif

static size_t count_continuing(const mcount *mc)
{
    size_t n = 0;
    for (size_t c = 0; c < mc->ncand; c++)
        n += mc->continuing[c];
    return n;
}

static int run_rounds(mcount *mc)
{
    const rules *r = mc->r;
    multi_result *res = mc->res;
    bool stv = rules_is_stv(r), final = false;
    size_t listed = mc->ncand - 1, countable = r->has_uwi, most = 2 * mc->ncand + 2;
    dec_u256 first_pct = {{0, 0, 0, 0}};

    for (size_t c = 1; c < mc->ncand; c++)
        countable += !r->cand[c].excluded;
    for (size_t number = 1;; number++) {
        multi_round *rd = new_round(mc, number);
        dec_u256 threshold;
        size_t elected_before = res->nwinners;
        int rc;

        if (!rd)
            return oom(mc);
        if (number == 1) {
            dec_u128 v = 0;
            for (size_t c = 0; c < mc->ncand; c++)
                v += mc->continuing[c] ? mc->tally[c] : 0;
            if (r->mode != MODE_BOTTOMS_UP_PERCENTAGE)
                mc->quota = quota(mc, v);
        }
        if (r->mode == MODE_BOTTOMS_UP_PERCENTAGE) { /* §6: V_r × p / 100, exactly */
            dec_u128 v = 0;
            for (size_t c = 0; c < mc->ncand; c++)
                v += mc->continuing[c] ? mc->tally[c] : 0;
            threshold = dec_mul_wide(v, r->percentage);
            if (number == 1)
                first_pct = threshold;
            else if (r->first_round_threshold)
                threshold = first_pct;
        } else {
            threshold = widen(mc->quota);
        }
        rd->threshold = threshold;
        check_conservation(mc, rd);
        progress_report(mc->prog, "tabulating", number, most, false);
        if (final) /* §4.6d: nothing decided in the final surplus round */
            return 0;

        rc = choose_winners(mc, rd, &threshold);
        if (rc != 0)
            return rc;
        for (size_t i = 0; i < rd->nelected; i++) {
            mc->elected[rd->elected[i]] = 1;
            mc->continuing[rd->elected[i]] = 0;
            res->winners[res->nwinners++] = rd->elected[i];
        }
        if (rd->nelected == 0 && (r->mode == MODE_BOTTOMS_UP_PERCENTAGE ||
                                  res->nwinners < (size_t)mc->seats)) {
            rc = choose_eliminations(mc, rd, &threshold);
            if (rc != 0)
                return rc;
        }

        /* §4.6, §5, §6: does another round follow? */
        if (r->mode == MODE_BOTTOMS_UP_PERCENTAGE && rd->nelected > 0)
            return 0;
        if (r->mode != MODE_BOTTOMS_UP_PERCENTAGE && res->nwinners == listed &&
            (size_t)mc->seats > countable)
            return 0; /* (a) [RCTab] */
        if (count_continuing(mc) == rd->neliminated &&
            (r->mode == MODE_BOTTOMS_UP_PERCENTAGE || res->nwinners < (size_t)mc->seats)) {
            if (rd->nelected > 0)
                return 0; /* (b) [choice]: fewer winners than seats */
            return stop_with(mc, "no continuing candidate left");
        }
        if (r->mode != MODE_BOTTOMS_UP_PERCENTAGE && res->nwinners == (size_t)mc->seats) {
            if (!stv || res->nwinners == elected_before)
                return 0;         /* (e), and bottoms_up ends when the seats are filled */
            final = true;         /* (d) */
        }
        if (move_ballots(mc, rd, final) < 0)
            return -1;
    }
}

/* Weights use only as many decimals as the ballots need: units of 10^-k. */
static int64_t weight_divisor(const rules *r, const ballot_store *s)
{
    int64_t div = r->scale;
    for (size_t g = 0; g < s->ngroups && div > 1; g++)
        while (div > 1 && s->groups[g].weight % div != 0)
            div /= 10;
    return div;
}

static int run_sequential(const rules *r, const ballot_store *s, multi_result *res,
                          progress *prog, tab_error *err);

int multi_run(const rules *r, const ballot_store *s, multi_result *res, progress *prog,
              tab_error *err)
{
    mcount mc;
    int rc = -1, k = 0;
    dec_u128 total;

    memset(res, 0, sizeof(*res));
    res->ncand = r->ncand;
    res->weight_places = r->weight_places;
    res->ballots = (dec_u128)s->total_weight;
    if (r->mode == MODE_SEQUENTIAL)
        return run_sequential(r, s, res, prog, err);

    memset(&mc, 0, sizeof(mc));
    mc.r = r;
    mc.s = s;
    mc.res = res;
    mc.err = err;
    mc.prog = prog;
    mc.ncand = r->ncand;
    mc.seats = r->winners;
    mc.weight_div = weight_divisor(r, s);
    for (int64_t d = mc.weight_div; d < r->scale; d *= 10)
        k++;
    res->places = r->decimal_places + k;
    res->threshold_places =
        r->mode == MODE_BOTTOMS_UP_PERCENTAGE ? res->places + r->percentage_places + 2
                                              : res->places;
    mc.one = dec_pow10(r->decimal_places);
    total = (dec_u128)(uint64_t)(s->total_weight / mc.weight_div);
    if (total > DEC_LIMIT / mc.one)
        return tab_error_set(err, TAB_EXIT_INPUT, "", 0, 0,
                             "the ballots' total weight times 10^decimal_places (%d) is too "
                             "large to count exactly; use fewer decimal places",
                             r->decimal_places);

    mc.continuing = calloc(mc.ncand, 1);
    mc.elected = calloc(mc.ncand, 1);
    mc.tally = calloc(mc.ncand, sizeof(*mc.tally));
    mc.fixed = calloc(mc.ncand, sizeof(*mc.fixed));
    mc.lists = calloc(mc.ncand, sizeof(*mc.lists));
    mc.scratch = calloc(mc.ncand, sizeof(*mc.scratch));
    mc.walker.seen = calloc(mc.ncand, sizeof(*mc.walker.seen));
    mc.value = malloc((s->ngroups ? s->ngroups : 1) * sizeof(*mc.value));
    res->winners = calloc(mc.ncand, sizeof(*res->winners));
    if (!mc.continuing || !mc.elected || !mc.tally || !mc.fixed || !mc.lists ||
        !mc.scratch || !mc.walker.seen || !mc.value || !res->winners) {
        oom(&mc);
        goto out;
    }
    mc.walker.r = r;
    mc.walker.ncand = mc.ncand;
    mc.walker.continuing = mc.continuing;
    jrandom_init(&mc.rng, r->random_seed);
    for (size_t c = 0; c < mc.ncand; c++)
        mc.continuing[c] = r->cand[c].present && !r->cand[c].excluded;
    for (size_t g = 0; g < s->ngroups; g++) {
        mc.value[g] = mc.one;
        if (place(&mc, (uint32_t)g, NULL) < 0) {
            oom(&mc);
            goto out;
        }
    }
    rc = run_rounds(&mc);
out:
    if (mc.lists)
        for (size_t c = 0; c < mc.ncand; c++)
            free(mc.lists[c].items);
    free(mc.continuing);
    free(mc.elected);
    free(mc.tally);
    free(mc.fixed);
    free(mc.lists);
    free(mc.scratch);
    free(mc.walker.seen);
    free(mc.value);
    return rc;
}

/* ---- sequential (§7): passes of the single-winner count ---- */

/* Appends the rounds of one pass, converted to exact amounts. */
static int add_pass(multi_result *res, const count_result *cr, int pass)
{
    size_t ncand = res->ncand, width = ncand + 1;

    for (size_t i = 0; i < cr->nrounds; i++) {
        const count_round *src = &cr->rounds[i];
        multi_round *rd;

        if (res->nrounds == res->rounds_cap) {
            size_t ncap = res->rounds_cap ? res->rounds_cap * 2 : 8;
            multi_round *nr = realloc(res->rounds, ncap * sizeof(*nr));
            if (!nr)
                return -1;
            res->rounds = nr;
            res->rounds_cap = ncap;
        }
        rd = &res->rounds[res->nrounds++];
        memset(rd, 0, sizeof(*rd));
        rd->pass = pass;
        rd->number = i + 1;
        rd->threshold = widen((dec_u128)src->threshold);
        rd->tally = calloc(ncand, sizeof(*rd->tally));
        rd->shown = malloc(ncand);
        rd->elected = malloc((src->nelected + 1) * sizeof(int));
        rd->eliminated = malloc((src->neliminated + 1) * sizeof(int));
        rd->movers = malloc((src->neliminated + 1) * sizeof(int));
        rd->transfers = calloc((src->neliminated + 1) * width, sizeof(*rd->transfers));
        if (!rd->tally || !rd->shown || !rd->elected || !rd->eliminated || !rd->movers ||
            !rd->transfers)
            return -1;
        memcpy(rd->shown, src->continuing, ncand);
        for (size_t c = 0; c < ncand; c++)
            rd->tally[c] = (dec_u128)src->tally[c];
        for (int k = 0; k < COUNT_INACTIVE_KINDS; k++)
            rd->inactive[k] = (dec_u128)src->inactive[k];
        if (src->nelected > 0)
            memcpy(rd->elected, src->elected, src->nelected * sizeof(int));
        rd->nelected = src->nelected;
        if (src->neliminated > 0)
            memcpy(rd->eliminated, src->eliminated, src->neliminated * sizeof(int));
        rd->neliminated = src->neliminated;
        if (src->transfers && src->neliminated > 0) {
            memcpy(rd->movers, src->eliminated, src->neliminated * sizeof(int));
            rd->nmovers = src->neliminated;
            for (size_t k = 0; k < src->neliminated * width; k++)
                rd->transfers[k] = (dec_u128)src->transfers[k];
        }
    }
    return 0;
}

static int run_sequential(const rules *r, const ballot_store *s, multi_result *res,
                          progress *prog, tab_error *err)
{
    unsigned char *out = calloc(r->ncand, 1);
    int rc = 0;

    res->places = r->weight_places;
    res->threshold_places = r->weight_places;
    res->winners = calloc((size_t)r->winners, sizeof(*res->winners));
    res->passes = calloc((size_t)r->winners, sizeof(*res->passes));
    if (!out || !res->winners || !res->passes) {
        free(out);
        return tab_error_set(err, TAB_EXIT_INTERNAL, "", 0, 0, "out of memory while counting");
    }
    for (int pass = 1; pass <= r->winners && rc == 0; pass++) {
        count_result cr;
        rc = count_run_pass(r, s, out, &cr, prog, err);
        if (rc >= 0 && add_pass(res, &cr, pass) < 0)
            rc = tab_error_set(err, TAB_EXIT_INTERNAL, "", 0, 0, "out of memory while counting");
        res->undervotes = (dec_u128)cr.undervotes;
        if (rc == 0 && cr.nwinners != 1)
            rc = 1, res->stopped = true,
            snprintf(res->error, sizeof(res->error), "pass %d elected %zu candidates", pass,
                     cr.nwinners);
        if (rc == 0) {
            multi_pass *p = &res->passes[res->npasses++];
            p->winner = cr.winners[0];
            p->rounds = cr.nrounds;
            p->threshold = widen((dec_u128)cr.rounds[cr.nrounds - 1].threshold);
            res->winners[res->nwinners++] = cr.winners[0];
            out[cr.winners[0]] = 1;
        } else if (rc == 1 && cr.stopped) {
            res->stopped = true;
            if (cr.ntied > 0) {
                res->tied = cr.tied;
                res->ntied = cr.ntied;
                res->tie_to_elect = cr.tie_to_elect;
                cr.tied = NULL;
            }
            snprintf(res->error, sizeof(res->error), "pass %d: %.300s", pass, cr.stop_reason);
        }
        count_result_free(&cr);
    }
    free(out);
    return rc;
}

void multi_result_free(multi_result *res)
{
    for (size_t i = 0; i < res->nrounds; i++) {
        multi_round *rd = &res->rounds[i];
        free(rd->tally);
        free(rd->shown);
        free(rd->elected);
        free(rd->eliminated);
        free(rd->movers);
        free(rd->transfers);
        free(rd->residual);
    }
    free(res->rounds);
    free(res->winners);
    free(res->passes);
    free(res->tied);
    memset(res, 0, sizeof(*res));
}
