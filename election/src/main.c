/* main — the election service: its parts wired into service_run (see voter/service.h).
 *
 * Owns elections; publishes election.created|updated|deleted through the outbox. */
#include "election.h"
#include "routes.h"
#include "voter/service.h"

static entity_store *store;

static int open_store(service *svc) {
  store = entity_store_open(svc->db, svc->relay, svc->event_source, &election_kind, NULL);
  return store ? 0 : 1;
}
static bool routes(service *svc, http_server *srv) {
  (void)svc;
  election_routes(srv, store);
  return true;
}
static bool init(service *svc) { return (void)svc, entity_store_init(store); }
static void close_store(service *svc) { (void)svc, entity_store_close(store); }

static const char *const outbox[] = {"elections", NULL};
static const service_spec spec = {
    .name = "election",
    .about = "The election service of the Voter API: CRUD of elections under /election, events\n"
             "election.created|updated|deleted published through a transactional outbox.\n",
    .options = "  GATEWAY_PROOF_SECRET the secret shared with the gateway: drops and replays need\n"
               "                       its proof with the admin scope (unset: they are refused, 403)\n",
    .port = 8081, .threads = 4, .max_body = 1048576, .outbox = outbox,
    .open = open_store, .routes = routes, .init = init, .close = close_store};

int main(int argc, char **argv) { return service_run(argc, argv, &spec); }
