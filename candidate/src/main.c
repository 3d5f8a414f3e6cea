/* main — the candidate service wired into service_run (voter/service.h): candidates with
 * candidate.* events through the outbox, and a replica of the election service's
 * elections fed by election.* events. --help text in usage.h. */
#include "candidate.h"
#include "elections.h"
#include "routes.h"
#include "usage.h"
#include "voter/config.h"
#include "voter/service.h"

static candidate_api api;
static long retry_ms, attempts;

static int configure(service *svc) {
  (void)svc;
  return cfg_long("REPLICA_RETRY_MS", 1000, 10, 3600000, &retry_ms) ||
                 cfg_long("REPLICA_MAX_ATTEMPTS", 5, 1, 1000, &attempts) ? -1 : 0;
}
/* The consumer starts now: events that arrive while the database is away are retried. */
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
  return (void)svc, candidate_routes(srv, &api), true;
}
static bool init(service *svc) {
  return entity_store_init(api.store) && candidate_indexes(svc->db) && elections_init(api.replica);
}
static void stop(service *svc) { (void)svc, elections_close(api.replica); }
static void close_store(service *svc) { (void)svc, entity_store_close(api.store); }

static const char *const outbox[] = {"candidates", NULL};
static const service_spec spec = {
    .name = "candidate", .about = CANDIDATE_ABOUT, .options = CANDIDATE_OPTIONS, .port = 8082,
    .threads = 4, .max_body = 1048576, .outbox = outbox, .configure = configure,
    .open = open_parts, .routes = routes, .init = init, .stop = stop, .close = close_store};

int main(int argc, char **argv) { return service_run(argc, argv, &spec); }
