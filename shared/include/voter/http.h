/* http — the HTTP server every service uses, on libmicrohttpd (prefix http_).
 *
 * Routes are "METHOD /literal/{param}/..." patterns matched segment by segment; path
 * parameters are percent-decoded per segment, so an election title with spaces, commas,
 * dots or an encoded slash arrives intact. The server owns the cross-cutting concerns:
 * request ids (X-Request-ID kept or generated, echoed), CORS (preflight for every path,
 * allow-list), body limit (413 decided from Content-Length before the body is read,
 * also enforced while reading chunked bodies), 404/405 (+Allow) as problem+json (a method
 * outside GET HEAD POST PUT PATCH DELETE OPTIONS is 405 on any path, and metrics label
 * methods from that fixed set, so a client cannot mint label values), one
 * JSON access-log line and Prometheus metrics per request, connection timeouts and
 * keep-alive (responses are queued only once the request is complete: queueing on the
 * first callback makes libmicrohttpd close every connection). */
#ifndef VOTER_HTTP_H
#define VOTER_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_HEADERS 16

typedef struct http_server http_server;
typedef struct http_conn_state http_conn_state;
typedef struct http_stream http_stream;

typedef struct http_request {
  const char *method;      /* GET, POST, ... (HEAD is routed as GET) */
  const char *path;        /* raw path without the query string */
  const char *route;       /* the matched pattern, for logs and metrics */
  const char *params[HTTP_MAX_PARAMS]; /* decoded path parameters, in pattern order */
  int nparams;
  const char *body;        /* NUL-terminated copy of the request body ("" when none) */
  size_t body_len;
  const char *request_id;
  http_conn_state *state;  /* internal */
} http_request;

typedef struct http_response {
  int status;
  const char *content_type;
  char *body; /* owned; freed by the server */
  size_t body_len;
  int nheaders;
  struct {
    char *name, *value;
  } headers[HTTP_MAX_HEADERS];
  http_stream *stream; /* set by http_reply_stream: the body is produced over time */
} http_response;

typedef void (*http_handler)(void *ctx, const http_request *req, http_response *res);
/* Runs before a route's handler: true lets it run; false means the guard answered. */
typedef bool (*http_guard)(const http_request *req, http_response *res);

typedef struct http_options {
  const char *service;     /* name for logs */
  const char *host;        /* listen address, default 127.0.0.1 */
  int port;
  int threads;             /* worker threads (epoll), default 4 */
  int timeout_s;           /* idle connection timeout, default 30 */
  size_t max_body;         /* default 1 MiB */
  const char *cors_origins; /* "*" reflects any Origin; comma list; "" disables CORS */
} http_options;

http_server *http_server_new(const http_options *opts);
/* Registers a handler; pattern segments in braces capture one path segment. */
int http_route(http_server *s, const char *method, const char *pattern, http_handler fn,
               void *ctx);
/* The same, with a guard in front of the handler (authz.h's authz_admin, for one). */
int http_route_guarded(http_server *s, const char *method, const char *pattern,
                       http_guard guard, http_handler fn, void *ctx);
int http_server_start(http_server *s);
/* Stops accepting and waits for in-flight requests to finish. */
void http_server_stop(http_server *s);
void http_server_free(http_server *s);
int http_server_port(const http_server *s);

/* Request accessors. Returned strings live until the request ends. */
const char *http_query(const http_request *r, const char *name);       /* first value, decoded */
int http_query_all(const http_request *r, const char *name, const char **out, int max);
bool http_query_present(const http_request *r, const char *name);
const char *http_header(const http_request *r, const char *name);
/* "scheme://host" as the client sees it (X-Forwarded-Proto/Host honoured). */
const char *http_base_url(const http_request *r);
/* true when the request's Content-Type is JSON (application/json or a +json type). */
bool http_is_json(const http_request *r);

/* Responses. JSON bodies are stolen references. */
void http_reply(http_response *res, int status, const char *content_type, char *body,
                size_t len);
void http_reply_json(http_response *res, int status, json_t *body);
void http_reply_hal(http_response *res, int status, json_t *body);
void http_reply_empty(http_response *res, int status);
/* problem+json: type is derived from status; errors (stolen, may be NULL) is an array of
 * {field, message}. */
void http_reply_problem(http_response *res, int status, const char *title, const char *detail,
                        json_t *errors);
void http_set_header(http_response *res, const char *name, const char *value);

/* Streamed responses (Server-Sent Events): the body is produced over time by read, called
 * on a server thread with the response's connection: > 0 bytes copied into buf, 0 nothing
 * for now (the connection sleeps, costing no thread, until http_stream_wake), -1 the body
 * is complete. closed is called exactly once when the connection is gone (client left,
 * body complete, server stopping); read is never called after it. */
typedef long (*http_stream_read)(void *ctx, char *buf, size_t max);
typedef void (*http_stream_closed)(void *ctx);
/* Makes res a streamed response. The handle is referenced once for the caller, who wakes
 * it when there is more to read and releases it when done with it (after closed, or to
 * give up on it); NULL when out of memory (res untouched). */
http_stream *http_reply_stream(http_response *res, int status, const char *content_type,
                               http_stream_read read, http_stream_closed closed, void *ctx);
/* From any thread: read will be called again soon. Harmless after closed. */
void http_stream_wake(http_stream *s);
void http_stream_release(http_stream *s);

#endif
