/* runner_k8s — `tabulate` as a Kubernetes batch/v1 Job, through the API server.
 *
 * In the cluster the jobs pods and the Job's pod mount the same volume (a ReadWriteMany
 * claim, JOBS_K8S_PVC): the jobs service writes the work directory below JOBS_WORK_DIR,
 * the Job's pod sees it at /work (subPath <JOBS_K8S_PVC_SUBDIR>/<id>-<attempt>). The API
 * server is reached with the pod's service-account token and the cluster CA from the
 * standard in-cluster paths (or the JOBS_K8S_* overrides). The token file is read on every
 * call, because projected tokens are rotated.
 *
 * create Job (backoffLimit, activeDeadlineSeconds = the deadline, ttlSecondsAfterFinished,
 * resource limits, non-root, read-only root, no service-account token in the pod) → poll
 * its status → exit code and logs of its pod → delete it with propagationPolicy
 * Background (the pod goes too). A stop deletes the Job the same way: the kubelet sends
 * SIGTERM, waits terminationGracePeriodSeconds (the grace period), then SIGKILL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "voter/httpc.h"
#include "runner.h"
#include "voter/log.h"
#include "voter/util.h"
#include "voter/xalloc.h"

/* Beyond activeDeadlineSeconds, how long we wait for Kubernetes to report the Job failed
 * before deleting it ourselves. */
#define DEADLINE_SLACK_S 30

typedef struct k8s_runner {
  runner base;
} k8s_runner;

static char *read_token(const jobs_config *cfg) {
  char *tok;
  size_t len;
  if (fs_read(cfg->k8s_token_file, 64 * 1024, &tok, &len) != 0) return NULL;
  while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r' || tok[len - 1] == ' '))
    tok[--len] = 0;
  return tok;
}

/* One API call; body is stolen. The HTTP status, or 0 on a transport error. */
static long call(const jobs_config *cfg, const char *method, const char *path, json_t *body,
                 httpc_response *res, char *detail, size_t dlen) {
  char url[2048];
  snprintf(url, sizeof url, "%s%s", cfg->k8s_api_url, path);
  char *token = read_token(cfg);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  httpc_request req = {.method = method,
                       .url = url,
                       .bearer = token,
                       .ca_file = cfg->k8s_ca_file[0] ? cfg->k8s_ca_file : NULL,
                       .content_type = text ? "application/json" : NULL,
                       .body = text,
                       .body_len = text ? strlen(text) : 0,
                       .timeout_ms = 30000};
  int rc = httpc_do(&req, res);
  free(text);
  free(token);
  if (rc != 0) {
    snprintf(detail, dlen, "kubernetes %s %s: %s", method, path, res->error);
    return 0;
  }
  if (res->status >= 300) {
    json_t *doc = json_loads(res->body, 0, NULL);
    const char *msg = json_string_value(json_object_get(doc, "message"));
    snprintf(detail, dlen, "kubernetes %s %s: HTTP %ld %s", method, path, res->status,
             msg ? msg : "");
    json_decref(doc);
  }
  return res->status;
}

static json_t *labels(const runner_task *t) {
  char attempt[16];
  snprintf(attempt, sizeof attempt, "%d", t->attempt);
  return json_pack("{s:s, s:s, s:s, s:s}", "app.kubernetes.io/name", "voter-tabulate",
                   "app.kubernetes.io/part-of", "voter", "voter.job", t->job_id,
                   "voter.attempt", attempt);
}

static json_t *job_manifest(const jobs_config *cfg, const runner_task *t, const char *name) {
  char sub[1024], cpu[32], mem[32];
  if (cfg->k8s_pvc_subdir[0])
    snprintf(sub, sizeof sub, "%s/%s", cfg->k8s_pvc_subdir, t->work_name);
  else
    snprintf(sub, sizeof sub, "%s", t->work_name);
  json_t *limits = json_object();
  if (cfg->cpus > 0) {
    snprintf(cpu, sizeof cpu, "%ldm", (long)(cfg->cpus * 1000));
    json_object_set_new(limits, "cpu", json_string(cpu));
  }
  if (cfg->memory_mb > 0) {
    snprintf(mem, sizeof mem, "%ldMi", cfg->memory_mb);
    json_object_set_new(limits, "memory", json_string(mem));
  }
  json_t *container = json_pack(
      "{s:s, s:s, s:[s], s:s, s:{s:O, s:O}, s:{s:b, s:b, s:{s:[s]}}, s:[{s:s, s:s, s:s}]}",
      "name", "tabulate", "image", cfg->k8s_image, "args", "/work/control.json", "workingDir",
      "/work", "resources", "limits", limits, "requests", limits, "securityContext",
      "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1, "capabilities", "drop", "ALL",
      "volumeMounts", "name", "work", "mountPath", "/work", "subPath", sub);
  json_decref(limits);
  json_t *pod = json_pack(
      "{s:s, s:b, s:b, s:I, s:{s:b, s:i, s:i, s:i, s:{s:s}}, s:[o], s:[{s:s, s:{s:s}}]}",
      "restartPolicy", "Never", "automountServiceAccountToken", 0, "enableServiceLinks", 0,
      "terminationGracePeriodSeconds", (json_int_t)cfg->kill_grace_s, "securityContext",
      "runAsNonRoot", 1, "runAsUser", 10001, "runAsGroup", 10001, "fsGroup", 10001,
      "seccompProfile", "type", "RuntimeDefault", "containers", container, "volumes", "name",
      "work", "persistentVolumeClaim", "claimName", cfg->k8s_pvc);
  return json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:I, s:I, s:I, s:{s:{s:o}, s:o}}}",
                   "apiVersion", "batch/v1", "kind", "Job", "metadata", "name", name, "labels",
                   labels(t), "spec", "backoffLimit", (json_int_t)cfg->k8s_backoff_limit,
                   "activeDeadlineSeconds", (json_int_t)t->deadline_s,
                   "ttlSecondsAfterFinished", (json_int_t)cfg->k8s_ttl_s, "template",
                   "metadata", "labels", labels(t), "spec", pod);
}

static void delete_job(const jobs_config *cfg, const char *name) {
  char path[512], detail[256];
  snprintf(path, sizeof path, "/apis/batch/v1/namespaces/%s/jobs/%s?propagationPolicy=Background",
           cfg->k8s_namespace, name);
  httpc_response res;
  long st = call(cfg, "DELETE", path,
                 json_pack("{s:s, s:s, s:s}", "kind", "DeleteOptions", "apiVersion", "v1",
                           "propagationPolicy", "Background"),
                 &res, detail, sizeof detail);
  if (st != 200 && st != 202 && st != 404) log_warn("jobs: %s", detail);
  httpc_response_free(&res);
}

typedef enum { JOB_RUNNING, JOB_COMPLETE, JOB_FAILED, JOB_GONE, JOB_UNKNOWN } job_phase;

/* The Job's state from its conditions; reason receives the Failed condition's reason. */
static job_phase job_state(const jobs_config *cfg, const char *name, char *reason, size_t rlen,
                           char *detail, size_t dlen) {
  char path[512];
  snprintf(path, sizeof path, "/apis/batch/v1/namespaces/%s/jobs/%s", cfg->k8s_namespace, name);
  httpc_response res;
  long st = call(cfg, "GET", path, NULL, &res, detail, dlen);
  job_phase phase = st == 404 ? JOB_GONE : JOB_UNKNOWN;
  if (st == 200) {
    json_t *doc = json_loads(res.body, 0, NULL);
    json_t *status = json_object_get(doc, "status"), *c;
    size_t i;
    phase = JOB_RUNNING;
    json_array_foreach(json_object_get(status, "conditions"), i, c) {
      const char *type = json_string_value(json_object_get(c, "type"));
      const char *cst = json_string_value(json_object_get(c, "status"));
      if (!type || !cst || strcmp(cst, "True") != 0) continue;
      if (strcmp(type, "Complete") == 0) phase = JOB_COMPLETE;
      if (strcmp(type, "Failed") == 0) {
        phase = JOB_FAILED;
        const char *why = json_string_value(json_object_get(c, "reason"));
        snprintf(reason, rlen, "%s", why ? why : "Failed");
      }
    }
    json_decref(doc);
  }
  httpc_response_free(&res);
  return phase;
}

/* Exit code (or -1), termination reason and logs of the Job's pod. */
static void pod_outcome(const jobs_config *cfg, const char *name, int *exit_code, char *reason,
                        size_t rlen, runner_result *out) {
  char path[1024], detail[256], pod[256] = "";
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods?labelSelector=job-name%%3D%s",
           cfg->k8s_namespace, name);
  httpc_response res;
  *exit_code = -1;
  if (call(cfg, "GET", path, NULL, &res, detail, sizeof detail) == 200) {
    json_t *doc = json_loads(res.body, 0, NULL);
    json_t *item = json_array_get(json_object_get(doc, "items"), 0);
    const char *pname = json_string_value(json_object_get(json_object_get(item, "metadata"), "name"));
    if (pname) snprintf(pod, sizeof pod, "%s", pname);
    json_t *cs = json_array_get(json_object_get(json_object_get(item, "status"), "containerStatuses"), 0);
    json_t *term = json_object_get(json_object_get(cs, "state"), "terminated");
    if (json_is_integer(json_object_get(term, "exitCode")))
      *exit_code = (int)json_integer_value(json_object_get(term, "exitCode"));
    const char *why = json_string_value(json_object_get(term, "reason"));
    if (why) snprintf(reason, rlen, "%s", why);
    json_decref(doc);
  }
  httpc_response_free(&res);
  if (!pod[0]) return;
  snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s/log?container=tabulate&tailLines=1000",
           cfg->k8s_namespace, pod);
  if (call(cfg, "GET", path, NULL, &res, detail, sizeof detail) == 200)
    out->logs = runner_tail(res.body, res.len, (size_t)cfg->logs_max);
  httpc_response_free(&res);
}

static int k8s_run(runner *r, const runner_task *t, runner_result *out) {
  const jobs_config *cfg = r->cfg;
  memset(out, 0, sizeof *out);
  char name[96], path[512];
  /* Jobs of earlier attempts (a replica died: its Job may still run) and a leftover of a
   * crashed run of this one: a job is run by one Kubernetes Job at a time. */
  for (int k = 1; k <= t->attempt; k++) {
    snprintf(name, sizeof name, "voter-job-%s-%d", t->job_id, k);
    delete_job(cfg, name);
  }
  snprintf(path, sizeof path, "/apis/batch/v1/namespaces/%s/jobs", cfg->k8s_namespace);
  httpc_response res;
  long st = call(cfg, "POST", path, job_manifest(cfg, t, name), &res, out->detail,
                 sizeof out->detail);
  httpc_response_free(&res);
  if (st == 409) { /* the old one is still being deleted: retried as a runner error */
    out->outcome = RUN_ERROR;
    return -1;
  }
  if (st != 201 && st != 200) {
    out->outcome = RUN_ERROR;
    return -1;
  }
  log_fields(LOG_INFO, "kubernetes job created",
             json_pack("{s:s, s:i, s:s, s:s}", "job", t->job_id, "attempt", t->attempt, "name",
                       name, "namespace", cfg->k8s_namespace));

  double started = util_monotonic();
  char reason[128] = "", detail[256] = "";
  job_phase phase = JOB_RUNNING;
  int failures = 0;
  runner_outcome stopped_as = RUN_EXITED;
  for (;;) {
    if (runner_sleep(t->stop, cfg->k8s_poll_ms)) {
      stopped_as = RUN_STOPPED;
      break;
    }
    if (util_monotonic() - started >= (double)(t->deadline_s + DEADLINE_SLACK_S)) {
      stopped_as = RUN_DEADLINE;
      break;
    }
    detail[0] = 0;
    phase = job_state(cfg, name, reason, sizeof reason, detail, sizeof detail);
    if (phase == JOB_COMPLETE || phase == JOB_FAILED || phase == JOB_GONE) break;
    if (phase == JOB_UNKNOWN && ++failures * cfg->k8s_poll_ms > 60000) break;
    if (phase == JOB_RUNNING) failures = 0;
  }
  int code = -1;
  char term[128] = "";
  if (phase != JOB_GONE) pod_outcome(cfg, name, &code, term, sizeof term, out);
  delete_job(cfg, name);
  if (stopped_as != RUN_EXITED) {
    out->outcome = stopped_as;
    out->exit_code = code;
  } else if (phase == JOB_GONE || phase == JOB_UNKNOWN) {
    snprintf(out->detail, sizeof out->detail, "lost the Kubernetes Job: %s",
             phase == JOB_GONE ? "it was deleted" : detail);
    out->outcome = RUN_ERROR;
    return -1;
  } else if (phase == JOB_FAILED && strcmp(reason, "DeadlineExceeded") == 0) {
    out->outcome = RUN_DEADLINE;
    out->exit_code = code;
  } else if (strcmp(term, "OOMKilled") == 0) {
    out->outcome = RUN_SIGNALED;
    out->signal = 9;
    snprintf(out->detail, sizeof out->detail, "memory limit exceeded (OOM killed)");
  } else if (code >= 0) {
    out->outcome = RUN_EXITED;
    out->exit_code = code;
  } else {
    out->outcome = RUN_ERROR;
    snprintf(out->detail, sizeof out->detail, "the Kubernetes Job %s (%s) left no exit code",
             phase == JOB_FAILED ? "failed" : "completed", reason[0] ? reason : "no reason");
    return -1;
  }
  return 0;
}

static void k8s_destroy(runner *r) { free(r); }

runner *runner_k8s_new(const jobs_config *cfg) {
  if (!cfg->k8s_api_url[0] || !cfg->k8s_namespace[0] || !cfg->k8s_pvc[0] ||
      !cfg->k8s_image[0]) {
    log_error("jobs: the kubernetes runner needs the API server URL (KUBERNETES_SERVICE_HOST "
              "or JOBS_K8S_API_URL), a namespace, JOBS_K8S_PVC and JOBS_K8S_IMAGE");
    return NULL;
  }
  k8s_runner *k = xcalloc(1, sizeof *k);
  k->base.name = "kubernetes";
  k->base.run = k8s_run;
  k->base.destroy = k8s_destroy;
  k->base.cfg = cfg;
  return &k->base;
}
