/* config — the job service's configuration from the environment; see jobs.h. */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "jobs.h"
#include "usage.h"
#include "voter/config.h"
#include "voter/log.h"

#define SA_DIR JOBS_SA_DIR
#define JOBS_HMAC_SECRET_MIN 16
static char k8s_url_buf[512];
static char k8s_ns_buf[256];

int jobs_config_read(jobs_config *c) {
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

