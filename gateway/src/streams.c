/* streams — open event streams per client; see streams.h. */
#define _GNU_SOURCE
#include "streams.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "voter/config.h"
#include "voter/metrics.h"

#define MAX_CLIENTS 4096 /* distinct addresses holding streams at once; more are refused */

typedef struct holder {
  char ip[64];
  int open;
} holder;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static holder holders[MAX_CLIENTS];
static int nholders, total_open;
static long limit = 6;

void gw_streams_init(void) {
  long v;
  if (cfg_long("GATEWAY_MAX_STREAMS_PER_CLIENT", 6, 0, 10000, &v) == 0) limit = v;
  metrics_describe("gateway_streams_open", "gauge", "Event streams open through the gateway.");
  metrics_describe("gateway_streams_total", "counter",
                   "Event stream requests, by result (refused: the client's limit was reached).");
  metrics_gauge_set("gateway_streams_open", "", 0);
}

int gw_streams_limit(void) { return (int)limit; }

bool gw_streams_is_stream(const char *accept) {
  return accept && strcasestr(accept, "text/event-stream") != NULL;
}

bool gw_streams_acquire(const char *client_ip) {
  pthread_mutex_lock(&lock);
  holder *h = NULL;
  for (int i = 0; i < nholders && !h; i++)
    if (strcmp(holders[i].ip, client_ip) == 0) h = &holders[i];
  if (!h && nholders < MAX_CLIENTS) {
    h = &holders[nholders++];
    snprintf(h->ip, sizeof h->ip, "%s", client_ip);
    h->open = 0;
  }
  bool ok = h && h->open < limit;
  if (ok) {
    h->open++;
    total_open++;
  }
  int open = total_open;
  pthread_mutex_unlock(&lock);
  metrics_counter_inc("gateway_streams_total", ok ? "result=\"opened\"" : "result=\"refused\"");
  metrics_gauge_set("gateway_streams_open", "", open);
  return ok;
}

void gw_streams_release(const char *client_ip) {
  pthread_mutex_lock(&lock);
  for (int i = 0; i < nholders; i++) {
    if (strcmp(holders[i].ip, client_ip) != 0) continue;
    holders[i].open--;
    total_open--;
    if (holders[i].open == 0) holders[i] = holders[--nholders]; /* keep the table dense */
    break;
  }
  int open = total_open;
  pthread_mutex_unlock(&lock);
  metrics_gauge_set("gateway_streams_open", "", open);
}
