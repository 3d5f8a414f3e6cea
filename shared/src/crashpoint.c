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

/* Reads "<point>[:<number>]" from env into name (empty when unset) and returns the number
 * (0 when there is none). */
static long read_point(const char *env, char *name, size_t len) {
  const char *at = getenv(env);
  name[0] = '\0';
  if (!at) return 0;
  snprintf(name, len, "%s", at);
  char *colon = strchr(name, ':');
  if (!colon) return 0;
  *colon = '\0';
  return strtol(colon + 1, NULL, 10);
}

static void load(void) {
  long n = read_point("VOTER_CRASH_AT", target, sizeof target);
  nth = n < 1 ? 1 : n;
  pause_ms = read_point("VOTER_PAUSE_AT", pause_target, sizeof pause_target);
  if (pause_ms <= 0) pause_target[0] = '\0';
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
