/* main — the candidate service: configuration, wiring, start and graceful stop.
 *
 * Owns candidates; publishes candidate.created|updated|deleted through the outbox; keeps
 * a replica of the election service's elections fed by election.* events. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "candidate.h"
#include "elections.h"
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
    "usage: voter-candidate [--help]\n"
    "\n"
    "The candidate service of the Voter API: CRUD of candidates under /candidate, events\n"
    "candidate.created|updated|deleted published through a transactional outbox, and a\n"
    "read-only replica of the election service's elections fed by election.* events\n"
    "(queue candidate.elections, with .retry and .dlq). A candidate's election must be in\n"
    "the replica.\n"
    "\n"
    "Configuration (environment):\n"
    "  HTTP_HOST            listen address (default 127.0.0.1)\n"
    "  HTTP_PORT            listen port (default 8082)\n"
    "  HTTP_THREADS         worker threads (default 4)\n"
    "  HTTP_TIMEOUT_S       idle connection timeout in seconds (default 30)\n"
    "  HTTP_MAX_BODY        request body limit in bytes (default 1048576)\n"
    "  CORS_ALLOWED_ORIGINS '*' reflects any origin (default), a comma list, or '' for none\n"
    "  MONGODB_URI          MongoDB connection string (default mongodb://127.0.0.1:27017)\n"
    "  MONGODB_DATABASE     database name (default candidate)\n"
    "  AMQP_URL             RabbitMQ URL (default amqp://guest:guest@127.0.0.1:5672/%2F), or a\n"
    "                       comma-separated list of a cluster's nodes' URLs (fails over)\n"
    "  AMQP_EXCHANGE        events exchange (default voter.events)\n"
    "  EVENT_SOURCE         CloudEvents source (default /candidate)\n"
    "  OUTBOX_POLL_MS       outbox scan interval when idle (default 1000)\n"
    "  OUTBOX_RELAY_PAUSED  true: never publish (fault injection for tests; default false)\n"
    "  AMQP_QUEUE_PREFIX    prefix for every queue name (default none)\n"
    "  REPLICA_QUEUE        queue feeding the election replica (default candidate.elections;\n"
    "                       its retry and dead-letter queues add .retry and .dlq)\n"
    "  REPLICA_RETRY_MS     delay before a failed event is retried (default 1000)\n"
    "  REPLICA_MAX_ATTEMPTS attempts before an event is dead-lettered (default 5)\n"
    "  ELECTION_URL         the election service, asked to replay by POST\n"
    "                       /candidate/drop/elections (default http://127.0.0.1:8081)\n"
    "  ELECTION_API_KEY     X-API-Key for that request, when ELECTION_URL is a gateway\n"
    "                       (default: none)\n"
    "  LOG_LEVEL            debug, info, warn, error (default info)\n"
    "  GATEWAY_PROOF_SECRET the secret shared with the gateway: drops and replays need\n"
    "                       its proof with the admin scope (unset: they are refused, 403)\n";

int main(int argc, char **argv) {
  int args = service_args(argc, argv, "voter-candidate", usage);
  if (args >= 0) return args;
  log_init("candidate", cfg_str("LOG_LEVEL", "info"));
  long poll_ms, retry_delay, max_attempts;
  bool paused;
  http_options hopts;
  if (service_http_options("candidate", 8082, 4, 1048576, &hopts) ||
      cfg_long("OUTBOX_POLL_MS", 1000, 10, 600000, &poll_ms) ||
      cfg_bool("OUTBOX_RELAY_PAUSED", false, &paused) ||
      cfg_long("REPLICA_RETRY_MS", 1000, 10, 3600000, &retry_delay) ||
      cfg_long("REPLICA_MAX_ATTEMPTS", 5, 1, 1000, &max_attempts))
    return 2;

  mq_set_queue_prefix(cfg_str("AMQP_QUEUE_PREFIX", ""));
  service_block_signals();
  mongo_global_init();
  /* before any thread: curl_global_init is not thread-safe */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    log_error("cannot initialise libcurl");
    mongo_global_cleanup();
    return 1;
  }
  int rc = 1;
  service_info info = {.name = "candidate", .version = VOTER_VERSION, .commit = VOTER_GIT_COMMIT,
                       .started = util_monotonic()};
  const char *amqp_url = cfg_str("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F");
  const char *exchange = cfg_str("AMQP_EXCHANGE", "voter.events");
  http_server *srv = NULL;
  entity_store *store = NULL;
  elections *replica = NULL;
  ev_relay *relay = NULL;
  mongo_db *db = mongo_db_open(cfg_str("MONGODB_URI", "mongodb://127.0.0.1:27017"),
                               cfg_str("MONGODB_DATABASE", "candidate"), "voter-candidate");
  if (!db) goto out;
  info.db = db;

  static const char *const collections[] = {"candidates", NULL};
  ev_relay_options ropts = {.db = db,
                            .collections = collections,
                            .amqp_url = amqp_url,
                            .exchange = exchange,
                            .poll_ms = (int)poll_ms,
                            .paused = paused};
  relay = ev_relay_start(&ropts);
  if (!relay) goto out;
  info.relay = relay;

  elections_options eopts = {.db = db,
                             .election_url = cfg_str("ELECTION_URL", "http://127.0.0.1:8081"),
                             .api_key = cfg_str("ELECTION_API_KEY", NULL),
                             .amqp_url = amqp_url,
                             .exchange = exchange,
                             .queue = cfg_str("REPLICA_QUEUE", "candidate.elections"),
                             .retry_delay_ms = (int)retry_delay,
                             .max_attempts = (int)max_attempts};
  replica = elections_open(&eopts);
  if (!replica) goto out;
  store = entity_store_open(db, relay, cfg_str("EVENT_SOURCE", "/candidate"), &candidate_kind,
                            replica);
  if (!store) goto out;
  /* Events that arrive while the database is still away go through the retry queue. */
  if (!elections_start_consumer(replica)) goto out;

  candidate_api api = {.store = store, .replica = replica};
  srv = http_server_new(&hopts);
  if (!srv) goto out;
  service_ops_routes(srv, "/candidate", &info);
  candidate_routes(srv, &api);
  if (http_server_start(srv) != 0) goto out;
  log_fields(LOG_INFO, "listening",
             json_pack("{s:s, s:i}", "host", hopts.host, "port", http_server_port(srv)));

  /* Indexes need the database; until they exist /ready says DOWN. Retry in the main thread
   * while also watching for a stop signal. */
  while (!(entity_store_init(store) && candidate_indexes(db) && elections_init(replica))) {
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
  /* Order matters: stop taking requests (in-flight ones finish), stop consuming (the
   * message in hand is acked or handed back), flush the outbox relay, then close the
   * database. */
  http_server_free(srv);
  elections_close(replica);
  ev_relay_stop(relay);
  entity_store_close(store);
  mongo_db_close(db);
  curl_global_cleanup();
  mongo_global_cleanup();
  metrics_reset();
  if (rc == 0) log_info("stopped");
  return rc;
}
