/* app — what the job service's threads share: configuration, the store, the runner, the
 * work queue, the worker pool, and a "something changed" signal for long polls. */
#ifndef JOBS_APP_H
#define JOBS_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "callback.h"
#include "jobs.h"
#include "runner.h"
#include "store.h"
#include "voter/events.h"
#include "voter/mongo.h"
#include "workq.h"

typedef struct worker_pool worker_pool;
typedef struct sweeper sweeper;
typedef struct webhooks webhooks;

typedef struct jobs_app {
  const jobs_config *cfg;
  job_store *store;
  runner *runner;
  workq *wq;
  worker_pool *pool;
  sweeper *sweeper;
  webhooks *hooks;
  cb_policy *callbacks; /* JOBS_CALLBACK_ALLOW: which webhook targets may be called */
  atomic_bool stopping; /* SIGTERM: long polls return at once */

  pthread_mutex_t change_lock;
  pthread_cond_t change_cond;
  uint64_t change_seq;
} jobs_app;

void app_init(jobs_app *app, const jobs_config *cfg);
void app_destroy(jobs_app *app);
/* A job changed state in this process: wakes long polls (other replicas' changes are
 * seen by their periodic re-read). */
void app_changed(jobs_app *app);
/* Waits until app_changed after seq, or ms pass; returns the current sequence. */
uint64_t app_wait_change(jobs_app *app, uint64_t seq, long ms);
uint64_t app_change_seq(jobs_app *app);

/* The life cycle of the service's parts, in the order service_run drives it (main.c).
 * app_open: the runner, the work directory, the store, the work queue; 0, or the exit
 * status (2: the runner's configuration is wrong). */
int app_open(jobs_app *app, mongo_db *db, ev_relay *relay, const char *event_source,
             const char *amqp_url, const char *exchange, const char *queue_prefix);
/* The webhook sender, the worker pool, the sweeper, then consuming work. */
bool app_start(jobs_app *app);
/* SIGTERM: long polls return at once (before the HTTP server waits for them). */
void app_stopping(jobs_app *app);
/* Stop taking work; running jobs get JOBS_DRAIN_S, then are stopped and handed back; what
 * the workers reported is acked/nacked; then the housekeeping threads. */
void app_stop(jobs_app *app);
/* After the outbox relay stopped: the store, the runner, the callback policy. */
void app_close(jobs_app *app);

#endif
