/* httpc — the one HTTP client of the services, on libcurl (prefix httpc_): the replay
 * requests one service sends another, the job service's webhooks, the Docker Engine API
 * over its unix socket and the Kubernetes API server with a bearer token and CA.
 * One easy handle per call: these calls are rare next to the work they start.
 * curl_global_init must have run (service_run does it) before the first call. */
#ifndef VOTER_HTTPC_H
#define VOTER_HTTPC_H

#include <stddef.h>

typedef struct httpc_request {
  const char *method;       /* GET, POST, DELETE, ... */
  const char *url;
  const char *unix_socket;  /* talk HTTP over this socket instead of TCP */
  const char *bearer;       /* Authorization: Bearer <token> */
  const char *ca_file;      /* CA bundle for https (NULL: the system's) */
  const char *content_type; /* of body; without a body none is sent */
  const char *body;
  size_t body_len;
  const char *const *headers; /* extra "Name: value" lines, NULL-terminated */
  long timeout_ms;          /* whole transfer; 0: 30 s */
  long connect_timeout_ms;  /* connection set-up; 0: 5 s */
  size_t max_response;      /* bytes kept of the response body; 0: 16 MiB */
  const char *connect_to;   /* CURLOPT_CONNECT_TO "::addr:": connect only there, resolve nothing */
} httpc_request;

typedef struct httpc_response {
  long status;  /* 0 when no response arrived */
  char *body;   /* NUL-terminated, owned */
  size_t len;
  char error[256]; /* transport error when status == 0 */
} httpc_response;

/* 0 when a response arrived (any status), -1 on a transport error (res->error). The
 * response body is always captured into res (never written to stdout). */
int httpc_do(const httpc_request *req, httpc_response *res);
void httpc_response_free(httpc_response *res);

/* A request asking another service to re-publish its events so a cleared replica
 * rebuilds: POST <base_url><path> without a body. */
typedef struct httpc_replay {
  const char *base_url;   /* e.g. http://127.0.0.1:8081; trailing slashes are ignored */
  const char *path;       /* e.g. /election/events/replay */
  const char *api_key;    /* X-API-Key, for a base_url that is the gateway; NULL: none */
  const char *request_id; /* the caller's X-Request-ID, passed on; NULL: none */
  const char *const *headers; /* extra lines (the forwarded admin proof), NULL-terminated */
} httpc_replay;

/* Sends it: 2 s to connect, 30 s in all (the other service re-publishes through its outbox,
 * one write per document). 0 on any 2xx answer; otherwise -1 with the reason in err
 * (transport error, or the status and the start of the answer's body). */
int httpc_request_replay(const httpc_replay *r, char *err, size_t errlen);

#endif
