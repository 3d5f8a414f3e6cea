/* sweeper — expired leases, re-dispatch and retention; see sweeper.h. */
#include "sweeper.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "ticker.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"
#include "voter/xalloc.h"
#include "webhook.h"

#define BATCH 64

struct sweeper {
  jobs_app *app;
  ticker *ticker;
  unsigned rounds;
};

static void expired_leases(sweeper *sw) {
  jobs_app *app = sw->app;
  char ids[BATCH][25];
  int n = store_scan_expired(app->store, util_now_ms(), ids, BATCH);
  for (int i = 0; i < n; i++) {
    job_info j;
    if (store_get(app->store, ids[i], &j) != JS_OK || strcmp(j.status, "running") != 0 ||
        j.lease_until_ms >= util_now_ms())
      continue;
    if (j.attempts >= app->cfg->max_attempts) {
      char reason[160];
      snprintf(reason, sizeof reason,
               "the worker was lost and the attempt budget (%ld) is spent", app->cfg->max_attempts);
      if (store_fail_expired(app->store, &j, reason) == JS_OK) {
        metrics_counter_inc("jobs_total", "status=\"failed\"");
        log_fields(LOG_WARN, "job failed: worker lost",
                   json_pack("{s:s, s:i}", "job", j.id, "attempts", j.attempts));
        app_changed(app);
        webhooks_kick(app->hooks);
      }
      continue;
    }
    if (store_requeue_expired(app->store, &j) == JS_OK) {
      log_fields(LOG_WARN, "job re-queued: its worker's lease expired",
                 json_pack("{s:s, s:s, s:i}", "job", j.id, "worker", j.worker, "attempts",
                           j.attempts));
      if (wq_publish(app->wq, j.id) == 0) store_set_dispatched(app->store, j.id, true);
      app_changed(app);
    }
  }
}

static void undispatched(sweeper *sw) {
  jobs_app *app = sw->app;
  char ids[BATCH][25];
  int64_t now = util_now_ms();
  int n = store_scan_undispatched(app->store, now, now - app->cfg->redispatch_s * 1000, ids,
                                  BATCH);
  for (int i = 0; i < n; i++) {
    if (wq_publish(app->wq, ids[i]) != 0) break; /* the broker is away: next time */
    store_set_dispatched(app->store, ids[i], true);
  }
}

static void retention(sweeper *sw) {
  jobs_app *app = sw->app;
  char ids[BATCH][25];
  int n = store_scan_retention(app->store, util_now_ms() - app->cfg->retention_s * 1000, ids,
                               BATCH);
  for (int i = 0; i < n; i++) {
    job_info j;
    if (store_get(app->store, ids[i], &j) != JS_OK || !jobs_status_final(j.status)) continue;
    if (store_purge(app->store, &j) == JS_OK) {
      log_fields(LOG_INFO, "job purged", json_pack("{s:s, s:s}", "job", j.id, "status", j.status));
      app_changed(app);
    }
  }
}

/* Work directories left by runs that ended without cleaning up (a replica killed mid-run):
 * everything below JOBS_WORK_DIR named <id>-<attempt> whose job is not running that
 * attempt. The work directory may be shared by replicas (kubernetes), so a directory of a
 * run elsewhere is recognized by the job's state, not by what this process knows. */
static void stale_work_dirs(sweeper *sw) {
  jobs_app *app = sw->app;
  DIR *d = opendir(app->cfg->work_dir);
  if (!d) return;
  struct dirent *e;
  int checked = 0;
  while ((e = readdir(d)) && checked < BATCH) {
    char id[25];
    int attempt;
    const char *name = e->d_name;
    if (strlen(name) < 26 || name[24] != '-' || sscanf(name + 25, "%d", &attempt) != 1) continue;
    memcpy(id, name, 24);
    id[24] = 0;
    if (!util_is_object_id(id)) continue;
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", app->cfg->work_dir, name);
    /* young directories belong to runs being set up right now */
    if (lstat(path, &st) != 0 || time(NULL) - st.st_mtime < 5) continue;
    checked++;
    job_info j;
    js_status rc = store_get(app->store, id, &j);
    if (rc == JS_UNAVAILABLE) break;
    if (rc == JS_OK && strcmp(j.status, "running") == 0 && j.attempts == attempt) continue;
    if (fs_remove_tree(path) == 0)
      log_fields(LOG_INFO, "stale work directory removed", json_pack("{s:s}", "path", path));
  }
  closedir(d);
}

/* One round: every sweep_ms (JOBS_SWEEP_MS), or at once when kicked. */
static void sweep(void *arg) {
  sweeper *sw = arg;
  expired_leases(sw);
  undispatched(sw);
  retention(sw);
  if (++sw->rounds % 16 == 1) stale_work_dirs(sw);
}

sweeper *sweeper_start(jobs_app *app) {
  sweeper *sw = xcalloc(1, sizeof *sw);
  sw->app = app;
  if (!(sw->ticker = ticker_start(sweep, sw, app->cfg->sweep_ms))) {
    free(sw);
    return NULL;
  }
  return sw;
}

void sweeper_kick(sweeper *sw) {
  if (sw) ticker_kick(sw->ticker);
}

void sweeper_stop(sweeper *sw) {
  if (!sw) return;
  ticker_stop(sw->ticker);
  free(sw);
}
