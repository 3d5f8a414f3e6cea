/* main — the election service: configuration, wiring, start and graceful stop.
 *
 * Owns elections; publishes election.created|updated|deleted through the outbox. */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "election.h"
#include "routes.h"
#include "voter/amqp.h"
#include "voter/config.h"
#include "voter/events.h"
#include "voter/http.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/mongo.h"
#include "voter/service.h"
#include "voter/util.h"

#ifndef VOTER_VERSION
#define VOTER_VERSION "dev"
#endif
#ifndef VOTER_GIT_COMMIT
#define VOTER_GIT_COMMIT "unknown"
#endif

static const char usage[] =
    "usage: voter-election [--help]\n"
    "\n"
    "The election service of the Voter API: CRUD of elections under /election, events\n"
    "election.created|updated|deleted published through a transactional outbox.\n"
    "\n"
    "Configuration (environment):\n"
    "  HTTP_HOST            listen address (default 127.0.0.1)\n"
    "  HTTP_PORT            listen port (default 8081)\n"
    "  HTTP_THREADS         worker threads (default 4)\n"
    "  HTTP_TIMEOUT_S       idle connection timeout in seconds (default 30)\n"
    "  HTTP_MAX_BODY        request body limit in bytes (default 1048576)\n"
    "  CORS_ALLOWED_ORIGINS '*' reflects any origin (default), a comma list, or '' for none\n"
    "  MONGODB_URI          MongoDB connection string (default mongodb://127.0.0.1:27017)\n"
    "  MONGODB_DATABASE     database name (default election)\n"
    "  AMQP_URL             RabbitMQ URL (default amqp://guest:guest@127.0.0.1:5672/%2F), or a\n"
    "                       comma-separated list of a cluster's nodes' URLs (fails over)\n"
    "  AMQP_EXCHANGE        events exchange (default voter.events)\n"
    "  EVENT_SOURCE         CloudEvents source (default /election)\n"
    "  OUTBOX_POLL_MS       outbox scan interval when idle (default 1000)\n"
    "  OUTBOX_RELAY_PAUSED  true: never publish (fault injection for tests; default false)\n"
    "  AMQP_QUEUE_PREFIX    prefix for every queue name (default none)\n"
    "  LOG_LEVEL            debug, info, warn, error (default info)\n"
    "  GATEWAY_PROOF_SECRET the secret shared with the gateway: drops and replays need\n"
    "                       its proof with the admin scope (unset: they are refused, 403)\n";

int main(int argc, char **argv) {
  int args = service_args(argc, argv, "voter-election", usage);
  if (args >= 0) return args;
  log_init("election", cfg_str("LOG_LEVEL", "info"));
  long poll_ms;
  bool paused;
  http_options hopts;
  if (service_http_options("election", 8081, 4, 1048576, &hopts) ||
      cfg_long("OUTBOX_POLL_MS", 1000, 10, 600000, &poll_ms) ||
      cfg_bool("OUTBOX_RELAY_PAUSED", false, &paused))
    return 2;

  mq_set_queue_prefix(cfg_str("AMQP_QUEUE_PREFIX", ""));
  service_block_signals();
  mongo_global_init();
  int rc = 1;
  service_info info = {.name = "election", .version = VOTER_VERSION, .commit = VOTER_GIT_COMMIT,
                       .started = util_monotonic()};
  http_server *srv = NULL;
  entity_store *store = NULL;
  ev_relay *relay = NULL;
  mongo_db *db = mongo_db_open(cfg_str("MONGODB_URI", "mongodb://127.0.0.1:27017"),
                               cfg_str("MONGODB_DATABASE", "election"), "voter-election");
  if (!db) goto out;
  info.db = db;

  static const char *const collections[] = {"elections", NULL};
  ev_relay_options ropts = {.db = db,
                            .collections = collections,
                            .amqp_url = cfg_str("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
                            .exchange = cfg_str("AMQP_EXCHANGE", "voter.events"),
                            .poll_ms = (int)poll_ms,
                            .paused = paused};
  relay = ev_relay_start(&ropts);
  if (!relay) goto out;
  info.relay = relay;
  store = entity_store_open(db, relay, cfg_str("EVENT_SOURCE", "/election"), &election_kind, NULL);
  if (!store) goto out;

  srv = http_server_new(&hopts);
  if (!srv) goto out;
  service_ops_routes(srv, "/election", &info);
  election_routes(srv, store);
  if (http_server_start(srv) != 0) goto out;
  log_fields(LOG_INFO, "listening",
             json_pack("{s:s, s:i}", "host", hopts.host, "port", http_server_port(srv)));

  /* Indexes need the database; until they exist /ready says DOWN. Retry in the main thread
   * while also watching for a stop signal. */
  while (!entity_store_init(store)) {
    if (service_signalled_within(1000)) {
      rc = 0;
      goto out;
    }
  }
  info.ready = true;
  log_info("ready");

  int sig = service_wait_signal();
  log_info("stopping on signal %d", sig);
  rc = 0;
out:
  /* Order matters: stop taking requests (in-flight ones finish), then flush the outbox
   * relay, then close the database. */
  http_server_free(srv);
  ev_relay_stop(relay);
  entity_store_close(store);
  mongo_db_close(db);
  mongo_global_cleanup();
  metrics_reset();
  if (rc == 0) log_info("stopped");
  return rc;
}
