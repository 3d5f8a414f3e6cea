/* service — what every service has in common (prefix service_): service_run, the one
 * boot, readiness, serving and tear-down of a service (its main.c only wires its own
 * parts in through a service_spec), the operational endpoints under its context path
 * (health, ready, info, metrics) and signal handling for graceful stop. */
#ifndef VOTER_SERVICE_H
#define VOTER_SERVICE_H

#include <stdatomic.h>
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
  atomic_bool ready;   /* set once start-up work (indexes) is done; read by HTTP threads */
} service_info;

/* GET <ctx>/health (liveness: the process serves), <ctx>/ready (the database answers; the
 * broker is reported but does not fail readiness, because writes still succeed through
 * the outbox while it is away), <ctx>/info and <ctx>/metrics, plus the Spring Boot
 * actuator aliases <ctx>/actuator/health and <ctx>/actuator/info. */
void service_ops_routes(http_server *srv, const char *ctx, service_info *info);

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

typedef struct service service;

/* One service, as service_run boots it. Every hook may be NULL; a hook returning false
 * (or a non-zero int) stops the start. */
typedef struct service_spec {
  const char *name;  /* "election": program voter-election, context path /election, log
                      * name, MONGODB_DATABASE and EVENT_SOURCE (/election) defaults */
  const char *about; /* the --help text between the usage line and the common options */
  const char *options; /* the --help lines of the service's own configuration */
  long port, threads, max_body; /* HTTP_PORT, HTTP_THREADS, HTTP_MAX_BODY defaults */
  const char *const *outbox; /* collections relayed by an outbox relay; NULL: no relay */
  /* Reads the service's own configuration (after the common one); -1 (logged) exits 2. */
  int (*configure)(service *svc);
  /* Opens the service's modules: the database handle and relay exist, nothing is served
   * yet. 0, or the exit status to stop with. */
  int (*open)(service *svc);
  /* Registers the service's routes. */
  bool (*routes)(service *svc, http_server *srv);
  /* Creates indexes (and other start-up work that needs the database); retried every
   * second until true or a stop signal. Runs BEFORE the service listens. */
  bool (*init)(service *svc);
  /* Starts consumers and threads that need init's work; the service listens after it. */
  bool (*start)(service *svc);
  /* While serving: called every svc->tick_ms (periodic work); NULL: just wait for a signal. */
  void (*tick)(service *svc);
  /* Tear-down, in this order: stopping (before the HTTP server stops: wake long polls and
   * streams), stop (after it: consumers, threads), then the outbox relay is flushed and
   * stopped, then close (stores), then the database is closed. Each must accept what open
   * left half-made, or did not reach. */
  void (*stopping)(service *svc);
  void (*stop)(service *svc);
  void (*close)(service *svc);
} service_spec;

/* What service_run made, for the hooks. */
struct service {
  const service_spec *spec;
  mongo_db *db;
  ev_relay *relay;          /* NULL without spec->outbox */
  const char *amqp_url;     /* AMQP_URL, opaque here: the amqp module parses it */
  const char *exchange;     /* AMQP_EXCHANGE */
  const char *queue_prefix; /* AMQP_QUEUE_PREFIX */
  const char *event_source; /* EVENT_SOURCE */
  http_options http;
  http_server *srv;
  long tick_ms; /* period of spec->tick, set by spec->configure */
  service_info info;
};

/* Runs a service from main: --help, configuration, boot (xalloc_install, libcurl and the
 * MongoDB driver initialised, database handle, outbox relay, the service's modules),
 * indexes, listening, readiness, serving until SIGTERM/SIGINT, then one tear-down path.
 * Returns the process's exit status: 0 (stopped, or --help), 1 (could not start), 2 (bad
 * configuration or arguments). */
int service_run(int argc, char **argv, const service_spec *spec);

#endif
