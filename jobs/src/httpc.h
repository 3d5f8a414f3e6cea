/* httpc — the service's HTTP client on libcurl (prefix httpc_): the Docker Engine API over
 * its unix socket, the Kubernetes API server with a bearer token and CA, and webhooks.
 * One easy handle per call: these calls are rare next to the work they start. */
#ifndef JOBS_HTTPC_H
#define JOBS_HTTPC_H

#include <stddef.h>

typedef struct httpc_request {
  const char *method;       /* GET, POST, DELETE, ... */
  const char *url;
  const char *unix_socket;  /* talk HTTP over this socket instead of TCP */
  const char *bearer;       /* Authorization: Bearer <token> */
  const char *ca_file;      /* CA bundle for https (NULL: the system's) */
  const char *content_type; /* of body */
  const char *body;
  size_t body_len;
  const char *const *headers; /* extra "Name: value" lines, NULL-terminated */
  long timeout_ms;          /* whole transfer; 0: 30 s */
  size_t max_response;      /* bytes kept of the response body; 0: 16 MiB */
  const char *connect_to;   /* CURLOPT_CONNECT_TO "::addr:": connect only there, resolve nothing */
} httpc_request;

typedef struct httpc_response {
  long status;  /* 0 when no response arrived */
  char *body;   /* NUL-terminated, owned */
  size_t len;
  char error[256]; /* transport error when status == 0 */
} httpc_response;

/* 0 when a response arrived (any status), -1 on a transport error (res->error). */
int httpc_do(const httpc_request *req, httpc_response *res);
void httpc_response_free(httpc_response *res);

#endif
