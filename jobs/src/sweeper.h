/* sweeper — the periodic housekeeping every replica does (prefix sweeper_):
 *   - jobs whose lease expired (their worker died and no message came back for them):
 *     back to pending and re-sent, or failed when the attempt budget is spent;
 *   - pending jobs without a confirmed work message (the broker was down at submission,
 *     or a runner error's back-off is over), and pending jobs whose message may have been
 *     lost (dispatched long ago): a work message is (re-)sent; duplicates are harmless;
 *   - retention: jobs finished longer ago than JOBS_RETENTION_S lose their inputs, result
 *     and logs and answer 410 from then on.
 * Every transition is conditional (store.h), so replicas sweeping at once do no harm. */
#ifndef JOBS_SWEEPER_H
#define JOBS_SWEEPER_H

#include "app.h"

sweeper *sweeper_start(jobs_app *app);
/* Sweep now rather than at the next period. */
void sweeper_kick(sweeper *s);
void sweeper_stop(sweeper *s);

#endif
