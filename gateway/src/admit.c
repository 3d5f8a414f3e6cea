/* admit — admission decisions and the upstream head; see admit.h. */
#define _GNU_SOURCE
#include "admit.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "netaddr.h"
#include "webroot.h"
#include "voter/path.h"
#include "voter/proof.h"
#include "voter/xalloc.h"

/* ------------------------------------------------------------------ bytes */

void gw_bytes_append(gw_bytes *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = (b->len + n + 1) * 2;
    char *nb = xrealloc(b->data, cap);
    b->data = nb;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

static void put(gw_bytes *b, const char *s) { gw_bytes_append(b, s, strlen(s)); }

static void put_field(gw_bytes *b, const char *name, const char *value) {
  put(b, name);
  gw_bytes_append(b, ": ", 2);
  put(b, value);
  gw_bytes_append(b, "\r\n", 2);
}

/* ------------------------------------------------------------------ field names */

typedef struct {
  const char *name;
  size_t len;
} field_name;
#define NAMED(s) {s, sizeof s - 1}
#define COUNT(a) (sizeof a / sizeof a[0])

static bool name_in(const field_name *list, size_t count, const char *name, size_t n) {
  for (size_t i = 0; i < count; i++)
    if (list[i].len == n && strncasecmp(name, list[i].name, n) == 0) return true;
  return false;
}

bool gw_admit_hop_by_hop(const char *name, size_t n) {
  static const field_name hop_by_hop[] = {
      NAMED("connection"), NAMED("keep-alive"), NAMED("proxy-connection"), NAMED("te"),
      NAMED("trailer"), NAMED("transfer-encoding"), NAMED("upgrade"),
      NAMED("proxy-authenticate"), NAMED("proxy-authorization")};
  return name_in(hop_by_hop, COUNT(hop_by_hop), name, n);
}

bool gw_admit_own_field(const char *name, size_t n) {
  static const field_name own[] = {
      NAMED("host"), NAMED("content-length"), NAMED("expect"), NAMED("x-request-id"),
      NAMED("x-forwarded-for"), NAMED("x-forwarded-proto"), NAMED("x-forwarded-host"),
      NAMED("x-forwarded-port"), NAMED("x-forwarded-prefix"), NAMED("forwarded"),
      NAMED("x-api-key"), NAMED("x-consumer-id"), NAMED("x-consumer-scopes"),
      NAMED("x-gateway-proof")};
  return name_in(own, COUNT(own), name, n);
}

static bool is(const gw_field *f, const char *name) {
  return f->nlen == strlen(name) && strncasecmp(f->name, name, f->nlen) == 0;
}

/* RFC 9110 5.6.2 token characters */
bool gw_admit_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool token(const char *s, size_t n) {
  if (!n) return false;
  for (size_t i = 0; i < n; i++)
    if (!gw_admit_tchar((unsigned char)s[i])) return false;
  return true;
}

/* field-value: VCHAR, obs-text, SP and HTAB; nothing else (no CR, LF, NUL, controls) */
static bool field_value_ok(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

bool gw_admit_field_ok(const char *name, size_t nlen, const char *value, size_t vlen) {
  return token(name, nlen) && field_value_ok(value, vlen);
}

bool gw_admit_listed_in(const char *list, const char *name, size_t n) {
  if (!list) return false;
  const char *p = list;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    const char *s = p;
    while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
    if ((size_t)(p - s) == n && strncasecmp(s, name, n) == 0) return true;
  }
  return false;
}

/* ------------------------------------------------------------------ libmicrohttpd's buffer */

/* What libmicrohttpd 0.9.75 hides, read back from its buffer. It parses the head in place,
 * one line after the other with nothing skipped: the spaces after the method and after the
 * target become NULs, a line's CR and LF become two NULs, the colon one NUL, and the value
 * follows the name and its whitespace; the head (blank line included) is
 * MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE bytes from the method. So a head whose lines all
 * end with CRLF and hold no NUL is laid out exactly: the target one byte after the method,
 * the version one byte after the target (its copy from uri_cb: a NUL in the target cuts it
 * short), every field name two bytes after the end of the line before, and four NULs from
 * the end of the last line to the end of the head. A bare LF anywhere (after the request
 * line, ending any field, as the blank line) leaves one NUL where two belong, a NUL in a
 * line leaves one too many, extra spaces in the request line move the target or version,
 * and a field libmicrohttpd rebuilt from obs-fold continuation lines has a name (or value)
 * outside the buffer. (A bare CR ends a line for libmicrohttpd too, and leaves one NUL.)
 * The one spelling this cannot see: a NUL among the bytes that end a line together with a
 * bare CR or LF ("X: 1\0\n", "X: 1\0\r", "HTTP/1.0\r\0\r\n"): the NUL stands in for the
 * byte the bare CR or LF lacks, and as many NULs are left as CRLFs leave (found by
 * fuzz_admit's layout oracle). The raw bytes show it: rawcheck.h (gw_head.raw_error).
 * Checked by gateway/tests/test_admit.c on buffers laid out that way (tests/mhd_sim.h) and by
 * tests/test_gateway_hostile.py against libmicrohttpd itself: a libmicrohttpd that parses
 * differently fails those. overflow: not every field was collected (431 follows), so where
 * the last line ends is not known. */
bool gw_admit_mhd_layout_ok(const char *method, const char *url, size_t urilen,
                            const char *version, const gw_field *f, int n, bool overflow,
                            size_t head_size) {
  if (url != method + strlen(method) + 1 || version != url + urilen + 1) return false;
  /* nothing at or past the end of the head is read (the buffer goes on with the body) */
  const char *end = head_size ? method + head_size : NULL;
  const char *p = version + strlen(version); /* the end of the line before */
  for (int i = 0; i < n; i++) {
    const char *k = f[i].name, *v = f[i].value;
    if ((end && p + 2 >= end) || p[0] != 0 || p[1] != 0 || k != p + 2) return false;
    bool placed = v >= k + f[i].nlen + 1 && v <= k + f[i].nlen + 1 + 512 && (!end || v < end);
    if (!placed) return false;
    for (const char *q = k + f[i].nlen + 1; q < v; q++)
      if (*q != ' ' && *q != '\t') return false;
    p = v + f[i].vlen;
  }
  if (!end) return p[0] == 0 && p[1] == 0; /* a libmicrohttpd that does not tell the size */
  if (overflow) return p + 4 <= end && p[0] == 0 && p[1] == 0;
  return p + 4 == end && p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 0;
}

/* ------------------------------------------------------------------ the decision */

static void refuse(gw_admission *a, int status, const char *title, const char *detail,
                   const char *reason) {
  a->kind = GW_ADMIT_REFUSE;
  a->status = status;
  a->title = title;
  a->detail = detail;
  a->reason = reason;
}

static void bad_framing(gw_admission *a, const char *detail) {
  refuse(a, 400, "Bad Request", detail, "bad_request");
  a->close = true;
}

/* The framing rules (admit.h); false when refused. */
static bool check_framing(const gw_head *h, gw_admission *a) {
  size_t mlen = strlen(h->method);
  if (!token(h->method, mlen) || mlen > 15) {
    bad_framing(a, "the method is not a token");
    return false;
  }
  bool http10 = strcmp(h->version, "HTTP/1.0") == 0;
  const char *t = h->target;
  if (t[0] != '/') {
    bad_framing(a, "the request target must be an absolute path (origin-form)");
    return false;
  }
  for (const char *p = t; *p; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#') {
      bad_framing(a, "the request target holds a character that must be percent-encoded");
      return false;
    }
  if (h->bad_lines) {
    bad_framing(a, "a line of the head ends with a bare LF or CR, holds a NUL or is folded (obs-fold), or the request line has extra spaces");
    return false;
  }
  int ncl = 0, nte = 0, nhost = 0;
  const gw_field *cl = NULL, *te = NULL;
  for (int i = 0; i < h->nfields; i++) {
    const gw_field *f = &h->fields[i];
    if (!token(f->name, f->nlen)) {
      bad_framing(a, "a field name is not a token (no whitespace before the colon)");
      return false;
    }
    if (!field_value_ok(f->value, f->vlen)) {
      bad_framing(a, "a field value holds a control character");
      return false;
    }
    /* a name that merely starts like a framing field ("Transfer-Encodingx") is framing to
     * some parsers (http_parser 2.9 among them): refused like a duplicate */
    if ((f->nlen > 14 && strncasecmp(f->name, "content-length", 14) == 0) ||
        (f->nlen > 17 && strncasecmp(f->name, "transfer-encoding", 17) == 0)) {
      bad_framing(a, "a field name extends Content-Length or Transfer-Encoding");
      return false;
    }
    if (is(f, "Content-Length")) ncl++, cl = f;
    else if (is(f, "Transfer-Encoding")) nte++, te = f;
    else if (is(f, "Host")) nhost++;
  }
  if (ncl > 1) {
    bad_framing(a, "more than one Content-Length");
    return false;
  }
  if (nte > 1 || (te && (te->vlen != 7 || strncasecmp(te->value, "chunked", 7) != 0))) {
    bad_framing(a, "Transfer-Encoding must be exactly one \"chunked\"");
    return false;
  }
  if (te && (cl || http10)) {
    bad_framing(a, cl ? "Transfer-Encoding and Content-Length together"
                      : "Transfer-Encoding in an HTTP/1.0 request");
    return false;
  }
  if (nhost > 1 || (!http10 && nhost == 0)) {
    bad_framing(a, "an HTTP/1.1 request needs exactly one Host");
    return false;
  }
  if (cl) {
    bool digits = cl->vlen > 0 && cl->vlen <= 18;
    uint64_t n = 0;
    for (size_t i = 0; i < cl->vlen && digits; i++) {
      char c = cl->value[i];
      digits = c >= '0' && c <= '9';
      n = n * 10 + (uint64_t)(c - '0');
    }
    if (!digits) {
      bad_framing(a, "invalid Content-Length");
      return false;
    }
    a->content_length = n;
    a->body = n > 0 ? GW_BODY_LENGTH : GW_BODY_NONE;
  }
  if (te) a->body = GW_BODY_CHUNKED;
  return true;
}

static void note_fields(const gw_head *h, gw_admission *a, const char **api_key,
                        const char **authorization, int *nkeys) {
  size_t xff_len = 0;
  int nxff = 0;
  for (int i = 0; i < h->nfields; i++) {
    const gw_field *f = &h->fields[i];
    switch (f->name[0] | 0x20) {
      case 'h': if (is(f, "Host")) a->host = f->value; break;
      case 'x':
        if (is(f, "X-Request-ID")) a->request_id = f->value;
        else if (is(f, "X-API-Key")) *api_key = f->value, (*nkeys)++;
        else if (is(f, "X-Forwarded-Proto")) a->xfp = f->value;
        else if (is(f, "X-Forwarded-Host")) a->xfh = f->value;
        else if (is(f, "X-Forwarded-For")) xff_len += f->vlen + 2, nxff++;
        break;
      case 'a':
        if (is(f, "Authorization")) *authorization = f->value;
        else if (is(f, "Access-Control-Request-Method")) a->acrm = f->value;
        else if (is(f, "Accept") && !a->accept) a->accept = f->value;
        break;
      case 'c': if (is(f, "Connection")) a->connection = f->value; break;
      case 'o': if (is(f, "Origin")) a->origin = f->value; break;
      case 'e':
        if (is(f, "Expect")) a->expect_continue = strcasecmp(f->value, "100-continue") == 0;
        break;
      default: break;
    }
  }
  if (!nxff) return;
  /* several X-Forwarded-For fields are one list */
  a->xff = xmalloc(xff_len + 1);
  size_t o = 0;
  for (int i = 0; i < h->nfields; i++) {
    const gw_field *f = &h->fields[i];
    if (!is(f, "X-Forwarded-For")) continue;
    if (o) a->xff[o++] = ',', a->xff[o++] = ' ';
    memcpy(a->xff + o, f->value, f->vlen);
    o += f->vlen;
  }
  a->xff[o] = 0;
}

/* The rate-limit identity of an anonymous client: its address, IPv6 by /64 (one host
 * usually holds a whole /64, so per address it would have 2^64 buckets). */
static void ip_identity(const char *ip, char *out, size_t cap) {
  struct in6_addr a6;
  if (strchr(ip, ':') && inet_pton(AF_INET6, ip, &a6) == 1 &&
      !IN6_IS_ADDR_V4MAPPED(&a6)) {
    memset(a6.s6_addr + 8, 0, 8);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6, text, sizeof text);
    snprintf(out, cap, "ip:%s/64", text);
    return;
  }
  snprintf(out, cap, "ip:%s", ip);
}

/* Routes path; a rewrite route is an alias (admit.h). Sets a->route and a->upath. */
static bool route_path(const gw_conf *c, gw_admission *a) {
  const gw_route *r = gw_route_match(c, a->path, a->pathlen);
  if (!r) return false;
  memcpy(a->upath, a->path, a->pathlen + 1);
  a->upathlen = a->pathlen;
  for (int step = 0; r->rewrite && step < 4; step++) {
    char next[GW_PATH_MAX];
    int n = gw_route_rewrite(r, a->upath, a->upathlen, next, sizeof next);
    if (n < 0) return false;
    memcpy(a->upath, next, (size_t)n + 1);
    a->upathlen = (size_t)n;
    const gw_route *to = gw_route_match(c, a->upath, a->upathlen);
    if (!to || to == r) break; /* served by no other route: the rewrite route's own rules */
    r = to;
  }
  a->route = r;
  return true;
}

static bool local_path(const char *p, size_t n) {
  return (n == 1 && p[0] == '/') || (n == 13 && memcmp(p, "/openapi.json", 13) == 0) ||
         gw_web_wants(p, n) ||
         (n >= 8 && memcmp(p, "/gateway", 8) == 0 && (n == 8 || p[8] == '/'));
}

static void admit(const gw_conf *c, const gw_head *h, gw_admission *a);

void gw_admit(const gw_conf *c, const gw_head *h, gw_admission *a) {
  admit(c, h, a);
  if (!h->raw_error) return;
  /* the bytes on this connection are not a well-formed request stream (rawcheck.h) */
  if (a->kind != GW_ADMIT_REFUSE)
    bad_framing(a, "the request's bytes are not well-formed HTTP/1.1 (a NUL or control character in the head, a CR without LF, or ambiguous framing)");
  a->close = true;
}

static void admit(const gw_conf *c, const gw_head *h, gw_admission *a) {
  memset(a, 0, offsetof(gw_admission, pathlen));
  a->pathlen = a->upathlen = 0;
  a->path[0] = a->upath[0] = 0;
  a->tier = "anonymous";
  if (!check_framing(h, a)) return;
  a->mbit = gw_method_bit(h->method);
  a->idempotent = gw_method_idempotent(h->method);
  const char *api_key = NULL, *authorization = NULL;
  int nkeys = 0;
  note_fields(h, a, &api_key, &authorization, &nkeys);
  gw_client_ip(c->trusted, c->ntrusted, h->peer_ip, a->xff, a->client_ip);
  if (a->mbit == GW_M_OTHER) {
    refuse(a, 501, "Not Implemented", "the gateway does not implement this method", "method");
    return;
  }
  /* max_header_bytes exactly: libmicrohttpd's own limit is its connection pool, larger */
  size_t bytes = strlen(h->method) + strlen(h->target) + strlen(h->version) + 4 + 2;
  for (int i = 0; i < h->nfields; i++) bytes += h->fields[i].nlen + h->fields[i].vlen + 4;
  if (bytes > c->max_header_bytes || h->too_many_fields) {
    refuse(a, 431, "Request Header Fields Too Large",
           "the request line and header fields are above the gateway's limit", "headers_too_large");
    return;
  }
  const char *q = strchr(h->target, '?');
  size_t rawlen = q ? (size_t)(q - h->target) : strlen(h->target);
  a->query = h->target + rawlen;
  path_status ps = path_normalize(h->target, rawlen, PATH_REFUSE_ENCODED_SLASH, a->path,
                                  sizeof a->path, &a->pathlen);
  if (ps == PATH_TOO_LONG) {
    refuse(a, 414, "URI Too Long", "the path is too long", "bad_request");
    return;
  }
  if (ps != PATH_OK) {
    refuse(a, 400, "Bad Request", path_status_text(ps), "bad_request");
    return;
  }
  if (local_path(a->path, a->pathlen)) {
    a->kind = GW_ADMIT_LOCAL;
    return;
  }
  if (a->mbit == GW_M_OPTIONS && a->origin && a->acrm) {
    if (!gw_cors_origin_allowed(c, a->origin)) refuse(a, 403, "Forbidden", "origin not allowed", "cors");
    else a->kind = GW_ADMIT_PREFLIGHT;
    return;
  }
  if (!route_path(c, a)) {
    refuse(a, 404, "Not Found", "no route for this path", "no_route");
    return;
  }
  const gw_rule *rule = a->rule = gw_rule_for(a->route, a->mbit);
  if (!rule) {
    refuse(a, 405, "Method Not Allowed", "method not allowed on this route", "method");
    return;
  }
  /* the caller: X-API-Key, else Authorization: Bearer */
  const char *key = api_key;
  if (!key && authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
    key = authorization + 7;
    while (*key == ' ') key++;
    a->bearer = true;
  }
  if (nkeys > 1) {
    refuse(a, 400, "Bad Request", "more than one X-API-Key", "bad_request");
    return;
  }
  const gw_tier *tier = c->anonymous;
  if (key) {
    a->key = gw_key_find(c, key);
    if (!a->key) {
      /* guessing keys costs what anonymous requests cost: the anonymous bucket */
      a->limit = gw_tier_limit(c->anonymous, rule->limit);
      ip_identity(a->client_ip, a->identity, sizeof a->identity);
      refuse(a, 401, "Unauthorized", "unknown API key", "unknown_key");
      a->www_auth = "Bearer realm=\"voter\", error=\"invalid_token\"";
      return;
    }
    tier = a->key->tier;
    a->tier = tier->name;
  }
  a->scopes = tier ? tier->scopes : 0;
  if (!key && (rule->key_required || (rule->scope && !(a->scopes & rule->scope)))) {
    refuse(a, 401, "Unauthorized",
           "this operation needs an API key (X-API-Key or Authorization: Bearer)", "no_key");
    a->www_auth = "Bearer realm=\"voter\"";
    return;
  }
  if (key && (!gw_rule_allows_tier(rule, tier) || (rule->scope && !(a->scopes & rule->scope)))) {
    refuse(a, 403, "Forbidden", "your API key's tier may not do this", "tier");
    return;
  }
  const gw_limit *limit = gw_tier_limit(tier, rule->limit);
  if (limit && !limit->unlimited) {
    a->limit = limit;
    if (key) snprintf(a->identity, sizeof a->identity, "key:%s", key);
    else ip_identity(a->client_ip, a->identity, sizeof a->identity);
  }
  if (a->body == GW_BODY_LENGTH && a->content_length > a->route->max_body) {
    refuse(a, 413, "Payload Too Large", "the body is larger than this route allows",
           "body_too_large");
    return;
  }
  /* the host clients use: theirs only when it is one of the configured public hosts */
  bool trusted = gw_cidr_match(c->trusted, c->ntrusted, h->peer_ip);
  const char *asked = trusted && a->xfh ? a->xfh : a->host;
  for (int i = 0; i < c->npublic_hosts && asked; i++)
    if (strcasecmp(c->public_hosts[i], asked) == 0) a->public_host = c->public_hosts[i];
  if (!a->public_host && c->npublic_hosts) a->public_host = c->public_hosts[0];
  a->kind = GW_ADMIT_FORWARD;
}

void gw_admission_clear(gw_admission *a) {
  free(a->xff);
  a->xff = NULL;
}

/* ------------------------------------------------------------------ the upstream head */

void gw_admit_head(const gw_conf *c, const gw_head *h, const gw_admission *a,
                   const gw_forward *f, gw_bytes *out) {
  put(out, h->method);
  gw_bytes_append(out, " ", 1);
  gw_bytes_append(out, a->upath, a->upathlen);
  put(out, a->query);
  gw_bytes_append(out, " HTTP/1.1\r\n", 11);
  const char *host = a->public_host ? a->public_host : f->listen_host;
  put_field(out, "Host", host);
  for (int i = 0; i < h->nfields; i++) {
    const gw_field *fd = &h->fields[i];
    if (gw_admit_hop_by_hop(fd->name, fd->nlen) || gw_admit_listed_in(a->connection, fd->name, fd->nlen) ||
        gw_admit_own_field(fd->name, fd->nlen))
      continue;
    if (a->bearer && is(fd, "Authorization")) continue; /* the key stays here */
    gw_bytes_append(out, fd->name, fd->nlen);
    gw_bytes_append(out, ": ", 2);
    gw_bytes_append(out, fd->value, fd->vlen);
    gw_bytes_append(out, "\r\n", 2);
  }
  put_field(out, "X-Request-ID", f->request_id);
  /* Who is calling, with what scopes: the key stays at the gateway, upstreams get its
   * SHA-256 (what a client sends under these names was dropped above). */
  const char *consumer = a->key ? a->key->id : "";
  char scopes[32];
  gw_scopes_text(a->scopes, scopes);
  if (a->key) put_field(out, "X-Consumer-ID", consumer);
  put_field(out, "X-Consumer-Scopes", scopes);
  if (c->proof) {
    char proof[PROOF_TEXT_MAX];
    if (proof_signer_sign(c->proof, h->method, a->upath, consumer, scopes, f->now_s, proof) == 0)
      put_field(out, "X-Gateway-Proof", proof);
  }
  put(out, "X-Forwarded-For: ");
  if (a->xff) {
    put(out, a->xff);
    gw_bytes_append(out, ", ", 2);
  }
  put(out, h->peer_ip);
  gw_bytes_append(out, "\r\n", 2);
  bool trusted = gw_cidr_match(c->trusted, c->ntrusted, h->peer_ip);
  const char *proto = trusted && a->xfp && (strcmp(a->xfp, "https") == 0 || strcmp(a->xfp, "http") == 0)
                          ? a->xfp : "http";
  put_field(out, "X-Forwarded-Proto", proto);
  put_field(out, "X-Forwarded-Host", host);
  if (a->body == GW_BODY_CHUNKED) {
    put_field(out, "Transfer-Encoding", "chunked");
  } else if (a->body == GW_BODY_LENGTH) {
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)a->content_length);
    put_field(out, "Content-Length", num);
  } else if (a->mbit & (GW_M_POST | GW_M_PUT | GW_M_PATCH)) {
    put_field(out, "Content-Length", "0");
  }
  gw_bytes_append(out, "\r\n", 2);
}
