/* app — the voter service's parts (replica consumer, bulk ingestion, live results) and
 * their life cycle, in the order service_run drives it (see main.c and voter/service.h).
 * Prefix voter_app_. */
#ifndef VOTER_APP_H
#define VOTER_APP_H

#include "routes.h"
#include "voter/service.h"

/* Reads the service's own configuration; -1 (logged) when a value is bad. Sets
 * svc->tick_ms to the reconciliation period (RECONCILE_S). */
int voter_app_configure(voter_app *app, service *svc);
/* The HTTP routes and the live-results hub they serve; false when the hub cannot start. */
bool voter_app_routes(voter_app *app, service *svc, http_server *srv);
/* Indexes and the recount of votes a crash left uncounted (before results are served). */
bool voter_app_init(voter_app *app, service *svc);
/* The replica consumer and bulk ingestion. */
bool voter_app_start(voter_app *app, service *svc);
/* Votes left uncounted by an interrupted write (older than the period, so live requests
 * are never raced) get their elections recounted. */
void voter_app_reconcile(voter_app *app, service *svc);
/* Before the HTTP server stops: ends the open result streams. */
void voter_app_stopping(voter_app *app);
/* After it: the hub, bulk ingestion, the replica consumer. */
void voter_app_stop(voter_app *app);

#endif
