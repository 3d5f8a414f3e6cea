/* worker — runs jobs on this replica (prefix worker_).
 *
 * JOBS_CONCURRENCY worker threads, each running one job at a time through the runner, and
 * a lease keeper thread that renews the lease of every local run once a second, records
 * its progress (the progress file of the work directory), and stops a run whose job was
 * cancelled or taken over meanwhile (the renewal no longer matches: fencing).
 *
 * A work message for a job is handled by worker_dispatch on the work queue's thread:
 *   final / unknown job                → ack;
 *   pending                            → claim it (pending → running, attempts + 1) and
 *                                        hand it to a free worker (the delivery is acked
 *                                        when the job is final or re-queued);
 *   running, lease expired             → take it over (within the attempt budget; past it
 *                                        the job fails) and run it again;
 *   running, lease alive               → look again when the lease would expire: the owner
 *                                        may have died (its message came back to us); if
 *                                        the lease was renewed meanwhile, the owner lives
 *                                        and will finish it: ack.
 * No free worker → look again shortly (prefetch = concurrency makes that rare). */
#ifndef JOBS_WORKER_H
#define JOBS_WORKER_H

#include <stdbool.h>

#include "app.h"

worker_pool *worker_start(jobs_app *app);
wq_verdict worker_dispatch(void *ctx, wq_delivery *d, long *later_ms);
/* Stops the local run of job id, if there is one (a cancel); true when found. */
bool worker_cancel_local(worker_pool *p, const char *id);
/* Shutdown: waits up to drain_s for running jobs, then stops the rest and hands them back
 * to the queue (the interrupted attempt is not counted). */
void worker_drain(worker_pool *p, long drain_s);
/* Stops and joins the pool's threads. The work queue thread may still call
 * worker_dispatch afterwards (it answers "later" once stopping), so the pool's memory
 * stays until worker_free, called after wq_stop. */
void worker_stop(worker_pool *p);
void worker_free(worker_pool *p);

#endif
