/* exchange — the gateway's per-request state shared by the phases of a request (private to
 * gateway/src; prefixes ex_ for bookkeeping, rsp_ for responses, up_ for upstream I/O).
 *
 *   admit.c        the head → a verdict (pure)
 *   proxy.c        libmicrohttpd's callbacks (client side), the fast and deferred paths, the
 *                  loop loop, start and stop
 *   upstream_io.c  upstream connections: pools, attempts and retries, sends (batched with
 *                  io_uring), reading and parsing the response
 *   respond.c      what the client gets: gateway-made answers, the response built from the
 *                  upstream's head, the streaming reader, trailers
 *   exchange.c     buffers, the exchange's life (allocation, reuse, suspension), back-off
 * A loop thread owns its exchanges and upstream connections; nothing here is shared
 * between loops except the configuration (reference-counted) and the flags below. */
#ifndef GW_EXCHANGE_H
#define GW_EXCHANGE_H

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

#define MAX_LOOPS 64
#define MAX_TRIES 11
#define MAX_RESP_HEADER_BYTES 65536
#define TIMER_TICK_MS 10
#define RAW_DISCARD_LIMIT (64u << 20) /* bytes read and dropped after a refusal, at most */
#define SMALL_BODY 65536              /* refused bodies up to this are read, keeping the connection */
#define RING_ENTRIES 256              /* io_uring submission queue of a loop (batched sends) */

enum { TAG_MHD = 1, TAG_WAKE, TAG_UP };

/* What the fast path did with a request (gateway_fast_path_total{result}). */
enum { FAST_ANSWERED, FAST_TIMEOUT, FAST_YIELDED, FAST_STREAMED, FAST_RETRIED, FAST_SKIPPED,
       FAST_RESULTS };
/* idle_poll outcomes: an event came while polling, none came, the poll was skipped */
enum { IDLE_EVENT, IDLE_EMPTY, IDLE_SKIPPED, IDLE_RESULTS };

typedef struct loop loop;
typedef struct exchange exchange;

/* Back-off after a wait that was not worth it: the next 1, 3, 7, … (up to 1023) chances
 * to wait are skipped; a wait that pays off resets it. */
typedef struct {
  unsigned skip; /* chances still to skip */
  unsigned next; /* how many to skip after the next fruitless wait */
} backoff;

/* A configuration as seen by one loop: exchanges count their uses without atomics. */
typedef struct cslot {
  gw_conf *conf;
  int uses;
} cslot;

typedef struct uconn {
  int tag; /* TAG_UP: first member, epoll data points here */
  int fd;
  loop *w;
  gw_instance *inst;
  exchange *ex;                /* NULL while pooled */
  struct uconn *prev, *next;   /* pool list */
  int64_t idle_since;
  uint32_t events;
  bool connecting;
  bool reused;
  unsigned addr_gen; /* the instance's address generation it was made for */
} uconn;

typedef struct {
  char *data;
  size_t off, len, cap; /* bytes [off, len) are pending */
} buf;

/* Where the client side of an exchange is. The phases only move forward, but for the one
 * step back noted below; the upstream side (uc, head_done, up_done, up_failed) and the
 * answer's details (local, pending, raw_sent) are kept apart from it.
 *
 *   EX_HEAD      uri_cb made the exchange; the head is not admitted yet
 *   EX_BODY      on_request's first call admitted it (on_headers): body pieces are read —
 *                forwarded upstream, or dropped after a refusal
 *   EX_COMPLETE  on_complete: the whole request is in; a response may be queued as soon as
 *                it is ready (rsp_wake_client). Back to EX_BODY while the last chunk of a
 *                chunked body waits for room in the request buffer.
 *   EX_ANSWERED  a response is queued with libmicrohttpd (rsp_queue_local/_pending), from
 *                EX_COMPLETE, or from EX_BODY when a refusal is answered before the body
 *                (Expect: 100-continue, rsp_send_raw)
 *   EX_DONE      libmicrohttpd reported the request finished (on_completed): nothing may
 *                touch the client connection any more (rsp_wake_client, the send batch) */
typedef enum { EX_HEAD, EX_BODY, EX_COMPLETE, EX_ANSWERED, EX_DONE } ex_phase;

struct exchange {
  loop *w;
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
  ex_phase phase;
  bool suspended;
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
  const char *const *xhdr; /* more header pairs, static (the web client's files) */
  bool stream_held;        /* holds one of the client's event-stream slots (streams.h) */
  bool close_after;
  /* request body */
  bool has_body, chunked_in, body_done, eof_chunk_written, expect_continue;
  uint64_t content_length, body_seen, max_body;
  buf req;
  size_t head_len;
  bool replayable, stale_retried;
  /* upstream */
  uconn *uc;
  gw_instance *tried[MAX_TRIES];
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
  bool head_done, up_done, up_failed, up_paused;
  bool response_made; /* the client response was built from the upstream's head */
  unsigned attempt;   /* counts start_attempt calls */
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

struct loop {
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

extern const char *const fast_result_names[FAST_RESULTS];
extern const char *const idle_result_names[IDLE_RESULTS];
/* the gateway is draining (SIGTERM) / stopping its loops */
extern atomic_bool ex_draining;
extern atomic_bool ex_stopping;

/* exchange.c */
double ex_now_s(void);
bool backoff_skipping(backoff *b);
void backoff_miss(backoff *b);
void backoff_hit(backoff *b);
void buf_init(buf *b, size_t cap);
size_t buf_pending(const buf *b);
void buf_append(buf *b, const char *s, size_t n);
bool buf_room(buf *b, size_t n, bool *keep);
void ex_ws_set(loop *w, int fd, uint32_t events, void *ptr, int op);
void ex_own_add(_Atomic uint64_t *c, uint64_t n);
exchange *ex_new(loop *w);
void ex_unref(exchange *ex);
void ex_spare_free(loop *w);
void ex_active_add(exchange *ex);
void ex_active_del(exchange *ex);
void ex_suspend(exchange *ex);
void ex_resume(exchange *ex);

/* respond.c */
void rsp_common_headers(exchange *ex, struct MHD_Response *r);
void rsp_header(exchange *ex, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rsp_local(exchange *ex, int status, const char *ctype, char *body, size_t len);
void rsp_problem(exchange *ex, int status, const char *title, const char *detail);
enum MHD_Result rsp_queue_local(exchange *ex);
enum MHD_Result rsp_queue_pending(exchange *ex);
bool rsp_ready(const exchange *ex);
void rsp_wake_client(exchange *ex);
void rsp_build(exchange *ex);
bool rsp_next_field(const exchange *ex, size_t *off, size_t end, const char **name, size_t *nlen,
                    const char **value);
enum MHD_Result rsp_collect_trailer(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value);
void rsp_send_raw(exchange *ex);

/* upstream_io.c */
void up_detach(exchange *ex, bool reusable);
void up_start_attempt(exchange *ex);
void up_update_events(exchange *ex);
void up_write(exchange *ex);
void up_read(exchange *ex);
void up_event(uconn *uc, uint32_t events);
void up_flush_sends(loop *w);
void up_pool_sweep(loop *w, int idle_ms, bool all);
void up_check_timeouts(loop *w, int64_t now);

#endif
