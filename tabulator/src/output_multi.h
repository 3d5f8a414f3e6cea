/* output_multi.h — the results file of the multi-winner counts (TABULATION-MULTI.md §9).
 *
 * Same layout as the single-winner results (output.h) plus the top-level threshold, the
 * STV additions (final_round_surplus in the last round, residual_surplus in transfers)
 * and, for sequential, "pass" in every round and the "passes" list. Vote amounts are
 * written exactly, in plain decimal notation (§2.4), which jansson cannot do: the text is
 * produced by jsonw. Candidates appear in the rules' order, "Undeclared Write-ins" last. */
#ifndef TAB_OUTPUT_MULTI_H
#define TAB_OUTPUT_MULTI_H

#include "multi.h"
#include "rules.h"

/* The results document as text (caller frees), or NULL when out of memory. */
char *output_multi_text(const rules *r, const multi_result *res);

#endif
