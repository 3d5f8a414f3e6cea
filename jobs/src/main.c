/* main — the job service: its parts wired into service_run (see voter/service.h).
 *
 * Owns job records; accepts tabulations, runs `tabulate` through a runner (local process,
 * Docker container or Kubernetes Job), serves results by signed URL, and publishes
 * job.succeeded|failed|cancelled through the outbox. */
#include "app.h"
#include "fsutil.h"
#include "routes.h"
#include "sweeper.h"
#include "usage.h"
#include "voter/config.h"
#include "voter/log.h"
#include "voter/service.h"
#include "webhook.h"
#include "worker.h"

static jobs_config cfg;
static jobs_app app;
static routes_ctx *routes_ctx_;

/* JOBS_MAX_BODY is the job service's own name for the body limit. */
static int configure(service *svc) {
  long max_body;
  char policy_error[256];
  if (jobs_config_read(&cfg) ||
      cfg_long("JOBS_MAX_BODY", (long)svc->http.max_body, 1024, 1L << 30, &max_body))
    return -1;
  svc->http.max_body = (size_t)max_body;
  app_init(&app, &cfg);
  app.callbacks = cb_policy_new(cfg.callback_allow, policy_error, sizeof policy_error);
  if (!app.callbacks) log_error("config: %s", policy_error);
  return app.callbacks ? 0 : -1;
}
static int open_parts(service *svc) {
  if (!(app.runner = runner_new(&cfg))) return 2;
  if (fs_mkdirs(cfg.work_dir, 0755) != 0) {
    log_error("jobs: cannot create JOBS_WORK_DIR %s", cfg.work_dir);
    return 1;
  }
  app.store = store_open(svc->db, svc->relay, svc->event_source);
  app.wq = wq_new(svc->amqp_url, svc->exchange, svc->queue_prefix, (int)cfg.concurrency);
  return app.store && app.wq ? 0 : 1;
}
static bool routes(service *svc, http_server *srv) {
  return (routes_ctx_ = jobs_routes(srv, &app, svc->http.threads)) != NULL;
}
static bool init(service *svc) { return (void)svc, store_init(app.store); }
static bool start(service *svc) {
  (void)svc;
  log_fields(LOG_INFO, "jobs", json_pack("{s:s, s:s, s:i}", "runner", app.runner->name, "instance",
                                         cfg.instance, "concurrency", (int)cfg.concurrency));
  app.hooks = webhooks_start(&app);
  app.pool = worker_start(&app);
  app.sweeper = sweeper_start(&app);
  return app.hooks && app.pool && app.sweeper && wq_consume(app.wq, worker_dispatch, app.pool) == 0;
}
/* Wake long polls before the HTTP server waits for them. */
static void stopping(service *svc) {
  (void)svc;
  atomic_store(&app.stopping, true);
  app_changed(&app);
}
/* Stop taking work; running jobs get JOBS_DRAIN_S, then are stopped and handed back; what
 * the workers reported is acked/nacked; then the housekeeping threads. */
static void stop(service *svc) {
  (void)svc;
  wq_drain(app.wq);
  worker_drain(app.pool, cfg.drain_s);
  worker_stop(app.pool);
  sweeper_stop(app.sweeper);
  webhooks_stop(app.hooks);
  wq_stop(app.wq);
  worker_free(app.pool); /* after the work queue thread, which dispatches into it */
  jobs_routes_free(routes_ctx_);
}
static void close_parts(service *svc) {
  (void)svc;
  store_close(app.store);
  if (app.runner) app.runner->destroy(app.runner);
  cb_policy_free(app.callbacks);
  app_destroy(&app);
}

static const char *const outbox[] = {"jobs", NULL};
static const service_spec spec = {
    .name = "jobs", .about = JOBS_ABOUT, .options = JOBS_OPTIONS, .port = 8084, .threads = 8,
    .max_body = 10L * 1024 * 1024, .outbox = outbox, .configure = configure, .open = open_parts,
    .routes = routes, .init = init, .start = start, .stopping = stopping, .stop = stop,
    .close = close_parts};

int main(int argc, char **argv) { return service_run(argc, argv, &spec); }
