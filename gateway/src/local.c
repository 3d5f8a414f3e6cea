/* local — gateway-made response bodies; see local.h. */
#include "local.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/xalloc.h"

static const char *slug(int status) {
  switch (status) {
    case 400: return "bad-request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not-found";
    case 405: return "method-not-allowed";
    case 413: return "payload-too-large";
    case 429: return "too-many-requests";
    case 502: return "bad-gateway";
    case 503: return "service-unavailable";
    case 504: return "gateway-timeout";
    default: return "error";
  }
}

char *gw_problem(int status, const char *title, const char *detail, const char *instance,
                 const char *request_id, size_t *len) {
  char type[96];
  snprintf(type, sizeof type, "https://voter-api.dev/problems/%s", slug(status));
  json_t *p = json_pack("{s:s, s:s, s:i}", "type", type, "title", title, "status", status);
  if (detail) json_object_set_new(p, "detail", json_string(detail));
  if (instance) json_object_set_new(p, "instance", json_string(instance));
  if (request_id) json_object_set_new(p, "requestId", json_string(request_id));
  char *s = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(p);
  /* Not an allocation check: jansson allocates through xalloc (main calls
   * xalloc_install), so NULL here means json_pack refused a NULL or non-UTF-8 title,
   * and every caller passes a literal. An impossible state, asserted. */
  if (!s) abort();
  *len = strlen(s);
  return s;
}

static void html_escape(char *out, size_t outlen, const char *s) {
  size_t o = 0;
  for (; *s && o + 7 < outlen; s++) {
    const char *inst = NULL;
    switch (*s) {
      case '<': inst = "&lt;"; break;
      case '>': inst = "&gt;"; break;
      case '&': inst = "&amp;"; break;
      case '"': inst = "&quot;"; break;
      default: break;
    }
    if (inst) {
      size_t n = strlen(inst);
      memcpy(out + o, inst, n);
      o += n;
    } else {
      out[o++] = *s;
    }
  }
  out[o] = 0;
}

char *gw_landing_page(const gw_conf *c, size_t *len) {
  size_t cap = 4096 + (size_t)c->nroutes * 512;
  char *page = xmalloc(cap);
  size_t n = (size_t)snprintf(
      page, cap,
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>Voter API</title></head>\n<body>\n<h1>Voter API</h1>\n"
      "<p>This is the public entrance of the Voter API. The API is described in "
      "<a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3).</p>\n"
      "<p>Anonymous clients may read; writes need an API key sent as <code>X-API-Key</code> "
      "or <code>Authorization: Bearer</code>. Limits are announced in the "
      "<code>RateLimit</code> and <code>RateLimit-Policy</code> response fields.</p>\n"
      "<h2>Routes</h2>\n<ul>\n");
  for (int i = 0; i < c->nroutes && n < cap - 600; i++) {
    char esc[400];
    html_escape(esc, sizeof esc, c->routes[i].prefix);
    n += (size_t)snprintf(page + n, cap - n, "<li><code>%s</code></li>\n", esc);
  }
  n += (size_t)snprintf(page + n, cap - n,
                        "</ul>\n<h2>Operations</h2>\n<ul>\n"
                        "<li><a href=\"/gateway/health\">/gateway/health</a></li>\n"
                        "<li><a href=\"/gateway/metrics\">/gateway/metrics</a> (Prometheus)</li>\n"
                        "</ul>\n</body></html>\n");
  *len = n;
  return page;
}
