/* worker — the worker pool and the lease keeper; see worker.h. */
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fsutil.h"
#include "sweeper.h"
#include "voter/crashpoint.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"
#include "voter/xalloc.h"
#include "webhook.h"

#define RESULT_MAX (15u << 20) /* a result must fit in one MongoDB document */
#define CONTROL "{\"ballots\":\"ballots.csv\",\"rules\":\"rules.json\",\"out\":\"result.json\"," \
                "\"progress\":\"progress.json\"}\n"

typedef enum { WHY_NONE = 0, WHY_CANCEL, WHY_LOST, WHY_SHUTDOWN } stop_reason;

typedef struct slot {
  worker_pool *pool;
  pthread_t thread;
  bool busy;      /* assigned a job (pool lock) */
  bool running;   /* the runner has it: the lease keeper renews it (pool lock) */
  wq_delivery delivery;
  job_info job;   /* as claimed */
  char work_dir[PATH_MAX];
  atomic_int stop;
  atomic_int why;
  int64_t lease_until_ms; /* last renewal that succeeded */
} slot;

struct worker_pool {
  jobs_app *app;
  int n;
  slot *slots;
  pthread_mutex_t lock;
  pthread_cond_t cond;   /* an assignment, a free slot, or stopping */
  bool stopping;
  pthread_t keeper;
  atomic_int keeper_stop;
};

static double now_s(void) { return util_monotonic(); }

static void metrics_running(worker_pool *p) {
  int busy = 0;
  for (int i = 0; i < p->n; i++) busy += p->slots[i].busy;
  metrics_gauge_set("jobs_running", "", busy);
}

/* ---- dispatch (work queue thread) ---- */

static slot *free_slot(worker_pool *p) {
  for (int i = 0; i < p->n; i++)
    if (!p->slots[i].busy) return &p->slots[i];
  return NULL;
}

static bool runs_locally(worker_pool *p, const char *id) {
  bool found = false;
  pthread_mutex_lock(&p->lock);
  for (int i = 0; i < p->n; i++)
    if (p->slots[i].busy && strcmp(p->slots[i].job.id, id) == 0) found = true;
  pthread_mutex_unlock(&p->lock);
  return found;
}

/* Claims the job and hands it to a free slot. */
static wq_verdict claim_and_assign(worker_pool *p, job_info *j, wq_delivery *d, long *later_ms) {
  const jobs_config *cfg = p->app->cfg;
  pthread_mutex_lock(&p->lock);
  bool room = free_slot(p) && !p->stopping;
  pthread_mutex_unlock(&p->lock);
  if (!room) {
    *later_ms = 500;
    return WQ_LATER;
  }
  js_status st = store_claim(p->app->store, j, cfg->instance, cfg->lease_s);
  if (st == JS_CONFLICT) { /* changed since we read it: look again now */
    *later_ms = 1;
    return WQ_LATER;
  }
  if (st != JS_OK) {
    *later_ms = 2000;
    return WQ_LATER;
  }
  pthread_mutex_lock(&p->lock);
  slot *s = free_slot(p); /* only this thread assigns: still free */
  s->busy = true;
  s->delivery = *d;
  s->job = *j;
  atomic_store(&s->stop, 0);
  atomic_store(&s->why, WHY_NONE);
  s->lease_until_ms = j->lease_until_ms;
  metrics_running(p);
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
  app_changed(p->app);
  return WQ_TAKEN;
}

wq_verdict worker_dispatch(void *ctx, wq_delivery *d, long *later_ms) {
  worker_pool *p = ctx;
  const jobs_config *cfg = p->app->cfg;
  job_info j;
  js_status st = store_get(p->app->store, d->job_id, &j);
  if (st == JS_NOT_FOUND) {
    log_warn("jobs: work message for unknown job %s dropped", d->job_id);
    return WQ_ACK;
  }
  if (st != JS_OK) {
    *later_ms = 2000;
    return WQ_LATER;
  }
  int64_t now = util_now_ms();
  if (strcmp(j.status, "pending") == 0) {
    /* Backing off after a runner error: the sweeper sends a new message when it is due. */
    if (j.not_before_ms > now) return WQ_ACK;
    return claim_and_assign(p, &j, d, later_ms);
  }
  if (strcmp(j.status, "running") != 0) return WQ_ACK; /* final or purged */
  if (strcmp(j.worker, cfg->instance) == 0 && runs_locally(p, j.id)) return WQ_ACK;
  if (j.lease_until_ms >= now) {
    /* Someone holds a live lease. First sight: remember it and look again when it would
     * expire. Renewed since: the owner lives and finishes the job (or the sweeper
     * notices if it dies later). */
    if (d->note && j.lease_until_ms > d->note) return WQ_ACK;
    d->note = j.lease_until_ms;
    *later_ms = (long)(j.lease_until_ms - now) + 200;
    return WQ_LATER;
  }
  if (j.attempts >= cfg->max_attempts) {
    char reason[160];
    snprintf(reason, sizeof reason, "the worker was lost and the attempt budget (%ld) is spent",
             cfg->max_attempts);
    st = store_fail_expired(p->app->store, &j, reason);
    if (st == JS_OK) {
      metrics_counter_inc("jobs_total", "status=\"failed\"");
      app_changed(p->app);
      webhooks_kick(p->app->hooks);
    }
    if (st == JS_UNAVAILABLE) {
      *later_ms = 2000;
      return WQ_LATER;
    }
    return st == JS_CONFLICT ? (*later_ms = 1, WQ_LATER) : WQ_ACK;
  }
  log_fields(LOG_WARN, "taking over a job whose lease expired",
             json_pack("{s:s, s:s, s:i}", "job", j.id, "previousWorker", j.worker, "attempts",
                       j.attempts));
  return claim_and_assign(p, &j, d, later_ms);
}

/* ---- running one job ---- */

static int write_inputs(worker_pool *p, slot *s, char *why, size_t wlen) {
  job_store *store = p->app->store;
  char key[64], path[PATH_MAX + 32];
  const char *names[2][2] = {{"rules", "rules.json"}, {"ballots", "ballots.csv"}};
  for (int i = 0; i < 2; i++) {
    char *data;
    size_t len;
    snprintf(key, sizeof key, "%s.%s", s->job.id, names[i][0]);
    js_status st = store_get_data(store, key, &data, &len);
    if (st != JS_OK) {
      snprintf(why, wlen, st == JS_NOT_FOUND ? "the job's %s are missing"
                                             : "cannot read the job's %s", names[i][0]);
      return st == JS_NOT_FOUND ? -2 : -1;
    }
    snprintf(path, sizeof path, "%s/%s", s->work_dir, names[i][1]);
    int rc = fs_write(path, data, len);
    free(data);
    if (rc != 0) {
      snprintf(why, wlen, "cannot write %.400s: %s", path, strerror(errno));
      return -1;
    }
  }
  snprintf(path, sizeof path, "%s/control.json", s->work_dir);
  if (fs_write(path, CONTROL, strlen(CONTROL)) != 0) {
    snprintf(why, wlen, "cannot write %.400s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* What the output file says about a failed run: the error message or the stop reason. */
static void output_reason(const char *work_dir, int code, char *reason, size_t rlen) {
  char *text;
  size_t len;
  const char *what = code == 2 ? "invalid input" : code == 3 ? "the count could not finish"
                                                  : code == 1 ? "internal error in tabulate"
                                                              : "tabulate failed";
  const char *detail = NULL;
  json_t *doc = NULL;
  if (fs_read_in(work_dir, "result.json", RESULT_MAX, &text, &len) == 0) {
    doc = json_loadb(text, len, 0, NULL);
    free(text);
    detail = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    if (!detail) detail = json_string_value(json_object_get(json_object_get(doc, "stopped"), "reason"));
  }
  if (detail) snprintf(reason, rlen, "%s: %s", what, detail);
  else snprintf(reason, rlen, "%s (exit code %d)", what, code);
  json_decref(doc);
}

static long backoff_ms(int attempt) {
  long ms = 1000L << (attempt < 6 ? attempt : 6);
  return ms > 60000 ? 60000 : ms;
}

static void record(worker_pool *p, slot *s, const runner_result *rr, double run_s) {
  jobs_app *app = p->app;
  const jobs_config *cfg = app->cfg;
  job_store *store = app->store;
  const char *id = s->job.id;
  int attempt = s->job.attempts;
  char key[64];
  if (rr->logs) {
    snprintf(key, sizeof key, "%s.logs", id);
    store_put_data(store, key, id, rr->logs, strlen(rr->logs));
  }
  int why = atomic_load(&s->why);
  if (rr->outcome == RUN_STOPPED || (why != WHY_NONE && rr->outcome != RUN_EXITED)) {
    if (why == WHY_CANCEL) {
      store_note_exit(store, id, attempt, rr->exit_code);
    } else if (why == WHY_SHUTDOWN) {
      if (store_requeue_own(store, id, cfg->instance, attempt, util_now_ms(), 1,
                            "the worker shut down") == JS_OK)
        log_fields(LOG_INFO, "job handed back", json_pack("{s:s}", "job", id));
    } else {
      log_fields(LOG_WARN, "job run stopped: the lease is lost",
                 json_pack("{s:s, s:i}", "job", id, "attempt", attempt));
    }
    return;
  }
  if (rr->outcome == RUN_ERROR) {
    log_fields(LOG_WARN, "runner error",
               json_pack("{s:s, s:i, s:s}", "job", id, "attempt", attempt, "detail", rr->detail));
    if (attempt < cfg->max_attempts) {
      if (store_requeue_own(store, id, cfg->instance, attempt,
                            util_now_ms() + backoff_ms(attempt), 0, rr->detail) == JS_OK)
        sweeper_kick(app->sweeper);
      return;
    }
  }
  job_outcome o = {.status = "failed", .run_seconds = run_s};
  char reason[600] = "", result_key[64] = "";
  switch (rr->outcome) {
  case RUN_ERROR:
    snprintf(reason, sizeof reason, "runner error (attempt budget spent): %s", rr->detail);
    break;
  case RUN_DEADLINE:
    snprintf(reason, sizeof reason, "deadline exceeded");
    break;
  case RUN_SIGNALED:
    snprintf(reason, sizeof reason, "%s", rr->detail);
    o.has_exit_code = true;
    o.exit_code = 128 + rr->signal;
    break;
  case RUN_EXITED:
    o.has_exit_code = true;
    o.exit_code = rr->exit_code;
    if (rr->exit_code == 0) {
      char *text = NULL;
      size_t len;
      int rc = fs_read_in(s->work_dir, "result.json", RESULT_MAX, &text, &len);
      if (rc == 0 && store_put_result(store, id, attempt, text, len, result_key) == JS_OK) {
        CRASH_POINT("job.result-written");
        o.status = "succeeded";
        o.result_key = result_key;
      } else if (rc == -2) {
        snprintf(reason, sizeof reason, "the result is larger than %u bytes", RESULT_MAX);
      } else if (rc != 0) {
        snprintf(reason, sizeof reason, "tabulate wrote no result file");
      } else {
        /* The database failed us, not the job: retry if the budget allows. */
        free(text);
        if (attempt < cfg->max_attempts &&
            store_requeue_own(store, id, cfg->instance, attempt,
                              util_now_ms() + backoff_ms(attempt), 0,
                              "cannot store the result") == JS_OK) {
          sweeper_kick(app->sweeper);
          return;
        }
        snprintf(reason, sizeof reason, "cannot store the result");
      }
      free(text);
    } else {
      output_reason(s->work_dir, rr->exit_code, reason, sizeof reason);
    }
    break;
  case RUN_STOPPED:
    break;
  }
  if (strcmp(o.status, "failed") == 0) o.reason = reason;
  js_status st = store_finish(store, id, cfg->instance, attempt, &o);
  if (st != JS_OK) {
    /* Cancelled or taken over while we ran: our result must not exist. */
    if (o.result_key) store_delete_data(store, o.result_key);
    job_info now;
    if (store_get(store, id, &now) == JS_OK && strcmp(now.status, "cancelled") == 0 &&
        now.attempts == attempt)
      store_note_exit(store, id, attempt, o.exit_code);
    log_fields(LOG_WARN, "job outcome not recorded: the job changed meanwhile",
               json_pack("{s:s, s:i}", "job", id, "attempt", attempt));
    return;
  }
  char labels[64];
  snprintf(labels, sizeof labels, "status=\"%s\"", o.status);
  metrics_counter_inc("jobs_total", labels);
  snprintf(labels, sizeof labels, "runner=\"%s\"", app->runner->name);
  metrics_histogram_observe("jobs_duration_seconds", labels, run_s);
  log_fields(LOG_INFO, "job finished",
             json_pack("{s:s, s:s, s:i, s:f, s:s}", "job", id, "status", o.status, "attempt",
                       attempt, "seconds", run_s, "reason", reason));
  webhooks_kick(app->hooks);
}

static void run_job(worker_pool *p, slot *s) {
  jobs_app *app = p->app;
  const jobs_config *cfg = app->cfg;
  char work_name[64], why[512] = "";
  snprintf(work_name, sizeof work_name, "%s-%d", s->job.id, s->job.attempts);
  snprintf(s->work_dir, sizeof s->work_dir, "%s/%s", cfg->work_dir, work_name);
  log_fields(LOG_INFO, "job started",
             json_pack("{s:s, s:i, s:s}", "job", s->job.id, "attempt", s->job.attempts, "runner",
                       app->runner->name));
  fs_remove_tree(s->work_dir);
  int rc = fs_mkdirs(s->work_dir, 0700);
  if (rc == 0 && strcmp(app->runner->name, "local") != 0)
    chmod(s->work_dir, 0777); /* the tabulator image runs as its own user */
  if (rc != 0) snprintf(why, sizeof why, "cannot create %.400s: %s", s->work_dir, strerror(errno));
  else rc = write_inputs(p, s, why, sizeof why);

  runner_result rr = {0};
  double started = now_s();
  if (rc == -2) {
    rr.outcome = RUN_ERROR; /* inputs gone (purged?): nothing to retry */
    job_outcome o = {.status = "failed", .reason = why};
    store_finish(app->store, s->job.id, cfg->instance, s->job.attempts, &o);
    webhooks_kick(app->hooks);
  } else {
    if (rc != 0) {
      rr.outcome = RUN_ERROR;
      snprintf(rr.detail, sizeof rr.detail, "%s", why);
    } else {
      pthread_mutex_lock(&p->lock);
      s->running = true;
      pthread_mutex_unlock(&p->lock);
      runner_task t = {.job_id = s->job.id, .attempt = s->job.attempts, .work_dir = s->work_dir,
                       .work_name = work_name, .deadline_s = cfg->deadline_s, .stop = &s->stop};
      app->runner->run(app->runner, &t, &rr);
      pthread_mutex_lock(&p->lock);
      s->running = false;
      pthread_mutex_unlock(&p->lock);
    }
    record(p, s, &rr, now_s() - started);
  }
  free(rr.logs);
  if (fs_remove_tree(s->work_dir) != 0)
    log_warn("jobs: cannot remove %s: %s", s->work_dir, strerror(errno));
}

static void *slot_main(void *arg) {
  slot *s = arg;
  worker_pool *p = s->pool;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!s->busy && !p->stopping) pthread_cond_wait(&p->cond, &p->lock);
    if (!s->busy) break;
    pthread_mutex_unlock(&p->lock);
    run_job(p, s);
    bool requeue = atomic_load(&s->why) == WHY_SHUTDOWN;
    wq_done(p->app->wq, &s->delivery, requeue);
    pthread_mutex_lock(&p->lock);
    s->busy = false;
    metrics_running(p);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    app_changed(p->app);
    pthread_mutex_lock(&p->lock);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

/* ---- the lease keeper ---- */

typedef struct renewal {
  slot *s;
  char id[25];
  int attempt;
  char work_dir[PATH_MAX];
} renewal;

static void read_progress(const char *work_dir, char *phase, size_t plen, int64_t *done,
                          int64_t *total) {
  char *text;
  size_t len;
  snprintf(phase, plen, "starting");
  *done = *total = 0;
  if (fs_read_in(work_dir, "progress.json", 4096, &text, &len) != 0) return;
  json_t *doc = json_loadb(text, len, 0, NULL);
  free(text);
  const char *ph = json_string_value(json_object_get(doc, "phase"));
  if (ph) snprintf(phase, plen, "%s", ph);
  *done = json_integer_value(json_object_get(doc, "done"));
  *total = json_integer_value(json_object_get(doc, "total"));
  json_decref(doc);
}

static void renew_one(worker_pool *p, const renewal *r) {
  jobs_app *app = p->app;
  char phase[24];
  int64_t done, total;
  read_progress(r->work_dir, phase, sizeof phase, &done, &total);
  js_status st = store_renew(app->store, r->id, app->cfg->instance, r->attempt,
                             app->cfg->lease_s, phase, done, total);
  int why = WHY_NONE;
  if (st == JS_OK) {
    r->s->lease_until_ms = util_now_ms() + app->cfg->lease_s * 1000;
  } else if (st == JS_CONFLICT) {
    job_info j;
    js_status g = store_get(app->store, r->id, &j);
    why = g == JS_OK && strcmp(j.status, "cancelled") == 0 ? WHY_CANCEL : WHY_LOST;
  } else if (util_now_ms() > r->s->lease_until_ms) {
    /* Could not renew and the lease ran out: another replica may take the job over, so
     * this run must not go on. */
    why = WHY_LOST;
  }
  if (why != WHY_NONE && atomic_load(&r->s->why) == WHY_NONE) {
    atomic_store(&r->s->why, why);
    atomic_store(&r->s->stop, 1);
    log_fields(LOG_INFO, "stopping a job run",
               json_pack("{s:s, s:s}", "job", r->id, "why", why == WHY_CANCEL ? "cancelled"
                                                             : "lease lost"));
  }
}

static void *keeper_main(void *arg) {
  worker_pool *p = arg;
  long period_ms = p->app->cfg->lease_s * 1000 / 3;
  if (period_ms > 1000) period_ms = 1000;
  if (period_ms < 100) period_ms = 100;
  renewal *list = xcalloc((size_t)p->n, sizeof *list);
  while (list && !atomic_load(&p->keeper_stop)) {
    int n = 0;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->n; i++) {
      slot *s = &p->slots[i];
      if (!s->running) continue;
      list[n].s = s;
      memcpy(list[n].id, s->job.id, sizeof list[n].id);
      list[n].attempt = s->job.attempts;
      snprintf(list[n].work_dir, sizeof list[n].work_dir, "%s", s->work_dir);
      n++;
    }
    pthread_mutex_unlock(&p->lock);
    /* A slot listed here stays valid: its run cannot end and be reassigned before the
     * runner notices a stop, and renewing an attempt that just ended is refused by the
     * store (its status changed). */
    for (int i = 0; i < n; i++) renew_one(p, &list[i]);
    if (n) app_changed(p->app);
    for (long slept = 0; slept < period_ms && !atomic_load(&p->keeper_stop); slept += 50) {
      struct timespec ts = {0, 50 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  free(list);
  return NULL;
}

/* ---- life cycle ---- */

worker_pool *worker_start(jobs_app *app) {
  worker_pool *p = xcalloc(1, sizeof *p);
  p->app = app;
  p->n = (int)app->cfg->concurrency;
  p->slots = xcalloc((size_t)p->n, sizeof *p->slots);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->cond, NULL);
  metrics_describe("jobs_total", "counter", "Jobs that reached a final state here, by status");
  metrics_describe("jobs_duration_seconds", "histogram", "Run time of finished jobs");
  metrics_describe("jobs_running", "gauge", "Jobs running on this replica");
  metrics_gauge_set("jobs_running", "", 0);
  int started = 0;
  for (int i = 0; p->slots && i < p->n; i++) {
    p->slots[i].pool = p;
    if (pthread_create(&p->slots[i].thread, NULL, slot_main, &p->slots[i]) != 0) break;
    started++;
  }
  bool keeper = started == p->n && pthread_create(&p->keeper, NULL, keeper_main, p) == 0;
  if (!keeper) {
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < started; i++) pthread_join(p->slots[i].thread, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->slots);
    free(p);
    return NULL;
  }
  return p;
}

bool worker_cancel_local(worker_pool *p, const char *id) {
  bool found = false;
  pthread_mutex_lock(&p->lock);
  for (int i = 0; i < p->n; i++) {
    slot *s = &p->slots[i];
    if (s->busy && strcmp(s->job.id, id) == 0) {
      atomic_store(&s->why, WHY_CANCEL);
      atomic_store(&s->stop, 1);
      found = true;
    }
  }
  pthread_mutex_unlock(&p->lock);
  return found;
}

static int busy_count(worker_pool *p) {
  int n = 0;
  for (int i = 0; i < p->n; i++) n += p->slots[i].busy;
  return n;
}

void worker_drain(worker_pool *p, long drain_s) {
  if (!p) return;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += drain_s;
  pthread_mutex_lock(&p->lock);
  p->stopping = true; /* no new assignments */
  pthread_cond_broadcast(&p->cond);
  while (busy_count(p) > 0)
    if (pthread_cond_timedwait(&p->cond, &p->lock, &until) != 0) break;
  for (int i = 0; i < p->n; i++) {
    slot *s = &p->slots[i];
    if (!s->busy) continue;
    if (atomic_load(&s->why) == WHY_NONE) atomic_store(&s->why, WHY_SHUTDOWN);
    atomic_store(&s->stop, 1);
  }
  pthread_mutex_unlock(&p->lock);
}

void worker_stop(worker_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->stopping = true;
  for (int i = 0; i < p->n; i++) {
    if (!p->slots[i].busy) continue;
    if (atomic_load(&p->slots[i].why) == WHY_NONE) atomic_store(&p->slots[i].why, WHY_SHUTDOWN);
    atomic_store(&p->slots[i].stop, 1);
  }
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < p->n; i++) pthread_join(p->slots[i].thread, NULL);
  atomic_store(&p->keeper_stop, 1);
  pthread_join(p->keeper, NULL);
}

void worker_free(worker_pool *p) {
  if (!p) return;
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  free(p->slots);
  free(p);
}
