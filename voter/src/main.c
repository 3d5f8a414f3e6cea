/* main — the voter service: configuration, wiring, start and graceful stop.
 *
 * Owns votes and their tallies; keeps replicas of candidates and elections fed by events;
 * bulk ingestion through a durable work queue. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "replicas.h"
#include "routes.h"
#include "stream.h"
#include "votes.h"
#include "voter/amqp.h"
#include "voter/config.h"
#include "voter/http.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/mongo.h"
#include "voter/replica.h"
#include "voter/service.h"
#include "voter/util.h"

#ifndef VOTER_VERSION
#define VOTER_VERSION "dev"
#endif
#ifndef VOTER_GIT_COMMIT
#define VOTER_GIT_COMMIT "unknown"
#endif

static const char usage[] =
    "usage: voter-voter [--help]\n"
    "\n"
    "The voter service of the Voter API: votes, results and winners under /voter, replicas\n"
    "of candidates and elections fed by events, simulation and bulk ingestion.\n"
    "\n"
    "Configuration (environment):\n"
    "  HTTP_HOST, HTTP_PORT (default 8083), HTTP_THREADS, HTTP_TIMEOUT_S, HTTP_MAX_BODY,\n"
    "  CORS_ALLOWED_ORIGINS, MONGODB_URI, MONGODB_DATABASE (default voter), AMQP_URL,\n"
    "  AMQP_EXCHANGE, AMQP_QUEUE_PREFIX, LOG_LEVEL   as for every service (see README)\n"
    "  CANDIDATE_URL        candidate service, asked to replay by POST /voter/drop/candidates\n"
    "                       (default http://127.0.0.1:8082)\n"
    "  REPLICA_QUEUE        queue feeding the replicas (default voter.replicas)\n"
    "  REPLICA_RETRY_MS     delay before a failed event is retried (default 1000)\n"
    "  REPLICA_MAX_ATTEMPTS attempts before an event is dead-lettered (default 5)\n"
    "  BATCH_CHUNK          votes per work-queue message for bulk ingestion (default 500)\n"
    "  RECONCILE_S          how often uncounted votes are looked for (default 30)\n"
    "  VOTER_INSTANCE       this replica's name, unique among the live replicas sharing the\n"
    "                       database (1-32 of A-Z a-z 0-9 . _ -; default 0): its tally shard\n"
    "  STREAM_HEARTBEAT_S, STREAM_MIN_INTERVAL_MS, STREAM_RECHECK_MS, STREAM_MAX\n"
    "                       live results (GET /voter/results/{election}/stream): heartbeat\n"
    "                       (default 15 s), least time between two events of an election\n"
    "                       (250 ms), re-read of watched elections without an announcement\n"
    "                       (1000 ms), open streams per process (1000)\n"
    "  GATEWAY_PROOF_SECRET the secret shared with the gateway: drops, simulation and deleting\n"
    "                       a vote need its proof with the admin scope (unset: refused, 403)\n";

int main(int argc, char **argv) {
  int args = service_args(argc, argv, "voter-voter", usage);
  if (args >= 0) return args;
  log_init("voter", cfg_str("LOG_LEVEL", "info"));
  long retry_ms, attempts, chunk, reconcile_s;
  http_options hopts;
  if (service_http_options("voter", 8083, 4, 1048576, &hopts) ||
      cfg_long("REPLICA_RETRY_MS", 1000, 10, 3600000, &retry_ms) ||
      cfg_long("REPLICA_MAX_ATTEMPTS", 5, 1, 1000, &attempts) ||
      cfg_long("BATCH_CHUNK", 500, 1, 10000, &chunk) ||
      cfg_long("RECONCILE_S", 30, 1, 86400, &reconcile_s))
    return 2;
  stream_options sopts;
  if (stream_options_from_env(&sopts)) return 2;

  mq_set_queue_prefix(cfg_str("AMQP_QUEUE_PREFIX", ""));
  service_block_signals();
  mongo_global_init();
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = 1;
  const char *amqp_url = cfg_str("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F");
  const char *exchange = cfg_str("AMQP_EXCHANGE", "voter.events");
  service_info info = {.name = "voter", .version = VOTER_VERSION, .commit = VOTER_GIT_COMMIT,
                       .started = util_monotonic()};
  voter_app app = {.candidate_url = cfg_str("CANDIDATE_URL", "http://127.0.0.1:8082")};
  http_server *srv = NULL;
  replica_consumer *consumer = NULL;
  mongo_db *db = mongo_db_open(cfg_str("MONGODB_URI", "mongodb://127.0.0.1:27017"),
                               cfg_str("MONGODB_DATABASE", "voter"), "voter-voter");
  if (!db) goto out;
  info.db = db;
  app.db = db;

  static const replica_source sources[] = {
      {"candidate", "candidates", replicas_candidate_required},
      {"election", "elections", replicas_election_required},
  };
  srv = http_server_new(&hopts);
  if (!srv) goto out;
  service_ops_routes(srv, "/voter", &info);
  voter_routes(srv, &app);
  app.stream = stream_hub_start(db, amqp_url, exchange, &sopts);
  if (!app.stream) goto out;
  stream_routes(srv, app.stream);

  /* Indexes and the recount of votes a crash left uncounted come before serving results. */
  for (;;) {
    int recounted;
    if (votes_init(db) && replica_init(db, &sources[0]) && replica_init(db, &sources[1]) &&
        batch_init(db) && votes_reconcile(db, 0, &recounted) == VS_OK)
      break;
    if (service_signalled_within(1000)) {
      rc = 0;
      goto out;
    }
  }
  replica_options ropts = {.db = db, .amqp_url = amqp_url, .exchange = exchange,
                           .queue = cfg_str("REPLICA_QUEUE", "voter.replicas"),
                           .sources = sources, .nsources = 2,
                           .retry_delay_ms = (int)retry_ms, .max_attempts = (int)attempts};
  consumer = replica_consumer_start(&ropts);
  app.batch = batch_start(db, amqp_url, exchange, (int)chunk);
  if (!consumer || !app.batch) goto out;
  if (http_server_start(srv) != 0) goto out;
  info.ready = true;
  log_fields(LOG_INFO, "ready", json_pack("{s:s, s:i}", "host", hopts.host, "port", http_server_port(srv)));

  /* Periodic reconciliation: votes left uncounted by an interrupted write (older than the
   * period, so live requests are never raced) get their elections recounted. */
  while (!service_signalled_within(reconcile_s * 1000)) {
    int recounted;
    votes_reconcile(db, reconcile_s * 1000, &recounted);
  }
  log_info("stopping");
  rc = 0;
out:
  stream_hub_shutdown(app.stream);
  http_server_free(srv);
  stream_hub_free(app.stream);
  batch_stop(app.batch);
  replica_consumer_stop(consumer);
  mongo_db_close(db);
  curl_global_cleanup();
  mongo_global_cleanup();
  metrics_reset();
  if (rc == 0) log_info("stopped");
  return rc;
}
