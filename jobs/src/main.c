/* main — the job service: configuration, wiring, start and graceful stop.
 *
 * Owns job records; accepts tabulations, runs `tabulate` through a runner (local process,
 * Docker container or Kubernetes Job), serves results by signed URL, and publishes
 * job.succeeded|failed|cancelled through the outbox. */
#include <curl/curl.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "fsutil.h"
#include "jobs.h"
#include "routes.h"
#include "runner.h"
#include "store.h"
#include "sweeper.h"
#include "voter/amqp.h"
#include "voter/config.h"
#include "voter/events.h"
#include "voter/http.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/mongo.h"
#include "voter/service.h"
#include "voter/util.h"
#include "webhook.h"
#include "worker.h"
#include "workq.h"

#ifndef VOTER_VERSION
#define VOTER_VERSION "dev"
#endif
#ifndef VOTER_GIT_COMMIT
#define VOTER_GIT_COMMIT "unknown"
#endif
#ifndef JOBS_DEFAULT_TABULATE
#define JOBS_DEFAULT_TABULATE "/usr/local/bin/tabulate"
#endif

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

static const char usage[] =
    "usage: voter-jobs [--help]\n"
    "\n"
    "The job service of the Voter API under /jobs: accepts ranked-choice tabulations\n"
    "(POST /jobs/tabulations), runs the batch program `tabulate` through a runner, and\n"
    "serves results by signed, expiring URL. Job state lives in MongoDB, work goes through\n"
    "the durable AMQP queue jobs.work shared by all replicas, events job.succeeded|failed|\n"
    "cancelled go out through a transactional outbox.\n"
    "\n"
    "Configuration (environment):\n"
    "  HTTP_HOST, HTTP_PORT (default 8084), HTTP_TIMEOUT_S, CORS_ALLOWED_ORIGINS,\n"
    "  MONGODB_URI, MONGODB_DATABASE (default jobs), AMQP_URL, AMQP_EXCHANGE,\n"
    "  AMQP_QUEUE_PREFIX, EVENT_SOURCE (default /jobs), OUTBOX_POLL_MS, LOG_LEVEL\n"
    "                          as for every service (see the repository README)\n"
    "  HTTP_THREADS            HTTP worker threads (default 8; long polls hold one each)\n"
    "  JOBS_MAX_BODY           request body limit in bytes (default 10485760): 413 above\n"
    "  JOBS_RUNNER             local | docker | kubernetes (default local)\n"
    "  JOBS_CONCURRENCY        jobs run at once by this replica (default 2)\n"
    "  JOBS_WORK_DIR           per-job work directories go below it\n"
    "                          (default /tmp/voter-jobs)\n"
    "  JOBS_DEADLINE_S         wall-clock limit of one run (default 600)\n"
    "  JOBS_MAX_ATTEMPTS       runs a job may start: lost workers, runner errors (default 3)\n"
    "  JOBS_LEASE_S            lease of a running job, renewed every second (default 30)\n"
    "  JOBS_RETENTION_S        inputs/results/logs kept after the end (default 86400)\n"
    "  JOBS_RESULT_URL_TTL_S   lifetime of a signed result URL (default 3600)\n"
    "  JOBS_HMAC_SECRET        signs result URLs and webhooks; the same on every replica;\n"
    "                          required, 16+ bytes (32 random bytes recommended: openssl\n"
    "                          rand -hex 32); no default, the service does not start without\n"
    "  GATEWAY_PROOF_SECRET    the gateway's proof secret: cancelling a job is an admin\n"
    "                          operation (refused without it)\n"
    "  JOBS_RETRY_AFTER_S      Retry-After on 202 answers (default 1)\n"
    "  JOBS_MAX_WAIT_S         cap of ?wait=N long polling (default 60)\n"
    "  JOBS_SWEEP_MS           sweeper period: expired leases, re-dispatch, retention\n"
    "                          (default 2000)\n"
    "  JOBS_REDISPATCH_S       re-send the work message of a job pending this long\n"
    "                          (default 600)\n"
    "  JOBS_DRAIN_S            on SIGTERM, running jobs get this long before they are\n"
    "                          stopped and handed back to the queue (default 10)\n"
    "  JOBS_KILL_GRACE_S       SIGTERM-to-SIGKILL grace when a run is stopped (default 3)\n"
    "  JOBS_MEMORY_MB          memory limit of a run; local: RLIMIT_AS, 0 = none\n"
    "                          (default 1024)\n"
    "  JOBS_CPU_S              local: RLIMIT_CPU seconds (default 0 = the deadline)\n"
    "  JOBS_NOFILE             local and docker: open files limit (default 64)\n"
    "  JOBS_CPUS               docker/kubernetes: CPU limit in cores (default 1)\n"
    "  JOBS_PIDS               docker: pids limit (default 64)\n"
    "  JOBS_LOGS_MAX           bytes of program output kept, the tail (default 65536)\n"
    "  JOBS_WEBHOOK_ATTEMPTS   webhook deliveries tried (default 6)\n"
    "  JOBS_WEBHOOK_BACKOFF_MS first webhook retry delay, doubling (default 1000)\n"
    "  JOBS_WEBHOOK_TIMEOUT_S  timeout of one webhook request (default 10)\n"
    "  JOBS_CALLBACK_ALLOW     webhook targets a callbackUrl may name, a comma list of\n"
    "                          public | * | none | CIDR | address[:port] | host[:port] |\n"
    "                          *.domain[:port] (default public: any address except\n"
    "                          loopback, private, link-local and other special ranges)\n"
    "  local runner:\n"
    "  JOBS_TABULATE_BIN       the program (default " JOBS_DEFAULT_TABULATE ")\n"
    "  docker runner:\n"
    "  JOBS_DOCKER_SOCKET      Docker Engine API socket (default /var/run/docker.sock)\n"
    "  JOBS_DOCKER_IMAGE       tabulator image (default voter-tabulator:latest)\n"
    "  JOBS_DOCKER_HOST_WORK_DIR  JOBS_WORK_DIR as the Docker host sees it, when this\n"
    "                          service runs in a container (default JOBS_WORK_DIR)\n"
    "  kubernetes runner (defaults: the pod's in-cluster configuration):\n"
    "  JOBS_K8S_API_URL        API server (default https://$KUBERNETES_SERVICE_HOST:\n"
    "                          $KUBERNETES_SERVICE_PORT)\n"
    "  JOBS_K8S_TOKEN_FILE     bearer token (default " SA_DIR "/token)\n"
    "  JOBS_K8S_CA_FILE        CA bundle (default " SA_DIR "/ca.crt)\n"
    "  JOBS_K8S_NAMESPACE      namespace of the Jobs (default: " SA_DIR "/namespace)\n"
    "  JOBS_K8S_IMAGE          tabulator image (default JOBS_DOCKER_IMAGE)\n"
    "  JOBS_K8S_PVC            claim shared with the Job's pod, holding JOBS_WORK_DIR\n"
    "                          (default voter-jobs-work)\n"
    "  JOBS_K8S_PVC_SUBDIR     JOBS_WORK_DIR's path inside that claim (default: its root)\n"
    "  JOBS_K8S_TTL_S          ttlSecondsAfterFinished (default 300)\n"
    "  JOBS_K8S_BACKOFF_LIMIT  backoffLimit (default 0: retries are the service's)\n"
    "  JOBS_K8S_POLL_MS        Job status poll interval (default 1000)\n";

#define JOBS_HMAC_SECRET_MIN 16
static char k8s_url_buf[512];
static char k8s_ns_buf[256];

/* Reads the whole configuration; -1 (logged) when a value is malformed. */
static int read_config(jobs_config *c) {
  memset(c, 0, sizeof *c);
  char host[32] = "";
  gethostname(host, sizeof host - 1);
  unsigned char rnd[4] = {0};
  RAND_bytes(rnd, sizeof rnd);
  snprintf(c->instance, sizeof c->instance, "%.20s-%d-%02x%02x%02x%02x", host, (int)getpid(),
           rnd[0], rnd[1], rnd[2], rnd[3]);
  c->runner = cfg_str("JOBS_RUNNER", "local");
  c->tabulate_bin = cfg_str("JOBS_TABULATE_BIN", JOBS_DEFAULT_TABULATE);
  c->work_dir = cfg_str("JOBS_WORK_DIR", "/tmp/voter-jobs");
  if (cfg_long("JOBS_CONCURRENCY", 2, 1, 256, &c->concurrency) ||
      cfg_long("JOBS_DEADLINE_S", 600, 1, 7 * 86400, &c->deadline_s) ||
      cfg_long("JOBS_MAX_ATTEMPTS", 3, 1, 100, &c->max_attempts) ||
      cfg_long("JOBS_LEASE_S", 30, 2, 3600, &c->lease_s) ||
      cfg_long("JOBS_RETENTION_S", 86400, 1, 365L * 86400, &c->retention_s) ||
      cfg_long("JOBS_RESULT_URL_TTL_S", 3600, 1, 30L * 86400, &c->result_url_ttl_s) ||
      cfg_long("JOBS_RETRY_AFTER_S", 1, 1, 3600, &c->retry_after_s) ||
      cfg_long("JOBS_MAX_WAIT_S", 60, 0, 600, &c->max_wait_s) ||
      cfg_long("JOBS_SWEEP_MS", 2000, 50, 3600000, &c->sweep_ms) ||
      cfg_long("JOBS_REDISPATCH_S", 600, 1, 86400, &c->redispatch_s) ||
      cfg_long("JOBS_DRAIN_S", 10, 0, 3600, &c->drain_s) ||
      cfg_long("JOBS_KILL_GRACE_S", 3, 0, 600, &c->kill_grace_s) ||
      cfg_long("JOBS_MEMORY_MB", 1024, 0, 1L << 20, &c->memory_mb) ||
      cfg_long("JOBS_CPU_S", 0, 0, 7 * 86400, &c->cpu_s) ||
      cfg_long("JOBS_NOFILE", 64, 16, 1L << 20, &c->nofile) ||
      cfg_long("JOBS_PIDS", 64, 1, 1L << 20, &c->pids) ||
      cfg_long("JOBS_LOGS_MAX", 65536, 1024, 4L << 20, &c->logs_max) ||
      cfg_long("JOBS_WEBHOOK_ATTEMPTS", 6, 1, 100, &c->webhook_attempts) ||
      cfg_long("JOBS_WEBHOOK_BACKOFF_MS", 1000, 10, 3600000, &c->webhook_backoff_ms) ||
      cfg_long("JOBS_WEBHOOK_TIMEOUT_S", 10, 1, 300, &c->webhook_timeout_s) ||
      cfg_long("JOBS_K8S_TTL_S", 300, 0, 86400 * 7, &c->k8s_ttl_s) ||
      cfg_long("JOBS_K8S_BACKOFF_LIMIT", 0, 0, 100, &c->k8s_backoff_limit) ||
      cfg_long("JOBS_K8S_POLL_MS", 1000, 50, 60000, &c->k8s_poll_ms))
    return -1;
  const char *cpus = cfg_str("JOBS_CPUS", "1");
  char *end;
  c->cpus = strtod(cpus, &end);
  if (*end || c->cpus < 0 || c->cpus > 1024) {
    log_error("config: JOBS_CPUS must be a number of cores (got %s)", cpus);
    return -1;
  }
  /* No default, not even a random one: a published default lets anyone forge result URLs
   * and webhook signatures, and a random one breaks every URL another replica signed. */
  c->hmac_secret = cfg_str("JOBS_HMAC_SECRET", NULL);
  if (!c->hmac_secret || strlen(c->hmac_secret) < JOBS_HMAC_SECRET_MIN) {
    log_error("config: JOBS_HMAC_SECRET must be set to %d bytes or more (e.g. openssl rand "
              "-hex 32), the same on every replica",
              JOBS_HMAC_SECRET_MIN);
    return -1;
  }
  c->callback_allow = cfg_str("JOBS_CALLBACK_ALLOW", "public");
  c->docker_socket = cfg_str("JOBS_DOCKER_SOCKET", "/var/run/docker.sock");
  c->docker_image = cfg_str("JOBS_DOCKER_IMAGE", "voter-tabulator:latest");
  c->docker_host_work_dir = cfg_str("JOBS_DOCKER_HOST_WORK_DIR", c->work_dir);
  const char *kh = cfg_str("KUBERNETES_SERVICE_HOST", NULL);
  if (kh) {
    /* IPv6 service addresses need brackets in a URL */
    snprintf(k8s_url_buf, sizeof k8s_url_buf, strchr(kh, ':') ? "https://[%s]:%s" : "https://%s:%s",
             kh, cfg_str("KUBERNETES_SERVICE_PORT", "443"));
  }
  c->k8s_api_url = cfg_str("JOBS_K8S_API_URL", k8s_url_buf);
  c->k8s_token_file = cfg_str("JOBS_K8S_TOKEN_FILE", SA_DIR "/token");
  c->k8s_ca_file = cfg_str("JOBS_K8S_CA_FILE", SA_DIR "/ca.crt");
  c->k8s_namespace = cfg_str("JOBS_K8S_NAMESPACE", NULL);
  if (!c->k8s_namespace) {
    char *ns;
    size_t len;
    snprintf(k8s_ns_buf, sizeof k8s_ns_buf, "default");
    if (fs_read(SA_DIR "/namespace", 200, &ns, &len) == 0) {
      while (len && (ns[len - 1] == '\n' || ns[len - 1] == ' ')) ns[--len] = 0;
      if (len) snprintf(k8s_ns_buf, sizeof k8s_ns_buf, "%s", ns);
      free(ns);
    }
    c->k8s_namespace = k8s_ns_buf;
  }
  c->k8s_image = cfg_str("JOBS_K8S_IMAGE", c->docker_image);
  c->k8s_pvc = cfg_str("JOBS_K8S_PVC", "voter-jobs-work");
  c->k8s_pvc_subdir = cfg_str("JOBS_K8S_PVC_SUBDIR", "");
  return 0;
}

int main(int argc, char **argv) {
  int args = service_args(argc, argv, "voter-jobs", usage);
  if (args >= 0) return args;
  log_init("jobs", cfg_str("LOG_LEVEL", "info"));
  jobs_config cfg;
  long max_body, poll_ms;
  http_options hopts;
  if (read_config(&cfg) != 0 || service_http_options("jobs", 8084, 8, 10L * 1024 * 1024, &hopts) ||
      cfg_long("JOBS_MAX_BODY", 10L * 1024 * 1024, 1024, 1L << 30, &max_body) ||
      cfg_long("OUTBOX_POLL_MS", 1000, 10, 600000, &poll_ms))
    return 2;
  hopts.max_body = (size_t)max_body; /* the jobs service's own name for the limit */
  const char *queue_prefix = cfg_str("AMQP_QUEUE_PREFIX", "");
  mq_set_queue_prefix(queue_prefix);
  service_block_signals();
  mongo_global_init();
  curl_global_init(CURL_GLOBAL_DEFAULT);

  int rc = 1;
  const char *amqp_url = cfg_str("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F");
  const char *exchange = cfg_str("AMQP_EXCHANGE", "voter.events");
  service_info info = {.name = "jobs", .version = VOTER_VERSION, .commit = VOTER_GIT_COMMIT,
                       .started = util_monotonic()};
  jobs_app app;
  app_init(&app, &cfg);
  char policy_error[256];
  app.callbacks = cb_policy_new(cfg.callback_allow, policy_error, sizeof policy_error);
  if (!app.callbacks) {
    log_error("config: %s", policy_error);
    app_destroy(&app);
    return 2;
  }
  http_server *srv = NULL;
  routes_ctx *routes = NULL;
  ev_relay *relay = NULL;
  mongo_db *db = mongo_db_open(cfg_str("MONGODB_URI", "mongodb://127.0.0.1:27017"),
                               cfg_str("MONGODB_DATABASE", "jobs"), "voter-jobs");
  if (!db) goto out;
  info.db = db;
  app.runner = runner_new(&cfg);
  if (!app.runner) {
    rc = 2;
    goto out;
  }
  if (fs_mkdirs(cfg.work_dir, 0755) != 0) {
    log_error("jobs: cannot create JOBS_WORK_DIR %s", cfg.work_dir);
    goto out;
  }

  static const char *const collections[] = {"jobs", NULL};
  ev_relay_options ropts = {.db = db, .collections = collections, .amqp_url = amqp_url,
                            .exchange = exchange, .poll_ms = (int)poll_ms};
  relay = ev_relay_start(&ropts);
  if (!relay) goto out;
  info.relay = relay;
  app.store = store_open(db, relay, cfg_str("EVENT_SOURCE", "/jobs"));
  app.wq = wq_new(amqp_url, exchange, queue_prefix, (int)cfg.concurrency);
  if (!app.store || !app.wq) goto out;

  srv = http_server_new(&hopts);
  if (!srv) goto out;
  service_ops_routes(srv, JOBS_CONTEXT, &info);
  routes = jobs_routes(srv, &app, hopts.threads);
  if (!routes || http_server_start(srv) != 0) goto out;
  log_fields(LOG_INFO, "listening",
             json_pack("{s:s, s:i, s:s, s:s, s:i}", "host", hopts.host, "port",
                       http_server_port(srv), "runner", app.runner->name, "instance",
                       cfg.instance, "concurrency", (int)cfg.concurrency));

  /* Indexes need the database; until they exist /ready says DOWN. */
  while (!store_init(app.store)) {
    if (service_signalled_within(1000)) {
      rc = 0;
      goto out;
    }
  }
  app.hooks = webhooks_start(&app);
  app.pool = worker_start(&app);
  app.sweeper = sweeper_start(&app);
  if (!app.hooks || !app.pool || !app.sweeper || wq_consume(app.wq, worker_dispatch, app.pool) != 0)
    goto out;
  info.ready = true;
  log_info("ready");

  int sig = service_wait_signal();
  log_info("stopping on signal %d", sig);
  rc = 0;
out:
  /* Order matters: wake long polls and stop taking requests; stop taking work; let running
   * jobs finish for JOBS_DRAIN_S, then stop them and hand them back; ack/nack what the
   * workers reported; then the housekeeping threads, the outbox relay, the database. */
  atomic_store(&app.stopping, true);
  app_changed(&app);
  http_server_free(srv);
  wq_drain(app.wq);
  worker_drain(app.pool, cfg.drain_s);
  worker_stop(app.pool);
  sweeper_stop(app.sweeper);
  webhooks_stop(app.hooks);
  wq_stop(app.wq);
  worker_free(app.pool); /* after the work queue thread, which dispatches into it */
  jobs_routes_free(routes);
  ev_relay_stop(relay);
  store_close(app.store);
  if (app.runner) app.runner->destroy(app.runner);
  mongo_db_close(db);
  cb_policy_free(app.callbacks);
  app_destroy(&app);
  curl_global_cleanup();
  mongo_global_cleanup();
  metrics_reset();
  if (rc == 0) log_info("stopped");
  return rc;
}
