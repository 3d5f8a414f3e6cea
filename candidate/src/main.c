/* main — the candidate service: its parts wired into service_run (see voter/service.h).
 *
 * Owns candidates; publishes candidate.created|updated|deleted through the outbox; keeps
 * a replica of the election service's elections fed by election.* events. */
#include "candidate.h"
#include "elections.h"
#include "routes.h"
#include "voter/config.h"
#include "voter/service.h"

static candidate_api api;
static long retry_ms, attempts;

static int configure(service *svc) {
  (void)svc;
  return cfg_long("REPLICA_RETRY_MS", 1000, 10, 3600000, &retry_ms) ||
                 cfg_long("REPLICA_MAX_ATTEMPTS", 5, 1, 1000, &attempts) ? -1 : 0;
}
/* Events that arrive while the database is still away go through the retry queue. */
static int open_parts(service *svc) {
  elections_options o = {.db = svc->db, .amqp_url = svc->amqp_url, .exchange = svc->exchange,
                         .election_url = cfg_str("ELECTION_URL", "http://127.0.0.1:8081"),
                         .api_key = cfg_str("ELECTION_API_KEY", NULL),
                         .queue = cfg_str("REPLICA_QUEUE", "candidate.elections"),
                         .retry_delay_ms = (int)retry_ms, .max_attempts = (int)attempts};
  if (!(api.replica = elections_open(&o))) return 1;
  api.store = entity_store_open(svc->db, svc->relay, svc->event_source, &candidate_kind,
                                api.replica);
  return api.store && elections_start_consumer(api.replica) ? 0 : 1;
}
static bool routes(service *svc, http_server *srv) {
  (void)svc;
  candidate_routes(srv, &api);
  return true;
}
static bool init(service *svc) {
  return entity_store_init(api.store) && candidate_indexes(svc->db) && elections_init(api.replica);
}
static void stop(service *svc) { (void)svc, elections_close(api.replica); }
static void close_store(service *svc) { (void)svc, entity_store_close(api.store); }

static const char *const outbox[] = {"candidates", NULL};
static const service_spec spec = {
    .name = "candidate", .port = 8082, .threads = 4, .max_body = 1048576, .outbox = outbox,
    .about = "The candidate service of the Voter API: CRUD of candidates under /candidate, events\n"
             "candidate.created|updated|deleted published through a transactional outbox, and a\n"
             "read-only replica of the election service's elections fed by election.* events\n"
             "(queue candidate.elections, with .retry and .dlq). A candidate's election must be in\n"
             "the replica.\n",
    .options = "  REPLICA_QUEUE        queue feeding the election replica (default candidate.elections;\n"
               "                       its retry and dead-letter queues add .retry and .dlq)\n"
               "  REPLICA_RETRY_MS     delay before a failed event is retried (default 1000)\n"
               "  REPLICA_MAX_ATTEMPTS attempts before an event is dead-lettered (default 5)\n"
               "  ELECTION_URL         the election service, asked to replay by POST\n"
               "                       /candidate/drop/elections (default http://127.0.0.1:8081)\n"
               "  ELECTION_API_KEY     X-API-Key for that request, when ELECTION_URL is a gateway\n"
               "                       (default: none)\n"
               "  GATEWAY_PROOF_SECRET the secret shared with the gateway: drops and replays need\n"
               "                       its proof with the admin scope (unset: they are refused, 403)\n",
    .configure = configure, .open = open_parts, .routes = routes, .init = init, .stop = stop,
    .close = close_store};

int main(int argc, char **argv) { return service_run(argc, argv, &spec); }
