/* main — the job service wired into service_run (voter/service.h): tabulations run by
 * `tabulate` through a runner, results by signed URL, job.* events through the outbox.
 * Its parts' life cycle is in app.c, its configuration in config.c, --help in usage.h. */
#include "app.h"
#include "routes.h"
#include "usage.h"
#include "voter/config.h"
#include "voter/log.h"
#include "voter/service.h"

static jobs_config cfg;
static jobs_app app;
static routes_ctx *routes_;

/* JOBS_MAX_BODY is the job service's own name for the body limit. */
static int configure(service *svc) {
  long max_body;
  char error[256];
  if (jobs_config_read(&cfg) ||
      cfg_long("JOBS_MAX_BODY", (long)svc->http.max_body, 1024, 1L << 30, &max_body))
    return -1;
  svc->http.max_body = (size_t)max_body;
  app_init(&app, &cfg);
  if (!(app.callbacks = cb_policy_new(cfg.callback_allow, error, sizeof error)))
    log_error("config: %s", error);
  return app.callbacks ? 0 : -1;
}
static int open_all(service *s) {
  return app_open(&app, s->db, s->relay, s->event_source, s->amqp_url, s->exchange,
                  s->queue_prefix);
}
static bool routes(service *s, http_server *srv) {
  return (routes_ = jobs_routes(srv, &app, s->http.threads)) != NULL;
}
static bool init(service *s) { return (void)s, store_init(app.store); }
static bool start(service *s) { return (void)s, app_start(&app); }
static void stopping(service *s) { (void)s, app_stopping(&app); }
static void stop(service *s) { (void)s, app_stop(&app), jobs_routes_free(routes_); }
static void close_all(service *s) { (void)s, app_close(&app); }

static const char *const outbox[] = {"jobs", NULL};
static const service_spec spec = {
    .name = "jobs", .about = JOBS_ABOUT, .options = JOBS_OPTIONS, .port = 8084, .threads = 8,
    .max_body = 10L * 1024 * 1024, .outbox = outbox, .configure = configure, .open = open_all,
    .routes = routes, .init = init, .start = start, .stopping = stopping, .stop = stop,
    .close = close_all};

int main(int argc, char **argv) { return service_run(argc, argv, &spec); }
