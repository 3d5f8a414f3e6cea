/* main.c — `tabulate`: command line and control file, then the pipeline
 * rules → ballots (streamed, collapsed) → count → results file, with the progress file
 * and exit codes of TABULATION.md. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ballots.h"
#include "count.h"
#include "csv.h"
#include "cvr.h"
#include "error.h"
#include "jsonpos.h"
#include "multi.h"
#include "output.h"
#include "output_multi.h"
#include "progress.h"
#include "rules.h"

#ifndef TABULATE_VERSION
#define TABULATE_VERSION "0.1.0"
#endif

#define CSV_BUFFER (1u << 20)
#define CSV_MAX_RECORD (64u << 20)

static const char usage_text[] =
    "Usage: tabulate CONTROL.json\n"
    "       tabulate --ballots B.csv --rules R.json --out RESULT.json [--progress P.json]\n"
    "       tabulate --help | --version\n"
    "\n"
    "Tabulates a ranked-choice contest round by round: single-winner instant runoff\n"
    "as described in TABULATION.md, or several seats (rules \"winners\" and\n"
    "\"winner_mode\") as described in TABULATION-MULTI.md:\n"
    "  single_winner               instant runoff (the default when winners is 1)\n"
    "  multiple_winners_per_round  STV: everyone at the threshold is elected at once;\n"
    "                              surpluses move on as exact fractions (decimal_places)\n"
    "  one_winner_per_round        STV, electing only the highest candidate per round\n"
    "  bottoms_up                  eliminate the lowest until the rest fill the seats\n"
    "  bottoms_up_percentage       winners 0: eliminate until every candidate left has\n"
    "                              more than threshold_percentage of the votes\n"
    "  sequential                  one instant-runoff pass per seat, earlier winners\n"
    "                              excluded\n"
    "STV options: hare_quota, non_integer_threshold; every mode: cutoff_elimination.\n"
    "Multi-winner amounts are exact decimals, written without exponent.\n"
    "\n"
    "  --ballots PATH   ballots CSV: header with optional id, weight, precinct, then\n"
    "                   rank1 ... rankN; one ballot per row ('-' reads standard input)\n"
    "  --rules PATH     rules JSON (candidates, overvote rule, tie-break, ...)\n"
    "  --out PATH       results JSON, written atomically; after an error it holds\n"
    "                   {\"error\": {exit_code, file, line, column, field, message}}\n"
    "  --progress PATH  progress JSON, rewritten atomically, at most once per 250 ms\n"
    "                   besides the first and the last write:\n"
    "                   {\"phase\":\"reading|tabulating|writing\",\"done\":N,\"total\":M}\n"
    "                   (reading: bytes of the ballots file, total 0 if unknown;\n"
    "                   tabulating: rounds, against the most rounds possible;\n"
    "                   writing: 0 or 1 of 1)\n"
    "  -h, --help       show this help and exit\n"
    "  --version        show the version and exit\n"
    "\n"
    "CONTROL.json names the same files: {\"ballots\": \"...\", \"rules\": \"...\",\n"
    "\"out\": \"...\", \"progress\": \"...\"} (progress optional); relative paths are\n"
    "relative to the directory of the control file.\n"
    "\n"
    "Files PATH.tmp beside the results and progress files are used for the atomic\n"
    "replacement. Nothing else is written; the network is never used.\n"
    "\n"
    "Exit status:\n"
    "  0  done: the results file holds the count\n"
    "  1  internal error (out of memory, results file not writable)\n"
    "  2  invalid input: the results file (when known) holds the error with its\n"
    "     line and column; also for a wrong command line\n"
    "  3  the count could not finish (e.g. a tie with tiebreak \"stop\"): the results\n"
    "     file holds the rounds so far and a \"stopped\" member with the tie\n"
    "     (multi-winner: a \"tie\" member, or \"error\" with the reason)\n";

typedef struct options {
    char *ballots, *rules, *out, *progress; /* owned */
} options;

static void options_free(options *o)
{
    free(o->ballots);
    free(o->rules);
    free(o->out);
    free(o->progress);
}

static void report(const tab_error *e)
{
    fprintf(stderr, "tabulate: ");
    if (e->file[0])
        fprintf(stderr, "%s:", e->file);
    if (e->line > 0)
        fprintf(stderr, "%ld:", e->line);
    if (e->line > 0 && e->column > 0)
        fprintf(stderr, "%ld:", e->column);
    fprintf(stderr, "%s%s\n", e->file[0] ? " " : "", e->message);
}

/* dir of the control file + relative path; absolute paths are kept. */
static char *resolve(const char *control, const char *path)
{
    const char *slash = strrchr(control, '/');
    size_t dlen = slash ? (size_t)(slash - control) + 1 : 0;
    char *out;

    if (path[0] == '/' || dlen == 0 || strcmp(path, "-") == 0)
        return strdup(path);
    out = malloc(dlen + strlen(path) + 1);
    if (!out)
        return NULL;
    memcpy(out, control, dlen);
    strcpy(out + dlen, path);
    return out;
}

static int read_control(const char *path, options *o, tab_error *err)
{
    static const char *const keys[] = {"ballots", "rules", "out", "progress"};
    char **slots[] = {&o->ballots, &o->rules, &o->out, &o->progress};
    char text[65536];
    FILE *f = fopen(path, "rb");
    size_t len;
    json_error_t jerr;
    json_t *root, *v;
    const char *key;
    int rc = -1;

    if (!f)
        return tab_error_set(err, TAB_EXIT_INPUT, path, 0, 0, "cannot open control file: %s",
                             strerror(errno));
    len = fread(text, 1, sizeof(text), f);
    fclose(f);
    if (len == sizeof(text))
        return tab_error_set(err, TAB_EXIT_INPUT, path, 0, 0, "control file too large");
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return tab_error_set(err, TAB_EXIT_INPUT, path, jerr.line > 0 ? jerr.line : 1,
                             jerr.column > 0 ? jerr.column : 1, "invalid JSON: %s",
                             jerr.text);
    if (!json_is_object(root)) {
        tab_error_set(err, TAB_EXIT_INPUT, path, 1, 1, "the control file must be an object");
        goto out;
    }
    json_object_foreach(root, key, v) {
        jsonpos_seg seg = {key, 0};
        long line, column;
        size_t k;

        for (k = 0; k < 4 && strcmp(key, keys[k]) != 0; k++)
            ;
        jsonpos_find(text, len, &seg, 1, &line, &column);
        if (k == 4) {
            tab_error_set(err, TAB_EXIT_INPUT, path, line, column,
                          "unknown member \"%s\" (expected ballots, rules, out, progress)",
                          key);
            goto out;
        }
        if (!json_is_string(v) || json_string_length(v) == 0) {
            tab_error_set(err, TAB_EXIT_INPUT, path, line, column,
                          "\"%s\" must be a non-empty path", key);
            goto out;
        }
        free(*slots[k]);
        *slots[k] = resolve(path, json_string_value(v));
        if (!*slots[k]) {
            tab_error_set(err, TAB_EXIT_INTERNAL, path, 0, 0, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* Returns 0 to run, 1 when help/version was printed, -1 on a usage error. */
static int parse_args(int argc, char **argv, options *o, tab_error *err)
{
    static const char *const flags[] = {"--ballots", "--rules", "--out", "--progress"};
    char **slots[] = {&o->ballots, &o->rules, &o->out, &o->progress};
    const char *control = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        size_t k;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("tabulate %s\n", TABULATE_VERSION);
            return 1;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (control)
                return tab_error_set(err, TAB_EXIT_INPUT, NULL, 0, 0,
                                     "only one control file may be given");
            control = a;
            continue;
        }
        for (k = 0; k < 4; k++) {
            size_t n = strlen(flags[k]);
            if (strncmp(a, flags[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                val = a[n] == '=' ? a + n + 1 : (i + 1 < argc ? argv[++i] : NULL);
                break;
            }
        }
        if (k == 4)
            return tab_error_set(err, TAB_EXIT_INPUT, NULL, 0, 0, "unknown option %s", a);
        if (!val || !*val)
            return tab_error_set(err, TAB_EXIT_INPUT, NULL, 0, 0, "%s needs a path",
                                 flags[k]);
        free(*slots[k]);
        *slots[k] = strdup(val);
        if (!*slots[k])
            return tab_error_set(err, TAB_EXIT_INTERNAL, NULL, 0, 0, "out of memory");
    }
    if (control) {
        if (o->ballots || o->rules || o->out || o->progress)
            return tab_error_set(err, TAB_EXIT_INPUT, NULL, 0, 0,
                                 "give either a control file or the options, not both");
        if (read_control(control, o, err) < 0)
            return -1;
        if (!o->ballots || !o->rules || !o->out)
            return tab_error_set(err, TAB_EXIT_INPUT, control, 0, 0,
                                 "the control file must name \"ballots\", \"rules\" and "
                                 "\"out\"");
        return 0;
    }
    if (!o->ballots || !o->rules || !o->out)
        return tab_error_set(err, TAB_EXIT_INPUT, NULL, 0, 0,
                             "--ballots, --rules and --out are required (see --help)");
    return 0;
}

static int read_ballots(const options *o, const rules *r, ballot_store *store,
                        progress *prog, tab_error *err)
{
    int fd = strcmp(o->ballots, "-") == 0 ? STDIN_FILENO
                                            : open(o->ballots, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint64_t total = 0;
    csv_reader *csv;
    int rc;

    if (fd < 0)
        return tab_error_set(err, TAB_EXIT_INPUT, o->ballots, 0, 0, "cannot open ballots: %s",
                             strerror(errno));
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        total = (uint64_t)st.st_size;
#ifdef POSIX_FADV_SEQUENTIAL
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    }
    progress_report(prog, "reading", 0, total, true);
    csv = csv_new(csv_read_fd, &fd, o->ballots, CSV_BUFFER, CSV_MAX_RECORD);
    if (!csv) {
        rc = tab_error_set(err, TAB_EXIT_INTERNAL, o->ballots, 0, 0, "out of memory");
    } else {
        rc = cvr_read(r, csv, store, prog, total, err);
        if (rc == 0)
            progress_report(prog, "reading", csv_bytes_read(csv), total, false);
    }
    csv_free(csv);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

/* Writes the error document when there is an output file; returns the exit code. */
static int fail(const options *o, const tab_error *e)
{
    tab_error werr;

    report(e);
    if (o->out) {
        json_t *doc = output_error_json(e);
        tab_error_clear(&werr);
        if (output_write(o->out, doc, &werr) < 0) {
            report(&werr);
            json_decref(doc);
            return TAB_EXIT_INTERNAL;
        }
        json_decref(doc);
    }
    return e->code ? e->code : TAB_EXIT_INTERNAL;
}

/* The exit status once the results are written (write_rc < 0: they could not be) for a count
 * that finished (rc 0) or stopped (rc 1, for stop_reason); reports the writing done. */
static int written(progress *prog, int write_rc, int rc, const char *stop_reason,
                   tab_error *err)
{
    int status;

    if (write_rc < 0) {
        report(err);
        status = TAB_EXIT_INTERNAL;
    } else if (rc == 1) {
        fprintf(stderr, "tabulate: count stopped: %s\n", stop_reason);
        status = TAB_EXIT_UNFINISHED;
    } else {
        status = TAB_EXIT_OK;
    }
    if (status != TAB_EXIT_INTERNAL)
        progress_report(prog, "writing", 1, 1, true);
    return status;
}

/* Counts, writes the results file; returns the exit status. */
static int count_single(const options *o, const rules *r, const ballot_store *store,
                        progress *prog, tab_error *err)
{
    count_result res;
    json_t *doc;
    int rc = count_run(r, store, &res, prog, err), status;

    if (rc < 0) {
        count_result_free(&res);
        return fail(o, err);
    }
    progress_report(prog, "writing", 0, 1, false);
    doc = output_result_json(r, &res);
    status = written(prog, output_write(o->out, doc, err), rc, res.stop_reason, err);
    json_decref(doc);
    count_result_free(&res);
    return status;
}

static int count_multi(const options *o, const rules *r, const ballot_store *store,
                       progress *prog, tab_error *err)
{
    multi_result res;
    char *text;
    int rc = multi_run(r, store, &res, prog, err), status;

    if (rc < 0) {
        multi_result_free(&res);
        return fail(o, err);
    }
    progress_report(prog, "writing", 0, 1, false);
    text = output_multi_text(r, &res);
    status = written(prog, output_write_text(o->out, text, err), rc, res.error, err);
    free(text);
    multi_result_free(&res);
    return status;
}

int main(int argc, char **argv)
{
    options o = {0};
    tab_error err;
    rules r;
    ballot_store store;
    progress prog;
    int rc, status;

    tab_error_clear(&err);
    memset(&r, 0, sizeof(r));
    ballots_init(&store);
    rc = parse_args(argc, argv, &o, &err);
    if (rc != 0) {
        if (rc > 0) {
            status = TAB_EXIT_OK;
        } else if (o.out) { /* a control file named the output before failing */
            status = fail(&o, &err);
        } else {
            report(&err);
            fprintf(stderr, "Try 'tabulate --help'.\n");
            status = err.code;
        }
        options_free(&o);
        return status;
    }
    progress_init(&prog, o.progress);
    if (rules_load(&r, o.rules, &err) < 0 || read_ballots(&o, &r, &store, &prog, &err) < 0) {
        status = fail(&o, &err);
        goto out;
    }
    progress_report(&prog, "tabulating", 0, r.ncand + 1, false);
    status = rules_is_multi(&r) ? count_multi(&o, &r, &store, &prog, &err)
                                : count_single(&o, &r, &store, &prog, &err);
out:
    ballots_free(&store);
    rules_free(&r);
    options_free(&o);
    return status;
}
