/* fuzz_admit — libFuzzer target over the admission module, with a differential oracle.
 *
 * The input is a raw request: a head split the way libmicrohttpd splits it (lines end at LF,
 * a CR before it is dropped; "name:value" at the first colon, value trimmed of SP/HTAB; the
 * request line at its first and last space), then the body bytes. gw_admit decides; when it
 * forwards, the bytes the gateway would send upstream are built as proxy.c builds them
 * (gw_admit_head, then the body: Content-Length bytes as they are, a chunked body decoded
 * and re-chunked one chunk per piece, then "0\r\n\r\n"). The oracle: a strict HTTP/1.1 parser
 * (http_parser, which refuses duplicate Content-Length and Transfer-Encoding with
 * Content-Length) sees in those bytes exactly one request, the method and target the gateway
 * meant, exactly the body bytes the gateway forwarded, and nothing after it. A second
 * oracle lays the raw bytes out as libmicrohttpd 0.9.75 does (gateway/tests/mhd_sim.h):
 * a head with a bare CR/LF, a NUL, extra request-line spaces or obs-fold is always refused
 * for its framing, by the layout check or by the strict parser that sees the raw bytes
 * (rawcheck.h; in the gateway it sees every byte of the connection, here those of the head).
 * Built only with -DVOTER_FUZZ=ON and clang; CTest runs it for 30 s on fuzz/corpus-admit. */
#include <http_parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "rawcheck.h"
#include "../tests/mhd_sim.h"
#include "voter/proof.h"

static gw_conf *conf;

static const char conf_json[] =
    "{\"tiers\": {\"anonymous\": {\"scopes\": [\"read\", \"vote\"]},"
    "            \"admin\": {\"scopes\": [\"read\", \"vote\", \"write\", \"admin\"]}},"
    " \"keys\": {\"k\": \"admin\"},"
    " \"routes\": ["
    "  {\"prefix\": \"/voter\", \"upstreams\": [\"127.0.0.1:1\"], \"max_body\": 4096, \"rules\": ["
    "    {\"methods\": [\"GET\", \"HEAD\"], \"scope\": \"read\"},"
    "    {\"methods\": [\"POST\"], \"scope\": \"vote\"},"
    "    {\"methods\": [\"*\"], \"scope\": \"admin\"}]},"
    "  {\"prefix\": \"/voter/drop\", \"upstreams\": [\"127.0.0.1:1\"], \"rules\": ["
    "    {\"methods\": [\"*\"], \"scope\": \"admin\"}]},"
    "  {\"prefix\": \"/v1\", \"rewrite\": \"\", \"upstreams\": [\"127.0.0.1:1\"]}]}";

typedef struct {
  int messages;
  size_t body;
  char url[GW_PATH_MAX + 64];
  size_t urllen;
} seen;

static int on_url(http_parser *p, const char *at, size_t n) {
  seen *s = p->data;
  if (s->urllen + n < sizeof s->url) {
    memcpy(s->url + s->urllen, at, n);
    s->urllen += n;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  (void)at;
  ((seen *)p->data)->body += n;
  return 0;
}

static int on_complete(http_parser *p) {
  ((seen *)p->data)->messages++;
  return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url, .on_body = on_body, .on_message_complete = on_complete};

/* Decodes a chunked body strictly from in; the decoded bytes go to out, re-chunked one
 * chunk per input chunk (as proxy.c frames each piece libmicrohttpd hands over). Returns
 * the decoded length, or -1 when the input is not a complete chunked body. */
static long rechunk(const char *in, size_t len, gw_bytes *out) {
  size_t i = 0;
  long total = 0;
  for (;;) {
    size_t size = 0, digits = 0;
    while (i < len && digits < 8) {
      char c = in[i];
      int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (v < 0) break;
      size = size * 16 + (size_t)v;
      digits++;
      i++;
    }
    if (!digits || i + 2 > len || in[i] != '\r' || in[i + 1] != '\n') return -1;
    i += 2;
    if (size == 0) break;
    if (i + size + 2 > len || in[i + size] != '\r' || in[i + size + 1] != '\n') return -1;
    char hdr[24];
    int hn = snprintf(hdr, sizeof hdr, "%zx\r\n", size);
    gw_bytes_append(out, hdr, (size_t)hn);
    gw_bytes_append(out, in + i, size);
    gw_bytes_append(out, "\r\n", 2);
    total += (long)size;
    i += size + 2;
  }
  gw_bytes_append(out, "0\r\n\r\n", 5); /* trailers of the client are not modelled here */
  return total;
}

static void trim(const char **s, size_t *n) {
  while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* What the strict parser beside libmicrohttpd (rawcheck.h) says of the head: the bytes up to
 * the first blank line, as it would have them before the request is admitted (what follows
 * is the body, whose framing the first oracle checks). */
static const char *raw_head_error(const char *data, size_t size) {
  size_t n = size;
  for (size_t i = 0; i + 3 < size; i++)
    if (memcmp(data + i, "\r\n\r\n", 4) == 0) {
      n = i + 4;
      break;
    }
  return gw_rawcheck_bytes(data, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!conf) {
    char err[256];
    conf = gw_conf_parse(conf_json, sizeof conf_json - 1, err, sizeof err);
    if (!conf) abort();
    conf->proof = proof_signer_new("fuzz-secret-0123456789", 22);
  }
  /* The second oracle: a head laid out by libmicrohttpd's in-place parse (mhd_sim.h) gets
   * past the framing rules only when it is clean (CRLF only, no NUL, single spaces in the
   * request line, no fold) — or is the one spelling the layout cannot show (admit.c). */
  static mhd_sim sim;
  const char *raw_error = raw_head_error((const char *)data, size);
  if (mhd_sim_parse(&sim, (const char *)data, size) && !mhd_sim_clean((const char *)data, size)) {
    /* the strict parser has seen no more than the head libmicrohttpd hands over */
    gw_head sh = {.method = sim.method, .target = sim.url, .version = sim.version,
                  .fields = sim.fields, .nfields = sim.nfields, .peer_ip = "127.0.0.1",
                  .bad_lines = !mhd_sim_layout_ok(&sim),
                  .raw_error = gw_rawcheck_bytes((const char *)data, sim.head_size)};
    gw_admission *sa = malloc(sizeof *sa);
    if (!sa) abort();
    gw_admit(conf, &sh, sa);
    if (!(sa->kind == GW_ADMIT_REFUSE && sa->close)) abort();
    gw_admission_clear(sa);
    free(sa);
  }
  /* copy so every piece can be NUL-terminated in place, as libmicrohttpd does */
  char *buf = malloc(size + 1);
  if (!buf) abort();
  memcpy(buf, data, size);
  buf[size] = 0;
  char *end = strstr(buf, "\r\n\r\n");
  if (!end || memchr(buf, 0, (size_t)(end - buf))) {
    free(buf);
    return 0;
  }
  char *body = end + 4;
  size_t body_len = size - (size_t)(body - buf);
  *end = 0;
  /* the request line */
  char *line_end = strchr(buf, '\n');
  char *line = buf;
  if (line_end) *line_end = 0;
  size_t ll = strlen(line);
  if (ll && line[ll - 1] == '\r') line[--ll] = 0;
  char *sp1 = strchr(line, ' '), *sp2 = strrchr(line, ' ');
  if (!sp1 || sp1 == sp2) {
    free(buf);
    return 0;
  }
  *sp1 = 0;
  *sp2 = 0;
  const char *method = line, *target = sp1 + 1, *version = sp2 + 1;
  if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0) {
    free(buf);
    return 0;
  }
  gw_field fields[GW_MAX_FIELDS];
  int n = 0;
  bool overflow = false;
  for (char *p = line_end ? line_end + 1 : NULL; p && *p;) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = 0;
    size_t pl = strlen(p);
    if (pl && p[pl - 1] == '\r') p[--pl] = 0;
    char *colon = strchr(p, ':');
    if (!colon) { /* libmicrohttpd answers 400 itself */
      free(buf);
      return 0;
    }
    if (n == GW_MAX_FIELDS) overflow = true;
    else {
      const char *v = colon + 1;
      size_t vn = strlen(v);
      trim(&v, &vn);
      fields[n++] = (gw_field){p, (size_t)(colon - p), v, vn};
      *colon = 0;
    }
    p = nl ? nl + 1 : NULL;
  }
  gw_head h = {.method = method, .target = target, .version = version, .fields = fields,
               .nfields = n, .too_many_fields = overflow, .peer_ip = "127.0.0.1",
               .raw_error = raw_error};
  gw_admission *a = malloc(sizeof *a);
  if (!a) abort();
  gw_admit(conf, &h, a);
  if (a->kind == GW_ADMIT_FORWARD) {
    gw_bytes out = {0};
    gw_forward f = {.request_id = "fuzz", .listen_host = "127.0.0.1:1", .now_s = 1800000000};
    gw_admit_head(conf, &h, a, &f, &out);
    long forwarded = 0;
    bool complete = true;
    if (a->body == GW_BODY_LENGTH) {
      if (a->content_length > body_len) complete = false; /* the client has not sent it all */
      else {
        gw_bytes_append(&out, body, a->content_length);
        forwarded = (long)a->content_length;
      }
    } else if (a->body == GW_BODY_CHUNKED) {
      forwarded = rechunk(body, body_len, &out);
      complete = forwarded >= 0;
    }
    if (complete) {
      http_parser p;
      seen s = {0};
      http_parser_init(&p, HTTP_REQUEST);
      p.data = &s;
      size_t done = http_parser_execute(&p, &settings, out.data, out.len);
      /* the oracle */
      if (HTTP_PARSER_ERRNO(&p) != HPE_OK || done != out.len) abort();
      if (s.messages != 1 || s.body != (size_t)forwarded) abort();
      if (strcmp(http_method_str((enum http_method)p.method), method) != 0) abort();
      if (s.urllen != a->upathlen + strlen(a->query) || memcmp(s.url, a->upath, a->upathlen) != 0)
        abort();
    }
    free(out.data);
  } else if (a->kind == GW_ADMIT_REFUSE && (a->status < 400 || a->status > 599)) {
    abort();
  }
  gw_admission_clear(a);
  free(a);
  free(buf);
  return 0;
}
