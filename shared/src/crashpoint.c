/* crashpoint — dies at a named point in test builds; see crashpoint.h. */
#include "voter/crashpoint.h"

#ifdef VOTER_CRASH_POINTS
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char target[128];
static long nth = 1;
static atomic_long reached;
static char pause_target[128];
static long pause_ms;

static void load_pause(void) {
  const char *at = getenv("VOTER_PAUSE_AT");
  if (!at) return;
  snprintf(pause_target, sizeof pause_target, "%s", at);
  char *colon = strchr(pause_target, ':');
  if (colon) {
    *colon = '\0';
    pause_ms = strtol(colon + 1, NULL, 10);
  }
  if (pause_ms <= 0) pause_target[0] = '\0';
}

static void load(void) {
  load_pause();
  const char *at = getenv("VOTER_CRASH_AT");
  if (!at) return;
  snprintf(target, sizeof target, "%s", at);
  char *colon = strchr(target, ':');
  if (colon) {
    *colon = '\0';
    nth = strtol(colon + 1, NULL, 10);
    if (nth < 1) nth = 1;
  }
}

void crash_point(const char *name) {
  pthread_once(&once, load);
  if (pause_target[0] && strcmp(name, pause_target) == 0) {
    struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  if (!target[0] || strcmp(name, target) != 0) return;
  if (atomic_fetch_add(&reached, 1) + 1 < nth) return;
  char line[200];
  int n = snprintf(line, sizeof line, "crash point %s reached: exiting\n", name);
  if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) _exit(137);
  _exit(137);
}
#else
/* An empty translation unit is not valid C11. */
typedef int crashpoint_unused;
#endif
