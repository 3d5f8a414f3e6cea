/* output.c — results and error documents (see output.h). */
#include "output.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

/* Display order: listed candidates first, the write-in pseudo-candidate last. */
static size_t display_id(const rules *r, size_t i)
{
    return i + 1 < r->ncand ? i + 1 : RULES_UWI;
}

static json_t *votes(const rules *r, int64_t v)
{
    if (v % r->scale == 0)
        return json_integer(v / r->scale);
    return json_real((double)v / (double)r->scale);
}

/* Sets obj[key] = val, stealing val; returns -1 when anything is NULL or fails. */
static int put(json_t *obj, const char *key, json_t *val)
{
    return obj && val ? json_object_set_new(obj, key, val) : (json_decref(val), -1);
}

static int append(json_t *arr, json_t *val)
{
    return arr && val ? json_array_append_new(arr, val) : (json_decref(val), -1);
}

static bool contains(const int *ids, size_t n, int id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Names of ids, in display order. */
static json_t *name_list(const rules *r, const int *ids, size_t n)
{
    json_t *arr = json_array();
    int rc = 0;

    for (size_t i = 0; i < r->ncand && arr; i++) {
        int c = (int)display_id(r, i);
        if (contains(ids, n, c))
            rc |= append(arr, json_string(r->cand[c].name));
    }
    if (rc < 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static json_t *transfers_json(const rules *r, const count_round *rd)
{
    json_t *all = json_object();
    size_t width = r->ncand + 1;
    int rc = 0;

    for (size_t i = 0; i < r->ncand && all; i++) {
        int e = (int)display_id(r, i);
        const int64_t *row = NULL;
        json_t *to;
        for (size_t k = 0; k < rd->neliminated; k++)
            if (rd->eliminated[k] == e)
                row = rd->transfers + k * width;
        if (!row)
            continue;
        to = json_object();
        for (size_t j = 0; j < r->ncand; j++) {
            int c = (int)display_id(r, j);
            if (row[c] != 0)
                rc |= put(to, r->cand[c].name, votes(r, row[c]));
        }
        rc |= put(to, "exhausted", votes(r, row[r->ncand]));
        rc |= put(all, r->cand[e].name, to);
    }
    if (rc < 0) {
        json_decref(all);
        return NULL;
    }
    return all;
}

static json_t *round_json(const rules *r, const count_round *rd, size_t number)
{
    json_t *o = json_object(), *tally = json_object(), *inactive = json_object();
    int rc = 0;

    for (size_t i = 0; i < r->ncand && tally; i++) {
        size_t c = display_id(r, i);
        if (rd->continuing[c])
            rc |= put(tally, r->cand[c].name, votes(r, rd->tally[c]));
    }
    for (int k = 0; k < COUNT_INACTIVE_KINDS; k++)
        rc |= put(inactive, count_inactive_names[k], votes(r, rd->inactive[k]));
    rc |= put(o, "round", json_integer((json_int_t)number));
    rc |= put(o, "threshold", votes(r, rd->threshold));
    rc |= put(o, "tally", tally);
    rc |= put(o, "inactive", inactive);
    rc |= put(o, "elected", name_list(r, rd->elected, rd->nelected));
    rc |= put(o, "eliminated", name_list(r, rd->eliminated, rd->neliminated));
    rc |= put(o, "transfers", rd->transfers ? transfers_json(r, rd) : json_object());
    if (rc < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *output_result_json(const rules *r, const count_result *res)
{
    json_t *doc = json_object(), *summary = json_object(), *rounds = json_array();
    int rc = 0;

    for (size_t i = 0; i < res->nrounds; i++)
        rc |= append(rounds, round_json(r, &res->rounds[i], i + 1));
    rc |= put(summary, "ballots", votes(r, res->ballots));
    rc |= put(summary, "undervotes", votes(r, res->undervotes));
    rc |= put(summary, "rounds", json_integer((json_int_t)res->nrounds));
    rc |= put(doc, "contest", json_string(r->contest));
    rc |= put(doc, "winners", name_list(r, res->winners, res->nwinners));
    rc |= put(doc, "summary", summary);
    rc |= put(doc, "rounds", rounds);
    if (res->stopped) {
        json_t *stop = json_object();
        rc |= put(stop, "round", json_integer((json_int_t)res->nrounds));
        rc |= put(stop, "reason", json_string(res->stop_reason));
        if (res->ntied > 0) {
            rc |= put(stop, "decision", json_string(res->tie_to_elect ? "elect" : "eliminate"));
            rc |= put(stop, "tied", name_list(r, res->tied, res->ntied));
        }
        rc |= put(doc, "stopped", stop);
    }
    if (rc < 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

json_t *output_error_json(const tab_error *e)
{
    json_t *doc = json_object(), *o = json_object();
    int rc = 0;

    rc |= put(o, "exit_code", json_integer(e->code));
    if (e->file[0])
        rc |= put(o, "file", json_string(e->file));
    if (e->line > 0)
        rc |= put(o, "line", json_integer(e->line));
    if (e->column > 0)
        rc |= put(o, "column", json_integer(e->column));
    if (e->field[0])
        rc |= put(o, "field", json_string(e->field));
    rc |= put(o, "message", json_string(e->message));
    rc |= put(doc, "error", o);
    if (rc < 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

int output_write_text(const char *path, const char *text, tab_error *err)
{
    if (!text)
        return tab_error_set(err, TAB_EXIT_INTERNAL, path, 0, 0, "out of memory");
    if (fileio_write_atomic(path, text, strlen(text)) < 0)
        return tab_error_set(err, TAB_EXIT_INTERNAL, path, 0, 0, "cannot write: %s",
                             strerror(errno));
    return 0;
}

int output_write(const char *path, json_t *doc, tab_error *err)
{
    char *text;
    int rc;

    if (!doc)
        return tab_error_set(err, TAB_EXIT_INTERNAL, path, 0, 0, "out of memory");
    text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(15));
    if (!text)
        return tab_error_set(err, TAB_EXIT_INTERNAL, path, 0, 0, "out of memory");
    rc = fileio_write_atomic(path, text, strlen(text));
    free(text);
    if (rc < 0)
        return tab_error_set(err, TAB_EXIT_INTERNAL, path, 0, 0, "cannot write: %s",
                             strerror(errno));
    return 0;
}
