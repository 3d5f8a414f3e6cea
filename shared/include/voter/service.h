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

/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread; call before starting any thread
 * so every thread inherits the mask and only service_wait_signal receives them. */
void service_block_signals(void);
/* Waits for SIGTERM or SIGINT (SIGHUP is ignored) and returns the signal number. */
int service_wait_signal(void);

#endif
