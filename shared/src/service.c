/* service — operational endpoints and signals; see service.h. */
#include "voter/service.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "voter/authz.h"
#include "voter/config.h"
#include "voter/metrics.h"
#include "voter/util.h"

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
  bool ok = db_up && info->ready;
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

void service_block_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int service_wait_signal(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) return sig;
  }
}

int service_args(int argc, char **argv, const char *program, const char *usage) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    fprintf(stderr, "%s: unknown argument %s\n%s", program, argv[i], usage);
    return 2;
  }
  return -1;
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
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  return sigtimedwait(&set, NULL, &ts) > 0;
}
