/* stream — live results as Server-Sent Events; see stream.h. */
#include "stream.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tallybus.h"
#include "votes.h"
#include "voter/config.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define MAX_PENDING (256 * 1024) /* bytes a client may lag behind before its stream is ended */
#define POLL_MS 50

typedef struct watch watch;

/* One open stream. Freed by the hub thread once the connection is gone (closed). */
typedef struct sub {
  struct sub *next;
  stream_hub *hub;
  watch *w;
  http_stream *hs;
  char *buf; /* bytes not yet read by the connection: [off, len) */
  size_t off, len, cap;
  char last_id[40]; /* id of the last state this client has (Last-Event-ID at first) */
  int64_t last_write_ms;
  bool closed, ended;
} sub;

/* An election with at least one local stream. */
struct watch {
  watch *next;
  char *election;
  sub *subs;
  bool dirty;
  int64_t last_read_ms, last_event_ms;
};

struct stream_hub {
  pthread_mutex_t lock;
  mongo_db *db;
  tallybus *bus;
  stream_options o;
  watch *watches;
  char **announce; /* elections to announce over the broker, taken by the hub thread */
  size_t nannounce, capannounce;
  int nsubs;
  bool shutting;
  pthread_t thread;
  volatile sig_atomic_t stop;
};

static int64_t now_ms(void) { return (int64_t)(util_monotonic() * 1000.0); }

int stream_options_from_env(stream_options *o) {
  long hb, iv, rc, mx;
  if (cfg_long("STREAM_HEARTBEAT_S", 15, 1, 3600, &hb) ||
      cfg_long("STREAM_MIN_INTERVAL_MS", 250, 0, 60000, &iv) ||
      cfg_long("STREAM_RECHECK_MS", 1000, 100, 3600000, &rc) ||
      cfg_long("STREAM_MAX", 1000, 1, 100000, &mx))
    return -1;
  *o = (stream_options){.heartbeat_s = (int)hb, .min_interval_ms = (int)iv,
                        .recheck_ms = (int)rc, .max_streams = (int)mx};
  return 0;
}

/* ---- per-stream buffer (hub lock held) ---- */

static void sub_append(sub *s, const char *text, size_t n, int64_t now) {
  if (s->closed || s->ended) return;
  if (s->len - s->off + n > MAX_PENDING) { /* a client that does not read: let it go */
    s->ended = true;
    http_stream_wake(s->hs);
    return;
  }
  if (s->off && s->off == s->len) s->off = s->len = 0;
  if (s->len + n > s->cap) {
    if (s->off) { /* compact before growing */
      memmove(s->buf, s->buf + s->off, s->len - s->off);
      s->len -= s->off;
      s->off = 0;
    }
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < s->len + n) cap *= 2;
    char *nb = xrealloc(s->buf, cap);
    if (!nb) {
      s->ended = true;
      http_stream_wake(s->hs);
      return;
    }
    s->buf = nb;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, text, n);
  s->len += n;
  s->last_write_ms = now;
  http_stream_wake(s->hs);
}

/* ---- connection side (server threads) ---- */

static long sub_read(void *ctx, char *buf, size_t max) {
  sub *s = ctx;
  pthread_mutex_lock(&s->hub->lock);
  size_t n = s->len - s->off;
  if (n > max) n = max;
  if (n) memcpy(buf, s->buf + s->off, n);
  s->off += n;
  bool end = n == 0 && s->ended;
  pthread_mutex_unlock(&s->hub->lock);
  return end ? -1 : (long)n;
}

static void sub_closed(void *ctx) {
  sub *s = ctx;
  pthread_mutex_lock(&s->hub->lock);
  s->closed = true; /* the hub thread unlinks and frees it */
  pthread_mutex_unlock(&s->hub->lock);
}

static watch *watch_get(stream_hub *hub, const char *election) {
  for (watch *w = hub->watches; w; w = w->next)
    if (strcmp(w->election, election) == 0) return w;
  watch *w = xcalloc(1, sizeof *w);
  if (!w || !(w->election = xstrdup(election))) {
    free(w);
    return NULL;
  }
  w->next = hub->watches;
  hub->watches = w;
  return w;
}

static void open_stream(void *ctx, const http_request *req, http_response *res) {
  stream_hub *hub = ctx;
  /* the header on the browser's own reconnects; the query parameter when a page opens a
   * new EventSource (which cannot set headers) after an error answer */
  const char *last = http_header(req, "Last-Event-ID");
  if (!last) last = http_query(req, "lastEventId");
  sub *s = xcalloc(1, sizeof *s);
  s->hub = hub;
  if (last && strlen(last) < sizeof s->last_id) strcpy(s->last_id, last);
  pthread_mutex_lock(&hub->lock);
  const char *refused = hub->shutting ? "the service is shutting down"
                        : hub->nsubs >= hub->o.max_streams ? "too many open streams on this replica"
                                                           : NULL;
  watch *w = refused ? NULL : watch_get(hub, req->params[0]);
  if (!refused && !w) refused = "out of memory";
  if (refused) {
    pthread_mutex_unlock(&hub->lock);
    free(s);
    http_reply_problem(res, 503, "Service Unavailable", refused, NULL);
    http_set_header(res, "Retry-After", "2");
    return;
  }
  s->hs = http_reply_stream(res, 200, "text/event-stream; charset=utf-8", sub_read, sub_closed, s);
  if (!s->hs) {
    pthread_mutex_unlock(&hub->lock);
    free(s);
    return http_reply_problem(res, 503, "Service Unavailable", "out of memory", NULL);
  }
  s->w = w;
  s->next = w->subs;
  w->subs = s;
  w->dirty = true; /* the hub reads the current state and sends it unless last_id has it */
  hub->nsubs++;
  metrics_gauge_set("voter_result_streams_open", "", hub->nsubs);
  metrics_counter_inc("voter_result_streams_total", "");
  static const char hello[] = "retry: 1000\n: results of this election follow\n\n";
  sub_append(s, hello, sizeof hello - 1, now_ms());
  pthread_mutex_unlock(&hub->lock);
  http_set_header(res, "Cache-Control", "no-cache");
  http_set_header(res, "X-Accel-Buffering", "no"); /* proxies: pass events on at once */
}

void stream_routes(http_server *srv, stream_hub *hub) {
  http_route(srv, "GET", "/voter/results/{election}/stream", open_stream, hub);
}

/* ---- changes ---- */

static void mark_dirty(stream_hub *hub, const char *election) {
  for (watch *w = hub->watches; w; w = w->next)
    if (!*election || strcmp(w->election, election) == 0) w->dirty = true;
}

void stream_changed(stream_hub *hub, const char *election) {
  if (!hub) return;
  if (!election) election = "";
  pthread_mutex_lock(&hub->lock);
  mark_dirty(hub, election);
  bool queued = false;
  for (size_t i = 0; i < hub->nannounce && !queued; i++)
    queued = strcmp(hub->announce[i], election) == 0;
  if (!queued && hub->nannounce < 4096) {
    if (hub->nannounce == hub->capannounce) {
      size_t cap = hub->capannounce ? hub->capannounce * 2 : 16;
      char **na = xrealloc(hub->announce, cap * sizeof *na);
      if (na) hub->announce = na, hub->capannounce = cap;
    }
    char *copy = hub->nannounce < hub->capannounce ? xstrdup(election) : NULL;
    if (copy) hub->announce[hub->nannounce++] = copy;
  }
  pthread_mutex_unlock(&hub->lock);
}

static void heard(void *ctx, const char *election) {
  stream_hub *hub = ctx;
  pthread_mutex_lock(&hub->lock);
  mark_dirty(hub, election);
  pthread_mutex_unlock(&hub->lock);
}

/* ---- the hub thread ---- */

/* FNV-1a, 64 bits: the id of a state is a function of its content only. */
static void content_id(const char *text, char out[17]) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static void publish_announcements(stream_hub *hub) {
  pthread_mutex_lock(&hub->lock);
  char **list = hub->announce;
  size_t n = hub->nannounce;
  hub->announce = NULL;
  hub->nannounce = hub->capannounce = 0;
  pthread_mutex_unlock(&hub->lock);
  for (size_t i = 0; i < n; i++) {
    tallybus_announce(hub->bus, list[i]); /* lost when the broker is down: the re-read covers it */
    free(list[i]);
  }
  free(list);
}

/* Unlinks and frees closed streams and elections nobody watches (hub lock held). */
static void sweep(stream_hub *hub) {
  for (watch **wp = &hub->watches; *wp;) {
    watch *w = *wp;
    for (sub **sp = &w->subs; *sp;) {
      sub *s = *sp;
      if (!s->closed) {
        sp = &s->next;
        continue;
      }
      *sp = s->next;
      http_stream_release(s->hs);
      free(s->buf);
      free(s);
      hub->nsubs--;
      metrics_gauge_set("voter_result_streams_open", "", hub->nsubs);
    }
    if (w->subs) {
      wp = &w->next;
      continue;
    }
    *wp = w->next;
    free(w->election);
    free(w);
  }
}

/* Elections due for a read: changed and past the minimum interval since their last event
 * (not since their last read: a read that found nothing new, e.g. after our own
 * announcement came back from the broker, must not delay the next change), or not read for
 * recheck_ms. Their names are copied so the read runs without the lock. */
static size_t due_reads(stream_hub *hub, int64_t now, char ***out) {
  size_t n = 0, cap = 0;
  char **list = NULL;
  pthread_mutex_lock(&hub->lock);
  sweep(hub);
  for (watch *w = hub->watches; w; w = w->next) {
    bool due = (w->dirty && now - w->last_event_ms >= hub->o.min_interval_ms) ||
               now - w->last_read_ms >= hub->o.recheck_ms;
    if (!due) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 8;
      list = xrealloc(list, cap * sizeof *list);
    }
    list[n] = xstrdup(w->election);
    n++;
    w->dirty = false;
    w->last_read_ms = now;
  }
  pthread_mutex_unlock(&hub->lock);
  *out = list;
  return n;
}

static void deliver(stream_hub *hub, const char *election, json_t *results) {
  json_t *doc = json_pack("{s:o}", "results", results);
  char *data = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(doc);
  if (!data) return;
  char id[17];
  content_id(data, id);
  size_t n = strlen(data) + 64;
  char *event = xmalloc(n);
  if (!event) {
    free(data);
    return;
  }
  int len = snprintf(event, n, "id: %s\nevent: results\ndata: %s\n\n", id, data);
  free(data);
  int64_t now = now_ms();
  int sent = 0;
  pthread_mutex_lock(&hub->lock);
  for (watch *w = hub->watches; w; w = w->next) {
    if (strcmp(w->election, election) != 0) continue;
    int before = sent;
    for (sub *s = w->subs; s; s = s->next) {
      if (strcmp(s->last_id, id) == 0) continue;
      sub_append(s, event, (size_t)len, now);
      strcpy(s->last_id, id);
      sent++;
    }
    if (sent > before) w->last_event_ms = now;
  }
  pthread_mutex_unlock(&hub->lock);
  if (sent) metrics_counter_add("voter_result_stream_events_total", "", sent);
  free(event);
}

static void heartbeats(stream_hub *hub, int64_t now) {
  static const char beat[] = ": heartbeat\n\n";
  pthread_mutex_lock(&hub->lock);
  for (watch *w = hub->watches; w; w = w->next)
    for (sub *s = w->subs; s; s = s->next)
      if (now - s->last_write_ms >= (int64_t)hub->o.heartbeat_s * 1000)
        sub_append(s, beat, sizeof beat - 1, now);
  pthread_mutex_unlock(&hub->lock);
}

static void *hub_main(void *arg) {
  stream_hub *hub = arg;
  while (!hub->stop) {
    publish_announcements(hub);
    tallybus_poll(hub->bus, POLL_MS, heard, hub);
    int64_t now = now_ms();
    char **due;
    size_t n = due_reads(hub, now, &due);
    for (size_t i = 0; i < n; i++) {
      json_t *results;
      if (votes_results(hub->db, due[i], &results) == VS_OK) deliver(hub, due[i], results);
      else heard(hub, due[i]); /* database unavailable: try again */
      free(due[i]);
    }
    free(due);
    heartbeats(hub, now);
  }
  return NULL;
}

stream_hub *stream_hub_start(mongo_db *db, const char *amqp_url, const char *exchange,
                             const stream_options *o) {
  stream_hub *hub = xcalloc(1, sizeof *hub);
  pthread_mutex_init(&hub->lock, NULL);
  hub->db = db;
  hub->o = *o;
  metrics_describe("voter_result_streams_open", "gauge", "Open result streams (Server-Sent Events)");
  metrics_describe("voter_result_streams_total", "counter", "Result streams opened");
  metrics_describe("voter_result_stream_events_total", "counter", "Result events written to streams");
  hub->bus = tallybus_new(amqp_url, exchange);
  if (!hub->bus || pthread_create(&hub->thread, NULL, hub_main, hub) != 0) {
    tallybus_free(hub->bus);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
    return NULL;
  }
  return hub;
}

void stream_hub_shutdown(stream_hub *hub) {
  if (!hub) return;
  pthread_mutex_lock(&hub->lock);
  hub->shutting = true;
  for (watch *w = hub->watches; w; w = w->next)
    for (sub *s = w->subs; s; s = s->next) {
      s->ended = true;
      if (!s->closed) http_stream_wake(s->hs);
    }
  pthread_mutex_unlock(&hub->lock);
}

void stream_hub_free(stream_hub *hub) {
  if (!hub) return;
  hub->stop = 1;
  pthread_join(hub->thread, NULL);
  pthread_mutex_lock(&hub->lock);
  for (watch *w = hub->watches; w; w = w->next)
    for (sub *s = w->subs; s; s = s->next) s->closed = true; /* the server is stopped */
  sweep(hub);
  pthread_mutex_unlock(&hub->lock);
  for (size_t i = 0; i < hub->nannounce; i++) free(hub->announce[i]);
  free(hub->announce);
  tallybus_free(hub->bus);
  pthread_mutex_destroy(&hub->lock);
  free(hub);
}
