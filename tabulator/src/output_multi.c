/* output_multi.c — multi-winner results documents (see output_multi.h). */
#include "output_multi.h"

#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

static size_t display_id(const rules *r, size_t i)
{
    return i + 1 < r->ncand ? i + 1 : RULES_UWI;
}

static void amount(jsonw *w, const char *key, dec_u128 v, int places)
{
    char text[DEC_TEXT_MAX];
    dec_format(text, v, places);
    jsonw_number(w, key, text);
}

static void wide(jsonw *w, const char *key, dec_u256 v, int places)
{
    char text[DEC_TEXT_MAX];
    dec_format_wide(text, v, places);
    jsonw_number(w, key, text);
}

static bool contains(const int *ids, size_t n, int id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static void names(jsonw *w, const char *key, const rules *r, const int *ids, size_t n)
{
    jsonw_begin(w, key, '[');
    for (size_t i = 0; i < r->ncand; i++) {
        int c = (int)display_id(r, i);
        if (contains(ids, n, c))
            jsonw_string(w, NULL, r->cand[c].name);
    }
    jsonw_end(w, ']');
}

/* §9.3: amounts > 0 only; sequential passes keep the single-winner form, where every
 * eliminated candidate has an entry with "exhausted". */
static void transfers(jsonw *w, const rules *r, const multi_result *res, const multi_round *rd)
{
    size_t width = r->ncand + 1;
    bool single = r->mode == MODE_SEQUENTIAL;

    jsonw_begin(w, "transfers", '{');
    for (size_t i = 0; i < r->ncand; i++) {
        int m = (int)display_id(r, i);
        const dec_u128 *row = NULL;
        dec_u128 residual = 0, sum = 0;
        for (size_t k = 0; k < rd->nmovers; k++)
            if (rd->movers[k] == m) {
                row = rd->transfers + k * width;
                residual = rd->residual ? rd->residual[k] : 0;
            }
        if (!row)
            continue;
        for (size_t j = 0; j < width; j++)
            sum += row[j];
        if (sum == 0 && residual == 0 && !single)
            continue;
        jsonw_begin(w, r->cand[m].name, '{');
        for (size_t j = 0; j < r->ncand; j++) {
            int c = (int)display_id(r, j);
            if (row[c] > 0)
                amount(w, r->cand[c].name, row[c], res->places);
        }
        if (row[r->ncand] > 0 || single)
            amount(w, "exhausted", row[r->ncand], res->places);
        if (residual > 0)
            amount(w, "residual_surplus", residual, res->places);
        jsonw_end(w, '}');
    }
    jsonw_end(w, '}');
}

static void round_doc(jsonw *w, const rules *r, const multi_result *res, const multi_round *rd,
                      bool last)
{
    jsonw_begin(w, NULL, '{');
    if (rd->pass > 0)
        jsonw_integer(w, "pass", rd->pass);
    jsonw_integer(w, "round", (long long)rd->number);
    wide(w, "threshold", rd->threshold, res->threshold_places);
    jsonw_begin(w, "tally", '{');
    for (size_t i = 0; i < r->ncand; i++) {
        size_t c = display_id(r, i);
        if (rd->shown[c])
            amount(w, r->cand[c].name, rd->tally[c], res->places);
    }
    jsonw_end(w, '}');
    jsonw_begin(w, "inactive", '{'); /* alphabetical, as the worked example */
    amount(w, "exhausted_choices", rd->inactive[INACTIVE_EXHAUSTED], res->places);
    if (last && rules_is_stv(r))
        amount(w, "final_round_surplus", rd->final_surplus, res->places);
    amount(w, "overvotes", rd->inactive[INACTIVE_OVERVOTES], res->places);
    amount(w, "repeated_rankings", rd->inactive[INACTIVE_REPEATED], res->places);
    amount(w, "skipped_rankings", rd->inactive[INACTIVE_SKIPPED], res->places);
    jsonw_end(w, '}');
    names(w, "elected", r, rd->elected, rd->nelected);
    names(w, "eliminated", r, rd->eliminated, rd->neliminated);
    transfers(w, r, res, rd);
    jsonw_end(w, '}');
}

char *output_multi_text(const rules *r, const multi_result *res)
{
    jsonw w;
    dec_u256 zero = {{0, 0, 0, 0}};

    jsonw_init(&w);
    jsonw_begin(&w, NULL, '{');
    jsonw_string(&w, "contest", r->contest);
    jsonw_begin(&w, "winners", '[');
    for (size_t i = 0; i < res->nwinners; i++)
        jsonw_string(&w, NULL, r->cand[res->winners[i]].name);
    jsonw_end(&w, ']');
    wide(&w, "threshold", res->nrounds ? res->rounds[res->nrounds - 1].threshold : zero,
         res->threshold_places);
    jsonw_begin(&w, "summary", '{');
    amount(&w, "ballots", res->ballots, res->weight_places);
    amount(&w, "undervotes", res->undervotes, res->weight_places);
    jsonw_integer(&w, "rounds", (long long)res->nrounds);
    jsonw_end(&w, '}');
    jsonw_begin(&w, "rounds", '[');
    for (size_t i = 0; i < res->nrounds; i++)
        round_doc(&w, r, res, &res->rounds[i], i + 1 == res->nrounds);
    jsonw_end(&w, ']');
    if (r->mode == MODE_SEQUENTIAL) {
        jsonw_begin(&w, "passes", '[');
        for (size_t i = 0; i < res->npasses; i++) {
            jsonw_begin(&w, NULL, '{');
            jsonw_integer(&w, "pass", (long long)i + 1);
            jsonw_string(&w, "winner", r->cand[res->passes[i].winner].name);
            jsonw_integer(&w, "rounds", (long long)res->passes[i].rounds);
            wide(&w, "threshold", res->passes[i].threshold, res->threshold_places);
            jsonw_end(&w, '}');
        }
        jsonw_end(&w, ']');
    }
    if (res->stopped && res->ntied > 0) {
        const multi_round *last = &res->rounds[res->nrounds - 1];
        jsonw_begin(&w, "tie", '{');
        if (last->pass > 0)
            jsonw_integer(&w, "pass", last->pass);
        jsonw_integer(&w, "round", (long long)last->number);
        jsonw_string(&w, "decision", res->tie_to_elect ? "elect" : "eliminate");
        names(&w, "tied", r, res->tied, res->ntied);
        jsonw_string(&w, "reason", res->error);
        jsonw_end(&w, '}');
    } else if (res->stopped) {
        jsonw_string(&w, "error", res->error);
    }
    jsonw_end(&w, '}');
    return jsonw_finish(&w);
}
