/* usage — the job service's --help text: what it is (JOBS_ABOUT) and its own
 * configuration (JOBS_OPTIONS); service_run prints the options every service shares
 * between them. */
#ifndef JOBS_USAGE_H
#define JOBS_USAGE_H

#ifndef JOBS_DEFAULT_TABULATE
#define JOBS_DEFAULT_TABULATE "/usr/local/bin/tabulate"
#endif
#define JOBS_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* HTTP_THREADS defaults to 8 here: long polls hold one each. */
#define JOBS_ABOUT \
    "The job service of the Voter API under /jobs: accepts ranked-choice tabulations\n" \
    "(POST /jobs/tabulations), runs the batch program `tabulate` through a runner, and\n" \
    "serves results by signed, expiring URL. Job state lives in MongoDB, work goes through\n" \
    "the durable AMQP queue jobs.work shared by all replicas, events job.succeeded|failed|\n" \
    "cancelled go out through a transactional outbox.\n"

#define JOBS_OPTIONS \
    "  JOBS_MAX_BODY           request body limit in bytes, 413 above (default:\n" \
    "                          HTTP_MAX_BODY, whose default is 10485760 here)\n" \
    "  JOBS_RUNNER             local | docker | kubernetes (default local)\n" \
    "  JOBS_CONCURRENCY        jobs run at once by this replica (default 2)\n" \
    "  JOBS_WORK_DIR           per-job work directories go below it\n" \
    "                          (default /tmp/voter-jobs)\n" \
    "  JOBS_DEADLINE_S         wall-clock limit of one run (default 600)\n" \
    "  JOBS_MAX_ATTEMPTS       runs a job may start: lost workers, runner errors (default 3)\n" \
    "  JOBS_LEASE_S            lease of a running job, renewed every second (default 30)\n" \
    "  JOBS_RETENTION_S        inputs/results/logs kept after the end (default 86400)\n" \
    "  JOBS_RESULT_URL_TTL_S   lifetime of a signed result URL (default 3600)\n" \
    "  JOBS_HMAC_SECRET        signs result URLs and webhooks; the same on every replica;\n" \
    "                          required, 16+ bytes (32 random bytes recommended: openssl\n" \
    "                          rand -hex 32); no default, the service does not start without\n" \
    "  GATEWAY_PROOF_SECRET    the gateway's proof secret: cancelling a job is an admin\n" \
    "                          operation (refused without it)\n" \
    "  JOBS_RETRY_AFTER_S      Retry-After on 202 answers (default 1)\n" \
    "  JOBS_MAX_WAIT_S         cap of ?wait=N long polling (default 60)\n" \
    "  JOBS_SWEEP_MS           sweeper period: expired leases, re-dispatch, retention\n" \
    "                          (default 2000)\n" \
    "  JOBS_REDISPATCH_S       re-send the work message of a job pending this long\n" \
    "                          (default 600)\n" \
    "  JOBS_DRAIN_S            on SIGTERM, running jobs get this long before they are\n" \
    "                          stopped and handed back to the queue (default 10)\n" \
    "  JOBS_KILL_GRACE_S       SIGTERM-to-SIGKILL grace when a run is stopped (default 3)\n" \
    "  JOBS_MEMORY_MB          memory limit of a run; local: RLIMIT_AS, 0 = none\n" \
    "                          (default 1024)\n" \
    "  JOBS_CPU_S              local: RLIMIT_CPU seconds (default 0 = the deadline)\n" \
    "  JOBS_NOFILE             local and docker: open files limit (default 64)\n" \
    "  JOBS_CPUS               docker/kubernetes: CPU limit in cores (default 1)\n" \
    "  JOBS_PIDS               docker: pids limit (default 64)\n" \
    "  JOBS_LOGS_MAX           bytes of program output kept, the tail (default 65536)\n" \
    "  JOBS_WEBHOOK_ATTEMPTS   webhook deliveries tried (default 6)\n" \
    "  JOBS_WEBHOOK_BACKOFF_MS first webhook retry delay, doubling (default 1000)\n" \
    "  JOBS_WEBHOOK_TIMEOUT_S  timeout of one webhook request (default 10)\n" \
    "  JOBS_CALLBACK_ALLOW     webhook targets a callbackUrl may name, a comma list of\n" \
    "                          public | * | none | CIDR | address[:port] | host[:port] |\n" \
    "                          *.domain[:port] (default public: any address except\n" \
    "                          loopback, private, link-local and other special ranges)\n" \
    "  local runner:\n" \
    "  JOBS_TABULATE_BIN       the program (default " JOBS_DEFAULT_TABULATE ")\n" \
    "  docker runner:\n" \
    "  JOBS_DOCKER_SOCKET      Docker Engine API socket (default /var/run/docker.sock)\n" \
    "  JOBS_DOCKER_IMAGE       tabulator image (default voter-tabulator:latest)\n" \
    "  JOBS_DOCKER_HOST_WORK_DIR  JOBS_WORK_DIR as the Docker host sees it, when this\n" \
    "                          service runs in a container (default JOBS_WORK_DIR)\n" \
    "  kubernetes runner (defaults: the pod's in-cluster configuration):\n" \
    "  JOBS_K8S_API_URL        API server (default https://$KUBERNETES_SERVICE_HOST:\n" \
    "                          $KUBERNETES_SERVICE_PORT)\n" \
    "  JOBS_K8S_TOKEN_FILE     bearer token (default " JOBS_SA_DIR "/token)\n" \
    "  JOBS_K8S_CA_FILE        CA bundle (default " JOBS_SA_DIR "/ca.crt)\n" \
    "  JOBS_K8S_NAMESPACE      namespace of the Jobs (default: " JOBS_SA_DIR "/namespace)\n" \
    "  JOBS_K8S_IMAGE          tabulator image (default JOBS_DOCKER_IMAGE)\n" \
    "  JOBS_K8S_PVC            claim shared with the Job's pod, holding JOBS_WORK_DIR\n" \
    "                          (default voter-jobs-work)\n" \
    "  JOBS_K8S_PVC_SUBDIR     JOBS_WORK_DIR's path inside that claim (default: its root)\n" \
    "  JOBS_K8S_TTL_S          ttlSecondsAfterFinished (default 300)\n" \
    "  JOBS_K8S_BACKOFF_LIMIT  backoffLimit (default 0: retries are the service's)\n" \
    "  JOBS_K8S_POLL_MS        Job status poll interval (default 1000)\n"

#endif
