/* http — libmicrohttpd server with routing, limits, CORS, logs and metrics; see http.h. */
#include "voter/http.h"
#include "voter/path.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define MAX_ROUTES 96
#define MAX_SEGMENTS 16

typedef struct route {
  char *method;
  char *pattern;
  char *segments[MAX_SEGMENTS];
  int nsegments;
  http_guard guard; /* may be NULL */
  http_handler fn;
  void *ctx;
} route;

struct http_server {
  http_options opts;
  char *host, *service, *cors;
  route routes[MAX_ROUTES];
  int nroutes;
  struct MHD_Daemon *daemon;
  int port;
  _Atomic int in_flight; /* requests between first callback and completion */
  _Atomic bool draining; /* stopping: answer new requests 503 + Connection: close */
};

/* Per-request state, from the first access-handler call to the completion callback. */
struct http_conn_state {
  http_server *srv;
  struct MHD_Connection *conn;
  double started;
  char *body;
  size_t body_len, body_cap;
  bool too_large;
  char request_id[64];
  char *allocs[32]; /* strings handed out by accessors, freed at completion */
  int nallocs;
};

static const char *track(http_conn_state *st, char *s) {
  if (!s) return NULL;
  if (st->nallocs == (int)(sizeof st->allocs / sizeof st->allocs[0])) {
    /* Out of slots: keep the string alive by leaking into the last slot's chain is not
     * worth it; accessors are called a handful of times per request. */
    free(s);
    return NULL;
  }
  st->allocs[st->nallocs++] = s;
  return s;
}

/* ---- responses ---- */

void http_reply(http_response *res, int status, const char *content_type, char *body,
                size_t len) {
  free(res->body);
  res->status = status;
  res->content_type = content_type;
  res->body = body;
  res->body_len = len;
}

static void reply_json_as(http_response *res, int status, const char *type, json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(body);
  if (!text) {
    http_reply_problem(res, 500, "Internal Server Error", "could not render JSON", NULL);
    return;
  }
  http_reply(res, status, type, text, strlen(text));
}

void http_reply_json(http_response *res, int status, json_t *body) {
  reply_json_as(res, status, "application/json", body);
}

void http_reply_hal(http_response *res, int status, json_t *body) {
  reply_json_as(res, status, "application/hal+json", body);
}

void http_reply_empty(http_response *res, int status) { http_reply(res, status, NULL, NULL, 0); }

static const char *status_slug(int status) {
  switch (status) {
  case 400: return "bad-request";
  case 401: return "unauthorized";
  case 403: return "forbidden";
  case 404: return "not-found";
  case 405: return "method-not-allowed";
  case 409: return "conflict";
  case 410: return "gone";
  case 412: return "precondition-failed";
  case 413: return "payload-too-large";
  case 415: return "unsupported-media-type";
  case 422: return "validation-failed";
  case 429: return "too-many-requests";
  case 503: return "service-unavailable";
  default: return "error";
  }
}

void http_reply_problem(http_response *res, int status, const char *title, const char *detail,
                        json_t *errors) {
  char type[96];
  snprintf(type, sizeof type, "https://voter-api.dev/problems/%s", status_slug(status));
  json_t *p = json_pack("{s:s, s:s, s:i}", "type", type, "title", title, "status", status);
  if (detail) json_object_set_new(p, "detail", json_string(detail));
  if (errors) json_object_set_new(p, "errors", errors);
  reply_json_as(res, status, "application/problem+json", p);
}

void http_set_header(http_response *res, const char *name, const char *value) {
  for (int i = 0; i < res->nheaders; i++) {
    if (strcasecmp(res->headers[i].name, name) == 0) {
      free(res->headers[i].value);
      res->headers[i].value = xstrdup(value);
      return;
    }
  }
  if (res->nheaders == HTTP_MAX_HEADERS) return;
  res->headers[res->nheaders].name = xstrdup(name);
  res->headers[res->nheaders].value = xstrdup(value);
  res->nheaders++;
}

/* ---- streamed responses ---- */

/* Shared by the response (until libmicrohttpd frees it) and the producer (until
 * http_stream_release): two references. conn is set while the response is queued and
 * cleared under the lock when it is freed, so a late wake never touches a gone connection. */
struct http_stream {
  pthread_mutex_t lock;
  int refs;
  struct MHD_Connection *conn;
  bool suspended, woken, closed;
  http_stream_read read;
  http_stream_closed on_closed;
  void *ctx;
};

http_stream *http_reply_stream(http_response *res, int status, const char *content_type,
                               http_stream_read read, http_stream_closed closed, void *ctx) {
  http_stream *s = xcalloc(1, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  s->refs = 2;
  s->read = read;
  s->on_closed = closed;
  s->ctx = ctx;
  http_reply(res, status, content_type, NULL, 0);
  res->stream = s;
  return s;
}

void http_stream_release(http_stream *s) {
  if (!s) return;
  pthread_mutex_lock(&s->lock);
  int left = --s->refs;
  pthread_mutex_unlock(&s->lock);
  if (left) return;
  pthread_mutex_destroy(&s->lock);
  free(s);
}

void http_stream_wake(http_stream *s) {
  pthread_mutex_lock(&s->lock);
  if (s->suspended && s->conn) {
    s->suspended = false;
    MHD_resume_connection(s->conn);
  } else {
    s->woken = true; /* read is running or about to: it must not sleep on this wake */
  }
  pthread_mutex_unlock(&s->lock);
}

/* Returning 0 without suspending would make libmicrohttpd call again at once (a busy
 * loop), so an empty read suspends the connection until the producer wakes it. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  http_stream *s = cls;
  pthread_mutex_lock(&s->lock);
  s->woken = false;
  pthread_mutex_unlock(&s->lock);
  /* read runs unlocked, so a producer may wake while holding its own locks */
  long n = s->read(s->ctx, buf, max);
  pthread_mutex_lock(&s->lock);
  if (n == 0 && !s->woken && s->conn) {
    s->suspended = true;
    MHD_suspend_connection(s->conn);
  }
  pthread_mutex_unlock(&s->lock);
  if (n < 0) return MHD_CONTENT_READER_END_OF_STREAM;
  return (ssize_t)n;
}

static void stream_free(void *cls) {
  http_stream *s = cls;
  pthread_mutex_lock(&s->lock);
  s->conn = NULL;
  bool was_closed = s->closed;
  s->closed = true;
  pthread_mutex_unlock(&s->lock);
  if (!was_closed) s->on_closed(s->ctx);
  http_stream_release(s);
}

static void response_clear(http_response *res) {
  if (res->stream) stream_free(res->stream); /* never handed to libmicrohttpd */
  free(res->body);
  for (int i = 0; i < res->nheaders; i++) {
    free(res->headers[i].name);
    free(res->headers[i].value);
  }
  memset(res, 0, sizeof *res);
}

/* ---- request accessors ---- */

const char *http_header(const http_request *r, const char *name) {
  return MHD_lookup_connection_value(r->state->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_request *r, const char *name) {
  const char *raw = MHD_lookup_connection_value(r->state->conn, MHD_GET_ARGUMENT_KIND, name);
  if (!raw) return NULL;
  return track(r->state, util_percent_decode(raw, strlen(raw), true));
}

bool http_query_present(const http_request *r, const char *name) {
  return MHD_lookup_connection_value_n(r->state->conn, MHD_GET_ARGUMENT_KIND, name,
                                       strlen(name), NULL, NULL) == MHD_YES;
}

typedef struct {
  const http_request *r;
  const char *name;
  const char **out;
  int max, n;
} query_iter;

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
  (void)kind;
  query_iter *it = cls;
  if (strcmp(key, it->name) != 0 || !value) return MHD_YES;
  if (it->n < it->max) {
    const char *v = track(it->r->state, util_percent_decode(value, strlen(value), true));
    if (v) it->out[it->n++] = v;
  }
  return MHD_YES;
}

int http_query_all(const http_request *r, const char *name, const char **out, int max) {
  query_iter it = {r, name, out, max, 0};
  MHD_get_connection_values(r->state->conn, MHD_GET_ARGUMENT_KIND, collect_query, &it);
  return it.n;
}

const char *http_base_url(const http_request *r) {
  const char *proto = http_header(r, "X-Forwarded-Proto");
  const char *host = http_header(r, "X-Forwarded-Host");
  if (!host) host = http_header(r, "Host");
  if (!host) host = "localhost";
  if (!proto || (strcmp(proto, "http") != 0 && strcmp(proto, "https") != 0)) proto = "http";
  /* X-Forwarded-Host may be a list when several proxies appended; the first is the client's. */
  size_t hl = strcspn(host, ", ");
  char *url = xmalloc(strlen(proto) + hl + 4);
  sprintf(url, "%s://%.*s", proto, (int)hl, host);
  return track(r->state, url);
}

bool http_is_json(const http_request *r) {
  const char *ct = http_header(r, "Content-Type");
  if (!ct) return false;
  size_t n = strcspn(ct, ";");
  while (n > 0 && ct[n - 1] == ' ') n--;
  if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return true;
  return n > 5 && strncasecmp(ct, "application/", 12) == 0 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

/* ---- server ---- */

http_server *http_server_new(const http_options *opts) {
  http_server *s = xcalloc(1, sizeof *s);
  s->opts = *opts;
  s->host = xstrdup(opts->host ? opts->host : "127.0.0.1");
  s->service = xstrdup(opts->service ? opts->service : "service");
  s->cors = xstrdup(opts->cors_origins ? opts->cors_origins : "*");
  if (s->opts.threads <= 0) s->opts.threads = 4;
  if (s->opts.timeout_s <= 0) s->opts.timeout_s = 30;
  if (s->opts.max_body == 0) s->opts.max_body = 1024 * 1024;
  metrics_describe("http_requests_total", "counter", "HTTP requests by route, method and status");
  metrics_describe("http_request_duration_seconds", "histogram",
                   "HTTP request latency by route and method");
  return s;
}

int http_route(http_server *s, const char *method, const char *pattern, http_handler fn,
               void *ctx) {
  return http_route_guarded(s, method, pattern, NULL, fn, ctx);
}

int http_route_guarded(http_server *s, const char *method, const char *pattern,
                       http_guard guard, http_handler fn, void *ctx) {
  if (s->nroutes == MAX_ROUTES) return -1;
  route *r = &s->routes[s->nroutes];
  r->guard = guard;
  r->method = xstrdup(method);
  r->pattern = xstrdup(pattern);
  r->fn = fn;
  r->ctx = ctx;
  char *copy = xstrdup(pattern), *save = NULL;
  for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
    if (r->nsegments == MAX_SEGMENTS) {
      free(copy);
      return -1;
    }
    r->segments[r->nsegments++] = xstrdup(seg);
  }
  free(copy);
  s->nroutes++;
  return 0;
}

int http_server_port(const http_server *s) { return s->port; }

/* Splits a raw path into at most MAX_SEGMENTS decoded segments. -1 on malformed encoding
 * or too many segments. */
static int split_path(const char *path, char **segs, int *nsegs) {
  *nsegs = 0;
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    size_t n = strcspn(p, "/");
    if (*nsegs == MAX_SEGMENTS) return -1;
    char *seg = util_percent_decode(p, n, false);
    if (!seg) return -1;
    segs[(*nsegs)++] = seg;
    p += n;
  }
  return 0;
}

static bool route_matches(const route *r, char **segs, int nsegs) {
  if (r->nsegments != nsegs) return false;
  for (int i = 0; i < nsegs; i++) {
    if (r->segments[i][0] == '{') {
      if (!segs[i][0]) return false;
    } else if (strcmp(r->segments[i], segs[i]) != 0) {
      return false;
    }
  }
  return true;
}

/* The allowed origin to echo, or NULL when CORS does not apply. */
static const char *cors_origin(const http_server *s, const char *origin) {
  if (!origin || !*s->cors) return NULL;
  if (strcmp(s->cors, "*") == 0) return origin;
  size_t ol = strlen(origin);
  for (const char *p = s->cors; *p;) {
    size_t n = strcspn(p, ",");
    const char *q = p;
    size_t m = n;
    while (m && *q == ' ') q++, m--;
    while (m && q[m - 1] == ' ') m--;
    if (m == ol && strncmp(q, origin, m) == 0) return origin;
    p += n;
    if (*p == ',') p++;
  }
  return NULL;
}

/* The methods this server knows; anything else is 405 and "other" in metrics. */
static const char *known_method(const char *method) {
  static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(method, known[i]) == 0) return known[i];
  return NULL;
}

static enum MHD_Result send_response(http_conn_state *st, http_request *req,
                                     http_response *res, const char *route_label) {
  struct MHD_Response *r;
  if (res->stream) {
    http_stream *s = res->stream;
    res->stream = NULL; /* now owned by the response: stream_free runs when it is freed */
    s->conn = st->conn;
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, s, stream_free);
    if (!r) stream_free(s);
  } else {
    r = MHD_create_response_from_buffer(res->body_len, res->body ? res->body : (void *)"",
                                        res->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  }
  size_t bytes_out = res->body_len;
  res->body = NULL; /* now owned by MHD */
  if (!r) return MHD_NO;
  if (res->content_type) MHD_add_response_header(r, "Content-Type", res->content_type);
  for (int i = 0; i < res->nheaders; i++)
    MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
  MHD_add_response_header(r, "X-Request-ID", st->request_id);
  const char *origin = cors_origin(
      st->srv, MHD_lookup_connection_value(st->conn, MHD_HEADER_KIND, "Origin"));
  if (origin) {
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(r, "Access-Control-Expose-Headers",
                            "Location, ETag, X-Request-ID, Retry-After");
    MHD_add_response_header(r, "Vary", "Origin");
  }
  enum MHD_Result ret = MHD_queue_response(st->conn, (unsigned int)res->status, r);
  MHD_destroy_response(r);

  double elapsed = util_monotonic() - st->started;
  const char *method_label = known_method(req->method) ? req->method : "other";
  char labels[512];
  snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\",status=\"%d\"", route_label,
           method_label, res->status);
  metrics_counter_inc("http_requests_total", labels);
  snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\"", route_label, method_label);
  metrics_histogram_observe("http_request_duration_seconds", labels, elapsed);
  log_fields(LOG_INFO, "request",
             json_pack("{s:s, s:s, s:s, s:s, s:i, s:f, s:I, s:I}", "requestId", st->request_id,
                       "method", req->method, "path", req->path, "route", route_label, "status",
                       res->status, "durationMs", elapsed * 1000.0, "bytesIn",
                       (json_int_t)st->body_len, "bytesOut", (json_int_t)bytes_out));
  return ret;
}

static void set_request_id(http_conn_state *st) {
  const char *given = MHD_lookup_connection_value(st->conn, MHD_HEADER_KIND, "X-Request-ID");
  if (given && *given && strlen(given) < sizeof st->request_id) {
    bool ok = true;
    for (const char *p = given; *p; p++)
      if (*p < 0x21 || *p > 0x7e) ok = false;
    if (ok) {
      strcpy(st->request_id, given);
      return;
    }
  }
  util_uuid(st->request_id);
}

static void answer_preflight(http_server *s, const http_request *req, http_response *res,
                             const char *allow) {
  (void)s;
  http_reply_empty(res, 204);
  http_set_header(res, "Allow", allow);
  http_set_header(res, "Access-Control-Allow-Methods", allow);
  const char *hdrs = http_header(req, "Access-Control-Request-Headers");
  http_set_header(res, "Access-Control-Allow-Headers",
                  hdrs ? hdrs : "Content-Type, Authorization, X-API-Key, If-Match, Idempotency-Key, X-Request-ID");
  http_set_header(res, "Access-Control-Max-Age", "600");
}

static enum MHD_Result dispatch(http_conn_state *st, const char *url, const char *method) {
  http_server *s = st->srv;
  http_request req = {0};
  http_response res = {0};
  req.state = st;
  req.request_id = st->request_id;
  req.body = st->body ? st->body : "";
  req.body_len = st->body_len;
  req.method = strcmp(method, "HEAD") == 0 ? "GET" : method;
  req.path = url;
  const char *route_label = "unmatched";

  char *segs[MAX_SEGMENTS];
  int nsegs = 0;
  char npath[4096];
  size_t nlen = 0;
  path_status pst = PATH_OK;
  if (atomic_load(&s->draining)) {
    http_reply_problem(&res, 503, "Service Unavailable", "the service is shutting down", NULL);
    http_set_header(&res, "Connection", "close");
    http_set_header(&res, "Retry-After", "1");
  } else if (st->too_large) {
    char detail[96];
    snprintf(detail, sizeof detail, "request body exceeds %zu bytes", s->opts.max_body);
    http_reply_problem(&res, 413, "Payload Too Large", detail, NULL);
    http_set_header(&res, "Connection", "close");
  } else if (!known_method(method)) {
    http_reply_problem(&res, 405, "Method Not Allowed", "this method is not supported", NULL);
    http_set_header(&res, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  } else if ((pst = path_normalize(url, strlen(url), 0, npath, sizeof npath, &nlen)) != PATH_OK) {
    /* the gateway's normal form (voter/path.h): what it authorised is what runs here */
    http_reply_problem(&res, 400, "Bad Request", path_status_text(pst), NULL);
  } else if (split_path(npath, segs, &nsegs) != 0) {
    http_reply_problem(&res, 400, "Bad Request", "malformed path encoding", NULL);
  } else {
    route *found = NULL;
    char allow[128] = "";
    bool guarded_get = false;
    for (int i = 0; i < s->nroutes; i++) {
      route *r = &s->routes[i];
      if (!route_matches(r, segs, nsegs)) continue;
      if (strcmp(r->method, req.method) == 0 && !found) found = r;
      if (r->guard && strcmp(r->method, "GET") == 0) guarded_get = true;
      if (!strstr(allow, r->method)) {
        if (*allow) strcat(allow, ", ");
        strncat(allow, r->method, sizeof allow - strlen(allow) - 1);
      }
    }
    /* A guarded GET is an operation kept as a GET for compatibility (the original's GET
     * /voter/simulation/{e}, which casts votes): HEAD is safe by definition and never runs
     * it — 405, and Allow does not offer HEAD there. */
    bool head = strcmp(method, "HEAD") == 0;
    if (*allow && strstr(allow, "GET") && !strstr(allow, "HEAD") && !guarded_get) strcat(allow, ", HEAD");
    if (head && found && found->guard) {
      strcat(allow, ", OPTIONS");
      http_reply_problem(&res, 405, "Method Not Allowed",
                         "HEAD does not run an operation; use POST", NULL);
      http_set_header(&res, "Allow", allow);
    } else if (strcmp(method, "OPTIONS") == 0) {
      if (*allow) strcat(allow, ", OPTIONS");
      answer_preflight(s, &req, &res, *allow ? allow : "OPTIONS");
      route_label = "preflight";
    } else if (found) {
      int p = 0;
      for (int i = 0; i < nsegs && p < HTTP_MAX_PARAMS; i++)
        if (found->segments[i][0] == '{') req.params[p++] = segs[i];
      req.nparams = p;
      req.route = found->pattern;
      route_label = found->pattern;
      if (!found->guard || found->guard(&req, &res)) found->fn(found->ctx, &req, &res);
      if (res.status == 0) http_reply_problem(&res, 500, "Internal Server Error", NULL, NULL);
    } else if (*allow) {
      strcat(allow, ", OPTIONS");
      http_reply_problem(&res, 405, "Method Not Allowed", "method not allowed for this path", NULL);
      http_set_header(&res, "Allow", allow);
    } else {
      http_reply_problem(&res, 404, "Not Found", "no resource at this path", NULL);
    }
  }
  enum MHD_Result ret = send_response(st, &req, &res, route_label);
  for (int i = 0; i < nsegs; i++) free(segs[i]);
  response_clear(&res);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  (void)version;
  http_server *s = cls;
  http_conn_state *st = *con_cls;
  if (!st) {
    st = xcalloc(1, sizeof *st);
    st->srv = s;
    st->conn = conn;
    st->started = util_monotonic();
    set_request_id(st);
    *con_cls = st;
    atomic_fetch_add(&s->in_flight, 1);
    /* Decide the body limit from Content-Length before reading a byte of the body: the
     * 413 is queued now, and libmicrohttpd closes the connection instead of reading on. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
      char *end;
      unsigned long long n = strtoull(cl, &end, 10);
      if (*end || n > s->opts.max_body) {
        st->too_large = true;
        return dispatch(st, url, method);
      }
    }
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (st->too_large) return MHD_YES; /* chunked body past the limit: discard the rest */
    if (st->body_len + n > s->opts.max_body) {
      st->too_large = true;
      free(st->body);
      st->body = NULL;
      return MHD_YES;
    }
    if (st->body_len + n + 1 > st->body_cap) {
      size_t cap = (st->body_len + n + 1) * 2;
      if (cap > s->opts.max_body + 1) cap = s->opts.max_body + 1;
      char *nb = xrealloc(st->body, cap);
      st->body = nb;
      st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, upload_data, n);
    st->body_len += n;
    st->body[st->body_len] = 0;
    return MHD_YES;
  }
  return dispatch(st, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)conn, (void)toe;
  http_conn_state *st = *con_cls;
  if (!st) return;
  for (int i = 0; i < st->nallocs; i++) free(st->allocs[i]);
  free(st->body);
  atomic_fetch_sub(&st->srv->in_flight, 1);
  free(st);
  *con_cls = NULL;
}

/* Keep the URL raw: paths are split first and decoded per segment (so %2F stays inside a
 * segment), and query values are decoded on access. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls, (void)c;
  return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  size_t n = strlen(buf);
  while (n && buf[n - 1] == '\n') buf[--n] = 0;
  log_warn("libmicrohttpd: %s", buf);
}

int http_server_start(http_server *s) {
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)s->opts.port);
  if (inet_pton(AF_INET, s->host, &addr.sin_addr) != 1) {
    log_error("http: invalid listen address %s", s->host);
    return -1;
  }
  s->daemon = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
          MHD_ALLOW_SUSPEND_RESUME,
      (uint16_t)s->opts.port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
      NULL, MHD_OPTION_SOCK_ADDR, &addr,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)s->opts.threads,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->opts.timeout_s,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
      /* MHD_OPTION_LISTENING_ADDRESS_REUSE left out on purpose: without it libmicrohttpd
       * sets SO_REUSEADDR only, so a restart binds past TIME_WAIT; 1 would add
       * SO_REUSEPORT (a second live process of the same user — another instance, a stray
       * test — binds the same port and silently takes half the requests), and 0 sets
       * neither, so a restarted service cannot bind while its old connections linger. */
      MHD_OPTION_END);
  if (!s->daemon) {
    log_error("http: cannot listen on %s:%d", s->host, s->opts.port);
    return -1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? info->port : s->opts.port;
  return 0;
}

void http_server_stop(http_server *s) {
  if (!s->daemon) return;
  /* Drain: requests already being handled finish and are answered; requests arriving
   * meanwhile get 503 with Connection: close so clients retry elsewhere. (MHD_quiesce_daemon
   * would stop accepting instead, but with a thread pool on epoll libmicrohttpd 0.9.75
   * aborts in it.) Bounded so a stuck request cannot block shutdown forever. */
  atomic_store(&s->draining, true);
  for (int i = 0; i < 100 && atomic_load(&s->in_flight) > 0; i++) {
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  MHD_stop_daemon(s->daemon);
  s->daemon = NULL;
}

void http_server_free(http_server *s) {
  if (!s) return;
  http_server_stop(s);
  for (int i = 0; i < s->nroutes; i++) {
    free(s->routes[i].method);
    free(s->routes[i].pattern);
    for (int j = 0; j < s->routes[i].nsegments; j++) free(s->routes[i].segments[j]);
  }
  free(s->host);
  free(s->service);
  free(s->cors);
  free(s);
}
