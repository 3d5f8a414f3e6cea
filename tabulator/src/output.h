/* output.h — the results file and the JSON error (TABULATION.md, "Results file").
 *
 * Renders a count_result or a tab_error as JSON and replaces the output file atomically.
 * Vote amounts are printed as integers when whole, otherwise as decimals. Candidates are
 * listed in the rules' order with "Undeclared Write-ins" last. */
#ifndef TAB_OUTPUT_H
#define TAB_OUTPUT_H

#include <jansson.h>

#include "count.h"
#include "error.h"
#include "rules.h"

/* The results document (new reference), or NULL when out of memory. */
json_t *output_result_json(const rules *r, const count_result *res);

/* {"error": {...}} for an input error, a stopped count or an internal failure. */
json_t *output_error_json(const tab_error *e);

/* Serialises doc to path atomically. Returns 0, or -1 with err filled in. */
int output_write(const char *path, json_t *doc, tab_error *err);

/* Writes text (a results document made elsewhere, e.g. output_multi.h) to path
 * atomically. text NULL means the document could not be made (out of memory). */
int output_write_text(const char *path, const char *text, tab_error *err);

#endif
