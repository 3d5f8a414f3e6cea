/* main — voter-gateway: configuration, signals, start, reload and drain.
 *
 * The main thread only waits for signals: SIGHUP re-reads the configuration file (a bad
 * file is logged and ignored; the running configuration stays), SIGTERM/SIGINT drain and
 * exit. Everything else happens on the loop threads (proxy.c) and the health thread
 * (upstream.c). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "proxy.h"
#include "ratelimit.h"
#include "streams.h"
#include "upstream.h"
#include "webroot.h"
#include "voter/config.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/xalloc.h"

#ifndef GW_DEFAULT_CONFIG
#define GW_DEFAULT_CONFIG "gateway.example.json"
#endif

static const char usage[] =
    "usage: voter-gateway [--config FILE] [--check] [--help]\n"
    "\n"
    "The public entrance of the Voter API: a reverse proxy with path routing over upstream\n"
    "instances, API keys and tiers, rate limits, body limits, request ids, CORS, access logs\n"
    "and Prometheus metrics. The configuration file (JSON) is described in gateway/README.md.\n"
    "\n"
    "Options:\n"
    "  --config FILE   configuration file (default: $GATEWAY_CONFIG, else\n"
    "                  /etc/voter/gateway.json when it exists, else the example\n"
    "                  configuration of the source tree, " GW_DEFAULT_CONFIG ")\n"
    "  --check         parse the configuration, print any error and exit (0 when valid)\n"
    "  --help          this text\n"
    "\n"
    "Environment (overrides the file):\n"
    "  GATEWAY_CONFIG  configuration file when --config is not given\n"
    "  ELECTION_URL, CANDIDATE_URL, VOTER_URL, JOBS_URL, ...\n"
    "                  any ${VAR} or ${VAR:-default} in an upstream entry of the file is\n"
    "                  replaced by the variable (the example configuration uses these)\n"
    "  HTTP_HOST       listen address (file: listen.host, default 127.0.0.1)\n"
    "  HTTP_PORT       listen port (file: listen.port, default 8080)\n"
    "  HTTP_THREADS    loop threads (file: listen.threads, default 2)\n"
    "  GATEWAY_OPENAPI the OpenAPI document served at /openapi.json (file: openapi;\n"
    "                  relative paths are relative to the configuration file); absent: 404\n"
    "  GATEWAY_WEB_ROOT the web client's folder, served at / and /web/ (default: the\n"
    "                  repo's web/ when present; files are read once, at start-up)\n"
    "  GATEWAY_MAX_STREAMS_PER_CLIENT  open event streams per client address (default 6)\n"
    "  GATEWAY_KEYS_FILE  the API keys, a JSON object {key: tier}, when the file says\n"
    "                  \"keys_file\": \"${GATEWAY_KEYS_FILE:-}\" (the shipped ones do; they hold\n"
    "                  no keys themselves); read again on SIGHUP\n"
    "  GATEWAY_PROOF_SECRET  when set (16 bytes or more; shorter refuses to start), every\n"
    "                  forwarded request carries X-Gateway-Proof, an HMAC the services check\n"
    "                  before admin operations; the same value must be given to them\n"
    "  LOG_LEVEL       debug, info, warn, error (default info); access lines are info\n"
    "\n"
    "Signals:\n"
    "  SIGHUP          reload the configuration (routes, keys and the keys file, tiers,\n"
    "                  scopes, limits, OpenAPI file)\n"
    "                  without dropping a request; the listen address and thread count stay\n"
    "  SIGTERM, SIGINT stop accepting, finish running requests (drain_timeout_s), exit 0\n"
    "\n"
    "Endpoints served by the gateway itself: / and /web/ (the web client; without one, /\n"
    "is a landing page), /openapi.json, /gateway/health, /gateway/metrics.\n";

int main(int argc, char **argv) {
  /* before any jansson allocation (the configuration, every log line): jansson's
   * allocator is xalloc's, so a constructor never returns NULL for want of memory. The
   * gateway uses neither libbson nor libcurl. */
  xalloc_install();
  const char *path = NULL;
  bool check = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else if (strcmp(argv[i], "--check") == 0) {
      check = true;
    } else {
      fprintf(stderr, "voter-gateway: unknown argument %s\n%s", argv[i], usage);
      return 2;
    }
  }
  if (!path) path = cfg_str("GATEWAY_CONFIG", NULL);
  if (!path) path = access("/etc/voter/gateway.json", R_OK) == 0 ? "/etc/voter/gateway.json"
                                                                  : GW_DEFAULT_CONFIG;
  log_init("gateway", cfg_str("LOG_LEVEL", "info"));

  /* signals are taken synchronously by this thread; every other thread blocks them */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  char err[1024];
  gw_conf *c = gw_conf_load(path, err, sizeof err);
  if (!c) {
    if (check) fprintf(stderr, "voter-gateway: %s\n", err);
    log_fields(LOG_ERROR, "invalid configuration", json_pack("{s:s}", "error", err));
    return 2;
  }
  if (check) {
    printf("%s: OK (%d routes, %d tiers, %d keys)\n", path, c->nroutes, c->ntiers, c->nkeys);
    gw_conf_unref(c);
    gw_instance_free_all();
    return 0;
  }

  metrics_describe("gateway_upstream_up", "gauge", "1 when the instance is in rotation.");
  metrics_describe("gateway_upstream_health_check_ok", "gauge", "Result of the last active health check.");
  metrics_describe("gateway_upstream_ejections_total", "counter", "Passive or active ejections, by instance.");
  metrics_describe("gateway_config_reloads_total", "counter", "Configuration reloads, by result.");

  int rc = 1;
  gw_streams_init();
  if (gw_web_load(cfg_str("GATEWAY_WEB_ROOT", GW_DEFAULT_WEB_ROOT)) != 0) goto out;
  if (gw_proxy_start(c) != 0) goto out;
  if (gw_health_start(gw_proxy_conf) != 0) goto out;
  log_fields(LOG_INFO, "listening",
             json_pack("{s:s, s:i, s:i, s:i, s:s, s:b}", "host", c->host, "port", gw_proxy_port(),
                       "threads", c->threads, "routes", c->nroutes, "config", path, "openapi",
                       c->openapi != NULL));
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      gw_conf *next = gw_conf_load(path, err, sizeof err);
      if (!next) {
        metrics_counter_inc("gateway_config_reloads_total", "result=\"error\"");
        log_fields(LOG_ERROR, "reload refused: invalid configuration, keeping the running one",
                   json_pack("{s:s}", "error", err));
        continue;
      }
      gw_proxy_set_conf(next);
      gw_conf_unref(next);
      metrics_counter_inc("gateway_config_reloads_total", "result=\"ok\"");
      log_fields(LOG_INFO, "configuration reloaded",
                 json_pack("{s:s, s:i, s:b}", "config", path, "routes", next->nroutes, "openapi",
                           next->openapi != NULL));
      continue;
    }
    log_fields(LOG_INFO, "draining", json_pack("{s:i}", "signal", sig));
    rc = 0;
    break;
  }
out:
  gw_health_stop();
  gw_proxy_stop();
  gw_conf_unref(c);
  gw_rl_free_all();
  gw_instance_free_all();
  gw_web_free();
  metrics_reset();
  log_info("stopped");
  return rc;
}
