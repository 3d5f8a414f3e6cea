/* app — shared state of the job service; see app.h. */
#include "app.h"

#include <string.h>
#include <time.h>

void app_init(jobs_app *app, const jobs_config *cfg) {
  memset(app, 0, sizeof *app);
  app->cfg = cfg;
  pthread_mutex_init(&app->change_lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&app->change_cond, &attr);
  pthread_condattr_destroy(&attr);
}

void app_destroy(jobs_app *app) {
  pthread_cond_destroy(&app->change_cond);
  pthread_mutex_destroy(&app->change_lock);
}

void app_changed(jobs_app *app) {
  pthread_mutex_lock(&app->change_lock);
  app->change_seq++;
  pthread_cond_broadcast(&app->change_cond);
  pthread_mutex_unlock(&app->change_lock);
}

uint64_t app_change_seq(jobs_app *app) {
  pthread_mutex_lock(&app->change_lock);
  uint64_t seq = app->change_seq;
  pthread_mutex_unlock(&app->change_lock);
  return seq;
}

uint64_t app_wait_change(jobs_app *app, uint64_t seq, long ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&app->change_lock);
  while (app->change_seq == seq && !atomic_load(&app->stopping))
    if (pthread_cond_timedwait(&app->change_cond, &app->change_lock, &until) != 0) break;
  seq = app->change_seq;
  pthread_mutex_unlock(&app->change_lock);
  return seq;
}
