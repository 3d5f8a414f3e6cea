/* rules.h — the tabulation rules (TABULATION.md, "Rules file"), parsed and validated.
 *
 * Candidates get small integer ids used everywhere else: id 0 is the undeclared write-in
 * pseudo-candidate (present only when labels.undeclared_write_in is set), ids 1..n follow
 * the order of the rules file. That order is also the tie-break order of
 * `candidate_order`, in which the pseudo-candidate counts as listed first. */
#ifndef TAB_RULES_H
#define TAB_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dec.h"
#include "error.h"

#define RULES_UWI 0                             /* id of the write-in pseudo-candidate */
#define RULES_UWI_NAME "Undeclared Write-ins"   /* its name in results */
#define RULES_MAX_CANDIDATES 4096
#define RULES_MAX_DECIMAL_PLACES 9        /* single winner: votes are int64 fixed-point */
#define RULES_MAX_MULTI_DECIMAL_PLACES 20 /* multi-winner: exact decimals (dec.h) */
#define RULES_MAX_PERCENTAGE_PLACES 20

/* rules_lookup() results besides a candidate id. */
#define RULES_UNKNOWN (-1)
#define RULES_OVERVOTE_LABEL (-2)

enum rules_overvote {
    OVERVOTE_EXHAUST_IMMEDIATELY,
    OVERVOTE_ALWAYS_SKIP,
    OVERVOTE_EXHAUST_IF_MULTIPLE,
};

enum rules_tiebreak {
    TIEBREAK_CANDIDATE_ORDER,
    TIEBREAK_PREVIOUS_ROUND_THEN_CANDIDATE_ORDER,
    TIEBREAK_RANDOM,
    TIEBREAK_PREVIOUS_ROUND_THEN_RANDOM,
    TIEBREAK_STOP,
};

/* TABULATION-MULTI.md §1.1. Every mode but single_winner is a multi-winner count. */
enum rules_winner_mode {
    MODE_SINGLE_WINNER,
    MODE_MULTIPLE_PER_ROUND, /* STV, every candidate reaching the threshold at once */
    MODE_ONE_PER_ROUND,      /* STV, the highest one per round */
    MODE_BOTTOMS_UP,
    MODE_BOTTOMS_UP_PERCENTAGE,
    MODE_SEQUENTIAL,
};

typedef struct rules_candidate {
    char *name;    /* as written in results */
    bool excluded; /* eliminated before round 1 */
    bool present;  /* false only for slot 0 when there is no write-in label */
} rules_candidate;

typedef struct rules_names rules_names; /* name/alias/label lookup table */

typedef struct rules {
    char *contest;
    size_t ncand;            /* slots, including slot 0 */
    rules_candidate *cand;   /* cand[RULES_UWI] is the write-in pseudo-candidate */
    bool has_uwi;
    int winners;             /* seats; 0 only with bottoms_up_percentage */
    enum rules_winner_mode mode;
    bool hare_quota;
    bool non_integer_threshold;
    bool cutoff_elimination;
    dec_u128 percentage;     /* threshold_percentage = percentage / 10^percentage_places */
    int percentage_places;
    enum rules_overvote overvote;
    long max_skipped;        /* -1: unlimited */
    long max_rankings;       /* 0: no limit ("max") */
    bool exhaust_on_duplicate;
    enum rules_tiebreak tiebreak;
    bool has_seed;
    int64_t random_seed;
    bool batch_elimination;
    bool continue_until_two;
    bool first_round_threshold;
    int decimal_places;
    /* Weights (and single-winner votes) are fixed-point integers in units of
     * 1/scale, scale = 10^weight_places. weight_places is decimal_places, capped at 9 so
     * that a weight fits int64 when a multi-winner count has up to 20 places. */
    int weight_places;
    int64_t scale;
    int64_t minimum_votes;   /* fixed-point */
    char *overvote_label;
    char *uwi_label;         /* NULL when not defined */
    char *delimiter;         /* NULL when names cannot be joined at one rank */
    rules_names *names;
} rules;

/* Reads and validates a rules file. On failure err names the file, line and column. */
int rules_load(rules *r, const char *path, tab_error *err);

/* Same, from text in memory; name is used in messages. */
int rules_parse(rules *r, const char *text, size_t len, const char *name, tab_error *err);

void rules_free(rules *r);

/* Candidate id for a trimmed name, alias or label: an id >= 0, RULES_OVERVOTE_LABEL,
 * or RULES_UNKNOWN. */
int rules_lookup(const rules *r, const char *s, size_t len);

/* True for every mode of TABULATION-MULTI.md (winner_mode other than single_winner). */
static inline bool rules_is_multi(const rules *r)
{
    return r->mode != MODE_SINGLE_WINNER;
}

/* True for the two STV modes (fractional surplus transfers). */
static inline bool rules_is_stv(const rules *r)
{
    return r->mode == MODE_MULTIPLE_PER_ROUND || r->mode == MODE_ONE_PER_ROUND;
}

/* True when tie-breaks can need random draws (a seed is then required). */
bool rules_uses_random(const rules *r);

/* The whitespace that "names are matched after trimming" removes. */
static inline bool rules_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Narrows s[0..*len) to its trimmed part; returns the new start. */
static inline const char *rules_trim(const char *s, size_t *len)
{
    size_t n = *len;
    while (n > 0 && rules_is_space(*s))
        s++, n--;
    while (n > 0 && rules_is_space(s[n - 1]))
        n--;
    *len = n;
    return s;
}

#endif
