/* runner — how one run of `tabulate` happens: a local process, a Docker container or a
 * Kubernetes Job, behind one small interface (prefix runner_).
 *
 * The worker prepares a work directory holding control.json, rules.json and ballots.csv
 * and asks the runner to run `tabulate control.json` against it; the program writes
 * result.json and progress.json there. run() blocks until the program ended, the deadline
 * passed or *stop became non-zero (cancel, lost lease, shutdown), and always cleans up
 * what it created (process group, container, Job) before returning. It is called from
 * several worker threads at once. */
#ifndef JOBS_RUNNER_H
#define JOBS_RUNNER_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "jobs.h"

typedef struct runner_task {
  const char *job_id;
  int attempt;
  const char *work_dir;  /* absolute path on this host */
  const char *work_name; /* its name below cfg->work_dir: "<id>-<attempt>" */
  long deadline_s;
  atomic_int *stop;      /* != 0: stop the run now */
} runner_task;

typedef enum {
  RUN_EXITED,   /* the program exited: exit_code */
  RUN_SIGNALED, /* killed by a signal not ours (limits, OOM): signal, detail */
  RUN_DEADLINE, /* we stopped it at the deadline */
  RUN_STOPPED,  /* we stopped it because *stop was set */
  RUN_ERROR,    /* the runner could not run it (infrastructure): detail; retryable */
} runner_outcome;

typedef struct runner_result {
  runner_outcome outcome;
  int exit_code;
  int signal;
  char detail[512];
  char *logs; /* malloc'd tail of the program's stdout+stderr, or NULL */
} runner_result;

typedef struct runner runner;
struct runner {
  const char *name;
  int (*run)(runner *r, const runner_task *t, runner_result *out); /* 0, or -1 = RUN_ERROR */
  void (*destroy)(runner *r);
  const jobs_config *cfg;
};

/* Constructors; NULL (logged) when the configuration is unusable. */
runner *runner_local_new(const jobs_config *cfg);
runner *runner_docker_new(const jobs_config *cfg);
runner *runner_k8s_new(const jobs_config *cfg);

/* Selects by cfg->runner. */
runner *runner_new(const jobs_config *cfg);

/* Keeps the last max bytes of text (a log tail), starting after a line break when one
 * is near; returns a malloc'd copy. */
char *runner_tail(const char *text, size_t len, size_t max);

/* Sleeps up to ms, waking early when *stop is set; true when it was. */
bool runner_sleep(atomic_int *stop, long ms);

#endif
