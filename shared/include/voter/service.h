/* service — what every service has in common: the operational endpoints under its
 * context path (health, ready, info, metrics) and signal handling for graceful stop
 * (prefix service_). */
#ifndef VOTER_SERVICE_H
#define VOTER_SERVICE_H

#include <stdbool.h>

#include "voter/events.h"
#include "voter/http.h"
#include "voter/mongo.h"

typedef struct service_info {
  const char *name;    /* "election" */
  const char *version; /* release version */
  const char *commit;  /* git commit */
  mongo_db *db;
  ev_relay *relay;     /* may be NULL */
  double started;      /* util_monotonic() at start */
  volatile bool ready; /* set once start-up work (indexes) is done */
} service_info;

/* GET <ctx>/health (liveness: the process serves), <ctx>/ready (the database answers; the
 * broker is reported but does not fail readiness, because writes still succeed through
 * the outbox while it is away), <ctx>/info and <ctx>/metrics, plus the Spring Boot
 * actuator aliases <ctx>/actuator/health and <ctx>/actuator/info. */
void service_ops_routes(http_server *srv, const char *ctx, service_info *info);

/* Handles the command line every service has: --help/-h prints usage and returns 0, an
 * unknown argument prints it to stderr and returns 2, nothing returns -1 (go on). */
int service_args(int argc, char **argv, const char *program, const char *usage);

/* The HTTP options every service reads from the environment: HTTP_HOST (127.0.0.1),
 * HTTP_PORT (default_port), HTTP_THREADS (default_threads), HTTP_TIMEOUT_S (30),
 * HTTP_MAX_BODY (default_max_body), CORS_ALLOWED_ORIGINS ("*"). -1 (logged) on a bad value.
 * Also reads GATEWAY_PROOF_SECRET (authz_init), so a service without it says so at start. */
int service_http_options(const char *name, long default_port, long default_threads,
                         long default_max_body, http_options *out);

/* Waits up to ms for SIGTERM/SIGINT (blocked by service_block_signals); true when one came. */
bool service_signalled_within(long ms);

/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread; call before starting any thread
 * so every thread inherits the mask and only service_wait_signal receives them. */
void service_block_signals(void);
/* Waits for SIGTERM or SIGINT (SIGHUP is ignored) and returns the signal number. */
int service_wait_signal(void);

#endif
