/* service — service_run, operational endpoints and signals; see service.h. */
#include "voter/service.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "voter/authz.h"
#include "voter/amqp.h"
#include "voter/config.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#ifndef VOTER_VERSION
#define VOTER_VERSION "dev"
#endif
#ifndef VOTER_GIT_COMMIT
#define VOTER_GIT_COMMIT "unknown"
#endif

static void health(void *ctx, const http_request *req, http_response *res) {
  (void)ctx, (void)req;
  http_reply_json(res, 200, json_pack("{s:s}", "status", "UP"));
}

static void ready(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  service_info *info = ctx;
  bson_error_t error;
  bool db_up = mongo_ping(info->db, &error);
  bool broker_up = info->relay ? ev_relay_broker_up(info->relay) : true;
  bool ok = db_up && atomic_load(&info->ready);
  json_t *body = json_pack("{s:s, s:{s:s, s:s}}", "status", ok ? "UP" : "DOWN", "components",
                           "mongodb", db_up ? "UP" : "DOWN", "rabbitmq", broker_up ? "UP" : "DOWN");
  if (!ok) {
    http_reply_json(res, 503, body);
    http_set_header(res, "Retry-After", "1");
    return;
  }
  http_reply_json(res, 200, body);
}

static void info_handler(void *ctx, const http_request *req, http_response *res) {
  (void)req;
  service_info *info = ctx;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  bson_error_t error;
  bool db_up = mongo_ping(info->db, &error);
  bool broker_up = info->relay ? ev_relay_broker_up(info->relay) : false;
  http_reply_json(res, 200,
                  json_pack("{s:s, s:s, s:s, s:s, s:f, s:{s:s, s:s}, s:{s:s}}", "name", info->name,
                            "version", info->version, "gitCommit", info->commit, "hostname", host,
                            "uptimeSeconds", util_monotonic() - info->started, "mongodb",
                            "status", db_up ? "UP" : "DOWN", "database", mongo_db_name(info->db),
                            "rabbitmq", "status", broker_up ? "UP" : "DOWN"));
}

static void metrics_handler(void *ctx, const http_request *req, http_response *res) {
  (void)ctx, (void)req;
  char *text = metrics_render();
  http_reply(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
}

void service_ops_routes(http_server *srv, const char *ctx, service_info *info) {
  static const struct {
    const char *suffix;
    http_handler fn;
  } ops[] = {{"/health", health},
             {"/actuator/health", health},
             {"/ready", ready},
             {"/info", info_handler},
             {"/actuator/info", info_handler},
             {"/metrics", metrics_handler}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    char path[128];
    snprintf(path, sizeof path, "%s%s", ctx, ops[i].suffix);
    http_route(srv, "GET", path, ops[i].fn, info);
  }
}

/* The signals a service handles: SIGTERM and SIGINT stop it; SIGHUP (with_hup) is
 * blocked and ignored. */
static sigset_t stop_signals(bool with_hup) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (with_hup) sigaddset(&set, SIGHUP);
  return set;
}

void service_block_signals(void) {
  sigset_t set = stop_signals(true);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int service_wait_signal(void) {
  sigset_t set = stop_signals(true);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) return sig;
  }
}

int service_http_options(const char *name, long default_port, long default_threads,
                         long default_max_body, http_options *out) {
  long port, threads, timeout, max_body;
  if (cfg_long("HTTP_PORT", default_port, 0, 65535, &port) ||
      cfg_long("HTTP_THREADS", default_threads, 1, 256, &threads) ||
      cfg_long("HTTP_TIMEOUT_S", 30, 1, 3600, &timeout) ||
      cfg_long("HTTP_MAX_BODY", default_max_body, 1024, 1L << 30, &max_body))
    return -1;
  *out = (http_options){.service = name,
                        .host = cfg_str("HTTP_HOST", "127.0.0.1"),
                        .port = (int)port,
                        .threads = (int)threads,
                        .timeout_s = (int)timeout,
                        .max_body = (size_t)max_body,
                        .cors_origins = cfg_str("CORS_ALLOWED_ORIGINS", "*")};
  authz_init(); /* reads GATEWAY_PROOF_SECRET now, so a missing one is logged at start */
  return 0;
}

bool service_signalled_within(long ms) {
  sigset_t set = stop_signals(false);
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  return sigtimedwait(&set, NULL, &ts) > 0;
}

/* The defaults every service shares, in one place. */
#define SERVICE_MONGODB_URI "mongodb://127.0.0.1:27017"
#define SERVICE_AMQP_URL "amqp://guest:guest@127.0.0.1:5672/%2F"
#define SERVICE_EXCHANGE "voter.events"

static void print_usage(FILE *out, const service_spec *spec) {
  fprintf(out,
          "usage: voter-%s [--help]\n\n%s\nConfiguration (environment):\n"
          "  HTTP_HOST            listen address (default 127.0.0.1)\n"
          "  HTTP_PORT            listen port (default %ld)\n"
          "  HTTP_THREADS         worker threads (default %ld)\n"
          "  HTTP_TIMEOUT_S       idle connection timeout in seconds (default 30)\n"
          "  HTTP_MAX_BODY        request body limit in bytes (default %ld)\n"
          "  CORS_ALLOWED_ORIGINS '*' reflects any origin (default), a comma list, or '' for none\n"
          "  MONGODB_URI          MongoDB connection string (default " SERVICE_MONGODB_URI ")\n"
          "  MONGODB_DATABASE     database name (default %s)\n"
          "  AMQP_URL             RabbitMQ URL (default %s), or a\n"
          "                       comma-separated list of a cluster's nodes' URLs (fails over)\n"
          "  AMQP_EXCHANGE        events exchange (default " SERVICE_EXCHANGE ")\n"
          "  AMQP_QUEUE_PREFIX    prefix for every queue name (default none)\n",
          spec->name, spec->about, spec->port, spec->threads, spec->max_body, spec->name,
          SERVICE_AMQP_URL);
  if (spec->outbox)
    fprintf(out,
            "  EVENT_SOURCE         CloudEvents source (default /%s)\n"
            "  OUTBOX_POLL_MS       outbox scan interval when idle (default 1000)\n"
            "  OUTBOX_RELAY_PAUSED  true: never publish (fault injection for tests; default false)\n",
            spec->name);
  fprintf(out, "  LOG_LEVEL            debug, info, warn, error (default info)\n%s", spec->options);
}

/* --help/-h: usage on stdout, 0; an unknown argument: usage on stderr, 2; none: -1. */
static int parse_args(int argc, char **argv, const service_spec *spec) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      print_usage(stdout, spec);
      return 0;
    }
    fprintf(stderr, "voter-%s: unknown argument %s\n", spec->name, argv[i]);
    print_usage(stderr, spec);
    return 2;
  }
  return -1;
}

/* The common configuration, then the service's own; -1 (logged) when a value is bad. */
static int configure(service *svc, long *poll_ms, bool *paused) {
  const service_spec *spec = svc->spec;
  static char source[64]; /* one service a process */
  snprintf(source, sizeof source, "/%s", spec->name);
  svc->amqp_url = cfg_str("AMQP_URL", SERVICE_AMQP_URL);
  svc->exchange = cfg_str("AMQP_EXCHANGE", SERVICE_EXCHANGE);
  svc->queue_prefix = cfg_str("AMQP_QUEUE_PREFIX", "");
  svc->event_source = spec->outbox ? cfg_str("EVENT_SOURCE", source) : NULL;
  *poll_ms = 1000;
  *paused = false;
  if (service_http_options(spec->name, spec->port, spec->threads, spec->max_body, &svc->http) ||
      (spec->outbox && (cfg_long("OUTBOX_POLL_MS", 1000, 10, 600000, poll_ms) ||
                        cfg_bool("OUTBOX_RELAY_PAUSED", false, paused))))
    return -1;
  return spec->configure ? spec->configure(svc) : 0;
}

/* The database handle, the outbox relay and the service's modules; 0 or an exit status. */
static int open_all(service *svc, long poll_ms, bool paused) {
  char appname[64];
  snprintf(appname, sizeof appname, "voter-%s", svc->spec->name);
  svc->db = mongo_db_open(cfg_str("MONGODB_URI", SERVICE_MONGODB_URI),
                          cfg_str("MONGODB_DATABASE", svc->spec->name), appname);
  if (!svc->db) return 1;
  svc->info.db = svc->db;
  if (svc->spec->outbox) {
    ev_relay_options ropts = {.db = svc->db, .collections = svc->spec->outbox,
                              .amqp_url = svc->amqp_url, .exchange = svc->exchange,
                              .poll_ms = (int)poll_ms, .paused = paused};
    svc->relay = ev_relay_start(&ropts);
    if (!svc->relay) return 1;
    svc->info.relay = svc->relay;
  }
  return svc->spec->open ? svc->spec->open(svc) : 0;
}

/* Indexes need the database; retried in the main thread while watching for a stop
 * signal. false when a signal came first. */
static bool init_until_signal(service *svc) {
  while (svc->spec->init && !svc->spec->init(svc))
    if (service_signalled_within(1000)) return false;
  return true;
}

/* Routes, start-up work, listening; 0, or the exit status to stop with. */
static int serve(service *svc) {
  const service_spec *spec = svc->spec;
  char ctx[64];
  snprintf(ctx, sizeof ctx, "/%s", spec->name);
  svc->srv = http_server_new(&svc->http);
  if (!svc->srv) return 1;
  service_ops_routes(svc->srv, ctx, &svc->info);
  if (spec->routes && !spec->routes(svc, svc->srv)) return 1;
  if (!init_until_signal(svc)) return -1;
  if (spec->start && !spec->start(svc)) return 1;
  if (http_server_start(svc->srv) != 0) return 1;
  log_fields(LOG_INFO, "listening",
             json_pack("{s:s, s:i}", "host", svc->http.host, "port", http_server_port(svc->srv)));
  atomic_store(&svc->info.ready, true);
  log_info("ready");
  return 0;
}

/* Serves until SIGTERM/SIGINT, doing the periodic work in between. */
static void wait_for_stop(service *svc) {
  if (!svc->spec->tick) {
    log_info("stopping on signal %d", service_wait_signal());
    return;
  }
  while (!service_signalled_within(svc->tick_ms)) svc->spec->tick(svc);
  log_info("stopping");
}

/* The one tear-down path. Order matters: stop taking requests (in-flight ones finish),
 * stop consumers and threads, flush the outbox relay, close the stores, the database. */
static void tear_down(service *svc) {
  if (svc->spec->stopping) svc->spec->stopping(svc);
  http_server_free(svc->srv);
  if (svc->spec->stop) svc->spec->stop(svc);
  ev_relay_stop(svc->relay);
  if (svc->spec->close) svc->spec->close(svc);
  mongo_db_close(svc->db);
}

/* libcurl's allocations under the same out-of-memory policy as everything else. */
static void *curl_xmalloc(size_t n) { return xalloc_malloc(n, "libcurl"); }
static void *curl_xrealloc(void *p, size_t n) { return xalloc_realloc(p, n, "libcurl"); }
static char *curl_xstrdup(const char *s) { return xalloc_strdup(s, "libcurl"); }
static void *curl_xcalloc(size_t c, size_t n) { return xalloc_calloc(c, n, "libcurl"); }

int service_run(int argc, char **argv, const service_spec *spec) {
  int rc = parse_args(argc, argv, spec);
  if (rc >= 0) return rc;
  xalloc_install(); /* before any jansson or libbson allocation */
  log_init(spec->name, cfg_str("LOG_LEVEL", "info"));
  service svc = {.spec = spec};
  svc.info = (service_info){.name = spec->name, .version = VOTER_VERSION,
                            .commit = VOTER_GIT_COMMIT, .started = util_monotonic()};
  long poll_ms;
  bool paused;
  if (configure(&svc, &poll_ms, &paused) != 0) return 2;
  mq_set_queue_prefix(svc.queue_prefix);
  service_block_signals(); /* before any thread, so every thread inherits the mask */
  mongo_global_init();
  /* before any thread too: curl_global_init is not thread-safe */
  if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, curl_xmalloc, free, curl_xrealloc, curl_xstrdup,
                           curl_xcalloc) != CURLE_OK) {
    log_error("cannot initialise libcurl");
    mongo_global_cleanup();
    return 1;
  }
  rc = open_all(&svc, poll_ms, paused);
  if (rc == 0) rc = serve(&svc);
  if (rc == 0) wait_for_stop(&svc);
  if (rc < 0) rc = 0; /* a stop signal during start-up */
  tear_down(&svc);
  curl_global_cleanup();
  mongo_global_cleanup();
  metrics_reset();
  if (rc == 0) log_info("stopped");
  return rc;
}
