/* rules.c — parse and validate the rules file (TABULATION.md, "Rules file").
 *
 * Strict by design: unknown members, wrong types and contradictory options are input
 * errors, each reported with the line and column of the value at fault (found with
 * jsonpos, since jansson keeps positions only for syntax errors). Options that decide the
 * outcome of a count (overvote rule, skipped ranks, max rankings, tie-break) have no
 * default and must be written; the others default to the neutral choice. */
#include "rules.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpos.h"

#define RULES_MAX_FILE (16u << 20)
#define PATH_MAX_DEPTH 8

/* ---- name table: open addressing; every ballot cell is looked up here ---- */

typedef struct name_entry {
    char *s; /* owned; NULL = empty slot */
    size_t len;
    uint64_t hash;
    int code;
} name_entry;

struct rules_names {
    name_entry *slots;
    size_t cap, count; /* cap is a power of two */
};

/* Eight bytes per step with a multiply-xorshift mix: names are short and this is the
 * hottest function of reading, so a byte-at-a-time hash shows in profiles. */
static uint64_t name_hash(const char *s, size_t len)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ len;

    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        len -= 8;
    }
    if (len > 0) {
        uint64_t w = 0;
        memcpy(&w, s, len);
        h = (h ^ w) * 0x94D049BB133111EBull;
        h ^= h >> 29;
    }
    return h;
}

static void names_free(rules_names *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].s);
    free(t->slots);
    free(t);
}

static rules_names *names_new(size_t expected)
{
    rules_names *t = calloc(1, sizeof(*t));
    size_t cap = 16;

    if (!t)
        return NULL;
    while (cap < expected * 2 + 2)
        cap *= 2;
    t->slots = calloc(cap, sizeof(*t->slots));
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->cap = cap;
    return t;
}

static const name_entry *names_find(const rules_names *t, const char *s, size_t len,
                                    uint64_t h)
{
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const name_entry *e = &t->slots[i];
        if (!e->s)
            return NULL;
        if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0)
            return e;
    }
}

/* Returns 0, 1 if the name is already there (*existing set), -1 when out of memory.
 * The table is sized up front for every name, so it never needs to grow. */
static int names_add(rules_names *t, const char *s, int code, int *existing)
{
    size_t len = strlen(s), i;
    uint64_t h = name_hash(s, len);
    const name_entry *e = names_find(t, s, len, h);

    if (e) {
        *existing = e->code;
        return 1;
    }
    if ((t->count + 1) * 2 > t->cap)
        return -1;
    for (i = h & (t->cap - 1); t->slots[i].s; i = (i + 1) & (t->cap - 1))
        ;
    t->slots[i].s = strdup(s);
    if (!t->slots[i].s)
        return -1;
    t->slots[i].len = len;
    t->slots[i].hash = h;
    t->slots[i].code = code;
    t->count++;
    return 0;
}

int rules_lookup(const rules *r, const char *s, size_t len)
{
    const name_entry *e = names_find(r->names, s, len, name_hash(s, len));
    return e ? e->code : RULES_UNKNOWN;
}

bool rules_uses_random(const rules *r)
{
    return r->tiebreak == TIEBREAK_RANDOM || r->tiebreak == TIEBREAK_PREVIOUS_ROUND_THEN_RANDOM;
}

/* ---- validation context: where we are in the document, for error positions ---- */

typedef struct ctx {
    const char *text;
    size_t len;
    const char *file;
    jsonpos_seg path[PATH_MAX_DEPTH];
    size_t depth;
    tab_error *err;
} ctx;

static void push_key(ctx *c, const char *key)
{
    c->path[c->depth].key = key;
    c->path[c->depth].index = 0;
    c->depth++;
}

static void push_index(ctx *c, size_t index)
{
    c->path[c->depth].key = NULL;
    c->path[c->depth].index = index;
    c->depth++;
}

static void pop(ctx *c)
{
    c->depth--;
}

static int fail(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ctx *c, const char *fmt, ...)
{
    char msg[600], where[256];
    long line, column;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    jsonpos_find(c->text, c->len, c->path, c->depth, &line, &column);
    jsonpos_format(c->path, c->depth, where, sizeof(where));
    tab_error_set(c->err, TAB_EXIT_INPUT, c->file, line, column, "%s%s%s", where,
                  where[0] ? ": " : "", msg);
    snprintf(c->err->field, sizeof(c->err->field), "%s", where);
    return -1;
}

static int oom(ctx *c)
{
    return tab_error_set(c->err, TAB_EXIT_INTERNAL, c->file, 0, 0, "out of memory");
}

static bool has_edge_space(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && (rules_is_space(s[0]) || rules_is_space(s[n - 1]));
}

/* ---- typed member readers: each pushes the member on the path while checking ---- */

static int get_bool(ctx *c, json_t *obj, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0; /* default already in *out */
    push_key(c, key);
    if (!json_is_boolean(v))
        return fail(c, "must be true or false");
    *out = json_is_true(v);
    pop(c);
    return 0;
}

static int get_enum(ctx *c, json_t *obj, const char *key, const char *const *names, int n,
                    int *out)
{
    json_t *v = json_object_get(obj, key);
    char list[400] = "";

    if (!v) {
        for (int i = 0; i < n; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                     i ? ", " : "", names[i]);
        return fail(c, "member \"%s\" is required (one of: %s)", key, list);
    }
    push_key(c, key);
    if (json_is_string(v))
        for (int i = 0; i < n; i++)
            if (strcmp(json_string_value(v), names[i]) == 0) {
                *out = i;
                pop(c);
                return 0;
            }
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 names[i]);
    return fail(c, "must be one of: %s", list);
}

/* An integer >= min, or the one word that means "no limit" (stored as nolimit). */
static int get_limit(ctx *c, json_t *obj, const char *key, long min, const char *word,
                     long nolimit, long *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return fail(c, "member \"%s\" is required (an integer >= %ld, or \"%s\")", key, min,
                    word);
    push_key(c, key);
    if (json_is_string(v) && strcmp(json_string_value(v), word) == 0)
        *out = nolimit;
    else if (json_is_integer(v) && json_integer_value(v) >= min &&
             json_integer_value(v) <= 1000000)
        *out = (long)json_integer_value(v);
    else
        return fail(c, "must be an integer from %ld to 1000000, or \"%s\"", min, word);
    pop(c);
    return 0;
}

static int check_members(ctx *c, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        bool ok = false;
        (void)v;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = true;
        if (!ok) {
            push_key(c, key);
            return fail(c, "unknown member");
        }
    }
    return 0;
}

/* ---- sections ---- */

/* A label: absent keeps the default, null means "none" when nullable. */
static int get_label(ctx *c, json_t *labels, const char *key, bool nullable, char **out)
{
    json_t *v = json_object_get(labels, key);

    if (!v)
        return 0;
    push_key(c, key);
    if (json_is_null(v) && nullable) {
        free(*out);
        *out = NULL;
    } else if (json_is_string(v) && json_string_length(v) > 0) {
        if (has_edge_space(json_string_value(v)))
            return fail(c, "must not start or end with whitespace (cells are trimmed)");
        free(*out);
        *out = strdup(json_string_value(v));
        if (!*out)
            return oom(c);
    } else {
        return fail(c, nullable ? "must be a non-empty string or null"
                                : "must be a non-empty string");
    }
    pop(c);
    return 0;
}

static int parse_labels(ctx *c, json_t *root, rules *r)
{
    static const char *const allowed[] = {"overvote", "undeclared_write_in",
                                          "overvote_delimiter", NULL};
    json_t *labels = json_object_get(root, "labels");

    r->overvote_label = strdup("overvote");
    r->delimiter = strdup("|");
    if (!r->overvote_label || !r->delimiter)
        return oom(c);
    if (!labels)
        return 0;
    push_key(c, "labels");
    if (!json_is_object(labels))
        return fail(c, "must be an object");
    if (check_members(c, labels, allowed) < 0 ||
        get_label(c, labels, "overvote", false, &r->overvote_label) < 0 ||
        get_label(c, labels, "undeclared_write_in", true, &r->uwi_label) < 0 ||
        get_label(c, labels, "overvote_delimiter", true, &r->delimiter) < 0)
        return -1;
    if (r->delimiter) {
        if (strstr(r->overvote_label, r->delimiter)) {
            push_key(c, "overvote");
            return fail(c, "must not contain the overvote delimiter \"%s\"", r->delimiter);
        }
        if (r->uwi_label && strstr(r->uwi_label, r->delimiter)) {
            push_key(c, "undeclared_write_in");
            return fail(c, "must not contain the overvote delimiter \"%s\"", r->delimiter);
        }
    }
    if (r->uwi_label && strcmp(r->uwi_label, r->overvote_label) == 0) {
        push_key(c, "undeclared_write_in");
        return fail(c, "must differ from the overvote label");
    }
    pop(c);
    r->has_uwi = r->uwi_label != NULL;
    return 0;
}

/* Checks a candidate name or alias and enters it in the name table. */
static int add_name(ctx *c, rules *r, const char *s, int id)
{
    int existing = 0, rc;

    if (s[0] == '\0')
        return fail(c, "must not be empty");
    if (has_edge_space(s))
        return fail(c, "must not start or end with whitespace (ballot cells are trimmed)");
    if (r->delimiter && strstr(s, r->delimiter))
        return fail(c, "contains the overvote delimiter \"%s\"; choose another "
                       "labels.overvote_delimiter", r->delimiter);
    if (strcmp(s, r->overvote_label) == 0)
        return fail(c, "is the overvote label \"%s\"", r->overvote_label);
    if (r->uwi_label && strcmp(s, r->uwi_label) == 0)
        return fail(c, "is the undeclared write-in label \"%s\"", r->uwi_label);
    if (r->has_uwi && strcmp(s, RULES_UWI_NAME) == 0)
        return fail(c, "\"%s\" is the name results give the undeclared write-ins",
                    RULES_UWI_NAME);
    rc = names_add(r->names, s, id, &existing);
    if (rc < 0)
        return oom(c);
    if (rc > 0) {
        if (existing == id)
            return fail(c, "repeats a name or alias of the same candidate");
        return fail(c, "is already a name or alias of candidate \"%s\"",
                    r->cand[existing].name);
    }
    return 0;
}

static int parse_candidate(ctx *c, rules *r, json_t *v, int id)
{
    static const char *const allowed[] = {"name", "aliases", "excluded", NULL};
    json_t *name, *aliases;
    size_t i;
    json_t *a;

    if (!json_is_object(v))
        return fail(c, "must be an object with a \"name\"");
    if (check_members(c, v, allowed) < 0)
        return -1;
    name = json_object_get(v, "name");
    if (!name)
        return fail(c, "member \"name\" is required");
    push_key(c, "name");
    if (!json_is_string(name))
        return fail(c, "must be a string");
    r->cand[id].name = strdup(json_string_value(name));
    if (!r->cand[id].name)
        return oom(c);
    r->cand[id].present = true;
    if (strcmp(r->cand[id].name, "exhausted") == 0)
        return fail(c, "\"exhausted\" is reserved: results use it for inactive ballots in "
                       "transfers");
    if (add_name(c, r, r->cand[id].name, id) < 0)
        return -1;
    pop(c);
    aliases = json_object_get(v, "aliases");
    if (aliases) {
        push_key(c, "aliases");
        if (!json_is_array(aliases))
            return fail(c, "must be an array of strings");
        json_array_foreach(aliases, i, a) {
            push_index(c, i);
            if (!json_is_string(a))
                return fail(c, "must be a string");
            if (add_name(c, r, json_string_value(a), id) < 0)
                return -1;
            pop(c);
        }
        pop(c);
    }
    return get_bool(c, v, "excluded", &r->cand[id].excluded);
}

static size_t count_names(json_t *cands)
{
    size_t n = 0, i;
    json_t *v;

    json_array_foreach(cands, i, v) {
        json_t *aliases = json_object_get(v, "aliases");
        n += 1 + (json_is_array(aliases) ? json_array_size(aliases) : 0);
    }
    return n;
}

static int parse_candidates(ctx *c, json_t *root, rules *r)
{
    json_t *cands = json_object_get(root, "candidates"), *v;
    size_t i, continuing = 0;
    int existing;

    if (!cands)
        return fail(c, "member \"candidates\" is required");
    push_key(c, "candidates");
    if (!json_is_array(cands) || json_array_size(cands) == 0)
        return fail(c, "must be a non-empty array of candidates");
    if (json_array_size(cands) > RULES_MAX_CANDIDATES)
        return fail(c, "at most %d candidates are supported", RULES_MAX_CANDIDATES);
    r->ncand = json_array_size(cands) + 1;
    r->cand = calloc(r->ncand, sizeof(*r->cand));
    r->names = names_new(count_names(cands) + 2);
    if (!r->cand || !r->names)
        return oom(c);
    r->cand[RULES_UWI].name = strdup(RULES_UWI_NAME);
    if (!r->cand[RULES_UWI].name)
        return oom(c);
    r->cand[RULES_UWI].present = r->has_uwi;
    if (names_add(r->names, r->overvote_label, RULES_OVERVOTE_LABEL, &existing) < 0 ||
        (r->uwi_label && names_add(r->names, r->uwi_label, RULES_UWI, &existing) < 0))
        return oom(c);
    json_array_foreach(cands, i, v) {
        push_index(c, i);
        if (parse_candidate(c, r, v, (int)i + 1) < 0)
            return -1;
        if (!r->cand[i + 1].excluded)
            continuing++;
        pop(c);
    }
    if (continuing == 0)
        return fail(c, "every candidate is excluded");
    pop(c);
    return 0;
}

static const char *const mode_names[] = {
    "single_winner", "multiple_winners_per_round", "one_winner_per_round", "bottoms_up",
    "bottoms_up_percentage", "sequential"};

/* winners and winner_mode (TABULATION-MULTI.md §1.2, rules 1 and 2). A missing
 * winner_mode is reported at "winners", the value that makes it necessary. */
static int parse_mode(ctx *c, json_t *root, rules *r)
{
    json_t *v = json_object_get(root, "winners");
    int e = 0;

    r->winners = 1;
    if (v) {
        push_key(c, "winners");
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > RULES_MAX_CANDIDATES)
            return fail(c, "must be an integer from 0 to %d", RULES_MAX_CANDIDATES);
        r->winners = (int)json_integer_value(v);
        pop(c);
    }
    if (!json_object_get(root, "winner_mode")) {
        if (r->winners == 1) {
            r->mode = MODE_SINGLE_WINNER;
            return 0;
        }
        push_key(c, "winners");
        return fail(c, "%d seats need member \"winner_mode\" (one of: "
                       "multiple_winners_per_round, one_winner_per_round, bottoms_up, "
                       "bottoms_up_percentage, sequential)", r->winners);
    }
    if (get_enum(c, root, "winner_mode", mode_names, 6, &e) < 0)
        return -1;
    r->mode = (enum rules_winner_mode)e;
    push_key(c, "winners");
    if (r->mode == MODE_SINGLE_WINNER && r->winners != 1)
        return fail(c, "winner_mode single_winner needs winners 1 (multi-winner modes: "
                       "multiple_winners_per_round, one_winner_per_round, bottoms_up, "
                       "bottoms_up_percentage, sequential)");
    if (r->mode != MODE_SINGLE_WINNER && r->winners == 1)
        return fail(c, "winners 1 needs winner_mode single_winner (winner_mode is %s)",
                    mode_names[r->mode]);
    if (r->mode == MODE_BOTTOMS_UP_PERCENTAGE && r->winners != 0)
        return fail(c, "winner_mode bottoms_up_percentage needs winners 0: the count "
                       "decides how many win");
    if (r->mode != MODE_BOTTOMS_UP_PERCENTAGE && r->winners == 0)
        return fail(c, "winners 0 is only for winner_mode bottoms_up_percentage");
    pop(c);
    return 0;
}

/* threshold_percentage, read from the JSON text so that 15.5 is exactly 15.5. */
static int parse_percentage(ctx *c, json_t *root, rules *r)
{
    json_t *v = json_object_get(root, "threshold_percentage");
    size_t start, end;

    if (!v) {
        if (r->mode == MODE_BOTTOMS_UP_PERCENTAGE)
            return fail(c, "member \"threshold_percentage\" is required with winner_mode "
                           "bottoms_up_percentage (a number from 1 to 100)");
        return 0;
    }
    push_key(c, "threshold_percentage");
    if (r->mode != MODE_BOTTOMS_UP_PERCENTAGE)
        return fail(c, "is only allowed with winner_mode bottoms_up_percentage");
    if (!json_is_number(v))
        return fail(c, "must be a number from 1 to 100");
    start = jsonpos_value(c->text, c->len, c->path, c->depth, &end);
    if (!dec_parse(c->text + start, end - start, RULES_MAX_PERCENTAGE_PLACES,
                   &r->percentage, &r->percentage_places))
        return fail(c, "must be a number from 1 to 100 with at most %d decimal places",
                    RULES_MAX_PERCENTAGE_PLACES);
    if (r->percentage < dec_pow10(r->percentage_places) ||
        r->percentage > 100 * dec_pow10(r->percentage_places))
        return fail(c, "must be a number from 1 to 100");
    pop(c);
    return 0;
}

static int parse_numbers(ctx *c, json_t *root, rules *r)
{
    json_t *v;
    bool multi;

    if (parse_mode(c, root, r) < 0 || parse_percentage(c, root, r) < 0)
        return -1;
    multi = rules_is_multi(r);
    r->decimal_places = 4;
    if ((v = json_object_get(root, "decimal_places"))) {
        int lo = multi ? 1 : 0;
        int hi = multi ? RULES_MAX_MULTI_DECIMAL_PLACES : RULES_MAX_DECIMAL_PLACES;
        push_key(c, "decimal_places");
        if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
            return fail(c, "must be an integer from %d to %d", lo, hi);
        r->decimal_places = (int)json_integer_value(v);
        pop(c);
    }
    r->weight_places = r->decimal_places < RULES_MAX_DECIMAL_PLACES
                           ? r->decimal_places : RULES_MAX_DECIMAL_PLACES;
    r->scale = 1;
    for (int i = 0; i < r->weight_places; i++)
        r->scale *= 10;
    if ((v = json_object_get(root, "random_seed"))) {
        push_key(c, "random_seed");
        if (!json_is_integer(v))
            return fail(c, "must be an integer (a java.util.Random seed)");
        r->has_seed = true;
        r->random_seed = (int64_t)json_integer_value(v);
        pop(c);
    }
    if ((v = json_object_get(root, "minimum_vote_threshold"))) {
        double x = json_number_value(v) * (double)r->scale;
        push_key(c, "minimum_vote_threshold");
        if (!json_is_number(v) || !(x >= 0) || x > 9e15)
            return fail(c, "must be a number >= 0");
        if (fabs(x - round(x)) > 1e-6 * (x > 1 ? x : 1))
            return fail(c, "has more decimal places than decimal_places (%d)",
                        r->weight_places);
        r->minimum_votes = (int64_t)llround(x);
        pop(c);
    }
    return 0;
}

/* The combinations TABULATION-MULTI.md §1.2 forbids (rules 3 to 6 and 8; 1, 2 and 7
 * are checked while reading). Each failure points at the member that must change. */
static int check_multi(ctx *c, rules *r)
{
    bool stv = rules_is_stv(r);
    size_t candidates = 0;

    /* Rules 3 and 6: every multi-winner mode but sequential. */
    if (rules_is_multi(r) && r->mode != MODE_SEQUENTIAL) {
        if (r->batch_elimination) {
            push_key(c, "batch_elimination");
            return fail(c, "must be false with winner_mode %s", mode_names[r->mode]);
        }
        if (r->continue_until_two) {
            push_key(c, "continue_until_two");
            return fail(c, "must be false with winner_mode %s", mode_names[r->mode]);
        }
    }
    if (r->winners >= 2 && r->first_round_threshold) {
        push_key(c, "first_round_determines_threshold");
        return fail(c, "must be false when winners is 2 or more");
    }
    if (r->mode == MODE_SEQUENTIAL) {
        for (size_t i = 1; i < r->ncand; i++)
            candidates += !r->cand[i].excluded;
        if ((size_t)r->winners > candidates) {
            push_key(c, "winners");
            return fail(c, "sequential needs a candidate for every pass: %d seats but %zu "
                           "candidates that are not excluded", r->winners, candidates);
        }
    }
    if (!stv && r->hare_quota) {
        push_key(c, "hare_quota");
        return fail(c, "is only for the STV modes (winner_mode multiple_winners_per_round "
                       "or one_winner_per_round)");
    }
    if (!stv && r->non_integer_threshold) {
        push_key(c, "non_integer_threshold");
        return fail(c, "is only for the STV modes (winner_mode multiple_winners_per_round "
                       "or one_winner_per_round)");
    }
    if (r->hare_quota && r->non_integer_threshold) {
        push_key(c, "non_integer_threshold");
        return fail(c, "cannot be combined with hare_quota");
    }
    return 0;
}

static int parse_root(ctx *c, json_t *root, rules *r)
{
    static const char *const allowed[] = {
        "contest", "candidates", "winners", "overvote", "max_skipped_ranks", "max_rankings",
        "exhaust_on_duplicate", "tiebreak", "random_seed", "batch_elimination",
        "continue_until_two", "first_round_determines_threshold", "minimum_vote_threshold",
        "decimal_places", "labels", "winner_mode", "hare_quota", "non_integer_threshold",
        "threshold_percentage", "cutoff_elimination", NULL};
    static const char *const overvotes[] = {"exhaust_immediately", "always_skip_to_next_rank",
                                            "exhaust_if_multiple_continuing"};
    static const char *const tiebreaks[] = {
        "candidate_order", "previous_round_then_candidate_order", "random",
        "previous_round_then_random", "stop"};
    json_t *contest;
    int e = 0;

    if (!json_is_object(root))
        return fail(c, "the rules must be a JSON object");
    if (check_members(c, root, allowed) < 0)
        return -1;
    contest = json_object_get(root, "contest");
    if (!contest)
        return fail(c, "member \"contest\" is required");
    push_key(c, "contest");
    if (!json_is_string(contest))
        return fail(c, "must be a string");
    r->contest = strdup(json_string_value(contest));
    if (!r->contest)
        return oom(c);
    pop(c);
    if (parse_numbers(c, root, r) < 0 || parse_labels(c, root, r) < 0 ||
        parse_candidates(c, root, r) < 0)
        return -1;
    if (get_enum(c, root, "overvote", overvotes, 3, &e) < 0)
        return -1;
    r->overvote = (enum rules_overvote)e;
    if (get_limit(c, root, "max_skipped_ranks", 0, "unlimited", -1, &r->max_skipped) < 0 ||
        get_limit(c, root, "max_rankings", 1, "max", 0, &r->max_rankings) < 0)
        return -1;
    if (get_enum(c, root, "tiebreak", tiebreaks, 5, &e) < 0)
        return -1;
    r->tiebreak = (enum rules_tiebreak)e;
    if (get_bool(c, root, "exhaust_on_duplicate", &r->exhaust_on_duplicate) < 0 ||
        get_bool(c, root, "batch_elimination", &r->batch_elimination) < 0 ||
        get_bool(c, root, "continue_until_two", &r->continue_until_two) < 0 ||
        get_bool(c, root, "first_round_determines_threshold", &r->first_round_threshold) < 0 ||
        get_bool(c, root, "hare_quota", &r->hare_quota) < 0 ||
        get_bool(c, root, "non_integer_threshold", &r->non_integer_threshold) < 0 ||
        get_bool(c, root, "cutoff_elimination", &r->cutoff_elimination) < 0)
        return -1;
    if (check_multi(c, r) < 0)
        return -1;

    /* Contradictions. */
    if (r->overvote == OVERVOTE_EXHAUST_IF_MULTIPLE && !r->delimiter) {
        push_key(c, "overvote");
        return fail(c, "exhaust_if_multiple_continuing needs the names at an overvoted rank, "
                       "but labels.overvote_delimiter is null so only the overvote label "
                       "can appear");
    }
    if (rules_uses_random(r) && !r->has_seed) {
        push_key(c, "tiebreak");
        return fail(c, "this tie-break draws at random: random_seed is required");
    }
    return 0;
}

int rules_parse(rules *r, const char *text, size_t len, const char *name, tab_error *err)
{
    json_error_t jerr;
    json_t *root;
    ctx c = {text, len, name, {{0}}, 0, err};
    int rc;

    memset(r, 0, sizeof(*r));
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return tab_error_set(err, TAB_EXIT_INPUT, name, jerr.line > 0 ? jerr.line : 1,
                             jerr.column > 0 ? jerr.column : 1, "invalid JSON: %s", jerr.text);
    rc = parse_root(&c, root, r);
    json_decref(root);
    if (rc < 0)
        rules_free(r);
    return rc;
}

int rules_load(rules *r, const char *path, tab_error *err)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc;

    memset(r, 0, sizeof(*r));
    if (!f)
        return tab_error_set(err, TAB_EXIT_INPUT, path, 0, 0, "cannot open rules: %s",
                             strerror(errno));
    for (;;) {
        size_t n;
        if (len == cap) {
            char *nt;
            cap = cap ? cap * 2 : 16384;
            if (cap > RULES_MAX_FILE + 1)
                cap = RULES_MAX_FILE + 1;
            nt = len < cap ? realloc(text, cap) : NULL;
            if (!nt) {
                free(text);
                fclose(f);
                return tab_error_set(err, len >= RULES_MAX_FILE ? TAB_EXIT_INPUT
                                                                : TAB_EXIT_INTERNAL,
                                     path, 0, 0, "%s",
                                     len >= RULES_MAX_FILE ? "rules file larger than 16 MiB"
                                                           : "out of memory");
            }
            text = nt;
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        free(text);
        fclose(f);
        return tab_error_set(err, TAB_EXIT_INPUT, path, 0, 0, "cannot read rules");
    }
    fclose(f);
    rc = rules_parse(r, text, len, path, err);
    free(text);
    return rc;
}

void rules_free(rules *r)
{
    if (r->cand)
        for (size_t i = 0; i < r->ncand; i++)
            free(r->cand[i].name);
    free(r->cand);
    free(r->contest);
    free(r->overvote_label);
    free(r->uwi_label);
    free(r->delimiter);
    names_free(r->names);
    memset(r, 0, sizeof(*r));
}
