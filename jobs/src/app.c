/* app — shared state of the job service; see app.h. */
#include "app.h"

#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "sweeper.h"
#include "voter/log.h"
#include "voter/util.h"
#include "webhook.h"
#include "worker.h"

void app_init(jobs_app *app, const jobs_config *cfg) {
  memset(app, 0, sizeof *app);
  app->cfg = cfg;
  pthread_mutex_init(&app->change_lock, NULL);
  util_cond_init_monotonic(&app->change_cond);
}

void app_destroy(jobs_app *app) {
  pthread_cond_destroy(&app->change_cond);
  pthread_mutex_destroy(&app->change_lock);
}

void app_changed(jobs_app *app) {
  pthread_mutex_lock(&app->change_lock);
  app->change_seq++;
  pthread_cond_broadcast(&app->change_cond);
  pthread_mutex_unlock(&app->change_lock);
}

uint64_t app_change_seq(jobs_app *app) {
  pthread_mutex_lock(&app->change_lock);
  uint64_t seq = app->change_seq;
  pthread_mutex_unlock(&app->change_lock);
  return seq;
}

uint64_t app_wait_change(jobs_app *app, uint64_t seq, long ms) {
  struct timespec until = util_monotonic_deadline(ms);
  pthread_mutex_lock(&app->change_lock);
  while (app->change_seq == seq && !atomic_load(&app->stopping))
    if (pthread_cond_timedwait(&app->change_cond, &app->change_lock, &until) != 0) break;
  seq = app->change_seq;
  pthread_mutex_unlock(&app->change_lock);
  return seq;
}

int app_open(jobs_app *app, mongo_db *db, ev_relay *relay, const char *event_source,
             const char *amqp_url, const char *exchange, const char *queue_prefix) {
  if (!(app->runner = runner_new(app->cfg))) return 2;
  if (fs_mkdirs(app->cfg->work_dir, 0755) != 0) {
    log_error("jobs: cannot create JOBS_WORK_DIR %s", app->cfg->work_dir);
    return 1;
  }
  app->store = store_open(db, relay, event_source);
  app->wq = wq_new(amqp_url, exchange, queue_prefix, (int)app->cfg->concurrency);
  return app->store && app->wq ? 0 : 1;
}

bool app_start(jobs_app *app) {
  log_fields(LOG_INFO, "jobs",
             json_pack("{s:s, s:s, s:i}", "runner", app->runner->name, "instance",
                       app->cfg->instance, "concurrency", (int)app->cfg->concurrency));
  app->hooks = webhooks_start(app);
  app->pool = worker_start(app);
  app->sweeper = sweeper_start(app);
  return app->hooks && app->pool && app->sweeper &&
         wq_consume(app->wq, worker_dispatch, app->pool) == 0;
}

void app_stopping(jobs_app *app) {
  atomic_store(&app->stopping, true);
  app_changed(app);
}

void app_stop(jobs_app *app) {
  wq_drain(app->wq);
  worker_drain(app->pool, app->cfg->drain_s);
  worker_stop(app->pool);
  sweeper_stop(app->sweeper);
  webhooks_stop(app->hooks);
  wq_stop(app->wq);
  worker_free(app->pool); /* after the work queue thread, which dispatches into it */
}

void app_close(jobs_app *app) {
  store_close(app->store);
  if (app->runner) app->runner->destroy(app->runner);
  cb_policy_free(app->callbacks);
  app_destroy(app);
}
