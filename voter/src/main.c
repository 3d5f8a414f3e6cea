/* main — the voter service wired into service_run (voter/service.h): votes and their
 * tallies, replicas of candidates and elections fed by events, bulk ingestion, live
 * results. Its parts' life cycle is in app.c, --help in usage.h. */
#include "app.h"
#include "usage.h"

static voter_app app;

static int configure(service *s) { return voter_app_configure(&app, s); }
static bool routes(service *s, http_server *srv) { return voter_app_routes(&app, s, srv); }
static bool init(service *s) { return voter_app_init(&app, s); }
static bool start(service *s) { return voter_app_start(&app, s); }
static void reconcile(service *s) { voter_app_reconcile(&app, s); }
static void stopping(service *s) { (void)s, voter_app_stopping(&app); }
static void stop(service *s) { (void)s, voter_app_stop(&app); }

static const service_spec spec = {
    .name = "voter", .about = VOTER_ABOUT, .options = VOTER_OPTIONS, .port = 8083, .threads = 4,
    .max_body = 1048576, .configure = configure, .routes = routes, .init = init, .start = start,
    .tick = reconcile, .stopping = stopping, .stop = stop};

int main(int argc, char **argv) { return service_run(argc, argv, &spec); }
