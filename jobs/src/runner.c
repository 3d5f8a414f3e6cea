/* runner — selection and helpers shared by the runners; see runner.h. */
#include "runner.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voter/log.h"
#include "voter/xalloc.h"

runner *runner_new(const jobs_config *cfg) {
  if (strcmp(cfg->runner, "local") == 0) return runner_local_new(cfg);
  if (strcmp(cfg->runner, "docker") == 0) return runner_docker_new(cfg);
  if (strcmp(cfg->runner, "kubernetes") == 0) return runner_k8s_new(cfg);
  log_error("jobs: JOBS_RUNNER must be local, docker or kubernetes (not %s)", cfg->runner);
  return NULL;
}

char *runner_tail(const char *text, size_t len, size_t max) {
  size_t start = 0;
  if (len > max) {
    start = len - max;
    /* begin at a line when one starts within the first 256 bytes of the tail */
    const char *nl = memchr(text + start, '\n', len - start < 256 ? len - start : 256);
    if (nl) start = (size_t)(nl - text) + 1;
  }
  char *out = xmalloc(len - start + 1);
  memcpy(out, text + start, len - start);
  out[len - start] = 0;
  return out;
}

bool runner_sleep(atomic_int *stop, long ms) {
  while (ms > 0) {
    if (stop && atomic_load(stop)) return true;
    long step = ms < 50 ? ms : 50;
    struct timespec ts = {0, step * 1000000L};
    nanosleep(&ts, NULL);
    ms -= step;
  }
  return stop && atomic_load(stop);
}
