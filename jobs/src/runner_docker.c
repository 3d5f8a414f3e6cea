/* runner_docker — `tabulate` in a container of the tabulator image, through the Docker
 * Engine API on its unix socket (libcurl, CURLOPT_UNIX_SOCKET_PATH).
 *
 * create (work directory bind-mounted at /work, no network, memory/CPU/pids/nofile limits,
 * read-only root, no capabilities) → start → poll inspect until it exits, the deadline
 * passes or a stop is asked (POST stop?t=grace: SIGTERM, grace, SIGKILL) → logs → remove.
 * Containers are named voter-job-<id>-<attempt> and labelled voter.job=<id>, so a leftover
 * of a crashed replica is recognizable and is removed before the same name is reused. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "voter/httpc.h"
#include "runner.h"
#include "voter/log.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define API "http://docker/v1.41"
#define POLL_MS 200

typedef struct docker_runner {
  runner base;
} docker_runner;

/* One API call; body is stolen. Returns the HTTP status, 0 on a transport error
 * (detail filled in). */
/* An error detail, cut to fit (vsnprintf: a long engine message is truncated on purpose,
 * which gcc's -Wformat-truncation would flag on a plain snprintf in optimised builds). */
__attribute__((format(printf, 3, 4))) static void detail_printf(char *out, size_t cap,
                                                                const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, cap, fmt, ap);
  va_end(ap);
}

static long call(const jobs_config *cfg, const char *method, const char *path, json_t *body,
                 long timeout_ms, httpc_response *res, char *detail, size_t dlen) {
  char url[1024];
  snprintf(url, sizeof url, API "%s", path);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  httpc_request req = {.method = method,
                       .url = url,
                       .unix_socket = cfg->docker_socket,
                       .content_type = text ? "application/json" : NULL,
                       .body = text,
                       .body_len = text ? strlen(text) : 0,
                       .timeout_ms = timeout_ms};
  int rc = httpc_do(&req, res);
  free(text);
  if (rc != 0) {
    detail_printf(detail, dlen, "docker %s %s: %s", method, path, res->error);
    return 0;
  }
  if (res->status >= 300) {
    json_t *doc = json_loads(res->body, 0, NULL);
    detail_printf(detail, dlen, "docker %s %s: HTTP %ld %s", method, path, res->status,
             doc && json_string_value(json_object_get(doc, "message"))
                 ? json_string_value(json_object_get(doc, "message"))
                 : "");
    json_decref(doc);
  }
  return res->status;
}

static void remove_container(const jobs_config *cfg, const char *ref) {
  char path[256], detail[256];
  snprintf(path, sizeof path, "/containers/%s?force=1&v=1", ref);
  httpc_response res;
  long st = call(cfg, "DELETE", path, NULL, 30000, &res, detail, sizeof detail);
  if (st != 204 && st != 404) log_warn("jobs: %s", detail);
  httpc_response_free(&res);
}

static json_t *create_body(const jobs_config *cfg, const runner_task *t) {
  char bind[PATH_MAX + 16], attempt[16];
  snprintf(bind, sizeof bind, "%s/%s:/work:rw", cfg->docker_host_work_dir, t->work_name);
  snprintf(attempt, sizeof attempt, "%d", t->attempt);
  json_t *host = json_pack(
      "{s:[s], s:s, s:I, s:b, s:[s], s:[s], s:[{s:s, s:I, s:I}]}", "Binds", bind, "NetworkMode",
      "none", "PidsLimit", (json_int_t)cfg->pids, "ReadonlyRootfs", 1, "CapDrop", "ALL",
      "SecurityOpt", "no-new-privileges", "Ulimits", "Name", "nofile", "Soft",
      (json_int_t)cfg->nofile, "Hard", (json_int_t)cfg->nofile);
  if (cfg->memory_mb > 0) {
    json_int_t bytes = (json_int_t)cfg->memory_mb * 1024 * 1024;
    json_object_set_new(host, "Memory", json_integer(bytes));
    json_object_set_new(host, "MemorySwap", json_integer(bytes)); /* no swap on top */
  }
  if (cfg->cpus > 0) json_object_set_new(host, "NanoCpus", json_integer((json_int_t)(cfg->cpus * 1e9)));
  return json_pack("{s:s, s:[s], s:s, s:b, s:{s:s, s:s, s:s}, s:o}", "Image", cfg->docker_image,
                   "Cmd", "/work/control.json", "WorkingDir", "/work", "NetworkDisabled", 1,
                   "Labels", "voter.job", t->job_id, "voter.attempt", attempt, "voter.service",
                   "jobs", "HostConfig", host);
}

/* Docker multiplexes stdout/stderr as frames: [stream, 0, 0, 0, size (big-endian u32)]. */
static char *demux_logs(const char *raw, size_t len, size_t max) {
  char *plain = xmalloc(len + 1);
  size_t n = 0, i = 0;
  bool framed = len >= 8 && (raw[0] == 1 || raw[0] == 2) && raw[1] == 0 && raw[2] == 0 && raw[3] == 0;
  if (!framed) {
    memcpy(plain, raw, len);
    n = len;
  }
  while (framed && i + 8 <= len) {
    const unsigned char *h = (const unsigned char *)raw + i;
    size_t size = (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
    i += 8;
    if (size > len - i) size = len - i;
    memcpy(plain + n, raw + i, size);
    n += size;
    i += size;
  }
  char *tail = runner_tail(plain, n, max);
  free(plain);
  return tail;
}

static void fetch_logs(const jobs_config *cfg, const char *id, runner_result *out) {
  char path[256], detail[256];
  snprintf(path, sizeof path, "/containers/%s/logs?stdout=1&stderr=1&tail=1000", id);
  httpc_response res;
  if (call(cfg, "GET", path, NULL, 30000, &res, detail, sizeof detail) == 200)
    out->logs = demux_logs(res.body, res.len, (size_t)cfg->logs_max);
  httpc_response_free(&res);
}

/* Polls inspect; true when the container has exited (exit code and OOM flag set). */
static bool exited(const jobs_config *cfg, const char *id, int *code, bool *oom, char *detail,
                   size_t dlen, bool *gone) {
  char path[256];
  snprintf(path, sizeof path, "/containers/%s/json", id);
  httpc_response res;
  long st = call(cfg, "GET", path, NULL, 10000, &res, detail, dlen);
  bool done = false;
  *gone = st == 404;
  if (st == 200) {
    json_t *doc = json_loads(res.body, 0, NULL);
    json_t *state = json_object_get(doc, "State");
    const char *status = json_string_value(json_object_get(state, "Status"));
    if (status && (strcmp(status, "exited") == 0 || strcmp(status, "dead") == 0)) {
      done = true;
      *code = (int)json_integer_value(json_object_get(state, "ExitCode"));
      *oom = json_is_true(json_object_get(state, "OOMKilled"));
    }
    json_decref(doc);
  }
  httpc_response_free(&res);
  return done;
}

static int docker_run(runner *r, const runner_task *t, runner_result *out) {
  const jobs_config *cfg = r->cfg;
  memset(out, 0, sizeof *out);
  char name[96], path[256], id[80] = "";
  /* Leftovers of earlier attempts (a replica died: its container may still run) and of a
   * crashed run of this one: a job is run by one container at a time. */
  for (int k = 1; k <= t->attempt; k++) {
    snprintf(name, sizeof name, "voter-job-%s-%d", t->job_id, k);
    remove_container(cfg, name);
  }

  /* The image runs as an unprivileged user: let it write into the work directory. */
  chmod(t->work_dir, 0777);
  snprintf(path, sizeof path, "/containers/create?name=%s", name);
  httpc_response res;
  long st = call(cfg, "POST", path, create_body(cfg, t), 30000, &res, out->detail,
                 sizeof out->detail);
  if (st == 201) {
    json_t *doc = json_loads(res.body, 0, NULL);
    const char *cid = json_string_value(json_object_get(doc, "Id"));
    if (cid) snprintf(id, sizeof id, "%s", cid);
    json_decref(doc);
  }
  httpc_response_free(&res);
  if (!id[0]) {
    out->outcome = RUN_ERROR;
    return -1;
  }
  log_fields(LOG_INFO, "job container created",
             json_pack("{s:s, s:i, s:s, s:s}", "job", t->job_id, "attempt", t->attempt,
                       "container", id, "image", cfg->docker_image));
  snprintf(path, sizeof path, "/containers/%s/start", id);
  st = call(cfg, "POST", path, NULL, 30000, &res, out->detail, sizeof out->detail);
  httpc_response_free(&res);
  if (st != 204 && st != 304) {
    remove_container(cfg, id);
    out->outcome = RUN_ERROR;
    return -1;
  }

  double started = util_monotonic();
  int code = 0, failures = 0;
  bool oom = false, gone = false, done = false;
  runner_outcome stopped_as = RUN_EXITED;
  char detail[256];
  while (!done) {
    if (atomic_load(t->stop)) stopped_as = RUN_STOPPED;
    else if (util_monotonic() - started >= (double)t->deadline_s) stopped_as = RUN_DEADLINE;
    if (stopped_as != RUN_EXITED) {
      snprintf(path, sizeof path, "/containers/%s/stop?t=%ld", id, cfg->kill_grace_s);
      call(cfg, "POST", path, NULL, (cfg->kill_grace_s + 30) * 1000, &res, detail, sizeof detail);
      httpc_response_free(&res);
      exited(cfg, id, &code, &oom, detail, sizeof detail, &gone);
      break;
    }
    done = exited(cfg, id, &code, &oom, detail, sizeof detail, &gone);
    if (gone || (!done && detail[0] && ++failures > 25)) {
      /* removed under us, or the engine stopped answering for ~5 s */
      snprintf(out->detail, sizeof out->detail, "lost the container: %s",
               gone ? "it was removed" : detail);
      remove_container(cfg, id);
      out->outcome = RUN_ERROR;
      return -1;
    }
    detail[0] = 0;
    if (!done) runner_sleep(NULL, POLL_MS);
  }
  fetch_logs(cfg, id, out);
  remove_container(cfg, id);
  if (stopped_as != RUN_EXITED) {
    out->outcome = stopped_as;
    out->exit_code = code;
  } else if (oom) {
    out->outcome = RUN_SIGNALED;
    out->signal = 9;
    snprintf(out->detail, sizeof out->detail, "memory limit exceeded (OOM killed)");
  } else if (code > 128) { /* killed by a signal: 128 + its number */
    out->outcome = RUN_SIGNALED;
    out->signal = code - 128;
    snprintf(out->detail, sizeof out->detail, "killed by signal %d", out->signal);
  } else {
    out->outcome = RUN_EXITED;
    out->exit_code = code;
  }
  return 0;
}

static void docker_destroy(runner *r) { free(r); }

runner *runner_docker_new(const jobs_config *cfg) {
  struct stat st;
  if (stat(cfg->docker_socket, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    log_error("jobs: JOBS_DOCKER_SOCKET %s is not a socket", cfg->docker_socket);
    return NULL;
  }
  docker_runner *d = xcalloc(1, sizeof *d);
  d->base.name = "docker";
  d->base.run = docker_run;
  d->base.destroy = docker_destroy;
  d->base.cfg = cfg;
  return &d->base;
}
