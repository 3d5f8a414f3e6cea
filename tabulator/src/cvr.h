/* cvr.h — reads the ballots CSV (cast vote records) into the collapsing store.
 *
 * Knows the ballots format of TABULATION.md: the header (optional id, weight, precinct,
 * then rank1 … rankN), what a rank cell may hold (nothing, a name or alias, names joined
 * by the overvote delimiter, the overvote label, the write-in label) and turns each row
 * into the mark sequence of ballots.h. Ranks beyond max_rankings are validated but not
 * stored, so rankings that differ only there collapse. */
#ifndef TAB_CVR_H
#define TAB_CVR_H

#include <stdint.h>

#include "ballots.h"
#include "csv.h"
#include "error.h"
#include "progress.h"
#include "rules.h"

/* Reads every row. total_bytes (0 if unknown) is only used for progress reports.
 * Returns 0, or -1 with err naming line, column (field number) and field. */
int cvr_read(const rules *r, csv_reader *csv, ballot_store *store, progress *prog,
             uint64_t total_bytes, tab_error *err);

#endif
