/* fuzz_parsers.c — libFuzzer target over the CSV reader, the rules parser and the count.
 *
 * Input layout: RULES-JSON, a NUL byte, BALLOTS-CSV. Without a NUL the whole input is
 * fed to the rules parser and, separately, to the CSV reader with fixed rules. When the
 * rules part is valid, the ballots are read with those rules and counted, and the result
 * is rendered, so every stage sees hostile input: the single-winner count, or the
 * multi-winner counts (multi.c) when the rules name a winner_mode. The CSV reader runs with a tiny buffer
 * and odd read sizes so records straddle refills. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ballots.h"
#include "count.h"
#include "csv.h"
#include "cvr.h"
#include "multi.h"
#include "output.h"
#include "output_multi.h"
#include "rules.h"

static const char fixed_rules[] =
    "{\"contest\": \"fuzz\", \"candidates\": [{\"name\": \"A\", \"aliases\": [\"a\"]}, "
    "{\"name\": \"B\"}, {\"name\": \"C\", \"excluded\": true}], \"overvote\": "
    "\"exhaust_if_multiple_continuing\", \"max_skipped_ranks\": 1, \"max_rankings\": 3, "
    "\"exhaust_on_duplicate\": true, \"tiebreak\": \"previous_round_then_random\", "
    "\"random_seed\": 7, \"batch_elimination\": true, \"continue_until_two\": true, "
    "\"labels\": {\"undeclared_write_in\": \"UWI\"}}";

typedef struct mem_src {
    const uint8_t *data;
    size_t len, pos;
} mem_src;

static long mem_read(void *ctx, char *buf, size_t cap, int *err)
{
    mem_src *m = ctx;
    size_t n = m->len - m->pos;

    (void)err;
    if (n > cap)
        n = cap;
    if (n > 7 + (m->pos % 5))
        n = 7 + (m->pos % 5);
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (long)n;
}

static void count_ballots(const rules *r, const uint8_t *data, size_t len)
{
    mem_src src = {data, len, 0};
    csv_reader *csv = csv_new(mem_read, &src, "fuzz.csv", 8, 1 << 16);
    ballot_store store;
    progress prog;
    tab_error err;

    if (!csv)
        return;
    memset(&err, 0, sizeof(err));
    progress_init(&prog, NULL);
    ballots_init(&store);
    if (cvr_read(r, csv, &store, &prog, 0, &err) == 0 && rules_is_multi(r)) {
        multi_result res;
        if (multi_run(r, &store, &res, &prog, &err) >= 0)
            free(output_multi_text(r, &res));
        multi_result_free(&res);
    } else if (err.code == 0) {
        count_result res;
        json_t *doc;
        if (count_run(r, &store, &res, &prog, &err) >= 0) {
            doc = output_result_json(r, &res);
            json_decref(doc);
        }
        count_result_free(&res);
    } else {
        json_decref(output_error_json(&err));
    }
    ballots_free(&store);
    csv_free(csv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t rules_len = nul ? (size_t)(nul - data) : size;
    rules r;
    tab_error err;

    memset(&err, 0, sizeof(err));
    if (rules_parse(&r, (const char *)data, rules_len, "fuzz.json", &err) == 0) {
        if (nul)
            count_ballots(&r, nul + 1, size - rules_len - 1);
        rules_free(&r);
    }
    if (!nul) {
        memset(&err, 0, sizeof(err));
        if (rules_parse(&r, fixed_rules, sizeof(fixed_rules) - 1, "fixed.json", &err) == 0) {
            count_ballots(&r, data, size);
            rules_free(&r);
        }
    }
    return 0;
}
