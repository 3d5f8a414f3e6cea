/* upstream_io — upstream connections: pools, attempts and retries, sends (batched with
 * io_uring), reading and parsing the response; see exchange.h. */
#define _GNU_SOURCE
#include "exchange.h"
#include "voter/xalloc.h"

enum fail_kind { FAIL_CONNECT, FAIL_CONNECT_TIMEOUT, FAIL_IO, FAIL_TIMEOUT, FAIL_PROTOCOL };

/* Sending a whole request upstream while libmicrohttpd runs: queue it, and send all of
 * this run's requests with one io_uring submission afterwards (up_flush_sends). Why: an
 * upstream on the same CPU is woken by the first send and, on a kernel that preempts at the
 * return from the system call, runs at once — with one send() per request it wakes (and
 * preempts the gateway) once per request and handles one request per wake-up. One
 * submission for all of them wakes it once, and it then finds them all. */
static bool up_queue_send(exchange *ex) {
  loop *w = ex->w;
  if (!w->in_mhd || !w->uring || (ex->has_body && !ex->body_done)) return false;
  /* when runs complete one request at a time (one client at a time) and nothing is
   * deferred, there is nothing to batch with: send now and wait right here (fast_wait),
   * which takes fewer trips through the event loop */
  if (w->run_avg < 384 && w->ndeferred == 0 && !ex->send_queued && !ex->conf->batch_always)
    return false;
  if (ex->send_queued) return true;
  if (w->nflush == w->flushcap) {
    int cap = w->flushcap ? w->flushcap * 2 : 64;
    w->flush = xrealloc(w->flush, (size_t)cap * sizeof *w->flush);
    w->flushcap = cap;
  }
  w->flush[w->nflush++] = (struct flushent){.ex = ex, .uc = ex->uc, .attempt = ex->attempt};
  ex->send_queued = true;
  ex->refs++;
  return true;
}

static void uc_events(uconn *uc, uint32_t events) {
  if (uc->events == events) return;
  ex_ws_set(uc->w, uc->fd, events, uc, EPOLL_CTL_MOD);
  uc->events = events;
}

static void uc_close(uconn *uc) {
  epoll_ctl(uc->w->epfd, EPOLL_CTL_DEL, uc->fd, NULL);
  close(uc->fd);
  free(uc);
}

static void pool_unlink(loop *w, uconn *uc) {
  struct pool *p = &w->pools[uc->inst->id];
  if (uc->prev) uc->prev->next = uc->next;
  else p->head = uc->next;
  if (uc->next) uc->next->prev = uc->prev;
  uc->prev = uc->next = NULL;
  p->n--;
}

static void pools_grow(loop *w) {
  int n = gw_instance_count();
  if (n <= w->npools) return;
  struct pool *np = xrealloc(w->pools, (size_t)n * sizeof *np);
  memset(np + w->npools, 0, (size_t)(n - w->npools) * sizeof *np);
  w->pools = np;
  w->npools = n;
}

void pool_put(loop *w, uconn *uc) {
  pools_grow(w);
  struct pool *p = &w->pools[uc->inst->id];
  if (p->n >= uc->ex->conf->pool_max_idle || atomic_load(&ex_stopping)) {
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

static uconn *pool_get(loop *w, gw_instance *inst, int idle_ms, bool check_alive) {
  pools_grow(w);
  struct pool *p = &w->pools[inst->id];
  int64_t now = w->now_ms;
  while (p->head) {
    uconn *uc = p->head;
    pool_unlink(w, uc);
    if (now - uc->idle_since > idle_ms ||
        uc->addr_gen != atomic_load_explicit(&inst->addr_gen, memory_order_relaxed)) {
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

void up_pool_sweep(loop *w, int idle_ms, bool all) {
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

/* ------------------------------------------------------------------ upstream side */

void up_detach(exchange *ex, bool reusable) {
  uconn *uc = ex->uc;
  if (!uc) return;
  ex->uc = NULL;
  if (reusable) pool_put(ex->w, uc);
  else uc_close(uc);
}

/* Room for n more bytes of a response field (plus terminators); -1 past the head limit. */
static int hbuf_reserve(exchange *ex, size_t n) {
  if (ex->hlen + n + 2 > MAX_RESP_HEADER_BYTES) return -1;
  if (ex->hlen + n + 2 > ex->hcap) {
    ex->hcap = (ex->hlen + n + 2) * 2;
    if (ex->hcap < 1024) ex->hcap = 1024;
    ex->hbuf = xrealloc(ex->hbuf, ex->hcap);
  }
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  exchange *ex = p->data;
  if (hbuf_reserve(ex, n) != 0) return -1;
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
  if (hbuf_reserve(ex, n) != 0) return -1;
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
  for (size_t off = 0; rsp_next_field(ex, &off, ex->hlen, &name, &nlen, &value);) {
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
      ex->hbuf = xrealloc(ex->hbuf, ex->hcap);
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
  ex->t_up_headers = ex_now_s();
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
    char *nb = xrealloc(ex->resp.data, need);
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

void up_start_attempt(exchange *ex);

/* Whether a failed attempt may be repeated on another instance: never once the client has
 * the response head; always when the request never left the gateway (connection refused
 * or connect timeout: the upstream cannot have seen it); otherwise only for idempotent
 * methods whose request bytes are still all in the buffer. */
static bool may_retry(const exchange *ex, enum fail_kind kind) {
  if (ex->head_done || ex->retries >= ex->route->retries) return false;
  if (kind == FAIL_CONNECT || kind == FAIL_CONNECT_TIMEOUT) return true;
  return ex->idempotent && ex->replayable;
}

static void up_failed(exchange *ex, enum fail_kind kind, const char *why) {
  loop *w = ex->w;
  bool stale = ex->uc && ex->uc->reused && kind == FAIL_IO && ex->parser.nread == 0;
  gw_instance *inst = ex->uc ? ex->uc->inst : NULL;
  up_detach(ex, false);
  ex->error = why;
  char labels[320];
  if (inst) {
    snprintf(labels, sizeof labels, "upstream=\"%s\",outcome=\"%s\"", inst->name,
             kind == FAIL_TIMEOUT || kind == FAIL_CONNECT_TIMEOUT ? "timeout"
             : kind == FAIL_CONNECT                               ? "connect_error"
                                                                  : "error");
    gw_stats_add(w->stats, "gateway_upstream_requests_total", labels, 1);
    /* a pooled connection the upstream had closed says nothing about its health */
    if (!stale) gw_instance_failure(inst, ex->conf, why);
  }
  if (ex->head_done) { /* too late for anything but an abort */
    ex->up_failed = true;
    ex_active_del(ex);
    rsp_wake_client(ex);
    return;
  }
  if (stale && ex->idempotent && ex->replayable && !ex->stale_retried) {
    ex->stale_retried = true; /* a fresh connection, not counted as a retry */
    up_start_attempt(ex);
    return;
  }
  if (may_retry(ex, kind)) {
    ex->retries++;
    snprintf(labels, sizeof labels, "route=\"%s\"", ex->route->name);
    gw_stats_add(w->stats, "gateway_retries_total", labels, 1);
    up_start_attempt(ex);
    return;
  }
  ex_active_del(ex);
  if (kind == FAIL_TIMEOUT || kind == FAIL_CONNECT_TIMEOUT) rsp_problem(ex, 504, "Gateway Timeout", "the upstream did not answer in time");
  else rsp_problem(ex, 502, "Bad Gateway", "the upstream failed to answer");
  rsp_wake_client(ex);
}

void up_update_events(exchange *ex) {
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

void up_write(exchange *ex) {
  uconn *uc = ex->uc;
  if (buf_pending(&ex->req) && up_queue_send(ex)) return;
  while (buf_pending(&ex->req)) {
    ssize_t n = send(uc->fd, ex->req.data + ex->req.off, buf_pending(&ex->req), MSG_NOSIGNAL);
    if (n > 0) {
      ex->req.off += (size_t)n;
      ex->progress_ms = ex->w->now_ms;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    up_failed(ex, FAIL_IO, "write to upstream failed");
    return;
  }
  if (!ex->replayable && ex->req.off == ex->req.len) ex->req.off = ex->req.len = 0;
  /* a client waiting for buffer space may go on */
  if (ex->suspended && !ex->body_done && !rsp_ready(ex)) ex_resume(ex);
  up_update_events(ex);
}

static bool flush_valid(const struct flushent *f) {
  return f->ex->phase != EX_DONE && f->ex->uc == f->uc && f->ex->attempt == f->attempt &&
         buf_pending(&f->ex->req) > 0;
}

void up_flush_sends(loop *w) {
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
    ex_own_add(&w->batches, 1);
    ex_own_add(&w->batched_sends, (uint64_t)batch);
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
        up_failed(ex, FAIL_IO, "write to upstream failed");
      }
    }
    ex_unref(ex);
  }
}

void up_read(exchange *ex) {
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
      up_failed(ex, FAIL_IO, "upstream connection reset");
      return;
    }
    ex->progress_ms = ex->w->now_ms;
    bool had_head = ex->head_done;
    size_t done = http_parser_execute(&ex->parser, &parser_settings, ex->w->scratch, (size_t)n);
    enum http_errno err = HTTP_PARSER_ERRNO(&ex->parser);
    if (ex->head_done && !ex->response_made) {
      if (err != HPE_OK && err != HPE_PAUSED) ex->up_done = false; /* never from memory then */
      rsp_build(ex);
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
      up_failed(ex, FAIL_PROTOCOL, "invalid response from upstream");
      return;
    }
    if (!had_head && ex->head_done) {
      gw_instance_success(uc->inst);
      struct pool *p = &ex->w->pools[uc->inst->id];
      if (!p->ok) {
        char labels[300];
        snprintf(labels, sizeof labels, "upstream=\"%s\",outcome=\"response\"", uc->inst->name);
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
      ex_active_del(ex);
      rsp_wake_client(ex);
      return;
    }
    if (n == 0) {
      /* EOF: a close-delimited body ends here; anything else is a failure */
      up_failed(ex, FAIL_IO, ex->head_done ? "upstream closed mid-response"
                                                 : "upstream closed the connection");
      return;
    }
    if (ex->head_done) rsp_wake_client(ex);
  }
  if (ex->uc) up_update_events(ex);
}

void up_event(uconn *uc, uint32_t events) {
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
      up_failed(ex, FAIL_CONNECT, "connect to upstream failed");
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

static gw_instance *pick_instance(exchange *ex) {
  loop *w = ex->w;
  const gw_route *r = ex->route;
  int64_t now = w->now_ms;
  unsigned start = r->index < w->nrr ? w->rr[r->index]++ : 0; /* index of an older config */
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < r->nupstreams; i++) {
      gw_instance *inst = r->instances[(start + (unsigned)i) % (unsigned)r->nupstreams];
      if (!gw_instance_available(inst, now)) continue;
      bool tried = false;
      for (int t = 0; t < ex->ntried; t++) tried = tried || ex->tried[t] == inst;
      /* first pass: a instance not tried yet; second: any healthy one */
      if (tried && pass == 0) continue;
      return inst;
    }
  }
  return NULL;
}

void up_start_attempt(exchange *ex) {
  loop *w = ex->w;
  gw_instance *inst = pick_instance(ex);
  if (!inst) {
    ex_active_del(ex);
    if (ex->ntried == 0) {
      rsp_problem(ex, 503, "Service Unavailable", "no healthy upstream for this route");
      rsp_header(ex, "Retry-After", "%d", 1);
    } else if (ex->error && strstr(ex->error, "time")) {
      rsp_problem(ex, 504, "Gateway Timeout", "the upstream did not answer in time");
    } else {
      rsp_problem(ex, 502, "Bad Gateway", "the upstream failed to answer");
    }
    rsp_wake_client(ex);
    return;
  }
  ex->attempt++;
  if (ex->ntried < MAX_TRIES) ex->tried[ex->ntried++] = inst;
  ex->upstream_name = inst->name;
  if (ex->t_up_start == 0) ex->t_up_start = ex_now_s();
  /* (re)start the request from its first byte and a fresh parser */
  ex->req.off = 0;
  http_parser_init(&ex->parser, HTTP_RESPONSE);
  ex->parser.data = ex;
  ex->hlen = 0;
  ex->parsing_field = false;
  uconn *uc = pool_get(w, inst, ex->conf->keepalive_idle_ms, !ex->idempotent);
  if (!uc) {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned gen;
    gw_instance_addr(inst, &addr, &addrlen, &gen);
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      up_failed(ex, FAIL_CONNECT, "no socket for upstream");
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uc = xcalloc(1, sizeof *uc);
    uc->tag = TAG_UP;
    uc->fd = fd;
    uc->w = w;
    uc->inst = inst;
    uc->addr_gen = gen;
    uc->connecting = true;
    uc->events = EPOLLOUT;
    ex_ws_set(w, fd, EPOLLOUT, uc, EPOLL_CTL_ADD);
    ex->uc = uc;
    uc->ex = ex;
    ex->deadline_ms = w->now_ms + ex->route->connect_timeout_ms;
    ex_active_add(ex);
    if (connect(fd, (const struct sockaddr *)&addr, addrlen) != 0 && errno != EINPROGRESS) {
      up_failed(ex, FAIL_CONNECT, "connect to upstream failed");
      return;
    }
    return; /* EPOLLOUT tells when connected */
  }
  ex->uc = uc;
  uc->ex = ex;
  ex->progress_ms = w->now_ms;
  ex_active_add(ex);
  up_write(ex);
}

/* ------------------------------------------------------------------ the loop */

void up_check_timeouts(loop *w, int64_t now) {
  for (exchange *ex = w->active, *next; ex; ex = next) {
    next = ex->active_next;
    if (!ex->uc) continue;
    if (ex->uc->connecting) {
      if (now >= ex->deadline_ms) up_failed(ex, FAIL_CONNECT_TIMEOUT, "connect to upstream timed out");
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
      up_failed(ex, FAIL_TIMEOUT, "upstream read timed out");
  }
}
