/* proxy — workers, exchanges, upstream pools; see proxy.h.
 *
 * Life of an exchange (one client request), all on one worker thread:
 *
 *   uri_cb          libmicrohttpd has the request line: allocate the exchange.
 *   on_headers      first access-handler call: local endpoints, CORS preflight, route,
 *                   key/tier/policy, rate limit, body limit from Content-Length (413 queued
 *                   at once, before any body byte is read or any upstream is contacted),
 *                   then the upstream request head is built and a replica is connected.
 *   on_body         body pieces are framed (re-chunked when the client sent chunked) into
 *                   the request buffer and written upstream; a full buffer suspends the
 *                   client connection until the upstream has taken the bytes.
 *   on_complete     the request is complete: queue the response if it is ready; else,
 *                   when the worker is busy, the request went into this run's batch of
 *                   upstream sends (queue_send, flush_sends: one io_uring submission) and
 *                   the answer is deferred (on_deferred: libmicrohttpd asks again on its
 *                   next runs); when it is not, wait briefly for a quick upstream right
 *                   here (fast_wait); either way no suspension at all when the upstream
 *                   answers in time, else suspend until its response head arrives
 *                   (answering on a later call, never the first one, is what keeps client
 *                   keep-alive working).
 *   upstream events response bytes go through http_parser into the response buffer; the
 *                   libmicrohttpd content reader drains it, suspending the client when it
 *                   is empty and resuming it when more arrives.
 *   completed       log line, metrics, the upstream connection goes back to the pool if the
 *                   exchange ended cleanly, else it is closed.
 *
 * Failures before the response head reached the client are retried on another replica when
 * that is safe (see may_retry); after that, the client connection is aborted, which is the
 * only honest signal left. */
#define _GNU_SOURCE
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <liburing.h>
#include <limits.h>
#include <signal.h>
#include <microhttpd.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "admit.h"
#include "alog.h"
#include "local.h"
#include "netaddr.h"
#include "ratelimit.h"
#include "stats.h"
#include "upstream.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"

#define MAX_WORKERS 64
#define MAX_TRIES 11
#define MAX_RESP_HEADER_BYTES 65536
#define TIMER_TICK_MS 10
#define RAW_DISCARD_LIMIT (64u << 20) /* bytes read and dropped after a refusal, at most */
#define SMALL_BODY 65536              /* refused bodies up to this are read, keeping the connection */

enum { TAG_MHD = 1, TAG_WAKE, TAG_UP };

/* What the fast path did with a request (gateway_fast_path_total{result}). */
enum { FAST_ANSWERED, FAST_TIMEOUT, FAST_YIELDED, FAST_STREAMED, FAST_RETRIED, FAST_SKIPPED,
       FAST_RESULTS };
static const char *const fast_result_names[FAST_RESULTS] = {"answered", "timeout", "yielded",
                                                            "streamed", "retried", "skipped"};
/* idle_poll outcomes: an event came while polling, none came, the poll was skipped */
enum { IDLE_EVENT, IDLE_EMPTY, IDLE_SKIPPED, IDLE_RESULTS };
static const char *const idle_result_names[IDLE_RESULTS] = {"event", "empty", "skipped"};

typedef struct worker worker;
typedef struct exchange exchange;

/* Back-off after a wait that was not worth it: the next 1, 3, 7, … (up to 1023) chances
 * to wait are skipped; a wait that pays off resets it. */
typedef struct {
  unsigned skip; /* chances still to skip */
  unsigned next; /* how many to skip after the next fruitless wait */
} backoff;

static bool backoff_skipping(backoff *b) {
  if (!b->skip) return false;
  b->skip--;
  return true;
}

static void backoff_miss(backoff *b) {
  b->skip = b->next;
  b->next = b->next < 512 ? b->next * 2 + 1 : 1023;
}

static void backoff_hit(backoff *b) { b->next = 0; }

/* A configuration as seen by one worker: exchanges count their uses without atomics. */
typedef struct cslot {
  gw_conf *conf;
  int uses;
} cslot;

typedef struct uconn {
  int tag; /* TAG_UP: first member, epoll data points here */
  int fd;
  worker *w;
  gw_replica *rep;
  exchange *ex;                /* NULL while pooled */
  struct uconn *prev, *next;   /* pool list */
  int64_t idle_since;
  uint32_t events;
  bool connecting;
  bool reused;
  unsigned addr_gen; /* the replica's address generation it was made for */
} uconn;

typedef struct {
  char *data;
  size_t off, len, cap; /* bytes [off, len) are pending */
} buf;

struct exchange {
  worker *w;
  struct MHD_Connection *conn;
  int refs;
  cslot *slot;
  const gw_conf *conf;
  const gw_route *route;
  char method[16];
  unsigned mbit;
  bool idempotent;
  char *uri;
  size_t pathlen;
  char uri_buf[160]; /* uri points here when it fits */
  char request_id[130];
  char client_ip[GW_IP_MAX];
  char peer_ip[GW_IP_MAX];
  const char *origin;
  const char *tier;
  const char *rl_decision;
  const gw_limit *limit;
  gw_rl_result rl;
  double t_start, t_up_start, t_up_headers;
  bool started, completed, suspended;
  bool in_active;
  exchange *active_prev, *active_next;
  /* response made by the gateway */
  bool local;
  int status;
  char *lbody;
  size_t llen;
  const char *lctype;
  const char *lhdr_name[3];
  char lhdr_value[3][96];
  int nlhdr;
  bool close_after;
  /* request body */
  bool has_body, chunked_in, body_done, eof_chunk_written, expect_continue;
  uint64_t content_length, body_seen, max_body;
  buf req;
  size_t head_len;
  bool replayable, stale_retried;
  /* upstream */
  uconn *uc;
  gw_replica *tried[MAX_TRIES];
  int ntried;
  int retries;
  int64_t deadline_ms;
  int64_t progress_ms;
  const char *error;
  const char *upstream_name;
  http_parser parser;
  bool parsing_field;
  char *hbuf; /* name\0value\0 pairs */
  size_t hlen, hcap;
  bool head_done, up_done, up_failed, up_paused, response_queued;
  bool response_made; /* the client response was built from the upstream's head */
  unsigned attempt;   /* counts start_attempt calls */
  bool at_complete; /* the request is complete: a response may be queued */
  bool raw_sent;    /* a 413 was written on the socket directly (see too_large_midway) */
  bool framing_refused; /* refused for its framing: answered directly, then closed */
  uint64_t discarded;
  int upstream_status;
  uint64_t resp_length; /* UINT64_MAX: unknown */
  struct MHD_Response *pending; /* response made, waiting for a chance to queue it */
  struct MHD_Response *stream;  /* the streamed response while its reader lives (not a reference) */
  size_t head_hlen;             /* hbuf bytes of the response head; trailer fields follow */
  buf resp;
  uint64_t bytes_out;
  /* batched sends (see flush_sends) and deferred answers (see on_deferred) */
  bool send_queued, deferring;
  unsigned defer_attempt;
  int64_t defer_deadline_ns;
};

struct worker {
  int id;
  pthread_t thread;
  int epfd, wakefd, listen_fd;
  int tag_mhd, tag_wake;
  struct MHD_Daemon *d;
  cslot *cur;
  unsigned conf_gen;
  unsigned *rr;
  int nrr;
  struct pool {
    uconn *head;
    int n;
    backoff fast;          /* fast path: requests not to wait for after a slow answer */
    gw_counter *ok;        /* upstream_requests_total{upstream="…",outcome="response"} */
  } *pools;
  int npools;
  exchange *active;
  exchange *spare; /* finished exchanges kept for reuse (linked by active_next) */
  /* fast path outcomes (see fast_wait), read by the metrics renderer */
  _Atomic uint64_t fast[FAST_RESULTS];
  _Atomic uint64_t batched_sends, batches; /* flush_sends, read by the metrics renderer */
  _Atomic uint64_t idle_polls[IDLE_RESULTS]; /* idle_poll outcomes, read by the metrics renderer */
  int nspare;
  int inflight;
  bool need_run, quiesced;
  gw_alog log;
  gw_stats *stats;
  int64_t next_tick_ms, next_sweep_ms;
  int64_t now_ms; /* monotonic ms, refreshed once per loop iteration (timeouts, pools) */
  int64_t now_ns; /* the same instant in ns (deferral budgets) */
  uint64_t rng;
  /* upstream sends queued while libmicrohttpd runs, flushed in one io_uring submission */
  struct io_uring ring;
  bool uring;
  bool in_mhd;   /* inside MHD_run */
  bool mhd_work; /* the last MHD_run did more than poll deferred exchanges */
  int ndeferred;
  int run_requests; /* requests completed in this MHD_run */
  int run_avg;      /* moving average of run_requests over runs that completed any, x256 */
  bool answered;    /* a request was completed since the loop last waited (idle_poll) */
  backoff idle;     /* idle_poll: polls to skip after fruitless ones */
  struct flushent {
    exchange *ex;
    uconn *uc;
    unsigned attempt;
    int res;
  } *flush;
  int nflush, flushcap;
  gw_admission adm; /* on_headers' verdict (large: not on the stack) */
  gw_bytes head;    /* on_headers' upstream head */
  char scratch[65536];
};

static worker workers[MAX_WORKERS];
static int nworkers;
static int bound_port;
static char listen_host[300]; /* "host:port": the upstream Host when no public host is set */
static atomic_bool draining;
static atomic_bool stopping;
static pthread_mutex_t conf_lock = PTHREAD_MUTEX_INITIALIZER;
static gw_conf *current_conf;
static atomic_uint conf_gen;

gw_conf *gw_proxy_conf(void) {
  pthread_mutex_lock(&conf_lock);
  gw_conf *c = current_conf;
  gw_conf_ref(c);
  pthread_mutex_unlock(&conf_lock);
  return c;
}

void gw_proxy_set_conf(gw_conf *c) {
  gw_conf_ref(c);
  pthread_mutex_lock(&conf_lock);
  gw_conf *old = current_conf;
  current_conf = c;
  atomic_fetch_add(&conf_gen, 1);
  pthread_mutex_unlock(&conf_lock);
  gw_conf_unref(old);
  for (int i = 0; i < nworkers; i++) {
    uint64_t one = 1;
    ssize_t n = write(workers[i].wakefd, &one, sizeof one);
    (void)n;
  }
}

int gw_proxy_port(void) { return bound_port; }

static double now_s(void) { return util_monotonic(); }

/* ------------------------------------------------------------------ buffers */

static void buf_init(buf *b, size_t cap) {
  b->data = malloc(cap);
  if (!b->data) abort();
  b->off = b->len = 0;
  b->cap = cap;
}

static size_t buf_pending(const buf *b) { return b->len - b->off; }

/* appends n bytes, growing the buffer as needed */
static void buf_append(buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = (b->len + n) * 2;
    char *nb = realloc(b->data, cap);
    if (!nb) abort();
    b->data = nb;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
}

/* Makes room for n more bytes at the end, discarding consumed ones if needed; false when
 * the buffer cannot take them. keep: consumed bytes must stay (replay). */
static bool buf_room(buf *b, size_t n, bool *keep) {
  if (b->len + n <= b->cap) return true;
  if (b->off == 0 || b->len - b->off + n > b->cap) return false;
  if (keep) *keep = false;
  memmove(b->data, b->data + b->off, b->len - b->off);
  b->len -= b->off;
  b->off = 0;
  return true;
}

/* ------------------------------------------------------------------ small helpers */

static void ws_set(worker *w, int fd, uint32_t events, void *ptr, int op) {
  struct epoll_event ev = {.events = events, .data.ptr = ptr};
  if (epoll_ctl(w->epfd, op, fd, &ev) != 0 && op != EPOLL_CTL_DEL)
    log_error("epoll_ctl(%d) failed: %s", op, strerror(errno));
}

static void uc_events(uconn *uc, uint32_t events) {
  if (uc->events == events) return;
  ws_set(uc->w, uc->fd, events, uc, EPOLL_CTL_MOD);
  uc->events = events;
}

static void uc_close(uconn *uc) {
  epoll_ctl(uc->w->epfd, EPOLL_CTL_DEL, uc->fd, NULL);
  close(uc->fd);
  free(uc);
}

static void pool_unlink(worker *w, uconn *uc) {
  struct pool *p = &w->pools[uc->rep->id];
  if (uc->prev) uc->prev->next = uc->next;
  else p->head = uc->next;
  if (uc->next) uc->next->prev = uc->prev;
  uc->prev = uc->next = NULL;
  p->n--;
}

static void pools_grow(worker *w) {
  int n = gw_replica_count();
  if (n <= w->npools) return;
  struct pool *np = realloc(w->pools, (size_t)n * sizeof *np);
  if (!np) abort();
  memset(np + w->npools, 0, (size_t)(n - w->npools) * sizeof *np);
  w->pools = np;
  w->npools = n;
}

static void pool_put(worker *w, uconn *uc) {
  pools_grow(w);
  struct pool *p = &w->pools[uc->rep->id];
  if (p->n >= uc->ex->conf->pool_max_idle || atomic_load(&stopping)) {
    uc_close(uc);
    return;
  }
  uc->ex = NULL;
  uc->idle_since = w->now_ms;
  uc_events(uc, EPOLLIN | EPOLLRDHUP);
  uc->prev = NULL;
  uc->next = p->head;
  if (p->head) p->head->prev = uc;
  p->head = uc;
  p->n++;
}

static uconn *pool_get(worker *w, gw_replica *rep, int idle_ms, bool check_alive) {
  pools_grow(w);
  struct pool *p = &w->pools[rep->id];
  int64_t now = w->now_ms;
  while (p->head) {
    uconn *uc = p->head;
    pool_unlink(w, uc);
    if (now - uc->idle_since > idle_ms ||
        uc->addr_gen != atomic_load_explicit(&rep->addr_gen, memory_order_relaxed)) {
      uc_close(uc); /* idle too long, or to an address the name no longer resolves to */
      continue;
    }
    if (check_alive) {
      /* for non-idempotent requests make sure the upstream has not closed the idle
       * connection: a failure there could not be retried */
      char c;
      ssize_t n = recv(uc->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (!(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
        uc_close(uc);
        continue;
      }
    }
    uc->reused = true;
    return uc;
  }
  return NULL;
}

static void pool_sweep(worker *w, int idle_ms, bool all) {
  int64_t now = gw_now_ms();
  for (int i = 0; i < w->npools; i++) {
    uconn *uc = w->pools[i].head;
    while (uc) {
      uconn *next = uc->next;
      if (all || now - uc->idle_since > idle_ms) {
        pool_unlink(w, uc);
        uc_close(uc);
      }
      uc = next;
    }
  }
}

/* ------------------------------------------------------------------ exchange bookkeeping */

static void active_add(exchange *ex) {
  if (ex->in_active) return;
  worker *w = ex->w;
  ex->in_active = true;
  ex->active_prev = NULL;
  ex->active_next = w->active;
  if (w->active) w->active->active_prev = ex;
  w->active = ex;
}

static void active_del(exchange *ex) {
  if (!ex->in_active) return;
  worker *w = ex->w;
  if (ex->active_prev) ex->active_prev->active_next = ex->active_next;
  else w->active = ex->active_next;
  if (ex->active_next) ex->active_next->active_prev = ex->active_prev;
  ex->in_active = false;
}

/* Exchanges are recycled per worker with their small request and header buffers, which
 * saves several allocations per request. */
#define SPARE_MAX 128
#define SPARE_BUF 4096

static exchange *ex_new(worker *w) {
  exchange *ex = w->spare;
  if (!ex) {
    ex = calloc(1, sizeof *ex);
    if (!ex) abort();
    return ex;
  }
  w->spare = ex->active_next;
  w->nspare--;
  buf req = ex->req;
  char *hbuf = ex->hbuf;
  size_t hcap = ex->hcap;
  memset(ex, 0, sizeof *ex);
  ex->req.data = req.data;
  ex->req.cap = req.cap;
  ex->hbuf = hbuf;
  ex->hcap = hcap;
  return ex;
}

static void ex_unref(exchange *ex) {
  if (--ex->refs > 0) return;
  if (ex->uri != ex->uri_buf) free(ex->uri);
  free(ex->lbody);
  free(ex->resp.data);
  worker *w = ex->w;
  if (w->nspare < SPARE_MAX && !atomic_load(&stopping)) {
    if (ex->req.cap > SPARE_BUF) {
      free(ex->req.data);
      ex->req.data = NULL;
      ex->req.cap = 0;
    }
    if (ex->hcap > SPARE_BUF) {
      free(ex->hbuf);
      ex->hbuf = NULL;
      ex->hcap = 0;
    }
    ex->active_next = w->spare;
    w->spare = ex;
    w->nspare++;
    return;
  }
  free(ex->req.data);
  free(ex->hbuf);
  free(ex);
}

static void spare_free(worker *w) {
  while (w->spare) {
    exchange *ex = w->spare;
    w->spare = ex->active_next;
    free(ex->req.data);
    free(ex->hbuf);
    free(ex);
  }
  w->nspare = 0;
}

static void suspend(exchange *ex) {
  if (ex->suspended) return;
  MHD_suspend_connection(ex->conn);
  ex->suspended = true;
}

static void resume(exchange *ex) {
  if (!ex->suspended) return;
  ex->suspended = false;
  MHD_resume_connection(ex->conn);
  ex->w->need_run = true;
}

/* ------------------------------------------------------------------ responses */

static void add_common_headers(exchange *ex, struct MHD_Response *r) {
  MHD_add_response_header(r, "X-Request-ID", ex->request_id);
  if (ex->limit) {
    char policy[160], value[160];
    if (gw_rl_format(ex->limit, &ex->rl, policy, sizeof policy, value, sizeof value) == 0) {
      MHD_add_response_header(r, "RateLimit-Policy", policy);
      MHD_add_response_header(r, "RateLimit", value);
    }
  }
  if (ex->origin && gw_cors_origin_allowed(ex->conf, ex->origin)) {
    MHD_add_response_header(r, "Access-Control-Allow-Origin", ex->origin);
    MHD_add_response_header(r, "Access-Control-Expose-Headers", ex->conf->cors_expose);
    MHD_add_response_header(r, "Vary", "Origin");
  }
  if (ex->close_after || atomic_load(&draining)) MHD_add_response_header(r, "Connection", "close");
}

static void local_header(exchange *ex, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void local_header(exchange *ex, const char *name, const char *fmt, ...) {
  if (ex->nlhdr >= 3) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ex->lhdr_value[ex->nlhdr], sizeof ex->lhdr_value[0], fmt, ap);
  va_end(ap);
  ex->lhdr_name[ex->nlhdr++] = name;
}

static void local_reply(exchange *ex, int status, const char *ctype, char *body, size_t len) {
  free(ex->lbody);
  ex->local = true;
  ex->status = status;
  ex->lctype = ctype;
  ex->lbody = body;
  ex->llen = len;
}

static void local_problem(exchange *ex, int status, const char *title, const char *detail) {
  char path[512];
  snprintf(path, sizeof path, "%.*s", (int)(ex->pathlen < 500 ? ex->pathlen : 500), ex->uri);
  size_t len;
  char *body = gw_problem(status, title, detail, path, ex->request_id, &len);
  local_reply(ex, status, "application/problem+json", body, len);
}

/* Queues the gateway-made response. Only from the access handler or on a suspended
 * connection. */
static enum MHD_Result queue_local(exchange *ex) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      ex->llen, ex->lbody ? ex->lbody : (void *)"", ex->lbody ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  ex->lbody = NULL; /* owned by the response now */
  if (ex->lctype) MHD_add_response_header(r, "Content-Type", ex->lctype);
  for (int i = 0; i < ex->nlhdr; i++) MHD_add_response_header(r, ex->lhdr_name[i], ex->lhdr_value[i]);
  add_common_headers(ex, r);
  enum MHD_Result ret = MHD_queue_response(ex->conn, (unsigned)ex->status, r);
  MHD_destroy_response(r);
  ex->response_queued = true;
  return ret;
}

static enum MHD_Result queue_pending(exchange *ex) {
  struct MHD_Response *r = ex->pending;
  ex->pending = NULL;
  enum MHD_Result ret = MHD_queue_response(ex->conn, (unsigned)ex->status, r);
  MHD_destroy_response(r);
  ex->response_queued = true;
  return ret;
}

static bool has_response(const exchange *ex) { return ex->local || ex->pending; }

/* Something changed on the upstream side: give the client connection a chance to move.
 * libmicrohttpd 0.9.75 accepts a response only before the body is read or once the request
 * is complete (MHD_queue_response fails in between, suspended or not), so a response that
 * becomes ready mid-upload waits: the client is resumed, the rest of its body is discarded
 * and on_complete queues the response. */
static void wake_client(exchange *ex) {
  if (ex->completed) return;
  if (ex->deferring) { /* libmicrohttpd asks again on its next run (on_deferred) */
    ex->w->need_run = true;
    return;
  }
  if (!ex->suspended) return;
  if (!ex->response_queued && has_response(ex) && ex->at_complete) {
    if (ex->local) queue_local(ex);
    else queue_pending(ex);
  }
  resume(ex);
}

/* ------------------------------------------------------------------ upstream side */

static void up_detach(exchange *ex, bool reusable) {
  uconn *uc = ex->uc;
  if (!uc) return;
  ex->uc = NULL;
  if (reusable) pool_put(ex->w, uc);
  else uc_close(uc);
}

static bool is_hop_by_hop(const char *name, size_t n) { return gw_admit_hop_by_hop(name, n); }

/* true when name appears as a token in a Connection header value */
static bool listed_in(const char *list, const char *name, size_t n) {
  if (!list) return false;
  const char *p = list;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    const char *s = p;
    while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
    if ((size_t)(p - s) == n && strncasecmp(s, name, n) == 0) return true;
  }
  return false;
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max);
static void reader_free(void *cls);

/* The next name/value pair of the upstream's fields stored in hbuf (name\0value\0…)
 * before byte end; false at the end (or at a name without a value). */
static bool next_field(const exchange *ex, size_t *off, size_t end, const char **name,
                       size_t *nlen, const char **value) {
  if (*off >= end) return false;
  *name = ex->hbuf + *off;
  *nlen = strlen(*name);
  if (*off + *nlen + 1 >= end) return false;
  *value = *name + *nlen + 1;
  *off = (size_t)(*value - ex->hbuf) + strlen(*value) + 1;
  return true;
}

/* Copies the upstream's response fields onto r, less hop-by-hop ones and those the gateway
 * sets itself, then adds the gateway's own. */
static void response_fields(exchange *ex, struct MHD_Response *r) {
  /* the head's fields only: trailer fields parsed in the same read follow them in hbuf */
  const char *conn_list = NULL, *name, *value;
  size_t nlen;
  for (size_t off = 0; next_field(ex, &off, ex->head_hlen, &name, &nlen, &value);)
    if (strcasecmp(name, "Connection") == 0) conn_list = value;
  bool cors = ex->conf->ncors_origins > 0;
  for (size_t off = 0; next_field(ex, &off, ex->head_hlen, &name, &nlen, &value);) {
    if (is_hop_by_hop(name, nlen) || listed_in(conn_list, name, nlen) ||
        strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "X-Request-ID") == 0 ||
        (cors && strncasecmp(name, "Access-Control-", 15) == 0))
      continue;
    MHD_add_response_header(r, name, value); /* refuses CR/LF itself */
  }
  add_common_headers(ex, r);
}

/* The upstream's response head is complete: build the client response, streamed from the
 * response buffer by the content reader. */
static void make_response(exchange *ex) {
  ex->status = ex->upstream_status;
  uint64_t size = ex->resp_length == UINT64_MAX ? MHD_SIZE_UNKNOWN : ex->resp_length;
  struct MHD_Response *r = MHD_create_response_from_callback(size, 16384, reader, ex, reader_free);
  if (!r) abort();
  ex->refs++; /* the response's reference, dropped by reader_free */
  ex->stream = r;
  response_fields(ex, r);
  ex->pending = r;
}

/* Whether the whole response is in the buffer and may be handed to libmicrohttpd as one
 * piece of memory (which then sends head and body with one system call): a body with a
 * Content-Length, complete. HEAD, 204 and 304 keep the reader, which carries the length
 * the upstream announced without a body. */
static bool whole_response(const exchange *ex) {
  return ex->up_done && ex->mbit != GW_M_HEAD && ex->upstream_status != 204 &&
         ex->upstream_status != 304 && !(ex->parser.flags & F_CHUNKED) &&
         ex->resp_length != UINT64_MAX && buf_pending(&ex->resp) == ex->resp_length;
}

/* The client response, once the upstream's head is in: from memory when the whole
 * response is there, else streamed. */
static void build_response(exchange *ex) {
  ex->response_made = true;
  if (!whole_response(ex)) {
    make_response(ex);
    return;
  }
  ex->status = ex->upstream_status;
  size_t len = buf_pending(&ex->resp);
  struct MHD_Response *r;
  if (len == 0) {
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    free(ex->resp.data);
  } else {
    if (ex->resp.off) memmove(ex->resp.data, ex->resp.data + ex->resp.off, len);
    r = MHD_create_response_from_buffer_with_free_callback(len, ex->resp.data, free);
  }
  if (!r) abort();
  ex->resp.data = NULL; /* the response's now */
  ex->resp.off = ex->resp.len = ex->resp.cap = 0;
  ex->bytes_out += len;
  response_fields(ex, r);
  ex->pending = r;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  exchange *ex = p->data;
  if (ex->hlen + n + 2 > MAX_RESP_HEADER_BYTES) return -1;
  if (ex->hlen + n + 2 > ex->hcap) {
    ex->hcap = (ex->hlen + n + 2) * 2;
    if (ex->hcap < 1024) ex->hcap = 1024;
    ex->hbuf = realloc(ex->hbuf, ex->hcap);
    if (!ex->hbuf) abort();
  }
  /* Layout: name\0value\0name\0value\0... Every piece is stored terminated, so a new
   * field simply follows the previous value; a field split across reads continues over
   * its terminator. */
  if (!ex->parsing_field) ex->parsing_field = true;
  else if (ex->hlen) ex->hlen--;
  memcpy(ex->hbuf + ex->hlen, at, n);
  ex->hlen += n;
  ex->hbuf[ex->hlen++] = 0;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  exchange *ex = p->data;
  if (ex->hlen + n + 2 > MAX_RESP_HEADER_BYTES) return -1;
  if (ex->hlen + n + 2 > ex->hcap) {
    ex->hcap = (ex->hlen + n + 2) * 2;
    if (ex->hcap < 1024) ex->hcap = 1024;
    ex->hbuf = realloc(ex->hbuf, ex->hcap);
    if (!ex->hbuf) abort();
  }
  if (ex->parsing_field) ex->parsing_field = false; /* value starts right after name\0 */
  else ex->hlen--;                                  /* continue the value */
  memcpy(ex->hbuf + ex->hlen, at, n);
  ex->hlen += n;
  ex->hbuf[ex->hlen++] = 0;
  return 0;
}

/* The same framing rules as for requests (admit.h), for an upstream's response head: at
 * most one Content-Length of plain digits, Transfer-Encoding only as exactly one "chunked"
 * and never with Content-Length. Anything else is ambiguous: the response is refused (502)
 * and the connection, whose next bytes cannot be trusted, is closed rather than pooled. */
static bool response_framing_ok(const exchange *ex) {
  int ncl = 0, nte = 0;
  const char *name, *value;
  size_t nlen;
  for (size_t off = 0; next_field(ex, &off, ex->hlen, &name, &nlen, &value);) {
    if (strcasecmp(name, "Content-Length") == 0) {
      ncl++;
      if (!*value || strspn(value, "0123456789") != strlen(value) || strlen(value) > 18) return false;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
      nte++;
      if (strcasecmp(value, "chunked") != 0) return false;
    }
  }
  return ncl <= 1 && nte <= 1 && !(ncl && nte);
}

static int on_headers_complete(http_parser *p) {
  exchange *ex = p->data;
  if (!ex->parsing_field && ex->hlen == 0) {
    /* no headers at all */
  } else if (ex->parsing_field) {
    /* a field without value: give it an empty one */
    if (ex->hlen + 1 > ex->hcap) {
      ex->hcap = ex->hlen + 16;
      ex->hbuf = realloc(ex->hbuf, ex->hcap);
      if (!ex->hbuf) abort();
    }
    ex->hbuf[ex->hlen++] = 0;
    ex->parsing_field = false; /* a trailer field that follows starts afresh */
  }
  if (p->status_code < 200) { /* 1xx: forget it, the real response follows */
    ex->hlen = 0;
    ex->parsing_field = false;
    return 0;
  }
  if (!response_framing_ok(ex)) return -1; /* 502, and the connection is closed */
  ex->upstream_status = p->status_code;
  ex->head_done = true;
  ex->head_hlen = ex->hlen; /* what http_parser reports after this are trailer fields */
  ex->t_up_headers = now_s();
  bool no_body = ex->mbit == GW_M_HEAD || p->status_code == 204 || p->status_code == 304;
  ex->resp_length = (p->flags & F_CHUNKED) || p->content_length == ULLONG_MAX ? UINT64_MAX
                                                                              : p->content_length;
  if (no_body && ex->mbit != GW_M_HEAD) ex->resp_length = 0;
  /* the response buffer: the body's size when known and small, else the configured size */
  size_t cap = ex->conf->buffer_bytes;
  if (ex->resp_length != UINT64_MAX && ex->resp_length + 1 < cap) cap = (size_t)ex->resp_length + 1;
  buf_init(&ex->resp, cap);
  return no_body ? 1 : 0; /* the client response is built once this read is parsed */
}

static int on_body(http_parser *p, const char *at, size_t n) {
  exchange *ex = p->data;
  /* room was reserved before reading (decoded body bytes never exceed the bytes read),
   * except on the read that carried the head: grow the buffer up to its configured size */
  if (!buf_room(&ex->resp, n, NULL)) {
    size_t need = buf_pending(&ex->resp) + n;
    if (need > ex->conf->buffer_bytes) return -1;
    buf_room(&ex->resp, ex->resp.cap, NULL); /* compact */
    char *nb = realloc(ex->resp.data, need);
    if (!nb) abort();
    ex->resp.data = nb;
    ex->resp.cap = need;
  }
  memcpy(ex->resp.data + ex->resp.len, at, n);
  ex->resp.len += n;
  return 0;
}

static int on_message_complete(http_parser *p) {
  exchange *ex = p->data;
  if (!ex->head_done) return 0; /* end of a 1xx */
  ex->up_done = true;
  http_parser_pause(p, 1); /* anything after the response is not ours */
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void start_attempt(exchange *ex);

enum fail_kind { FAIL_CONNECT, FAIL_CONNECT_TIMEOUT, FAIL_IO, FAIL_TIMEOUT, FAIL_PROTOCOL };

/* Whether a failed attempt may be repeated on another replica: never once the client has
 * the response head; always when the request never left the gateway (connection refused
 * or connect timeout: the upstream cannot have seen it); otherwise only for idempotent
 * methods whose request bytes are still all in the buffer. */
static bool may_retry(const exchange *ex, enum fail_kind kind) {
  if (ex->head_done || ex->retries >= ex->route->retries) return false;
  if (kind == FAIL_CONNECT || kind == FAIL_CONNECT_TIMEOUT) return true;
  return ex->idempotent && ex->replayable;
}

static void upstream_failed(exchange *ex, enum fail_kind kind, const char *why) {
  worker *w = ex->w;
  bool stale = ex->uc && ex->uc->reused && kind == FAIL_IO && ex->parser.nread == 0;
  gw_replica *rep = ex->uc ? ex->uc->rep : NULL;
  up_detach(ex, false);
  ex->error = why;
  char labels[320];
  if (rep) {
    snprintf(labels, sizeof labels, "upstream=\"%s\",outcome=\"%s\"", rep->name,
             kind == FAIL_TIMEOUT || kind == FAIL_CONNECT_TIMEOUT ? "timeout"
             : kind == FAIL_CONNECT                               ? "connect_error"
                                                                  : "error");
    gw_stats_add(w->stats, "gateway_upstream_requests_total", labels, 1);
    /* a pooled connection the upstream had closed says nothing about its health */
    if (!stale) gw_replica_failure(rep, ex->conf, why);
  }
  if (ex->head_done) { /* too late for anything but an abort */
    ex->up_failed = true;
    active_del(ex);
    wake_client(ex);
    return;
  }
  if (stale && ex->idempotent && ex->replayable && !ex->stale_retried) {
    ex->stale_retried = true; /* a fresh connection, not counted as a retry */
    start_attempt(ex);
    return;
  }
  if (may_retry(ex, kind)) {
    ex->retries++;
    snprintf(labels, sizeof labels, "route=\"%s\"", ex->route->name);
    gw_stats_add(w->stats, "gateway_retries_total", labels, 1);
    start_attempt(ex);
    return;
  }
  active_del(ex);
  if (kind == FAIL_TIMEOUT || kind == FAIL_CONNECT_TIMEOUT) local_problem(ex, 504, "Gateway Timeout", "the upstream did not answer in time");
  else local_problem(ex, 502, "Bad Gateway", "the upstream failed to answer");
  wake_client(ex);
}

static void update_events(exchange *ex) {
  uconn *uc = ex->uc;
  if (!uc) return;
  uint32_t ev = 0;
  if (uc->connecting || buf_pending(&ex->req)) ev |= EPOLLOUT;
  if (!uc->connecting && !ex->up_done) {
    /* read only when the response buffer has room for a full read */
    size_t freeb = ex->resp.cap - buf_pending(&ex->resp);
    if (!ex->head_done || freeb >= ex->resp.cap / 4 || freeb >= 16384) ev |= EPOLLIN | EPOLLRDHUP;
    ex->up_paused = !(ev & EPOLLIN);
  }
  uc_events(uc, ev);
}

/* Adds to a counter only its worker writes (the metrics renderer reads it). */
static void own_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

#define RING_ENTRIES 256

/* Sending a whole request upstream while libmicrohttpd runs: queue it, and send all of
 * this run's requests with one io_uring submission afterwards (flush_sends). Why: an
 * upstream on the same CPU is woken by the first send and, on a kernel that preempts at the
 * return from the system call, runs at once — with one send() per request it wakes (and
 * preempts the gateway) once per request and handles one request per wake-up. One
 * submission for all of them wakes it once, and it then finds them all. */
static bool queue_send(exchange *ex) {
  worker *w = ex->w;
  if (!w->in_mhd || !w->uring || (ex->has_body && !ex->body_done)) return false;
  /* when runs complete one request at a time (one client at a time) and nothing is
   * deferred, there is nothing to batch with: send now and wait right here (fast_wait),
   * which takes fewer trips through the event loop */
  if (w->run_avg < 384 && w->ndeferred == 0 && !ex->send_queued && !ex->conf->batch_always)
    return false;
  if (ex->send_queued) return true;
  if (w->nflush == w->flushcap) {
    int cap = w->flushcap ? w->flushcap * 2 : 64;
    struct flushent *f = realloc(w->flush, (size_t)cap * sizeof *f);
    if (!f) return false;
    w->flush = f;
    w->flushcap = cap;
  }
  w->flush[w->nflush++] = (struct flushent){.ex = ex, .uc = ex->uc, .attempt = ex->attempt};
  ex->send_queued = true;
  ex->refs++;
  return true;
}

static void up_write(exchange *ex) {
  uconn *uc = ex->uc;
  if (buf_pending(&ex->req) && queue_send(ex)) return;
  while (buf_pending(&ex->req)) {
    ssize_t n = send(uc->fd, ex->req.data + ex->req.off, buf_pending(&ex->req), MSG_NOSIGNAL);
    if (n > 0) {
      ex->req.off += (size_t)n;
      ex->progress_ms = ex->w->now_ms;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    upstream_failed(ex, FAIL_IO, "write to upstream failed");
    return;
  }
  if (!ex->replayable && ex->req.off == ex->req.len) ex->req.off = ex->req.len = 0;
  /* a client waiting for buffer space may go on */
  if (ex->suspended && !ex->body_done && !has_response(ex)) resume(ex);
  update_events(ex);
}

static bool flush_valid(const struct flushent *f) {
  return !f->ex->completed && f->ex->uc == f->uc && f->ex->attempt == f->attempt &&
         buf_pending(&f->ex->req) > 0;
}

static void flush_sends(worker *w) {
  if (!w->nflush) return; /* called after MHD_run: what a batch leaves is sent directly */
  for (int i = 0; i < w->nflush;) {
    int batch = w->nflush - i < RING_ENTRIES ? w->nflush - i : RING_ENTRIES;
    for (int j = i; j < i + batch; j++) {
      struct flushent *f = &w->flush[j];
      struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
      f->res = -EAGAIN; /* not sent: up_write sends it directly below */
      if (!sqe) abort(); /* the ring is empty at the start of every batch */
      if (flush_valid(f)) {
        exchange *ex = f->ex;
        io_uring_prep_send(sqe, f->uc->fd, ex->req.data + ex->req.off, buf_pending(&ex->req),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
      } else {
        io_uring_prep_nop(sqe);
      }
      io_uring_sqe_set_data64(sqe, (uint64_t)j);
    }
    int rc = io_uring_submit_and_wait(&w->ring, (unsigned)batch);
    own_add(&w->batches, 1);
    own_add(&w->batched_sends, (uint64_t)batch);
    if (rc < 0) log_warn("gateway: io_uring submission failed: %s", strerror(-rc));
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&w->ring, head, cqe) {
      uint64_t j = io_uring_cqe_get_data64(cqe);
      if (j < (uint64_t)w->nflush) w->flush[j].res = cqe->res;
      seen++;
    }
    io_uring_cq_advance(&w->ring, seen);
    i += batch;
  }
  int n = w->nflush;
  w->nflush = 0;
  for (int j = 0; j < n; j++) {
    struct flushent *f = &w->flush[j];
    exchange *ex = f->ex;
    ex->send_queued = false;
    if (flush_valid(f)) {
      if (f->res > 0) {
        ex->req.off += (size_t)f->res;
        ex->progress_ms = w->now_ms;
        up_write(ex); /* the rest, if any, and the bookkeeping after a write */
      } else if (f->res == -EAGAIN || f->res == -EINTR) {
        up_write(ex);
      } else {
        upstream_failed(ex, FAIL_IO, "write to upstream failed");
      }
    }
    ex_unref(ex);
  }
}

static void up_read(exchange *ex) {
  uconn *uc = ex->uc;
  for (;;) {
    size_t room = sizeof ex->w->scratch;
    /* decoded body bytes never outnumber the bytes read, so this read always fits */
    if (ex->head_done) {
      size_t freeb = ex->resp.cap - buf_pending(&ex->resp);
      if (freeb < room) room = freeb;
      if (room == 0) break;
    } else if (room > ex->conf->buffer_bytes) {
      room = ex->conf->buffer_bytes; /* the head's read may carry the start of the body */
    }
    ssize_t n = recv(uc->fd, ex->w->scratch, room, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) {
      upstream_failed(ex, FAIL_IO, "upstream connection reset");
      return;
    }
    ex->progress_ms = ex->w->now_ms;
    bool had_head = ex->head_done;
    size_t done = http_parser_execute(&ex->parser, &parser_settings, ex->w->scratch, (size_t)n);
    enum http_errno err = HTTP_PARSER_ERRNO(&ex->parser);
    if (ex->head_done && !ex->response_made) {
      if (err != HPE_OK && err != HPE_PAUSED) ex->up_done = false; /* never from memory then */
      build_response(ex);
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
      upstream_failed(ex, FAIL_PROTOCOL, "invalid response from upstream");
      return;
    }
    if (!had_head && ex->head_done) {
      gw_replica_success(uc->rep);
      struct pool *p = &ex->w->pools[uc->rep->id];
      if (!p->ok) {
        char labels[300];
        snprintf(labels, sizeof labels, "upstream=\"%s\",outcome=\"response\"", uc->rep->name);
        p->ok = gw_stats_counter(ex->w->stats, "gateway_upstream_requests_total", labels);
      }
      gw_counter_add(ex->w->stats, p->ok, 1);
    }
    if (ex->up_done) {
      /* reusable when the upstream consumed the whole request, sent nothing extra and
       * keeps the connection */
      bool reusable = ex->body_done && buf_pending(&ex->req) == 0 && done == (size_t)n &&
                      http_should_keep_alive(&ex->parser);
      up_detach(ex, reusable);
      active_del(ex);
      wake_client(ex);
      return;
    }
    if (n == 0) {
      /* EOF: a close-delimited body ends here; anything else is a failure */
      upstream_failed(ex, FAIL_IO, ex->head_done ? "upstream closed mid-response"
                                                 : "upstream closed the connection");
      return;
    }
    if (ex->head_done) wake_client(ex);
  }
  if (ex->uc) update_events(ex);
}

static void up_event(uconn *uc, uint32_t events) {
  exchange *ex = uc->ex;
  if (!ex) { /* pooled connection: the upstream closed it or sent garbage */
    pool_unlink(uc->w, uc);
    uc_close(uc);
    return;
  }
  if (uc->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(uc->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
      upstream_failed(ex, FAIL_CONNECT, "connect to upstream failed");
      return;
    }
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    uc->connecting = false;
    ex->progress_ms = ex->w->now_ms;
  }
  if (events & EPOLLOUT) {
    up_write(ex);
    if (!ex->uc) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) up_read(ex);
}

static gw_replica *pick_replica(exchange *ex) {
  worker *w = ex->w;
  const gw_route *r = ex->route;
  int64_t now = w->now_ms;
  unsigned start = r->index < w->nrr ? w->rr[r->index]++ : 0; /* index of an older config */
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < r->nupstreams; i++) {
      gw_replica *rep = r->replicas[(start + (unsigned)i) % (unsigned)r->nupstreams];
      if (!gw_replica_available(rep, now)) continue;
      bool tried = false;
      for (int t = 0; t < ex->ntried; t++) tried = tried || ex->tried[t] == rep;
      /* first pass: a replica not tried yet; second: any healthy one */
      if (tried && pass == 0) continue;
      return rep;
    }
  }
  return NULL;
}

static void start_attempt(exchange *ex) {
  worker *w = ex->w;
  gw_replica *rep = pick_replica(ex);
  if (!rep) {
    active_del(ex);
    if (ex->ntried == 0) {
      local_problem(ex, 503, "Service Unavailable", "no healthy upstream for this route");
      local_header(ex, "Retry-After", "%d", 1);
    } else if (ex->error && strstr(ex->error, "time")) {
      local_problem(ex, 504, "Gateway Timeout", "the upstream did not answer in time");
    } else {
      local_problem(ex, 502, "Bad Gateway", "the upstream failed to answer");
    }
    wake_client(ex);
    return;
  }
  ex->attempt++;
  if (ex->ntried < MAX_TRIES) ex->tried[ex->ntried++] = rep;
  ex->upstream_name = rep->name;
  if (ex->t_up_start == 0) ex->t_up_start = now_s();
  /* (re)start the request from its first byte and a fresh parser */
  ex->req.off = 0;
  http_parser_init(&ex->parser, HTTP_RESPONSE);
  ex->parser.data = ex;
  ex->hlen = 0;
  ex->parsing_field = false;
  uconn *uc = pool_get(w, rep, ex->conf->keepalive_idle_ms, !ex->idempotent);
  if (!uc) {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned gen;
    gw_replica_addr(rep, &addr, &addrlen, &gen);
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      upstream_failed(ex, FAIL_CONNECT, "no socket for upstream");
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uc = calloc(1, sizeof *uc);
    if (!uc) abort();
    uc->tag = TAG_UP;
    uc->fd = fd;
    uc->w = w;
    uc->rep = rep;
    uc->addr_gen = gen;
    uc->connecting = true;
    uc->events = EPOLLOUT;
    ws_set(w, fd, EPOLLOUT, uc, EPOLL_CTL_ADD);
    ex->uc = uc;
    uc->ex = ex;
    ex->deadline_ms = w->now_ms + ex->route->connect_timeout_ms;
    active_add(ex);
    if (connect(fd, (const struct sockaddr *)&addr, addrlen) != 0 && errno != EINPROGRESS) {
      upstream_failed(ex, FAIL_CONNECT, "connect to upstream failed");
      return;
    }
    return; /* EPOLLOUT tells when connected */
  }
  ex->uc = uc;
  uc->ex = ex;
  ex->progress_ms = w->now_ms;
  active_add(ex);
  up_write(ex);
}

/* ------------------------------------------------------------------ client side */

/* Trailer fields pass through in both directions: those of a chunked upstream response go
 * to the client as trailer fields of its chunked response (libmicrohttpd sends them after
 * the last chunk; an HTTP/1.0 client gets no chunks and so no trailers), those of a chunked
 * request body go upstream after its last chunk. Dropped, as RFC 9110 6.5.1 asks of fields
 * that must not be trailers: hop-by-hop ones, framing, routing, request modifiers,
 * authentication, response control, content processing — and the fields the gateway sets
 * itself, so that a trailer cannot stand in for them (X-Consumer-ID above all). */
static const char *const not_trailers[] = {
    "content-length", "content-type", "content-encoding", "content-range", "host",
    "authorization", "www-authenticate", "set-cookie", "cache-control", "expires", "date",
    "location", "retry-after", "vary", "age", "x-request-id", "ratelimit",
    "ratelimit-policy", NULL};
static const char *const not_request_trailers[] = {
    "content-length", "content-type", "content-encoding", "content-range", "host",
    "authorization", "cookie", "expect", "max-forwards", "pragma", "range", "cache-control",
    "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range",
    "x-api-key", "x-consumer-id", "x-request-id", "x-forwarded-for", "x-forwarded-proto",
    "x-forwarded-host", "forwarded", NULL};

static bool trailer_dropped(const char *name, size_t nlen, const char *const *deny) {
  if (is_hop_by_hop(name, nlen) || strncasecmp(name, "proxy-", 6) == 0) return true;
  if (deny == not_request_trailers && gw_admit_own_field(name, nlen)) return true;
  for (int i = 0; deny[i]; i++)
    if (strcasecmp(name, deny[i]) == 0) return true;
  return false;
}

static void add_trailers(exchange *ex) {
  if (!ex->stream) return;
  const char *name, *value;
  size_t nlen;
  for (size_t off = ex->head_hlen; next_field(ex, &off, ex->hlen, &name, &nlen, &value);) {
    if (!trailer_dropped(name, nlen, not_trailers) && strncasecmp(name, "access-control-", 15) != 0)
      MHD_add_response_footer(ex->stream, name, value); /* refuses CR/LF itself */
  }
  ex->head_hlen = ex->hlen; /* once */
}

/* libmicrohttpd's parsed trailer fields of a chunked request body, as "name: value" lines */
static enum MHD_Result collect_trailer(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value) {
  (void)kind;
  buf *t = cls;
  if (!value) value = "";
  size_t nlen = strlen(key), vlen = strlen(value);
  if (trailer_dropped(key, nlen, not_request_trailers) || strpbrk(key, "\r\n") || strpbrk(value, "\r\n"))
    return MHD_YES;
  buf_append(t, key, nlen);
  buf_append(t, ": ", 2);
  buf_append(t, value, vlen);
  buf_append(t, "\r\n", 2);
  return MHD_YES;
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  exchange *ex = cls;
  size_t have = buf_pending(&ex->resp);
  if (have) {
    size_t n = have < max ? have : max;
    memcpy(out, ex->resp.data + ex->resp.off, n);
    ex->resp.off += n;
    if (ex->resp.off == ex->resp.len) ex->resp.off = ex->resp.len = 0;
    ex->bytes_out += n;
    if (ex->up_paused && ex->uc) update_events(ex);
    return (ssize_t)n;
  }
  if (ex->up_done) {
    add_trailers(ex);
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  if (ex->up_failed) return MHD_CONTENT_READER_END_WITH_ERROR;
  suspend(ex); /* resumed when the upstream sends more */
  if (ex->uc) update_events(ex);
  return 0;
}

static void reader_free(void *cls) {
  exchange *ex = cls;
  ex->stream = NULL;
  ex_unref(ex);
}

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *conn) {
  exchange *ex = ex_new(cls);
  ex->w = cls;
  ex->conn = conn;
  ex->refs = 1;
  size_t ulen = uri ? strlen(uri) : 0;
  if (ulen < sizeof ex->uri_buf) {
    ex->uri = ex->uri_buf;
    if (ulen) memcpy(ex->uri_buf, uri, ulen);
    ex->uri_buf[ulen] = 0;
  } else {
    ex->uri = strdup(uri);
    if (!ex->uri) abort();
  }
  ex->t_start = now_s();
  ex->rl_decision = "none";
  ex->resp_length = UINT64_MAX;
  ex->replayable = true;
  ex->w->inflight++;
  return ex;
}

/* Every instance of every field, in order, as libmicrohttpd parsed them. */
typedef struct {
  gw_field *fields;
  int n;
  bool overflow;
} field_list;

static enum MHD_Result collect_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size) {
  (void)kind;
  field_list *l = cls;
  if (l->n == GW_MAX_FIELDS) {
    l->overflow = true;
    return MHD_NO;
  }
  l->fields[l->n++] = (gw_field){key, key_size, value ? value : "", value ? value_size : 0};
  return MHD_YES;
}

static void req_append(exchange *ex, const char *s, size_t n) { buf_append(&ex->req, s, n); }

static bool valid_request_id(const char *s) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.' || c == ':'))
      return false;
    if (n >= 128) return false;
  }
  return n > 0;
}

/* A UUIDv4-shaped id from a per-worker xorshift generator seeded from the CSPRNG: ids need
 * to be unique, not secret, and RAND_bytes per request costs more than the proxying. */
static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void request_id_new(worker *w, char out[37]) {
  static const char hex[] = "0123456789abcdef";
  if (!w->rng) {
    char seed[37];
    util_uuid(seed);
    for (int i = 0; seed[i]; i++) w->rng = w->rng * 131 + (unsigned char)seed[i];
    w->rng |= 1;
  }
  uint64_t a = xorshift(&w->rng), b = xorshift(&w->rng);
  unsigned char bytes[16];
  memcpy(bytes, &a, 8);
  memcpy(bytes + 8, &b, 8);
  bytes[6] = (unsigned char)((bytes[6] & 0x0f) | 0x40);
  bytes[8] = (unsigned char)((bytes[8] & 0x3f) | 0x80);
  int o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[bytes[i] >> 4];
    out[o++] = hex[bytes[i] & 15];
  }
  out[o] = 0;
}

static void cslot_release(worker *w, cslot *s) {
  if (s == w->cur || s->uses > 0) return;
  gw_conf_unref(s->conf);
  free(s);
}

static void take_conf(worker *w) {
  unsigned gen = atomic_load(&conf_gen);
  if (w->cur && gen == w->conf_gen) return;
  cslot *s = calloc(1, sizeof *s);
  if (!s) abort();
  s->conf = gw_proxy_conf();
  cslot *old = w->cur;
  w->cur = s;
  w->conf_gen = gen;
  if (old) cslot_release(w, old);
  free(w->rr);
  w->nrr = s->conf->nroutes;
  w->rr = calloc((size_t)w->nrr + 1, sizeof *w->rr);
  if (!w->rr) abort();
  for (int i = 0; i < w->nrr; i++) w->rr[i] = (unsigned)(w->id * 7 + i); /* spread starts */
}

static void serve_health(exchange *ex) {
  json_t *ups = json_array();
  int64_t now = gw_now_ms();
  const gw_conf *c = ex->conf;
  for (int i = 0; i < c->nroutes; i++)
    for (int u = 0; u < c->routes[i].nupstreams; u++) {
      gw_replica *r = c->routes[i].replicas[u];
      json_array_append_new(ups, json_pack("{s:s, s:s, s:b}", "route", c->routes[i].name,
                                           "upstream", r->name, "up",
                                           gw_replica_available(r, now)));
    }
  bool drain = atomic_load(&draining);
  json_t *body = json_pack("{s:s, s:o}", "status", drain ? "DRAINING" : "UP", "upstreams", ups);
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  local_reply(ex, drain ? 503 : 200, "application/json", s, strlen(s));
}

/* Appends metric{result="…"} lines for a per-worker array of outcome counters (at byte
 * offset off in struct worker), summed over the workers; returns the new length. */
static int by_result(char *out, size_t cap, int len, const char *metric, size_t off,
                     const char *const *names, int n) {
  for (int r = 0; r < n && len > 0 && (size_t)len < cap; r++) {
    unsigned long long v = 0;
    for (int i = 0; i < nworkers; i++)
      v += atomic_load_explicit((_Atomic uint64_t *)((char *)&workers[i] + off) + r, memory_order_relaxed);
    len += snprintf(out + len, cap - (size_t)len, "%s{result=\"%s\"} %llu\n", metric, names[r], v);
  }
  return len;
}

static void serve_metrics(exchange *ex) {
  gw_stats *all[MAX_WORKERS];
  for (int i = 0; i < nworkers; i++) all[i] = workers[i].stats;
  char *mine = gw_stats_render(all, nworkers);
  gw_replica_publish_metrics();
  char *shared = metrics_render();
  char fast[3072];
  unsigned long long batched = 0, batches = 0;
  int uring = 0;
  for (int i = 0; i < nworkers; i++) {
    batched += atomic_load_explicit(&workers[i].batched_sends, memory_order_relaxed);
    batches += atomic_load_explicit(&workers[i].batches, memory_order_relaxed);
    uring += workers[i].uring;
  }
  int fn = snprintf(fast, sizeof fast,
                    "# HELP gateway_io_uring_workers Workers that batch upstream sends with io_uring.\n"
                    "# TYPE gateway_io_uring_workers gauge\ngateway_io_uring_workers %d\n"
                    "# HELP gateway_batched_sends_total Upstream request sends made in batches.\n"
                    "# TYPE gateway_batched_sends_total counter\ngateway_batched_sends_total %llu\n"
                    "# HELP gateway_send_batches_total io_uring submissions that carried them.\n"
                    "# TYPE gateway_send_batches_total counter\ngateway_send_batches_total %llu\n"
                    "# HELP gateway_fast_path_total Requests answered without suspending the client "
                    "connection (waited for in the access handler, or deferred), by outcome.\n"
                    "# TYPE gateway_fast_path_total counter\n",
                    uring, batched, batches);
  fn = by_result(fast, sizeof fast, fn, "gateway_fast_path_total", offsetof(worker, fast),
                 fast_result_names, FAST_RESULTS);
  if (fn > 0 && (size_t)fn < sizeof fast)
    fn += snprintf(fast + fn, sizeof fast - (size_t)fn,
                   "# HELP gateway_idle_polls_total Polls for a client's next request before a "
                   "worker sleeps (pool.idle_poll_us), by outcome.\n"
                   "# TYPE gateway_idle_polls_total counter\n");
  fn = by_result(fast, sizeof fast, fn, "gateway_idle_polls_total", offsetof(worker, idle_polls),
                 idle_result_names, IDLE_RESULTS);
  char *text = NULL;
  if (asprintf(&text, "%s%s%s", mine, fast, shared) < 0) abort();
  free(mine);
  free(shared);
  local_reply(ex, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
}

/* Handles the paths the gateway answers itself; true when it did. */
static bool serve_local(exchange *ex, const char *p, size_t n) {
  bool root = n == 1 && p[0] == '/';
  bool openapi = n == 13 && memcmp(p, "/openapi.json", 13) == 0;
  bool health = n == 15 && memcmp(p, "/gateway/health", 15) == 0;
  bool metrics = n == 16 && memcmp(p, "/gateway/metrics", 16) == 0;
  bool gw = n >= 8 && memcmp(p, "/gateway", 8) == 0 && (n == 8 || p[8] == '/');
  if (!root && !openapi && !gw) return false;
  if (!(ex->mbit & (GW_M_GET | GW_M_HEAD))) {
    local_problem(ex, 405, "Method Not Allowed", "only GET and HEAD are allowed here");
    local_header(ex, "Allow", "GET, HEAD");
    return true;
  }
  if (root) {
    size_t len;
    char *page = gw_landing_page(ex->conf, &len);
    local_reply(ex, 200, "text/html; charset=utf-8", page, len);
  } else if (openapi) {
    if (!ex->conf->openapi) {
      local_problem(ex, 404, "Not Found", "no OpenAPI document is installed");
    } else {
      char *doc = malloc(ex->conf->openapi_len + 1);
      if (!doc) abort();
      memcpy(doc, ex->conf->openapi, ex->conf->openapi_len);
      local_reply(ex, 200, "application/json", doc, ex->conf->openapi_len);
    }
  } else if (health) {
    serve_health(ex);
  } else if (metrics) {
    serve_metrics(ex);
  } else {
    local_problem(ex, 404, "Not Found", "no resource at this path");
  }
  return true;
}

static void note_reject(exchange *ex, const char *reason) {
  char labels[96];
  snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
  gw_stats_add(ex->w->stats, "gateway_rejected_total", labels, 1);
}

/* First access-handler call: everything decided from the head. Returns with either a local
 * response prepared (ex->local) or an upstream attempt started. */
static void on_headers(exchange *ex, const char *method, const char *version) {
  worker *w = ex->w;
  take_conf(w);
  ex->slot = w->cur;
  ex->slot->uses++;
  const gw_conf *c = ex->conf = ex->slot->conf;
  size_t mlen = strnlen(method, sizeof ex->method - 1);
  memcpy(ex->method, method, mlen);
  ex->method[mlen] = 0;
  ex->mbit = gw_method_bit(method);
  ex->idempotent = gw_method_idempotent(method);
  const char *q = strpbrk(ex->uri, "?#");
  ex->pathlen = q ? (size_t)(q - ex->uri) : strlen(ex->uri);

  gw_field fields[GW_MAX_FIELDS];
  field_list fl = {.fields = fields};
  MHD_get_connection_values_n(ex->conn, MHD_HEADER_KIND, collect_field, &fl);
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(ex->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci && ci->client_addr) gw_ip_text(ci->client_addr, ex->peer_ip);
  gw_head head = {.method = method, .target = ex->uri, .version = version, .fields = fields,
                  .nfields = fl.n, .too_many_fields = fl.overflow, .peer_ip = ex->peer_ip};
  gw_admission *a = &w->adm;
  gw_admit(c, &head, a);
  ex->idempotent = a->idempotent;
  if (a->request_id && valid_request_id(a->request_id))
    snprintf(ex->request_id, sizeof ex->request_id, "%s", a->request_id);
  else request_id_new(w, ex->request_id);
  memcpy(ex->client_ip, a->client_ip, sizeof ex->client_ip);
  ex->client_ip[sizeof ex->client_ip - 1] = 0;
  ex->origin = a->origin;
  ex->expect_continue = a->expect_continue;
  ex->has_body = a->body != GW_BODY_NONE;
  ex->chunked_in = a->body == GW_BODY_CHUNKED;
  ex->content_length = a->content_length;
  ex->route = a->route;
  if (a->key) ex->tier = a->tier;
  else if (a->route) ex->tier = "anonymous";
  if (atomic_load(&draining) || a->close) ex->close_after = true;
  ex->framing_refused = a->close;

  switch (a->kind) {
    case GW_ADMIT_LOCAL:
      serve_local(ex, a->path, a->pathlen);
      goto out;
    case GW_ADMIT_PREFLIGHT:
      local_reply(ex, 204, NULL, NULL, 0);
      local_header(ex, "Access-Control-Allow-Methods", "%s", c->cors_methods);
      local_header(ex, "Access-Control-Allow-Headers", "%s", c->cors_headers);
      local_header(ex, "Access-Control-Max-Age", "%d", c->cors_max_age_s);
      goto out;
    case GW_ADMIT_REFUSE:
      if (a->limit && !a->limit->unlimited) { /* an unknown key: the anonymous bucket */
        gw_rl_take(a->limit, "anonymous", a->identity, ex->t_start, &ex->rl);
        ex->limit = a->limit;
        if (ex->rl.limited) goto limited;
      }
      if (a->status == 403 && a->reason && strcmp(a->reason, "cors") == 0) ex->origin = NULL;
      local_problem(ex, a->status, a->title, a->detail);
      if (a->www_auth) local_header(ex, "WWW-Authenticate", "%s", a->www_auth);
      if (a->status == 501) local_header(ex, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
      note_reject(ex, a->reason);
      goto out;
    case GW_ADMIT_FORWARD: break;
  }
  const gw_route *route = ex->route;
  /* rate limit, keyed by the key, else the client address */
  if (a->limit) {
    gw_rl_take(a->limit, ex->tier, a->identity, ex->t_start, &ex->rl);
    ex->limit = a->limit;
    if (ex->rl.limited) goto limited;
    ex->rl_decision = "allowed";
  }
  ex->max_body = route->max_body;

  /* the upstream request head */
  if (!ex->req.data) buf_init(&ex->req, 1024);
  ex->req.off = ex->req.len = 0;
  gw_forward fwd = {.request_id = ex->request_id, .listen_host = listen_host,
                    .now_s = (long long)time(NULL)};
  w->head.len = 0;
  gw_admit_head(c, &head, a, &fwd, &w->head);
  req_append(ex, w->head.data, w->head.len);
  ex->head_len = ex->req.len;
  if (ex->has_body) {
    uint64_t body = ex->chunked_in ? c->buffer_bytes : ex->content_length;
    size_t want = ex->head_len + (body < c->buffer_bytes ? (size_t)body : c->buffer_bytes) + 64;
    if (ex->req.cap < want) {
      ex->req.cap = want;
      ex->req.data = realloc(ex->req.data, ex->req.cap);
      if (!ex->req.data) abort();
    }
  }
  if (!ex->has_body) ex->body_done = true;
  gw_admission_clear(a);
  start_attempt(ex);
  return;
limited:
  ex->rl_decision = "limited";
  local_problem(ex, 429, "Too Many Requests", "rate limit exceeded; see Retry-After");
  local_header(ex, "Retry-After", "%ld", ex->rl.retry_after_s);
  {
    char labels[300];
    snprintf(labels, sizeof labels, "route=\"%s\",tier=\"%s\"", ex->route ? ex->route->name : "",
             ex->tier ? ex->tier : "anonymous");
    gw_stats_add(w->stats, "gateway_ratelimited_total", labels, 1);
  }
out:
  gw_admission_clear(a);
}

/* Writes the gateway-made response straight onto the client socket, then shuts our side
 * for writing. Used when a request is refused while its body is (or would be) arriving:
 * libmicrohttpd cannot queue a response in the middle of a body, and queueing before it
 * makes libmicrohttpd close the socket with the body unread, which resets the connection
 * under the response before a client that is still sending has read it. After this the
 * rest of the body is read and dropped (bounded, see on_body_data) and the connection
 * closed: the client gets its answer at once and a clean close, as with nginx's lingering
 * close. */
static void send_raw_local(exchange *ex) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(ex->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  char head[2048];
  const char *reason = MHD_get_reason_phrase_for((unsigned)ex->status);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "X-Request-ID: %s\r\nConnection: close\r\n",
                   ex->status, reason && *reason ? reason : "Error",
                   ex->lctype ? ex->lctype : "text/plain", ex->llen, ex->request_id);
  for (int i = 0; i < ex->nlhdr && n > 0 && (size_t)n < sizeof head; i++)
    n += snprintf(head + n, sizeof head - (size_t)n, "%s: %s\r\n", ex->lhdr_name[i], ex->lhdr_value[i]);
  if (ex->limit && n > 0 && (size_t)n < sizeof head) {
    char policy[160], value[160];
    if (gw_rl_format(ex->limit, &ex->rl, policy, sizeof policy, value, sizeof value) == 0)
      n += snprintf(head + n, sizeof head - (size_t)n, "RateLimit-Policy: %s\r\nRateLimit: %s\r\n", policy, value);
  }
  if (n <= 0 || (size_t)n + 2 >= sizeof head) return;
  memcpy(head + n, "\r\n", 2);
  n += 2;
  if (ci) {
    struct iovec iov[2] = {{head, (size_t)n}, {ex->lbody ? ex->lbody : (char *)"", ex->llen}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w = sendmsg(ci->connect_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w; /* a few hundred bytes into a fresh socket buffer; if not, the client is gone */
    shutdown(ci->connect_fd, SHUT_WR);
  }
  ex->raw_sent = true;
  ex->response_queued = true; /* for the log: the client has its answer */
}

/* A chunked body crossed the route's limit: stop the upstream request, answer 413 now. */
static void too_large_midway(exchange *ex) {
  up_detach(ex, false);
  active_del(ex);
  char detail[128];
  snprintf(detail, sizeof detail, "the body may be at most %llu bytes", (unsigned long long)ex->max_body);
  local_problem(ex, 413, "Payload Too Large", detail);
  note_reject(ex, "body_too_large");
  send_raw_local(ex);
}

static bool w_batches(const exchange *ex) { return ex->w->uring && ex->conf->fast_wait_us > 0; }

/* A body piece arrived. Returns MHD_NO to drop the connection. */
static enum MHD_Result on_body_data(exchange *ex, const char *data, size_t *size) {
  size_t n = *size;
  if (ex->raw_sent || ex->local || ex->pending) { /* answered already: drop the rest */
    *size = 0;
    ex->discarded += n;
    /* keep reading a while so the close is clean, but not forever */
    if (ex->raw_sent && ex->discarded > RAW_DISCARD_LIMIT) return MHD_NO;
    return MHD_YES;
  }
  if (ex->body_seen + n > ex->max_body) {
    ex->body_seen += n;
    *size = 0;
    too_large_midway(ex);
    return MHD_YES;
  }
  size_t frame = ex->chunked_in ? 24 : 0;
  if (ex->req.len + frame + n > ex->req.cap && ex->req.off > 0) {
    /* no room at the end: drop the bytes already sent (the request can then no longer be
     * replayed on another replica) */
    memmove(ex->req.data, ex->req.data + ex->req.off, ex->req.len - ex->req.off);
    ex->req.len -= ex->req.off;
    ex->req.off = 0;
    ex->replayable = false;
  }
  size_t room = ex->req.cap - ex->req.len;
  if (room <= frame) {
    suspend(ex); /* resumed by up_write once the upstream took some bytes */
    return MHD_YES;
  }
  size_t want = n < room - frame ? n : room - frame;
  if (ex->chunked_in) {
    char hdr[24];
    int hn = snprintf(hdr, sizeof hdr, "%zx\r\n", want);
    req_append(ex, hdr, (size_t)hn);
    req_append(ex, data, want);
    req_append(ex, "\r\n", 2);
  } else {
    req_append(ex, data, want);
  }
  ex->body_seen += want;
  *size = n - want;
  if (*size) suspend(ex);
  /* a small body goes out with the rest of the request when it is complete (in the
   * batch, see queue_send); bytes are held back only while they fill less than half the
   * buffer, so a large upload streams */
  bool hold = !*size && w_batches(ex) && buf_pending(&ex->req) < ex->req.cap / 2;
  if (ex->uc && !ex->uc->connecting && !hold) up_write(ex);
  return MHD_YES;
}

/* The fast path. The request is complete and went out on a pooled connection: rather than
 * suspend the client connection and come back through the event loop when the upstream
 * answers (for libmicrohttpd two epoll_ctl calls, a resume and another loop iteration, and a
 * separate send for head and body), read the answer right here, waiting at most
 * fast_wait_us, and only while the worker has nothing else to do: the wait polls the
 * worker's epoll set too and gives up as soon as any other event is ready. An upstream on
 * the same host has usually answered by the time send() returns. Whatever is not finished
 * then (a slow upstream, a large or still-streaming body, a failure that starts another
 * attempt) simply continues on the asynchronous path, with everything read so far kept.
 * An upstream that lets the budget run out is not waited for again on the next 1, 3, 7, …
 * (up to 1023) requests to it from this worker. */
static void fast_count(worker *w, int result) { own_add(&w->fast[result], 1); }

/* The back-off shared by fast_wait and the deferred path: true (and counted as skipped)
 * while requests to this replica are not to be waited for after a slow answer. */
static bool fast_skipping(worker *w, int rid) {
  if (!backoff_skipping(&w->pools[rid].fast)) return false;
  fast_count(w, FAST_SKIPPED);
  return true;
}

static void fast_slow(worker *w, int rid) { backoff_miss(&w->pools[rid].fast); } /* out of time */

static void fast_wait(exchange *ex) {
  uconn *uc = ex->uc;
  int budget_us = ex->conf->fast_wait_us;
  if (budget_us <= 0 || !uc || uc->connecting || !uc->reused || buf_pending(&ex->req) || ex->head_done)
    return;
  worker *w = ex->w;
  int rid = uc->rep->id; /* w->pools may move (pool_put grows it after a reload) */
  if (fast_skipping(w, rid)) return;
  unsigned attempt = ex->attempt;
  struct timespec deadline = {0};
  int result;
  for (;;) {
    up_read(ex);
    if (ex->up_done && ex->attempt == attempt) {
      result = FAST_ANSWERED;
      break;
    }
    /* failed (a local answer is ready, or another attempt started: uc may be gone) */
    if (ex->attempt != attempt || ex->uc != uc || ex->local) {
      result = FAST_RETRIED;
      break;
    }
    /* a body larger than the buffer, or one that fills it, streams */
    if (ex->head_done && ((ex->resp_length != UINT64_MAX && ex->resp_length > ex->resp.cap) ||
                          buf_pending(&ex->resp) == ex->resp.cap)) {
      result = FAST_STREAMED;
      break;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (deadline.tv_sec == 0 && deadline.tv_nsec == 0) {
      deadline = now;
      deadline.tv_nsec += (long)budget_us * 1000;
      if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += deadline.tv_nsec / 1000000000L;
        deadline.tv_nsec %= 1000000000L;
      }
    }
    long left_ns = (deadline.tv_sec - now.tv_sec) * 1000000000L + (deadline.tv_nsec - now.tv_nsec);
    struct pollfd pf[2] = {{.fd = uc->fd, .events = POLLIN | POLLRDHUP}, {.fd = w->epfd, .events = POLLIN}};
    int n = 0;
    if (left_ns > 0) {
      struct timespec ts = {left_ns / 1000000000L, left_ns % 1000000000L};
      n = ppoll(pf, 2, &ts, NULL);
      w->now_ms = gw_now_ms();
      if (n < 0 && errno == EINTR) continue;
    }
    if (n > 0 && pf[0].revents) continue; /* more from the upstream */
    if (n == 0) {
      fast_slow(w, rid);
      result = FAST_TIMEOUT;
    } else {
      result = FAST_YIELDED; /* other work is waiting */
    }
    break;
  }
  if (result == FAST_ANSWERED) backoff_hit(&w->pools[rid].fast);
  fast_count(w, result);
}

/* Deferred answers: the batched counterpart of fast_wait, used when sends are batched
 * (queue_send). The final access-handler call neither waits nor suspends: it returns with
 * no response, libmicrohttpd asks again on each of its runs, and the answer is queued on
 * the first run after it arrived — for all the requests of a batch in one run. A request
 * not answered within fast_wait_us is suspended like any other (no more polling). */
static bool defer_start(exchange *ex) {
  uconn *uc = ex->uc;
  worker *w = ex->w;
  if (!ex->send_queued || ex->conf->fast_wait_us <= 0 || !uc || uc->connecting || !uc->reused ||
      ex->head_done)
    return false;
  if (fast_skipping(w, uc->rep->id)) return false;
  ex->deferring = true;
  ex->defer_attempt = ex->attempt;
  ex->defer_deadline_ns = w->now_ns + (int64_t)ex->conf->fast_wait_us * 1000;
  w->ndeferred++;
  return true;
}

static void defer_end(exchange *ex, int result) {
  if (!ex->deferring) return;
  ex->deferring = false;
  ex->w->ndeferred--;
  if (result >= 0) fast_count(ex->w, result);
}

static enum MHD_Result on_deferred(exchange *ex) {
  worker *w = ex->w;
  if (ex->local) {
    defer_end(ex, FAST_RETRIED);
    return queue_local(ex);
  }
  if (ex->pending) {
    bool same = ex->attempt == ex->defer_attempt;
    defer_end(ex, !same ? FAST_RETRIED : ex->up_done ? FAST_ANSWERED : FAST_STREAMED);
    if (same && ex->up_done) backoff_hit(&w->pools[ex->tried[ex->ntried - 1]->id].fast);
    return queue_pending(ex);
  }
  /* the loop's clock (read once per iteration) is precise enough for a budget in ms */
  if (w->now_ns < ex->defer_deadline_ns) return MHD_YES; /* still waiting: nothing done */
  w->mhd_work = true;
  if (ex->uc && ex->attempt == ex->defer_attempt) fast_slow(w, ex->uc->rep->id);
  defer_end(ex, FAST_TIMEOUT);
  suspend(ex);
  if (ex->uc) update_events(ex);
  return MHD_YES;
}

static enum MHD_Result on_complete(exchange *ex) {
  if (ex->raw_sent) return MHD_NO; /* the 413 is out; close */
  if (!ex->at_complete) ex->w->run_requests++;
  ex->at_complete = true;
  if (ex->local) return queue_local(ex);
  if (ex->chunked_in && !ex->eof_chunk_written) {
    /* the last chunk, the client's trailer fields (those that may pass), the end */
    buf trailers = {0};
    MHD_get_connection_values(ex->conn, MHD_FOOTER_KIND, collect_trailer, &trailers);
    bool keep = ex->replayable;
    if (!buf_room(&ex->req, 5 + trailers.len, &keep) && buf_pending(&ex->req) > 0) {
      free(trailers.data);
      ex->at_complete = false; /* not yet: waiting for buffer space */
      suspend(ex);
      return MHD_YES;
    }
    ex->replayable = keep;
    req_append(ex, "0\r\n", 3);
    req_append(ex, trailers.data, trailers.len);
    req_append(ex, "\r\n", 2);
    free(trailers.data);
    ex->eof_chunk_written = true;
  }
  if (!ex->body_done) {
    ex->body_done = true;
    if (ex->uc && !ex->uc->connecting) up_write(ex);
    if (ex->local) return queue_local(ex); /* the write failed for good */
  }
  if (!ex->pending && !ex->local && defer_start(ex)) return MHD_YES;
  if (!ex->pending && !ex->send_queued) {
    fast_wait(ex);
    if (ex->local) return queue_local(ex); /* failed for good while waiting */
  }
  if (ex->pending) return queue_pending(ex);
  suspend(ex); /* until the upstream's head arrives */
  if (ex->uc) update_events(ex);
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  (void)cls, (void)url, (void)conn;
  exchange *ex = *con_cls;
  if (!ex) return MHD_NO;
  if (ex->deferring && !*upload_data_size) return on_deferred(ex);
  ex->w->mhd_work = true;
  if (!ex->started) {
    ex->started = true;
    on_headers(ex, method, version);
    /* A refused request with a body: if the client waits for 100 Continue, answer now (it
     * never sends the body; libmicrohttpd closes afterwards). A large or unknown-length
     * body gets its answer at once too, written directly (send_raw_local). A small body
     * is read and dropped, and answered when complete like everything else, which keeps
     * the connection alive. */
    if (ex->local && ex->framing_refused) {
      /* the framing cannot be trusted: answer, then close without reading another request */
      send_raw_local(ex);
      return MHD_YES;
    }
    if (ex->local && ex->has_body) {
      if (ex->expect_continue) return queue_local(ex);
      if (ex->status == 413 || ex->chunked_in || ex->content_length > SMALL_BODY) send_raw_local(ex);
    }
    return MHD_YES;
  }
  if (*upload_data_size) return on_body_data(ex, upload_data, upload_data_size);
  if (ex->response_queued) return MHD_YES;
  return on_complete(ex);
}

static void log_exchange(exchange *ex, enum MHD_RequestTerminationCode toe) {
  worker *w = ex->w;
  double end = now_s();
  int status = ex->response_queued ? ex->status : 0;
  const char *route = ex->route ? ex->route->name : NULL;
  gw_stats_request(w->stats, route ? route : "", status, end - ex->t_start,
                   ex->t_up_headers > 0 ? ex->t_up_headers - ex->t_up_start : -1);
  const gw_conf *c = ex->conf ? ex->conf : w->cur->conf;
  if (!c->access_log) return;
  gw_alog *l = &w->log;
  gw_alog_begin(l);
  gw_alog_str(l, "request_id", ex->request_id[0] ? ex->request_id : NULL);
  gw_alog_str(l, "method", ex->method[0] ? ex->method : NULL);
  gw_alog_raw(l, ",\"path\":", 8);
  size_t ulen = strlen(ex->uri);
  gw_json_str(l, ex->uri, ulen > 2048 ? 2048 : ulen);
  gw_alog_str(l, "route", route);
  gw_alog_uint(l, "status", (unsigned)status);
  gw_alog_str(l, "upstream", ex->upstream_name);
  if (ex->upstream_status) gw_alog_uint(l, "upstream_status", (unsigned)ex->upstream_status);
  else gw_alog_null(l, "upstream_status");
  gw_alog_uint(l, "retries", (unsigned)ex->retries);
  gw_alog_str(l, "ratelimit", ex->rl_decision);
  if (ex->limit) gw_alog_uint(l, "ratelimit_remaining", (unsigned long long)ex->rl.remaining);
  gw_alog_str(l, "tier", ex->tier);
  gw_alog_str(l, "client_ip", ex->client_ip[0] ? ex->client_ip : NULL);
  gw_alog_uint(l, "bytes_in", ex->body_seen);
  gw_alog_uint(l, "bytes_out", ex->bytes_out);
  gw_alog_ms(l, "latency_ms", end - ex->t_start);
  if (ex->t_up_headers > 0) gw_alog_ms(l, "upstream_latency_ms", ex->t_up_headers - ex->t_up_start);
  else gw_alog_null(l, "upstream_latency_ms");
  if (ex->error) gw_alog_str(l, "error", ex->error);
  if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
    gw_alog_str(l, "termination", toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "client_timeout"
                                  : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? "client_abort"
                                  : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "shutdown"
                                  : "error");
  gw_alog_end(l);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)conn;
  exchange *ex = *con_cls;
  if (!ex) return;
  *con_cls = NULL;
  worker *w = ex->w;
  ex->completed = true;
  w->mhd_work = true;
  defer_end(ex, -1);
  log_exchange(ex, toe);
  if (ex->uc) up_detach(ex, false); /* ended before the upstream did: not reusable */
  active_del(ex);
  if (ex->pending) {
    MHD_destroy_response(ex->pending); /* drops the response's reference via reader_free */
    ex->pending = NULL;
  }
  if (ex->slot) {
    ex->slot->uses--;
    cslot_release(w, ex->slot);
  }
  w->inflight--;
  w->answered = true;
  ex->conn = NULL;
  ex_unref(ex);
}

/* ------------------------------------------------------------------ the loop */

static void check_timeouts(worker *w, int64_t now) {
  for (exchange *ex = w->active, *next; ex; ex = next) {
    next = ex->active_next;
    if (!ex->uc) continue;
    if (ex->uc->connecting) {
      if (now >= ex->deadline_ms) upstream_failed(ex, FAIL_CONNECT_TIMEOUT, "connect to upstream timed out");
      continue;
    }
    /* waiting on the client (it is slow to send its body or to read ours) is not the
     * upstream's fault: the client's own timeout covers that */
    bool waiting_client = (!ex->body_done && !ex->suspended && !(ex->uc->events & EPOLLOUT)) ||
                          (ex->head_done && ex->up_paused);
    if (waiting_client) {
      ex->progress_ms = now;
      continue;
    }
    if (now - ex->progress_ms >= ex->route->read_timeout_ms)
      upstream_failed(ex, FAIL_TIMEOUT, "upstream read timed out");
  }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && msg[n - 1] == '\n') msg[--n] = 0;
  log_fields(LOG_DEBUG, "libmicrohttpd", json_pack("{s:s}", "detail", msg));
}

static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls, (void)c;
  return strlen(s);
}

static void quiesce(worker *w) {
  if (w->quiesced) return;
  w->quiesced = true;
  MHD_socket fd = MHD_quiesce_daemon(w->d);
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

/* Idle polling. Having just answered a keep-alive client, with nothing else in progress,
 * the worker polls its epoll set for up to idle_poll_us (yielding the CPU to anything else
 * runnable on it between polls) before it goes to sleep: a client that sends its next
 * request at once finds the worker awake. Going to sleep and being woken costs a CPU that
 * then idles (in a virtual machine, a halt and a wake-up through the hypervisor) several
 * times more than the poll. A poll that finds nothing makes the worker skip the next 1, 3,
 * 7, … (up to 1023) polls, so an idle or lightly loaded gateway hardly polls at all.
 * Returns what epoll_wait returned, 0 when nothing came (or polling is off). */
static int idle_poll(worker *w, struct epoll_event *evs, int max) {
  int budget_us = w->cur->conf->idle_poll_us;
  bool after_answer = w->answered;
  w->answered = false;
  if (budget_us <= 0 || !after_answer || w->inflight) return 0;
  if (backoff_skipping(&w->idle)) {
    own_add(&w->idle_polls[IDLE_SKIPPED], 1);
    return 0;
  }
  int64_t end_ns = gw_now_ns() + (int64_t)budget_us * 1000;
  do {
    sched_yield();
    int n = epoll_wait(w->epfd, evs, max, 0);
    if (n > 0) {
      backoff_hit(&w->idle);
      own_add(&w->idle_polls[IDLE_EVENT], 1);
      return n;
    }
  } while (gw_now_ns() < end_ns);
  own_add(&w->idle_polls[IDLE_EMPTY], 1);
  backoff_miss(&w->idle);
  return 0;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  struct epoll_event evs[128];
  int64_t drain_deadline = 0;
  for (;;) {
    int64_t now = w->now_ms = gw_now_ms();
    if (atomic_load(&draining)) {
      if (!w->quiesced) {
        quiesce(w);
        gw_conf *c = w->cur->conf;
        drain_deadline = now + (int64_t)c->drain_timeout_s * 1000;
      }
      if (w->inflight == 0 || now >= drain_deadline || atomic_load(&stopping)) break;
    }
    take_conf(w);
    int timeout = 1000;
    MHD_UNSIGNED_LONG_LONG mt;
    if (MHD_get_timeout(w->d, &mt) == MHD_YES && mt < (MHD_UNSIGNED_LONG_LONG)timeout) timeout = (int)mt;
    /* libmicrohttpd asks to run again at once while exchanges are deferred; when its last
     * run only polled those, the upstream events (or 1 ms) are what is worth waiting for */
    if (timeout == 0 && w->ndeferred > 0 && !w->mhd_work) timeout = 1;
    if (w->active && timeout > TIMER_TICK_MS) timeout = TIMER_TICK_MS;
    if (w->quiesced && timeout > 50) timeout = 50;
    if (w->need_run) timeout = 0;
    /* access lines are written when the worker would otherwise wait (so they show up at
     * once), or in 32 KiB pieces while it stays busy */
    int n = 0;
    if (w->log.len && timeout != 0) {
      n = epoll_wait(w->epfd, evs, 128, 0);
      if (n <= 0) gw_alog_flush(&w->log);
    }
    if (n <= 0 && timeout != 0) n = idle_poll(w, evs, 128);
    if (n <= 0) n = epoll_wait(w->epfd, evs, 128, timeout);
    w->now_ns = gw_now_ns();
    w->now_ms = w->now_ns / 1000000;
    bool run = w->need_run;
    w->need_run = false;
    for (int i = 0; i < n; i++) {
      int tag = *(int *)evs[i].data.ptr;
      if (tag == TAG_MHD) run = true;
      else if (tag == TAG_WAKE) {
        uint64_t v;
        ssize_t r = read(w->wakefd, &v, sizeof v);
        (void)r;
      } else {
        up_event((uconn *)evs[i].data.ptr, evs[i].events);
      }
    }
    now = w->now_ms;
    if (now >= w->next_tick_ms) {
      check_timeouts(w, now);
      w->next_tick_ms = now + TIMER_TICK_MS;
    }
    if (now >= w->next_sweep_ms) {
      pool_sweep(w, w->cur->conf->keepalive_idle_ms, false);
      w->next_sweep_ms = now + 1000;
    }
    if (run || w->need_run || timeout == 0 || n == 0) {
      w->need_run = false;
      w->mhd_work = false;
      w->in_mhd = true;
      w->run_requests = 0;
      MHD_run(w->d);
      w->in_mhd = false;
      if (w->run_requests) w->run_avg += (w->run_requests * 256 - w->run_avg) / 8;
      flush_sends(w);
    }
    if (w->log.len >= 32768) gw_alog_flush(&w->log);
  }
  /* stop: every suspended connection must be resumed before the daemon goes */
  atomic_store(&stopping, true);
  for (exchange *ex = w->active; ex; ex = ex->active_next) {
    if (ex->uc) up_detach(ex, false);
  }
  /* libmicrohttpd has no iterator over connections; exchanges still suspended are found
   * through the active list or are waiting on their client, and resume() is idempotent */
  for (exchange *ex = w->active, *next; ex; ex = next) {
    next = ex->active_next;
    active_del(ex);
    if (!ex->head_done) {
      ex->up_failed = true;
      local_problem(ex, 503, "Service Unavailable", "the gateway is shutting down");
    } else {
      ex->up_failed = true;
    }
    wake_client(ex);
  }
  MHD_run(w->d);
  MHD_stop_daemon(w->d);
  w->d = NULL;
  pool_sweep(w, 0, true);
  if (w->log.len) gw_alog_flush(&w->log);
  return NULL;
}

/* ------------------------------------------------------------------ start and stop */

static int listen_socket(const char *host, int port, int *bound) {
  struct sockaddr_storage ss = {0};
  socklen_t sl;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    sl = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    sl = sizeof *a6;
  } else {
    log_error("gateway: listen address %s is not an IP address", host);
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0) {
    log_error("gateway: cannot listen on %s:%d: %s", host, port, strerror(errno));
    close(fd);
    return -1;
  }
  struct sockaddr_storage got;
  socklen_t gl = sizeof got;
  getsockname(fd, (struct sockaddr *)&got, &gl);
  *bound = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                          : ((struct sockaddr_in6 *)&got)->sin6_port);
  return fd;
}

int gw_proxy_start(gw_conf *c) {
  gw_conf_ref(c);
  current_conf = c;
  nworkers = c->threads > MAX_WORKERS ? MAX_WORKERS : c->threads;
  int port = c->port;
  for (int i = 0; i < nworkers; i++) {
    worker *w = &workers[i];
    w->id = i;
    w->tag_mhd = TAG_MHD;
    w->tag_wake = TAG_WAKE;
    w->stats = gw_stats_new();
    w->listen_fd = listen_socket(c->host, port, &bound_port);
    if (w->listen_fd < 0) return -1;
    port = bound_port; /* port 0: the others join the first one's port */
    w->d = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO, 0, NULL,
        NULL, on_request, w, MHD_OPTION_LISTEN_SOCKET, w->listen_fd, MHD_OPTION_URI_LOG_CALLBACK,
        uri_cb, w, MHD_OPTION_NOTIFY_COMPLETED, on_completed, w, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)c->client_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)c->max_header_bytes + 4096, /* zeroed on every request: keep it tight */ MHD_OPTION_CONNECTION_LIMIT, (unsigned)20000,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        NULL, MHD_OPTION_END);
    if (!w->d) {
      log_error("gateway: libmicrohttpd did not start");
      return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_EPOLL_FD);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!di || w->epfd < 0 || w->wakefd < 0) return -1;
    ws_set(w, di->epoll_fd, EPOLLIN, &w->tag_mhd, EPOLL_CTL_ADD);
    ws_set(w, w->wakefd, EPOLLIN, &w->tag_wake, EPOLL_CTL_ADD);
    if (c->io_uring) {
      int rc = io_uring_queue_init(RING_ENTRIES, &w->ring, 0);
      w->uring = rc == 0;
      if (rc != 0 && i == 0)
        log_warn("gateway: io_uring unavailable (%s): upstream sends are not batched", strerror(-rc));
    }
  }
  snprintf(listen_host, sizeof listen_host, strchr(c->host, ':') ? "[%s]:%d" : "%s:%d",
           strcmp(c->host, "0.0.0.0") == 0 || strcmp(c->host, "::") == 0 ? "localhost" : c->host,
           bound_port);
  for (int i = 0; i < nworkers; i++) {
    /* workers ignore signals: the main thread handles them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return -1;
  }
  return 0;
}

void gw_proxy_stop(void) {
  atomic_store(&draining, true);
  for (int i = 0; i < nworkers; i++) {
    uint64_t one = 1;
    ssize_t n = write(workers[i].wakefd, &one, sizeof one);
    (void)n;
  }
  for (int i = 0; i < nworkers; i++) {
    pthread_join(workers[i].thread, NULL);
    worker *w = &workers[i];
    close(w->epfd);
    close(w->wakefd);
    if (w->cur) {
      cslot *s = w->cur;
      w->cur = NULL;
      if (s->uses == 0) {
        gw_conf_unref(s->conf);
        free(s);
      }
    }
    free(w->rr);
    if (w->uring) io_uring_queue_exit(&w->ring);
    w->uring = false;
    free(w->flush);
    w->flush = NULL;
    free(w->head.data);
    w->head = (gw_bytes){0};
    w->flushcap = 0;
    spare_free(w);
    free(w->pools);
    gw_stats_free(w->stats);
    gw_alog_free(&w->log);
  }
  pthread_mutex_lock(&conf_lock);
  gw_conf *c = current_conf;
  current_conf = NULL;
  pthread_mutex_unlock(&conf_lock);
  gw_conf_unref(c);
}
