/* ticker — a periodic worker thread with kick and stop; see ticker.h. */
#include "ticker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "voter/util.h"
#include "voter/xalloc.h"

struct ticker {
  void (*round)(void *arg);
  void *arg;
  long period_ms;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond; /* on CLOCK_MONOTONIC: wall-clock steps do not stretch a period */
  bool stop, kicked;
};

static void *ticker_main(void *arg) {
  ticker *t = arg;
  pthread_mutex_lock(&t->lock);
  while (!t->stop) {
    t->kicked = false;
    pthread_mutex_unlock(&t->lock);
    t->round(t->arg);
    pthread_mutex_lock(&t->lock);
    struct timespec until = util_monotonic_deadline(t->period_ms);
    while (!t->stop && !t->kicked)
      if (pthread_cond_timedwait(&t->cond, &t->lock, &until) != 0) break;
  }
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

ticker *ticker_start(void (*round)(void *arg), void *arg, long period_ms) {
  ticker *t = xcalloc(1, sizeof *t);
  *t = (ticker){.round = round, .arg = arg, .period_ms = period_ms};
  pthread_mutex_init(&t->lock, NULL);
  util_cond_init_monotonic(&t->cond);
  if (pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
    return NULL;
  }
  return t;
}

/* Sets a flag under the lock and wakes the thread. */
static void signal_flag(ticker *t, bool *flag) {
  pthread_mutex_lock(&t->lock);
  *flag = true;
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

void ticker_kick(ticker *t) {
  if (t) signal_flag(t, &t->kicked);
}

void ticker_stop(ticker *t) {
  if (!t) return;
  signal_flag(t, &t->stop);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cond);
  pthread_mutex_destroy(&t->lock);
  free(t);
}
