/* runner_local — `tabulate` as a child process of this service (the embedded default).
 *
 * The child gets its own process group (so a stop reaches everything it started), the
 * resource limits of the configuration (CPU seconds, address space, open files, file
 * size, no core dumps), stdin from /dev/null, stdout+stderr into output.log of the work
 * directory, a minimal environment, no inherited descriptors, and PR_SET_PDEATHSIG so it
 * does not outlive a worker that is killed (the replica that takes the job over starts a
 * new attempt instead). A stop is SIGTERM to the group, the grace period, then SIGKILL. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "runner.h"
#include "voter/log.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define LOG_FILE "output.log"
#define FILE_SIZE_LIMIT (1L << 30)

typedef struct local_runner {
  runner base;
  char *env[8]; /* the child's whole environment, NULL-terminated */
} local_runner;

static void set_limit(int resource, rlim_t soft, rlim_t hard) {
  struct rlimit rl = {soft, hard};
  setrlimit(resource, &rl);
}

/* In the child between fork and exec: async-signal-safe calls only. */
static void child_exec(const jobs_config *cfg, const runner_task *t, const char *control,
                       int logfd, int errfd, pid_t parent, char *const *envp) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127); /* the worker died before prctl */
  rlim_t cpu = (rlim_t)(cfg->cpu_s > 0 ? cfg->cpu_s : t->deadline_s + 1);
  set_limit(RLIMIT_CPU, cpu, cpu + 1); /* SIGXCPU, then SIGKILL a second later */
  if (cfg->memory_mb > 0) {
    rlim_t bytes = (rlim_t)cfg->memory_mb * 1024 * 1024;
    set_limit(RLIMIT_AS, bytes, bytes);
  }
  set_limit(RLIMIT_NOFILE, (rlim_t)cfg->nofile, (rlim_t)cfg->nofile);
  set_limit(RLIMIT_FSIZE, FILE_SIZE_LIMIT, FILE_SIZE_LIMIT);
  set_limit(RLIMIT_CORE, 0, 0);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
      chdir(t->work_dir) != 0)
    goto fail;
  /* Descriptors of the service (sockets, the listening port) must not leak into the job;
   * errfd is close-on-exec and reports a failed exec to the parent. */
  if (syscall(SYS_close_range, 3u, (unsigned)errfd - 1, 0) != 0 ||
      syscall(SYS_close_range, (unsigned)errfd + 1, ~0u, 0) != 0)
    for (int fd = 3; fd < 4096; fd++) /* kernels before 5.9 */
      if (fd != errfd) close(fd);
  char *argv[] = {(char *)cfg->tabulate_bin, (char *)control, NULL};
  execve(cfg->tabulate_bin, argv, envp);
fail:;
  int e = errno;
  ssize_t w = write(errfd, &e, sizeof e);
  (void)w;
  _exit(127);
}

/* SIGTERM to the group, grace, SIGKILL; reaps the child. */
static int stop_group(pid_t pid, long grace_s) {
  int status = 0;
  killpg(pid, SIGTERM);
  for (long waited = 0; waited < grace_s * 1000; waited += 50) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      killpg(pid, SIGKILL); /* anything the program left in its group */
      return status;
    }
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  killpg(pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

static int local_run(runner *r, const runner_task *t, runner_result *out) {
  const jobs_config *cfg = r->cfg;
  memset(out, 0, sizeof *out);
  char control[PATH_MAX], logpath[PATH_MAX];
  snprintf(control, sizeof control, "%s/control.json", t->work_dir);
  snprintf(logpath, sizeof logpath, "%s/%s", t->work_dir, LOG_FILE);

  char *const *envp = ((local_runner *)r)->env; /* prepared before fork, like all else */
  int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int pipefd[2];
  if (logfd < 0 || pipe(pipefd) != 0 || fcntl(pipefd[0], F_SETFD, FD_CLOEXEC) != 0 ||
      fcntl(pipefd[1], F_SETFD, FD_CLOEXEC) != 0) {
    snprintf(out->detail, sizeof out->detail, "cannot prepare the run: %s", strerror(errno));
    if (logfd >= 0) close(logfd);
    out->outcome = RUN_ERROR;
    return -1;
  }
  pid_t parent = getpid();
  double started = util_monotonic();
  pid_t pid = fork();
  if (pid == 0) child_exec(cfg, t, control, logfd, pipefd[1], parent, envp);
  close(logfd);
  close(pipefd[1]);
  if (pid < 0) {
    close(pipefd[0]);
    snprintf(out->detail, sizeof out->detail, "fork failed: %s", strerror(errno));
    out->outcome = RUN_ERROR;
    return -1;
  }
  setpgid(pid, pid); /* also here, so a stop right after fork reaches the group */
  int exec_errno = 0;
  ssize_t got;
  while ((got = read(pipefd[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
  }
  close(pipefd[0]);
  log_fields(LOG_INFO, "job process started",
             json_pack("{s:s, s:i, s:i}", "job", t->job_id, "attempt", t->attempt, "pid", pid));

  int status = 0;
  bool ended = false;
  if (got == (ssize_t)sizeof exec_errno) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    out->outcome = RUN_ERROR;
    snprintf(out->detail, sizeof out->detail, "cannot execute %s: %s", cfg->tabulate_bin,
             strerror(exec_errno));
    return -1;
  }
  long poll_ms = 1;
  while (!ended) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      ended = true;
      killpg(pid, SIGKILL); /* stragglers the program left in its group */
      break;
    }
    if (atomic_load(t->stop)) {
      status = stop_group(pid, cfg->kill_grace_s);
      out->outcome = RUN_STOPPED;
      break;
    }
    if (util_monotonic() - started >= (double)t->deadline_s) {
      status = stop_group(pid, cfg->kill_grace_s);
      out->outcome = RUN_DEADLINE;
      break;
    }
    /* Back-off from 1 ms to 50 ms: a short run is noticed within a millisecond or two
     * (a flat 50 ms poll was most of the service's overhead on a small job), a long one
     * costs 20 wake-ups a second. */
    struct timespec ts = {0, poll_ms * 1000000L};
    nanosleep(&ts, NULL);
    if (poll_ms < 50) poll_ms = poll_ms * 2 > 50 ? 50 : poll_ms * 2;
  }
  if (ended) {
    if (WIFEXITED(status)) {
      out->outcome = RUN_EXITED;
      out->exit_code = WEXITSTATUS(status);
    } else {
      out->outcome = RUN_SIGNALED;
      out->signal = WTERMSIG(status);
      if (out->signal == SIGXCPU)
        snprintf(out->detail, sizeof out->detail, "CPU time limit exceeded");
      else if (out->signal == SIGKILL)
        snprintf(out->detail, sizeof out->detail, "killed by SIGKILL (out of memory?)");
      else
        snprintf(out->detail, sizeof out->detail, "killed by signal %d (%s)", out->signal,
                 strsignal(out->signal));
    }
  } else {
    out->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  out->logs = fs_tail_in(t->work_dir, LOG_FILE, (size_t)cfg->logs_max);
  return 0;
}

static void local_destroy(runner *r) {
  local_runner *l = (local_runner *)r;
  for (int i = 0; l->env[i]; i++) free(l->env[i]);
  free(l);
}

runner *runner_local_new(const jobs_config *cfg) {
  if (access(cfg->tabulate_bin, X_OK) != 0) {
    log_error("jobs: JOBS_TABULATE_BIN %s is not executable: %s", cfg->tabulate_bin,
              strerror(errno));
    return NULL;
  }
  local_runner *l = xcalloc(1, sizeof *l);
  l->base.name = "local";
  l->base.run = local_run;
  l->base.destroy = local_destroy;
  l->base.cfg = cfg;
  /* A minimal environment; sanitizer options pass through for instrumented builds. */
  static const char *const keep[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TZ", NULL};
  int n = 0;
  l->env[n++] = xstrdup("PATH=/usr/local/bin:/usr/bin:/bin");
  l->env[n++] = xstrdup("LANG=C.UTF-8");
  for (int i = 0; keep[i]; i++) {
    const char *v = getenv(keep[i]);
    if (!v) continue;
    size_t len = strlen(keep[i]) + strlen(v) + 2;
    l->env[n] = xmalloc(len);
    if (l->env[n]) snprintf(l->env[n++], len, "%s=%s", keep[i], v);
  }
  return &l->base;
}
