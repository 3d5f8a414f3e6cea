/* jobs — the job service's configuration and the vocabulary its modules share.
 *
 * A job moves through
 *
 *     pending ──claim──> running ──> succeeded | failed | cancelled ──retention──> purged
 *        ^                  │
 *        └──lease expired / infrastructure error / shutdown (within the attempt budget)
 *
 * and every transition is one conditional write of the job document (see store.h). */
#ifndef JOBS_JOBS_H
#define JOBS_JOBS_H

#include <stdbool.h>
#include <string.h>

#define JOBS_CONTEXT "/jobs"

/* Everything the service reads from the environment, in one place (see `voter-jobs --help`). */
typedef struct jobs_config {
  char instance[40];          /* this process's lease-owner id: "<host>-<pid>-<random>" */
  const char *runner;         /* local | docker | kubernetes */
  const char *tabulate_bin;   /* local runner: the program */
  const char *work_dir;       /* per-job work directories are created below it */
  long concurrency;           /* jobs run at once by this replica */
  long deadline_s;            /* wall-clock limit of one run */
  long max_attempts;          /* runs a job may start (lost workers, runner errors) */
  long lease_s;               /* a running job's lease; renewed every second */
  long retention_s;           /* inputs, results and logs kept this long after the end */
  long result_url_ttl_s;      /* lifetime of a signed result URL */
  long retry_after_s;         /* Retry-After on 202 answers */
  long sweep_ms;              /* sweeper period: expired leases, re-dispatch, retention */
  long redispatch_s;          /* a pending job whose message may be lost is re-sent after */
  long drain_s;               /* on SIGTERM, running jobs get this long to finish */
  long kill_grace_s;          /* SIGTERM → SIGKILL grace when stopping a run */
  long cpu_s;                 /* local: RLIMIT_CPU (0: the deadline) */
  long memory_mb;             /* memory limit (local: RLIMIT_AS; 0: none) */
  long nofile;                /* local: RLIMIT_NOFILE */
  long pids;                  /* docker/kubernetes: pids limit */
  double cpus;                /* docker/kubernetes: CPU limit in cores */
  long logs_max;              /* bytes of stdout/stderr kept (the tail) */
  const char *hmac_secret;    /* signs result URLs and webhook bodies */
  long webhook_attempts;      /* deliveries tried before giving up */
  long webhook_timeout_s;
  long webhook_backoff_ms;    /* first retry delay; doubles */
  long max_wait_s;            /* ?wait=N cap */
  const char *callback_allow; /* JOBS_CALLBACK_ALLOW (callback.h) */
  /* docker */
  const char *docker_socket;
  const char *docker_image;
  const char *docker_host_work_dir; /* work_dir as the Docker host sees it */
  /* kubernetes */
  const char *k8s_api_url;
  const char *k8s_token_file;
  const char *k8s_ca_file;
  const char *k8s_namespace;
  const char *k8s_image;
  const char *k8s_pvc;        /* claim holding work_dir, mounted by the Job's pod */
  const char *k8s_pvc_subdir; /* work_dir's path inside the claim ("" = its root) */
  long k8s_ttl_s;             /* ttlSecondsAfterFinished */
  long k8s_backoff_limit;
  long k8s_poll_ms;
} jobs_config;

/* Reads the whole configuration (config.c); -1 (logged) when a value is malformed. */
int jobs_config_read(jobs_config *c);

/* Final states: nothing runs any more; the job answers 200/303 and is purged later. */
static inline bool jobs_status_final(const char *s) {
  return s && (strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 ||
               strcmp(s, "cancelled") == 0);
}

#endif
