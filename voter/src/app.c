/* app — the voter service's parts and their life cycle; see app.h. */
#include "app.h"

#include "replicas.h"
#include "votes.h"
#include "voter/config.h"
#include "voter/replica.h"

static const replica_source sources[] = {
    {"candidate", "candidates", replicas_candidate_required},
    {"election", "elections", replicas_election_required},
};

int voter_app_configure(voter_app *app, service *svc) {
  long reconcile_s;
  app->candidate_url = cfg_str("CANDIDATE_URL", "http://127.0.0.1:8082");
  app->candidate_api_key = cfg_str("CANDIDATE_API_KEY", NULL);
  if (cfg_long("REPLICA_RETRY_MS", 1000, 10, 3600000, &app->retry_ms) ||
      cfg_long("REPLICA_MAX_ATTEMPTS", 5, 1, 1000, &app->max_attempts) ||
      cfg_long("BATCH_CHUNK", 2000, 1, 10000, &app->chunk) ||
      cfg_long("INGEST_WORKERS", 3, 1, 16, &app->ingest_workers) ||
      cfg_long("RECONCILE_S", 30, 1, 86400, &reconcile_s) ||
      stream_options_from_env(&app->stream_opts))
    return -1;
  svc->tick_ms = reconcile_s * 1000;
  return 0;
}

bool voter_app_routes(voter_app *app, service *svc, http_server *srv) {
  app->db = svc->db;
  voter_routes(srv, app);
  app->stream = stream_hub_start(svc->db, svc->amqp_url, svc->exchange, &app->stream_opts);
  if (!app->stream) return false;
  stream_routes(srv, app->stream);
  return true;
}

bool voter_app_init(voter_app *app, service *svc) {
  (void)app;
  int recounted;
  return votes_init(svc->db) && replica_init(svc->db, &sources[0]) &&
         replica_init(svc->db, &sources[1]) && batch_init(svc->db) &&
         votes_reconcile(svc->db, 0, &recounted) == VS_OK;
}

bool voter_app_start(voter_app *app, service *svc) {
  replica_options o = {.db = svc->db,
                       .amqp_url = svc->amqp_url,
                       .exchange = svc->exchange,
                       .queue = cfg_str("REPLICA_QUEUE", "voter.replicas"),
                       .sources = sources,
                       .nsources = 2,
                       .retry_delay_ms = (int)app->retry_ms,
                       .max_attempts = (int)app->max_attempts};
  app->consumer = replica_consumer_start(&o);
  app->batch = batch_start(svc->db, svc->amqp_url, svc->exchange, (int)app->chunk,
                           (int)app->ingest_workers);
  return app->consumer && app->batch;
}

void voter_app_reconcile(voter_app *app, service *svc) {
  int recounted;
  votes_reconcile(app->db, svc->tick_ms, &recounted);
}

void voter_app_stopping(voter_app *app) { stream_hub_shutdown(app->stream); }

void voter_app_stop(voter_app *app) {
  stream_hub_free(app->stream);
  batch_stop(app->batch);
  replica_consumer_stop(app->consumer);
  votes_stop(); /* the tallied flags still queued, before the database handle closes */
}
