/* respond — what the client gets: gateway-made answers, the response built from the
 * upstream's head, the streaming reader and trailers; see exchange.h. */
#define _GNU_SOURCE
#include "exchange.h"
#include "admit.h"
#include "voter/xalloc.h"

/* ------------------------------------------------------------------ responses */

void rsp_common_headers(exchange *ex, struct MHD_Response *r) {
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
  if (ex->close_after || atomic_load(&ex_draining)) MHD_add_response_header(r, "Connection", "close");
}

void rsp_header(exchange *ex, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rsp_header(exchange *ex, const char *name, const char *fmt, ...) {
  if (ex->nlhdr >= 3) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ex->lhdr_value[ex->nlhdr], sizeof ex->lhdr_value[0], fmt, ap);
  va_end(ap);
  ex->lhdr_name[ex->nlhdr++] = name;
}

void rsp_local(exchange *ex, int status, const char *ctype, char *body, size_t len) {
  free(ex->lbody);
  ex->local = true;
  ex->status = status;
  ex->lctype = ctype;
  ex->lbody = body;
  ex->llen = len;
}

void rsp_problem(exchange *ex, int status, const char *title, const char *detail) {
  char path[512];
  snprintf(path, sizeof path, "%.*s", (int)(ex->pathlen < 500 ? ex->pathlen : 500), ex->uri);
  size_t len;
  char *body = gw_problem(status, title, detail, path, ex->request_id, &len);
  rsp_local(ex, status, "application/problem+json", body, len);
}

/* Queues the gateway-made response. Only from the access handler or on a suspended
 * connection. */
enum MHD_Result rsp_queue_local(exchange *ex) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      ex->llen, ex->lbody ? ex->lbody : (void *)"", ex->lbody ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  ex->lbody = NULL; /* owned by the response now */
  if (ex->lctype) MHD_add_response_header(r, "Content-Type", ex->lctype);
  for (int i = 0; i < ex->nlhdr; i++) MHD_add_response_header(r, ex->lhdr_name[i], ex->lhdr_value[i]);
  for (const char *const *x = ex->xhdr; x && *x; x += 2) MHD_add_response_header(r, x[0], x[1]);
  rsp_common_headers(ex, r);
  enum MHD_Result ret = MHD_queue_response(ex->conn, (unsigned)ex->status, r);
  MHD_destroy_response(r);
  ex->phase = EX_ANSWERED;
  return ret;
}

enum MHD_Result rsp_queue_pending(exchange *ex) {
  struct MHD_Response *r = ex->pending;
  ex->pending = NULL;
  enum MHD_Result ret = MHD_queue_response(ex->conn, (unsigned)ex->status, r);
  MHD_destroy_response(r);
  ex->phase = EX_ANSWERED;
  return ret;
}

bool rsp_ready(const exchange *ex) { return ex->local || ex->pending; }

/* Something changed on the upstream side: give the client connection a chance to move.
 * libmicrohttpd 0.9.75 accepts a response only before the body is read or once the request
 * is complete (MHD_queue_response fails in between, suspended or not), so a response that
 * becomes ready mid-upload waits: the client is resumed, the rest of its body is discarded
 * and on_complete queues the response. */
void rsp_wake_client(exchange *ex) {
  if (ex->phase == EX_DONE) return;
  if (ex->deferring) { /* libmicrohttpd asks again on its next run (on_deferred) */
    ex->w->need_run = true;
    return;
  }
  if (!ex->suspended) return;
  if (ex->phase == EX_COMPLETE && rsp_ready(ex)) {
    if (ex->local) rsp_queue_local(ex);
    else rsp_queue_pending(ex);
  }
  ex_resume(ex);
}

static bool is_hop_by_hop(const char *name, size_t n) { return gw_admit_hop_by_hop(name, n); }

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max);
void reader_free(void *cls);

/* The next name/value pair of the upstream's fields stored in hbuf (name\0value\0…)
 * before byte end; false at the end (or at a name without a value). */
bool rsp_next_field(const exchange *ex, size_t *off, size_t end, const char **name,
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
  for (size_t off = 0; rsp_next_field(ex, &off, ex->head_hlen, &name, &nlen, &value);)
    if (strcasecmp(name, "Connection") == 0) conn_list = value;
  bool cors = ex->conf->ncors_origins > 0;
  for (size_t off = 0; rsp_next_field(ex, &off, ex->head_hlen, &name, &nlen, &value);) {
    if (is_hop_by_hop(name, nlen) || gw_admit_listed_in(conn_list, name, nlen) ||
        strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "X-Request-ID") == 0 ||
        (cors && strncasecmp(name, "Access-Control-", 15) == 0))
      continue;
    MHD_add_response_header(r, name, value); /* refuses CR/LF itself */
  }
  rsp_common_headers(ex, r);
}

/* The upstream's response head is complete: build the client response, streamed from the
 * response buffer by the content reader. */
static void make_response(exchange *ex) {
  ex->status = ex->upstream_status;
  uint64_t size = ex->resp_length == UINT64_MAX ? MHD_SIZE_UNKNOWN : ex->resp_length;
  struct MHD_Response *r = MHD_create_response_from_callback(size, 16384, reader, ex, reader_free);
  /* NULL only when libmicrohttpd cannot allocate the response (its allocator is not
   * ours to route): the same out-of-memory policy */
  if (!r) xalloc_oom(16384, XALLOC_WHERE);
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
void rsp_build(exchange *ex) {
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
  /* NULL only when libmicrohttpd cannot allocate the response object (the body is not
   * copied; the object's size is private to libmicrohttpd, hence 0) */
  if (!r) xalloc_oom(0, XALLOC_WHERE);
  ex->resp.data = NULL; /* the response's now */
  ex->resp.off = ex->resp.len = ex->resp.cap = 0;
  ex->bytes_out += len;
  response_fields(ex, r);
  ex->pending = r;
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
  for (size_t off = ex->head_hlen; rsp_next_field(ex, &off, ex->hlen, &name, &nlen, &value);) {
    if (!trailer_dropped(name, nlen, not_trailers) && strncasecmp(name, "access-control-", 15) != 0)
      MHD_add_response_footer(ex->stream, name, value); /* refuses CR/LF itself */
  }
  ex->head_hlen = ex->hlen; /* once */
}

/* libmicrohttpd's parsed trailer fields of a chunked request body, as "name: value" lines */
enum MHD_Result rsp_collect_trailer(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value) {
  (void)kind;
  buf *t = cls;
  if (!value) value = "";
  size_t nlen = strlen(key), vlen = strlen(value);
  /* a trailer must be a well-formed field too (a token name, no control characters) */
  if (trailer_dropped(key, nlen, not_request_trailers) || !gw_admit_field_ok(key, nlen, value, vlen))
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
    if (ex->up_paused && ex->uc) up_update_events(ex);
    return (ssize_t)n;
  }
  if (ex->up_done) {
    add_trailers(ex);
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  if (ex->up_failed) return MHD_CONTENT_READER_END_WITH_ERROR;
  ex_suspend(ex); /* resumed when the upstream sends more */
  if (ex->uc) up_update_events(ex);
  return 0;
}

void reader_free(void *cls) {
  exchange *ex = cls;
  ex->stream = NULL;
  ex_unref(ex);
}

/* Writes the gateway-made response straight onto the client socket, then shuts our side
 * for writing. Used when a request is refused while its body is (or would be) arriving:
 * libmicrohttpd cannot queue a response in the middle of a body, and queueing before it
 * makes libmicrohttpd close the socket with the body unread, which resets the connection
 * under the response before a client that is still sending has read it. After this the
 * rest of the body is read and dropped (bounded, see on_body_data) and the connection
 * closed: the client gets its answer at once and a clean close, as with nginx's lingering
 * close. */
void rsp_send_raw(exchange *ex) {
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
  ex->phase = EX_ANSWERED; /* the client has its answer (and the log says so) */
}
