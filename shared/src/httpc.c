/* httpc — HTTP client calls on libcurl; see httpc.h. */
#include "voter/httpc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/xalloc.h"

typedef struct sink {
  char *buf;
  size_t len, cap, max;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx) {
  sink *s = ctx;
  size_t n = size * nmemb;
  size_t keep = s->len + n > s->max ? s->max - s->len : n;
  if (keep > 0) {
    if (s->len + keep + 1 > s->cap) {
      size_t cap = (s->len + keep + 1) * 2;
      if (cap > s->max + 1) cap = s->max + 1;
      s->buf = xrealloc(s->buf, cap);
      s->cap = cap;
    }
    memcpy(s->buf + s->len, ptr, keep);
    s->len += keep;
    s->buf[s->len] = 0;
  }
  return n;
}

int httpc_do(const httpc_request *req, httpc_response *res) {
  memset(res, 0, sizeof *res);
  CURL *curl = curl_easy_init();
  if (!curl) {
    snprintf(res->error, sizeof res->error, "curl_easy_init failed");
    return -1;
  }
  sink s = {.max = req->max_response ? req->max_response : 16u << 20};
  struct curl_slist *hdrs = NULL;
  char line[4096];
  if (req->bearer) {
    snprintf(line, sizeof line, "Authorization: Bearer %s", req->bearer);
    hdrs = curl_slist_append(hdrs, line);
  }
  if (req->content_type) {
    snprintf(line, sizeof line, "Content-Type: %s", req->content_type);
    hdrs = curl_slist_append(hdrs, line);
  } else if (!req->body) {
    hdrs = curl_slist_append(hdrs, "Content-Type:"); /* no body: no form type either */
  }
  hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
  for (const char *const *h = req->headers; h && *h; h++) hdrs = curl_slist_append(hdrs, *h);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, req->url);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 30000L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 5000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  struct curl_slist *connect_to = req->connect_to && *req->connect_to
                                     ? curl_slist_append(NULL, req->connect_to)
                                     : NULL;
  if (connect_to) curl_easy_setopt(curl, CURLOPT_CONNECT_TO, connect_to);
  if (req->unix_socket) curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
  if (req->ca_file) curl_easy_setopt(curl, CURLOPT_CAINFO, req->ca_file);
  if (req->body) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
  } else if (strcmp(req->method, "GET") != 0) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
  }
  CURLcode rc = curl_easy_perform(curl);
  int ret = 0;
  if (rc != CURLE_OK) {
    snprintf(res->error, sizeof res->error, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    ret = -1;
    free(s.buf);
  } else {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res->status);
    res->body = s.buf ? s.buf : xstrdup("");
    res->len = s.len;
  }
  curl_easy_cleanup(curl);
  curl_slist_free_all(hdrs);
  curl_slist_free_all(connect_to);
  return ret;
}

void httpc_response_free(httpc_response *res) {
  free(res->body);
  res->body = NULL;
}

int httpc_request_replay(const httpc_replay *r, char *err, size_t errlen) {
  char url[1024], id_line[256], key_line[256];
  const char *lines[16];
  size_t n = 0, base_len = strlen(r->base_url);
  while (base_len && r->base_url[base_len - 1] == '/') base_len--;
  snprintf(url, sizeof url, "%.*s%s", (int)base_len, r->base_url, r->path);
  if (r->request_id) {
    snprintf(id_line, sizeof id_line, "X-Request-ID: %s", r->request_id);
    lines[n++] = id_line;
  }
  if (r->api_key) {
    snprintf(key_line, sizeof key_line, "X-API-Key: %s", r->api_key);
    lines[n++] = key_line;
  }
  for (const char *const *h = r->headers; h && *h && n < sizeof lines / sizeof *lines - 1; h++)
    lines[n++] = *h;
  lines[n] = NULL;
  httpc_request req = {.method = "POST", .url = url, .headers = lines, .timeout_ms = 30000,
                       .connect_timeout_ms = 2000, .max_response = 4096};
  httpc_response res;
  if (httpc_do(&req, &res) != 0) {
    snprintf(err, errlen, "POST %s: %s", url, res.error);
    return -1;
  }
  int rc = res.status >= 200 && res.status <= 299 ? 0 : -1;
  if (rc != 0) snprintf(err, errlen, "POST %s answered %ld: %.200s", url, res.status, res.body);
  httpc_response_free(&res);
  return rc;
}
