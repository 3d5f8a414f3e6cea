/* main — the voter service: its parts wired into service_run (see voter/service.h).
 *
 * Owns votes and their tallies; keeps replicas of candidates and elections fed by events;
 * bulk ingestion through a durable work queue. */
#include "batch.h"
#include "replicas.h"
#include "routes.h"
#include "stream.h"
#include "usage.h"
#include "votes.h"
#include "voter/config.h"
#include "voter/replica.h"
#include "voter/service.h"

static voter_app app;
static stream_options sopts;
static replica_consumer *consumer;
static long retry_ms, attempts, chunk, reconcile_s;
static const replica_source sources[] = {{"candidate", "candidates", replicas_candidate_required},
                                         {"election", "elections", replicas_election_required}};

static int configure(service *svc) {
  app.candidate_url = cfg_str("CANDIDATE_URL", "http://127.0.0.1:8082");
  app.candidate_api_key = cfg_str("CANDIDATE_API_KEY", NULL);
  int bad = cfg_long("REPLICA_RETRY_MS", 1000, 10, 3600000, &retry_ms) ||
            cfg_long("REPLICA_MAX_ATTEMPTS", 5, 1, 1000, &attempts) ||
            cfg_long("BATCH_CHUNK", 500, 1, 10000, &chunk) ||
            cfg_long("RECONCILE_S", 30, 1, 86400, &reconcile_s) || stream_options_from_env(&sopts);
  svc->tick_ms = reconcile_s * 1000;
  return bad ? -1 : 0;
}
static bool routes(service *svc, http_server *srv) {
  app.db = svc->db;
  voter_routes(srv, &app);
  if (!(app.stream = stream_hub_start(svc->db, svc->amqp_url, svc->exchange, &sopts))) return false;
  stream_routes(srv, app.stream);
  return true;
}
/* Indexes and the recount of votes a crash left uncounted come before serving results. */
static bool init(service *svc) {
  int recounted;
  return votes_init(svc->db) && replica_init(svc->db, &sources[0]) &&
         replica_init(svc->db, &sources[1]) && batch_init(svc->db) &&
         votes_reconcile(svc->db, 0, &recounted) == VS_OK;
}
static bool start(service *svc) {
  replica_options o = {.db = svc->db, .amqp_url = svc->amqp_url, .exchange = svc->exchange,
                       .queue = cfg_str("REPLICA_QUEUE", "voter.replicas"), .sources = sources,
                       .nsources = 2, .retry_delay_ms = (int)retry_ms, .max_attempts = (int)attempts};
  consumer = replica_consumer_start(&o);
  app.batch = batch_start(svc->db, svc->amqp_url, svc->exchange, (int)chunk);
  return consumer && app.batch;
}
/* Votes left uncounted by an interrupted write (older than the period, so live requests
 * are never raced) get their elections recounted. */
static void reconcile(service *svc) {
  int recounted;
  votes_reconcile(svc->db, svc->tick_ms, &recounted);
}
static void stopping(service *svc) { (void)svc, stream_hub_shutdown(app.stream); }
static void stop(service *svc) {
  (void)svc;
  stream_hub_free(app.stream);
  batch_stop(app.batch);
  replica_consumer_stop(consumer);
}

static const service_spec spec = {
    .name = "voter", .about = VOTER_ABOUT, .options = VOTER_OPTIONS, .port = 8083, .threads = 4,
    .max_body = 1048576, .configure = configure, .routes = routes, .init = init, .start = start,
    .tick = reconcile, .stopping = stopping, .stop = stop};

int main(int argc, char **argv) { return service_run(argc, argv, &spec); }
