/* proxy — the client side and the loops; see proxy.h, and exchange.h for how the phases
 * of a request are split over admit.c, upstream_io.c, respond.c and exchange.c.
 *
 * Life of an exchange (one client request), all on one loop thread (its client-side phase,
 * ex_phase in exchange.h, moves EX_HEAD → EX_BODY → EX_COMPLETE → EX_ANSWERED → EX_DONE):
 *
 *   uri_cb          libmicrohttpd has the request line: allocate the exchange.
 *   on_headers      first access-handler call: admission (admit.c: framing, path, local
 *                   endpoints, CORS preflight, route, key/scopes/tier, body limit from
 *                   Content-Length — refusals are answered before any body byte is read
 *                   or any upstream is contacted), the rate limit, then the upstream
 *                   request head is built and a instance is connected.
 *   on_body         body pieces are framed (re-chunked when the client sent chunked) into
 *                   the request buffer and written upstream; a full buffer suspends the
 *                   client connection until the upstream has taken the bytes.
 *   on_complete     the request is complete: queue the response if it is ready; else,
 *                   when the loop is busy, the request went into this run's batch of
 *                   upstream sends (up_queue_send, up_flush_sends: one io_uring submission) and
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
 * Failures before the response head reached the client are retried on another instance when
 * that is safe (see may_retry); after that, the client connection is aborted, which is the
 * only honest signal left. */
#define _GNU_SOURCE
#include "exchange.h"
#include "admit.h"
#include "rawcheck.h"
#include "rawhook.h"
#include "streams.h"
#include "webroot.h"
#include "voter/xalloc.h"

static loop loops[MAX_LOOPS];
static int nloops;
static int bound_port;
static char listen_host[300]; /* "host:port": the upstream Host when no public host is set */
static gw_conf *current_conf;
static atomic_uint conf_gen;

/* Every instance of every field, in order, as libmicrohttpd parsed them. */
typedef struct {
  gw_field *fields;
  int n;
  bool overflow;
} field_list;
static pthread_mutex_t conf_lock = PTHREAD_MUTEX_INITIALIZER;

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
  for (int i = 0; i < nloops; i++) {
    uint64_t one = 1;
    ssize_t n = write(loops[i].wakefd, &one, sizeof one);
    (void)n;
  }
}

int gw_proxy_port(void) { return bound_port; }

/* What the strict parser beside libmicrohttpd refused on this connection (rawcheck.h), or
 * NULL. A connection whose bytes it has not seen is refused too (fail closed, rawhook.c). */
static const char *raw_error(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  const gw_rawcheck *r = ci ? ci->socket_context : NULL;
  if (!r || !r->bytes) {
    log_error("gateway: a request whose bytes the raw check did not see (is recv interposed?)");
    return "the gateway could not check the request's bytes";
  }
  return r->error;
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
    ex->uri = xstrdup(uri);
  }
  ex->t_start = ex_now_s();
  ex->rl_decision = "none";
  ex->resp_length = UINT64_MAX;
  ex->replayable = true;
  ex->w->inflight++;
  return ex;
}

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

/* A UUIDv4-shaped id from a per-loop xorshift generator seeded from the CSPRNG: ids need
 * to be unique, not secret, and RAND_bytes per request costs more than the proxying. */
static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void request_id_new(loop *w, char out[37]) {
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

static void cslot_release(loop *w, cslot *s) {
  if (s == w->cur || s->uses > 0) return;
  gw_conf_unref(s->conf);
  free(s);
}

static void take_conf(loop *w) {
  unsigned gen = atomic_load(&conf_gen);
  if (w->cur && gen == w->conf_gen) return;
  cslot *s = xcalloc(1, sizeof *s);
  s->conf = gw_proxy_conf();
  cslot *old = w->cur;
  w->cur = s;
  w->conf_gen = gen;
  if (old) cslot_release(w, old);
  free(w->rr);
  w->nrr = s->conf->nroutes;
  w->rr = xcalloc((size_t)w->nrr + 1, sizeof *w->rr);
  for (int i = 0; i < w->nrr; i++) w->rr[i] = (unsigned)(w->id * 7 + i); /* spread starts */
}

static void serve_health(exchange *ex) {
  json_t *ups = json_array();
  int64_t now = gw_now_ms();
  const gw_conf *c = ex->conf;
  for (int i = 0; i < c->nroutes; i++)
    for (int u = 0; u < c->routes[i].nupstreams; u++) {
      gw_instance *r = c->routes[i].instances[u];
      json_array_append_new(ups, json_pack("{s:s, s:s, s:b}", "route", c->routes[i].name,
                                           "upstream", r->name, "up",
                                           gw_instance_available(r, now)));
    }
  bool drain = atomic_load(&ex_draining);
  json_t *body = json_pack("{s:s, s:o}", "status", drain ? "DRAINING" : "UP", "upstreams", ups);
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  rsp_local(ex, drain ? 503 : 200, "application/json", s, strlen(s));
}

/* Appends metric{result="…"} lines for a per-loop array of outcome counters (at byte
 * offset off in struct loop), summed over the loops; returns the new length. */
static int by_result(char *out, size_t cap, int len, const char *metric, size_t off,
                     const char *const *names, int n) {
  for (int r = 0; r < n && len > 0 && (size_t)len < cap; r++) {
    unsigned long long v = 0;
    for (int i = 0; i < nloops; i++)
      v += atomic_load_explicit((_Atomic uint64_t *)((char *)&loops[i] + off) + r, memory_order_relaxed);
    len += snprintf(out + len, cap - (size_t)len, "%s{result=\"%s\"} %llu\n", metric, names[r], v);
  }
  return len;
}

static void serve_metrics(exchange *ex) {
  gw_stats *all[MAX_LOOPS];
  for (int i = 0; i < nloops; i++) all[i] = loops[i].stats;
  char *mine = gw_stats_render(all, nloops);
  gw_instance_publish_metrics();
  char *shared = metrics_render();
  char fast[3072];
  unsigned long long batched = 0, batches = 0;
  int uring = 0;
  for (int i = 0; i < nloops; i++) {
    batched += atomic_load_explicit(&loops[i].batched_sends, memory_order_relaxed);
    batches += atomic_load_explicit(&loops[i].batches, memory_order_relaxed);
    uring += loops[i].uring;
  }
  int fn = snprintf(fast, sizeof fast,
                    "# HELP gateway_io_uring_workers Loops that batch upstream sends with io_uring.\n"
                    "# TYPE gateway_io_uring_workers gauge\ngateway_io_uring_workers %d\n"
                    "# HELP gateway_batched_sends_total Upstream request sends made in batches.\n"
                    "# TYPE gateway_batched_sends_total counter\ngateway_batched_sends_total %llu\n"
                    "# HELP gateway_send_batches_total io_uring submissions that carried them.\n"
                    "# TYPE gateway_send_batches_total counter\ngateway_send_batches_total %llu\n"
                    "# HELP gateway_fast_path_total Requests answered without suspending the client "
                    "connection (waited for in the access handler, or deferred), by outcome.\n"
                    "# TYPE gateway_fast_path_total counter\n",
                    uring, batched, batches);
  fn = by_result(fast, sizeof fast, fn, "gateway_fast_path_total", offsetof(loop, fast),
                 fast_result_names, FAST_RESULTS);
  if (fn > 0 && (size_t)fn < sizeof fast)
    fn += snprintf(fast + fn, sizeof fast - (size_t)fn,
                   "# HELP gateway_idle_polls_total Polls for a client's next request before a "
                   "loop sleeps (pool.idle_poll_us), by outcome.\n"
                   "# TYPE gateway_idle_polls_total counter\n");
  fn = by_result(fast, sizeof fast, fn, "gateway_idle_polls_total", offsetof(loop, idle_polls),
                 idle_result_names, IDLE_RESULTS);
  char *text = xasprintf("%s%s%s", mine, fast, shared);
  free(mine);
  free(shared);
  rsp_local(ex, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
}

/* The web client's files (webroot.h); true when the path is one of them. */
static bool serve_web(exchange *ex, const char *p, size_t n) {
  if (!(ex->mbit & (GW_M_GET | GW_M_HEAD)) || !gw_web_wants(p, n)) return false;
  gw_web_reply r;
  const char *inm = MHD_lookup_connection_value(ex->conn, MHD_HEADER_KIND, "If-None-Match");
  if (!gw_web_lookup(p, n, inm, &r)) return false;
  rsp_local(ex, r.status, r.status == 200 ? r.content_type : NULL, r.body, r.len);
  ex->xhdr = r.headers;
  return true;
}

/* Handles the paths the gateway answers itself; true when it did. Admission calls every
 * web path local (gw_web_wants), so one that is not a file (or not GET/HEAD) is answered
 * here too, 404 or 405: it has no route to go to. */
static bool serve_local(exchange *ex, const char *p, size_t n) {
  if (serve_web(ex, p, n)) return true;
  bool root = n == 1 && p[0] == '/';
  bool openapi = n == 13 && memcmp(p, "/openapi.json", 13) == 0;
  bool health = n == 15 && memcmp(p, "/gateway/health", 15) == 0;
  bool metrics = n == 16 && memcmp(p, "/gateway/metrics", 16) == 0;
  bool gw = n >= 8 && memcmp(p, "/gateway", 8) == 0 && (n == 8 || p[8] == '/');
  if (!root && !openapi && !gw && !gw_web_wants(p, n)) return false;
  if (!(ex->mbit & (GW_M_GET | GW_M_HEAD))) {
    rsp_problem(ex, 405, "Method Not Allowed", "only GET and HEAD are allowed here");
    rsp_header(ex, "Allow", "GET, HEAD");
    return true;
  }
  if (root) {
    size_t len;
    char *page = gw_landing_page(ex->conf, &len);
    rsp_local(ex, 200, "text/html; charset=utf-8", page, len);
  } else if (openapi) {
    if (!ex->conf->openapi) {
      rsp_problem(ex, 404, "Not Found", "no OpenAPI document is installed");
    } else {
      char *doc = xmalloc(ex->conf->openapi_len + 1);
      memcpy(doc, ex->conf->openapi, ex->conf->openapi_len);
      rsp_local(ex, 200, "application/json", doc, ex->conf->openapi_len);
    }
  } else if (health) {
    serve_health(ex);
  } else if (metrics) {
    serve_metrics(ex);
  } else {
    rsp_problem(ex, 404, "Not Found", "no resource at this path");
  }
  return true;
}

static void note_reject(exchange *ex, const char *reason) {
  char labels[96];
  snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
  gw_stats_add(ex->w->stats, "gateway_rejected_total", labels, 1);
}

/* An event stream takes one of the client's stream slots (streams.h); false when it has
 * none left and the refusal is prepared. */
static bool admit_stream(exchange *ex, const gw_admission *a) {
  if (!(ex->mbit & GW_M_GET) || !gw_streams_is_stream(a->accept)) return true;
  if (!gw_streams_acquire(ex->client_ip)) {
    char detail[128];
    snprintf(detail, sizeof detail, "at most %d event streams may be open per client",
             gw_streams_limit());
    rsp_problem(ex, 429, "Too Many Requests", detail);
    rsp_header(ex, "Retry-After", "5");
    note_reject(ex, "streams");
    return false;
  }
  ex->stream_held = true;
  return true;
}

/* First access-handler call: everything decided from the head. Returns with either a local
 * response prepared (ex->local) or an upstream attempt started. */
static void on_headers(exchange *ex, const char *url, const char *method, const char *version) {
  loop *w = ex->w;
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
  const union MHD_ConnectionInfo *hs = MHD_get_connection_info(ex->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
  size_t head_size = hs ? hs->header_size : 0;
  bool lines_ok = gw_admit_mhd_layout_ok(method, url, strlen(ex->uri), version, fields, fl.n,
                                         fl.overflow, head_size);
  gw_head head = {.method = method, .target = ex->uri, .version = version, .fields = fields,
                  .nfields = fl.n, .too_many_fields = fl.overflow, .peer_ip = ex->peer_ip,
                  .bad_lines = !lines_ok, .raw_error = raw_error(ex->conn)};
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
  if (atomic_load(&ex_draining) || a->close) ex->close_after = true;
  ex->framing_refused = a->close;

  switch (a->kind) {
    case GW_ADMIT_LOCAL:
      serve_local(ex, a->path, a->pathlen);
      goto out;
    case GW_ADMIT_PREFLIGHT:
      rsp_local(ex, 204, NULL, NULL, 0);
      rsp_header(ex, "Access-Control-Allow-Methods", "%s", c->cors_methods);
      rsp_header(ex, "Access-Control-Allow-Headers", "%s", c->cors_headers);
      rsp_header(ex, "Access-Control-Max-Age", "%d", c->cors_max_age_s);
      goto out;
    case GW_ADMIT_REFUSE:
      if (a->limit && !a->limit->unlimited) { /* an unknown key: the anonymous bucket */
        gw_rl_take(a->limit, "anonymous", a->identity, ex->t_start, &ex->rl);
        ex->limit = a->limit;
        if (ex->rl.limited) goto limited;
      }
      if (a->status == 403 && a->reason && strcmp(a->reason, "cors") == 0) ex->origin = NULL;
      rsp_problem(ex, a->status, a->title, a->detail);
      if (a->www_auth) rsp_header(ex, "WWW-Authenticate", "%s", a->www_auth);
      if (a->status == 501) rsp_header(ex, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
      if (a->status == 405 && a->route) {
        char allow[64];
        gw_route_allow(a->route, allow);
        rsp_header(ex, "Allow", "%s", allow);
      }
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
  if (!admit_stream(ex, a)) goto out;
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
      ex->req.data = xrealloc(ex->req.data, ex->req.cap);
    }
  }
  if (!ex->has_body) ex->body_done = true;
  gw_admission_clear(a);
  up_start_attempt(ex);
  return;
limited:
  ex->rl_decision = "limited";
  rsp_problem(ex, 429, "Too Many Requests", "rate limit exceeded; see Retry-After");
  rsp_header(ex, "Retry-After", "%ld", ex->rl.retry_after_s);
  {
    char labels[300];
    snprintf(labels, sizeof labels, "route=\"%s\",tier=\"%s\"", ex->route ? ex->route->name : "",
             ex->tier ? ex->tier : "anonymous");
    gw_stats_add(w->stats, "gateway_ratelimited_total", labels, 1);
  }
out:
  gw_admission_clear(a);
}

/* A chunked body crossed the route's limit: stop the upstream request, answer 413 now. */
static void too_large_midway(exchange *ex) {
  up_detach(ex, false);
  ex_active_del(ex);
  char detail[128];
  snprintf(detail, sizeof detail, "the body may be at most %llu bytes", (unsigned long long)ex->max_body);
  rsp_problem(ex, 413, "Payload Too Large", detail);
  note_reject(ex, "body_too_large");
  rsp_send_raw(ex);
}

static bool w_batches(const exchange *ex) { return ex->w->uring && ex->conf->fast_wait_us > 0; }

/* A body piece arrived. Returns MHD_NO to drop the connection. */
enum MHD_Result on_body_data(exchange *ex, const char *data, size_t *size) {
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
     * replayed on another instance) */
    memmove(ex->req.data, ex->req.data + ex->req.off, ex->req.len - ex->req.off);
    ex->req.len -= ex->req.off;
    ex->req.off = 0;
    ex->replayable = false;
  }
  size_t room = ex->req.cap - ex->req.len;
  if (room <= frame) {
    ex_suspend(ex); /* resumed by up_write once the upstream took some bytes */
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
  if (*size) ex_suspend(ex);
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
 * fast_wait_us, and only while the loop has nothing else to do: the wait polls the
 * loop's epoll set too and gives up as soon as any other event is ready. An upstream on
 * the same host has usually answered by the time send() returns. Whatever is not finished
 * then (a slow upstream, a large or still-streaming body, a failure that starts another
 * attempt) simply continues on the asynchronous path, with everything read so far kept.
 * An upstream that lets the budget run out is not waited for again on the next 1, 3, 7, …
 * (up to 1023) requests to it from this loop. */
static void fast_count(loop *w, int result) { ex_own_add(&w->fast[result], 1); }

/* The back-off shared by fast_wait and the deferred path: true (and counted as skipped)
 * while requests to this instance are not to be waited for after a slow answer. */
static bool fast_skipping(loop *w, int rid) {
  if (!backoff_skipping(&w->pools[rid].fast)) return false;
  fast_count(w, FAST_SKIPPED);
  return true;
}

static void fast_slow(loop *w, int rid) { backoff_miss(&w->pools[rid].fast); } /* out of time */

void fast_wait(exchange *ex) {
  uconn *uc = ex->uc;
  int budget_us = ex->conf->fast_wait_us;
  if (budget_us <= 0 || !uc || uc->connecting || !uc->reused || buf_pending(&ex->req) || ex->head_done)
    return;
  loop *w = ex->w;
  int rid = uc->inst->id; /* w->pools may move (pool_put grows it after a reload) */
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
  loop *w = ex->w;
  if (!ex->send_queued || ex->conf->fast_wait_us <= 0 || !uc || uc->connecting || !uc->reused ||
      ex->head_done)
    return false;
  if (fast_skipping(w, uc->inst->id)) return false;
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

enum MHD_Result on_deferred(exchange *ex) {
  loop *w = ex->w;
  if (ex->local) {
    defer_end(ex, FAST_RETRIED);
    return rsp_queue_local(ex);
  }
  if (ex->pending) {
    bool same = ex->attempt == ex->defer_attempt;
    defer_end(ex, !same ? FAST_RETRIED : ex->up_done ? FAST_ANSWERED : FAST_STREAMED);
    if (same && ex->up_done) backoff_hit(&w->pools[ex->tried[ex->ntried - 1]->id].fast);
    return rsp_queue_pending(ex);
  }
  /* the loop's clock (read once per iteration) is precise enough for a budget in ms */
  if (w->now_ns < ex->defer_deadline_ns) return MHD_YES; /* still waiting: nothing done */
  w->mhd_work = true;
  if (ex->uc && ex->attempt == ex->defer_attempt) fast_slow(w, ex->uc->inst->id);
  defer_end(ex, FAST_TIMEOUT);
  ex_suspend(ex);
  if (ex->uc) up_update_events(ex);
  return MHD_YES;
}

enum MHD_Result on_complete(exchange *ex) {
  if (ex->raw_sent) return MHD_NO; /* the 413 is out; close */
  if (ex->phase != EX_COMPLETE) ex->w->run_requests++;
  ex->phase = EX_COMPLETE;
  if (ex->local) return rsp_queue_local(ex);
  if (ex->chunked_in && !ex->eof_chunk_written) {
    /* the last chunk, the client's trailer fields (those that may pass), the end */
    buf trailers = {0};
    MHD_get_connection_values(ex->conn, MHD_FOOTER_KIND, rsp_collect_trailer, &trailers);
    bool keep = ex->replayable;
    if (!buf_room(&ex->req, 5 + trailers.len, &keep) && buf_pending(&ex->req) > 0) {
      free(trailers.data);
      ex->phase = EX_BODY; /* not complete yet: the last chunk waits for buffer space */
      ex_suspend(ex);
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
    if (ex->local) return rsp_queue_local(ex); /* the write failed for good */
  }
  if (!ex->pending && !ex->local && defer_start(ex)) return MHD_YES;
  if (!ex->pending && !ex->send_queued) {
    fast_wait(ex);
    if (ex->local) return rsp_queue_local(ex); /* failed for good while waiting */
  }
  if (ex->pending) return rsp_queue_pending(ex);
  ex_suspend(ex); /* until the upstream's head arrives */
  if (ex->uc) up_update_events(ex);
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  (void)cls, (void)conn;
  exchange *ex = *con_cls;
  if (!ex) return MHD_NO;
  if (ex->deferring && !*upload_data_size) return on_deferred(ex);
  ex->w->mhd_work = true;
  if (ex->phase == EX_HEAD) {
    ex->phase = EX_BODY;
    on_headers(ex, url, method, version);
    /* A refused request with a body: if the client waits for 100 Continue, answer now (it
     * never sends the body; libmicrohttpd closes afterwards). A large or unknown-length
     * body gets its answer at once too, written directly (rsp_send_raw). A small body
     * is read and dropped, and answered when complete like everything else, which keeps
     * the connection alive. */
    if (ex->local && ex->framing_refused) {
      /* the framing cannot be trusted: answer, then close without reading another request */
      rsp_send_raw(ex);
      return MHD_YES;
    }
    if (ex->local && ex->has_body) {
      if (ex->expect_continue) return rsp_queue_local(ex);
      if (ex->status == 413 || ex->chunked_in || ex->content_length > SMALL_BODY) rsp_send_raw(ex);
    }
    return MHD_YES;
  }
  if (*upload_data_size) return on_body_data(ex, upload_data, upload_data_size);
  if (ex->phase >= EX_ANSWERED) return MHD_YES;
  return on_complete(ex);
}

static void log_exchange(exchange *ex, enum MHD_RequestTerminationCode toe) {
  loop *w = ex->w;
  double end = ex_now_s();
  int status = ex->phase >= EX_ANSWERED ? ex->status : 0;
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
  loop *w = ex->w;
  w->mhd_work = true;
  defer_end(ex, -1);
  log_exchange(ex, toe); /* reads the phase: answered or not */
  ex->phase = EX_DONE;
  if (ex->uc) up_detach(ex, false); /* ended before the upstream did: not reusable */
  ex_active_del(ex);
  if (ex->pending) {
    MHD_destroy_response(ex->pending); /* drops the response's reference via reader_free */
    ex->pending = NULL;
  }
  if (ex->slot) {
    ex->slot->uses--;
    cslot_release(w, ex->slot);
  }
  if (ex->stream_held) gw_streams_release(ex->client_ip);
  w->inflight--;
  w->answered = true;
  ex->conn = NULL;
  ex_unref(ex);
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

static void quiesce(loop *w) {
  if (w->quiesced) return;
  w->quiesced = true;
  MHD_socket fd = MHD_quiesce_daemon(w->d);
  if (fd != MHD_INVALID_SOCKET) close(fd);
}

/* Idle polling. Having just answered a keep-alive client, with nothing else in progress,
 * the loop polls its epoll set for up to idle_poll_us (yielding the CPU to anything else
 * runnable on it between polls) before it goes to sleep: a client that sends its next
 * request at once finds the loop awake. Going to sleep and being woken costs a CPU that
 * then idles (in a virtual machine, a halt and a wake-up through the hypervisor) several
 * times more than the poll. A poll that finds nothing makes the loop skip the next 1, 3,
 * 7, … (up to 1023) polls, so an idle or lightly loaded gateway hardly polls at all.
 * Returns what epoll_wait returned, 0 when nothing came (or polling is off). */
static int idle_poll(loop *w, struct epoll_event *evs, int max) {
  int budget_us = w->cur->conf->idle_poll_us;
  bool after_answer = w->answered;
  w->answered = false;
  if (budget_us <= 0 || !after_answer || w->inflight) return 0;
  if (backoff_skipping(&w->idle)) {
    ex_own_add(&w->idle_polls[IDLE_SKIPPED], 1);
    return 0;
  }
  int64_t end_ns = gw_now_ns() + (int64_t)budget_us * 1000;
  do {
    sched_yield();
    int n = epoll_wait(w->epfd, evs, max, 0);
    if (n > 0) {
      backoff_hit(&w->idle);
      ex_own_add(&w->idle_polls[IDLE_EVENT], 1);
      return n;
    }
  } while (gw_now_ns() < end_ns);
  ex_own_add(&w->idle_polls[IDLE_EMPTY], 1);
  backoff_miss(&w->idle);
  return 0;
}

static void *loop_main(void *arg) {
  loop *w = arg;
  struct epoll_event evs[128];
  int64_t drain_deadline = 0;
  for (;;) {
    int64_t now = w->now_ms = gw_now_ms();
    if (atomic_load(&ex_draining)) {
      if (!w->quiesced) {
        quiesce(w);
        gw_conf *c = w->cur->conf;
        drain_deadline = now + (int64_t)c->drain_timeout_s * 1000;
      }
      if (w->inflight == 0 || now >= drain_deadline || atomic_load(&ex_stopping)) break;
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
    /* access lines are written when the loop would otherwise wait (so they show up at
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
      up_check_timeouts(w, now);
      w->next_tick_ms = now + TIMER_TICK_MS;
    }
    if (now >= w->next_sweep_ms) {
      up_pool_sweep(w, w->cur->conf->keepalive_idle_ms, false);
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
      up_flush_sends(w);
    }
    if (w->log.len >= 32768) gw_alog_flush(&w->log);
  }
  /* stop: every suspended connection must be resumed before the daemon goes */
  atomic_store(&ex_stopping, true);
  for (exchange *ex = w->active; ex; ex = ex->active_next) {
    if (ex->uc) up_detach(ex, false);
  }
  /* libmicrohttpd has no iterator over connections; exchanges still suspended are found
   * through the active list or are waiting on their client, and ex_resume() is idempotent */
  for (exchange *ex = w->active, *next; ex; ex = next) {
    next = ex->active_next;
    ex_active_del(ex);
    if (!ex->head_done) {
      ex->up_failed = true;
      rsp_problem(ex, 503, "Service Unavailable", "the gateway is shutting down");
    } else {
      ex->up_failed = true;
    }
    rsp_wake_client(ex);
  }
  MHD_run(w->d);
  MHD_stop_daemon(w->d);
  w->d = NULL;
  up_pool_sweep(w, 0, true);
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
  gw_rawhook_install();
  gw_conf_ref(c);
  current_conf = c;
  nloops = c->threads > MAX_LOOPS ? MAX_LOOPS : c->threads;
  int port = c->port;
  for (int i = 0; i < nloops; i++) {
    loop *w = &loops[i];
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
        uri_cb, w, MHD_OPTION_NOTIFY_COMPLETED, on_completed, w, MHD_OPTION_NOTIFY_CONNECTION,
        gw_rawhook_notify, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
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
    ex_ws_set(w, di->epoll_fd, EPOLLIN, &w->tag_mhd, EPOLL_CTL_ADD);
    ex_ws_set(w, w->wakefd, EPOLLIN, &w->tag_wake, EPOLL_CTL_ADD);
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
  for (int i = 0; i < nloops; i++) {
    /* loops ignore signals: the main thread handles them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&loops[i].thread, NULL, loop_main, &loops[i]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return -1;
  }
  return 0;
}

void gw_proxy_stop(void) {
  atomic_store(&ex_draining, true);
  for (int i = 0; i < nloops; i++) {
    uint64_t one = 1;
    ssize_t n = write(loops[i].wakefd, &one, sizeof one);
    (void)n;
  }
  for (int i = 0; i < nloops; i++) {
    pthread_join(loops[i].thread, NULL);
    loop *w = &loops[i];
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
    ex_spare_free(w);
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

