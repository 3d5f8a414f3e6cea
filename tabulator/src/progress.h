/* progress.h — the progress file of TABULATION.md:
 *
 *     {"phase":"reading|tabulating|writing","done":N,"total":M}
 *
 * rewritten atomically, at most every PROGRESS_INTERVAL_MS (forced writes aside). Units:
 * reading counts bytes of the ballots file (total 0 when its size is unknown, e.g. a
 * pipe); tabulating counts rounds against the most rounds the count can take; writing is
 * 0 of 1 until the results file is in place, then 1 of 1. A failed write is reported once
 * on stderr and otherwise ignored: progress is advisory, the results file is not. */
#ifndef TAB_PROGRESS_H
#define TAB_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#define PROGRESS_INTERVAL_MS 250

typedef struct progress {
    const char *path; /* NULL: disabled */
    int64_t last_ms;  /* time of the last write, -1 before the first */
    bool warned;
} progress;

void progress_init(progress *p, const char *path);

/* Writes the state if the interval has passed since the last write, or if force. */
void progress_report(progress *p, const char *phase, uint64_t done, uint64_t total,
                     bool force);

#endif
