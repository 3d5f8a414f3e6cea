/* Unit tests for admit: the gateway's admission verdicts and the upstream head, without
 * sockets (a request head as libmicrohttpd would hand it over, a parsed configuration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admit.h"
#include "mhd_sim.h"
#include "rawcheck.h"
#include "voter/proof.h"

static const char conf_json[] =
    "{\"max_header_bytes\": 4096,"
    " \"trusted_proxies\": [\"10.0.0.0/8\"],"
    " \"public_hosts\": [\"api.example.org\", \"voter.example.org\"],"
    " \"tiers\": {\"anonymous\": {\"scopes\": [\"read\", \"vote\"], \"read\": \"10/1s\", \"write\": \"5/1s\"},"
    "            \"free\": {\"scopes\": [\"read\", \"vote\"], \"read\": \"100/1s\", \"submit\": \"1/5m\"},"
    "            \"paid\": {\"scopes\": [\"read\", \"vote\", \"write\"], \"write\": \"unlimited\"},"
    "            \"admin\": {\"scopes\": [\"read\", \"vote\", \"write\", \"admin\"]}},"
    " \"keys\": {\"k-free\": \"free\", \"k-paid\": \"paid\", \"k-admin\": \"admin\"},"
    " \"routes\": ["
    "  {\"name\": \"election\", \"prefix\": \"/election\", \"upstreams\": [\"127.0.0.1:1\"], \"rules\": ["
    "    {\"methods\": [\"GET\", \"HEAD\"], \"scope\": \"read\", \"limit\": \"read\"},"
    "    {\"methods\": [\"*\"], \"scope\": \"write\", \"limit\": \"write\"}]},"
    "  {\"name\": \"election-admin\", \"prefix\": \"/election/drop\", \"upstreams\": [\"127.0.0.1:1\"],"
    "   \"rules\": [{\"methods\": [\"*\"], \"scope\": \"admin\"}]},"
    "  {\"name\": \"voter-votes\", \"prefix\": \"/voter/votes\", \"upstreams\": [\"127.0.0.1:1\"],"
    "   \"max_body\": 100, \"rules\": [{\"methods\": [\"POST\"], \"scope\": \"vote\", \"limit\": \"write\"}]},"
    "  {\"name\": \"jobs\", \"prefix\": \"/jobs\", \"upstreams\": [\"127.0.0.1:1\"], \"rules\": ["
    "    {\"methods\": [\"POST\"], \"auth\": \"key\", \"tiers\": [\"free\", \"admin\"], \"limit\": \"submit\"}]},"
    "  {\"name\": \"v1-election\", \"prefix\": \"/v1/election\", \"rewrite\": \"/election\","
    "   \"upstreams\": [\"127.0.0.1:2\"]}]}";

static gw_conf *conf;
static gw_admission adm;

static int setup(void **state) {
  (void)state;
  char err[256];
  conf = gw_conf_parse(conf_json, sizeof conf_json - 1, err, sizeof err);
  if (!conf) fprintf(stderr, "%s\n", err);
  conf->proof = proof_signer_new("0123456789abcdef-unit-test", 26);
  return conf ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  gw_conf_unref(conf);
  return 0;
}

/* fields: "Name", "value", ... NULL */
static const gw_admission *admit_fields(const char *method, const char *target, const char *peer,
                                        const char *const *kv) {
  static gw_field fields[32];
  int n = 0;
  for (int i = 0; kv && kv[i]; i += 2, n++)
    fields[n] = (gw_field){kv[i], strlen(kv[i]), kv[i + 1], strlen(kv[i + 1])};
  gw_head h = {.method = method, .target = target, .version = "HTTP/1.1", .fields = fields,
               .nfields = n, .peer_ip = peer};
  gw_admission_clear(&adm);
  gw_admit(conf, &h, &adm);
  return &adm;
}

#define F(...) ((const char *const[]){"Host", "gw", __VA_ARGS__, NULL})
#define NOF ((const char *const[]){"Host", "gw", NULL})

static void expect_refused(const gw_admission *a, int status) {
  assert_int_equal(a->kind, GW_ADMIT_REFUSE);
  assert_int_equal(a->status, status);
}

static void ambiguous_framing_is_400_and_closes(void **state) {
  (void)state;
  const char *const *cases[] = {
      F("Content-Length", "5", "Content-Length", "5"),
      F("Content-Length", "5", "content-length", "3"),
      F("Content-Length", "+5"),
      F("Content-Length", "5 5"),
      F("Content-Length", ""),
      F("Content-Length", "1234567890123456789"),
      F("Transfer-Encoding", "identity", "Content-Length", "5"),
      F("Transfer-Encoding", "chunked", "Content-Length", "5"),
      F("Transfer-Encoding", "identity"),
      F("Transfer-Encoding", "gzip, chunked"),
      F("Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked"),
      F("Content-Length ", "5"),
      F("X\tA", "1"),
      F("", "1"),
      F("X-A", "1\rX-B: 2"),
      F("X-A", "a\nb"),
      F("X-A", "a\x01"),
      F("Host", "second"),
      F("Transfer-Encodingchunked", "chunked"),
      F("content-length-x", "5"),
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const gw_admission *a = admit_fields("POST", "/voter/votes", "127.0.0.1", cases[i]);
    expect_refused(a, 400);
    assert_true(a->close);
  }
  /* no Host in HTTP/1.1 */
  expect_refused(admit_fields("GET", "/election/x", "127.0.0.1", NULL), 400);
  const char *targets[] = {"/a b", "/a\tb", "/a\rb", "/a#b", "http://x/election", "*", "/\xc3\xa9"};
  for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
    const gw_admission *a = admit_fields("GET", targets[i], "127.0.0.1", NOF);
    expect_refused(a, 400);
    assert_true(a->close);
  }
  expect_refused(admit_fields("G\x01T", "/election/x", "127.0.0.1", NOF), 400);
  /* what libmicrohttpd hides (bare LF, NUL, obs-fold), as the caller reports it */
  gw_field host = {"Host", 4, "gw", 2};
  gw_head h = {.method = "GET", .target = "/election/x", .version = "HTTP/1.1", .fields = &host,
               .nfields = 1, .peer_ip = "127.0.0.1", .bad_lines = true};
  gw_admission_clear(&adm);
  gw_admit(conf, &h, &adm);
  expect_refused(&adm, 400);
  assert_true(adm.close);
}

static void framing_accepted_once(void **state) {
  (void)state;
  const gw_admission *a = admit_fields("POST", "/voter/votes", "127.0.0.1", F("Content-Length", "12"));
  assert_int_equal(a->kind, GW_ADMIT_FORWARD);
  assert_int_equal(a->body, GW_BODY_LENGTH);
  assert_int_equal(a->content_length, 12);
  a = admit_fields("POST", "/voter/votes", "127.0.0.1", F("Transfer-Encoding", "Chunked"));
  assert_int_equal(a->body, GW_BODY_CHUNKED);
  a = admit_fields("POST", "/voter/votes", "127.0.0.1", F("Content-Length", "101"));
  expect_refused(a, 413);
  assert_false(a->close);
}

static void unknown_methods_are_501(void **state) {
  (void)state;
  const char *m[] = {"TRACE", "CONNECT", "BREW", "get"};
  for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
    const gw_admission *a = admit_fields(m[i], "/election/x", "127.0.0.1", NOF);
    expect_refused(a, 501);
    assert_string_equal(a->reason, "method");
  }
}

static void every_spelling_routes_to_the_canonical_path(void **state) {
  (void)state;
  const char *spellings[] = {"/election/drop/elections", "/election//drop/elections",
                             "/election/%64rop/elections", "/%65lection/drop/elections/",
                             "/v1/election/drop/elections", "/v1//election/%64rop/elections"};
  for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++) {
    const gw_admission *a = admit_fields("POST", spellings[i], "127.0.0.1", NOF);
    expect_refused(a, 401); /* anonymous: the admin rule, whatever the spelling */
    assert_string_equal(a->route->name, "election-admin");
    a = admit_fields("POST", spellings[i], "127.0.0.1", F("X-API-Key", "k-admin"));
    assert_int_equal(a->kind, GW_ADMIT_FORWARD);
    assert_string_equal(a->upath, "/election/drop/elections");
  }
  const char *refused[] = {"/election/./drop", "/election/../drop", "/election/%2e%2e/drop",
                           "/election%2Fdrop/elections", "/election/x%00"};
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    expect_refused(admit_fields("POST", refused[i], "127.0.0.1", NOF), 400);
  expect_refused(admit_fields("POST", "/Election/drop", "127.0.0.1", NOF), 404);
}

static void scopes_decide_401_403_or_forward(void **state) {
  (void)state;
  const gw_admission *a = admit_fields("POST", "/election/elections", "127.0.0.1", NOF);
  expect_refused(a, 401);
  assert_non_null(a->www_auth);
  expect_refused(admit_fields("POST", "/election/elections", "127.0.0.1", F("X-API-Key", "k-free")), 403);
  a = admit_fields("POST", "/election/elections", "127.0.0.1", F("Authorization", "Bearer k-paid"));
  assert_int_equal(a->kind, GW_ADMIT_FORWARD);
  assert_int_equal(a->scopes, GW_SCOPE_READ | GW_SCOPE_VOTE | GW_SCOPE_WRITE);
  assert_true(a->bearer);
  a = admit_fields("POST", "/voter/votes", "127.0.0.1", NOF); /* anonymous may vote */
  assert_int_equal(a->kind, GW_ADMIT_FORWARD);
  assert_string_equal(a->identity, "ip:127.0.0.1");
  /* auth: key with tiers still works */
  expect_refused(admit_fields("POST", "/jobs", "127.0.0.1", NOF), 401);
  expect_refused(admit_fields("POST", "/jobs", "127.0.0.1", F("X-API-Key", "k-paid")), 403);
  a = admit_fields("POST", "/jobs", "127.0.0.1", F("X-API-Key", "k-free"));
  assert_int_equal(a->kind, GW_ADMIT_FORWARD);
  assert_string_equal(a->identity, "key:k-free");
  expect_refused(admit_fields("GET", "/election/x", "127.0.0.1", F("X-API-Key", "a", "X-API-Key", "b")), 400);
}

static void unknown_keys_spend_the_anonymous_bucket_ipv6_by_64(void **state) {
  (void)state;
  const gw_admission *a = admit_fields("GET", "/election/x", "127.0.0.1", F("X-API-Key", "guess"));
  expect_refused(a, 401);
  assert_non_null(a->limit);
  assert_string_equal(a->limit->name, "read");
  assert_string_equal(a->identity, "ip:127.0.0.1");
  a = admit_fields("GET", "/election/x", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", NOF);
  assert_string_equal(a->identity, "ip:2001:db8:1:2::/64");
  /* behind a trusted proxy: the client from X-Forwarded-For, joined over fields */
  a = admit_fields("GET", "/election/x", "10.1.1.1",
                   F("X-Forwarded-For", "203.0.113.5", "X-Forwarded-For", "2001:db8:9:9::1"));
  assert_string_equal(a->client_ip, "2001:db8:9:9::1");
  assert_string_equal(a->identity, "ip:2001:db8:9:9::/64");
  assert_string_equal(a->xff, "203.0.113.5, 2001:db8:9:9::1");
}

static void public_host_only_from_the_list(void **state) {
  (void)state;
  const char *const h1[] = {"Host", "voter.example.org", NULL};
  const gw_admission *a = admit_fields("GET", "/election/x", "127.0.0.1", h1);
  assert_string_equal(a->public_host, "voter.example.org");
  const char *const h2[] = {"Host", "evil.example", NULL};
  a = admit_fields("GET", "/election/x", "127.0.0.1", h2);
  assert_string_equal(a->public_host, "api.example.org");
  const char *const h3[] = {"Host", "x", "X-Forwarded-Host", "voter.example.org", NULL};
  a = admit_fields("GET", "/election/x", "127.0.0.1", h3); /* untrusted peer: XFH ignored */
  assert_string_equal(a->public_host, "api.example.org");
  a = admit_fields("GET", "/election/x", "10.0.0.1", h3); /* trusted, and listed */
  assert_string_equal(a->public_host, "voter.example.org");
}

static void upstream_head_has_one_framing_field_and_the_proof(void **state) {
  (void)state;
  const char *const kv[] = {"Host", "gw", "X-API-Key", "k-admin", "Content-Length", "3",
                            "X-Consumer-ID", "forged", "x-consumer-scopes", "admin",
                            "X-Gateway-Proof", "t=1,sig=0", "Forwarded", "for=1.2.3.4",
                            "Connection", "X-Hop", "X-Hop", "1", "X-Keep", "yes", NULL};
  gw_field fields[16];
  int n = 0;
  for (int i = 0; kv[i]; i += 2, n++) fields[n] = (gw_field){kv[i], strlen(kv[i]), kv[i + 1], strlen(kv[i + 1])};
  gw_head h = {.method = "POST", .target = "/v1//election/%64rop/elections?x=1", .version = "HTTP/1.1",
               .fields = fields, .nfields = n, .peer_ip = "127.0.0.1"};
  gw_admission a;
  gw_admit(conf, &h, &a);
  assert_int_equal(a.kind, GW_ADMIT_FORWARD);
  gw_bytes out = {0};
  gw_forward f = {.request_id = "rid-1", .listen_host = "127.0.0.1:8080", .now_s = 1800000000};
  gw_admit_head(conf, &h, &a, &f, &out);
  assert_true(strncmp(out.data, "POST /election/drop/elections?x=1 HTTP/1.1\r\n", 44) == 0);
  assert_non_null(strstr(out.data, "\r\nContent-Length: 3\r\n"));
  assert_null(strstr(out.data, "forged"));
  assert_null(strstr(out.data, "t=1,sig=0"));
  assert_null(strstr(out.data, "for=1.2.3.4"));
  assert_null(strstr(out.data, "X-Hop"));
  assert_null(strstr(out.data, "k-admin"));
  assert_non_null(strstr(out.data, "\r\nX-Keep: yes\r\n"));
  assert_non_null(strstr(out.data, "\r\nX-Consumer-Scopes: read vote write admin\r\n"));
  assert_non_null(strstr(out.data, "\r\nHost: api.example.org\r\n"));
  const char *p = strstr(out.data, "X-Gateway-Proof: ");
  assert_non_null(p);
  char proof[PROOF_TEXT_MAX];
  size_t pl = strcspn(p + 17, "\r");
  memcpy(proof, p + 17, pl);
  proof[pl] = 0;
  const char *id = a.key->id;
  assert_int_equal(proof_verify("0123456789abcdef-unit-test", 26, proof, "POST",
                                "/election/drop/elections", id, "read vote write admin", 1800000010),
                   PROOF_OK);
  /* exactly one framing field */
  int framing = 0;
  for (const char *s = out.data; (s = strstr(s, "\r\n")) != NULL; s += 2)
    if (strncasecmp(s + 2, "Content-Length:", 15) == 0 || strncasecmp(s + 2, "Transfer-Encoding:", 18) == 0)
      framing++;
  assert_int_equal(framing, 1);
  assert_true(out.len >= 4 && memcmp(out.data + out.len - 4, "\r\n\r\n", 4) == 0);
  free(out.data);
  gw_admission_clear(&a);
}

/* gw_admit_mhd_layout_ok on buffers laid out as libmicrohttpd leaves them (mhd_sim.h). */
static bool layout_ok(const char *raw, size_t len) {
  static mhd_sim m;
  if (!mhd_sim_parse(&m, raw, len)) return false; /* libmicrohttpd answers 400 itself */
  return mhd_sim_layout_ok(&m);
}
#define LAYOUT_OK(s) layout_ok(s, sizeof s - 1)

/* true when the raw head gets past libmicrohttpd and the framing rules: no 400 + close */
static bool framing_passes(const char *raw, size_t len) {
  static mhd_sim m;
  if (!mhd_sim_parse(&m, raw, len)) return false;
  gw_head h = {.method = m.method, .target = m.url, .version = m.version, .fields = m.fields,
               .nfields = m.nfields, .peer_ip = "127.0.0.1", .bad_lines = !mhd_sim_layout_ok(&m),
               .raw_error = gw_rawcheck_bytes(raw, len)};
  gw_admission_clear(&adm);
  gw_admit(conf, &h, &adm);
  return !(adm.kind == GW_ADMIT_REFUSE && adm.close);
}
#define FRAMING_PASSES(s) framing_passes(s, sizeof s - 1)

static void crlf_heads_lay_out_exactly(void **state) {
  (void)state;
  assert_true(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(LAYOUT_OK("GET /a?x=1&y HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"));
  assert_true(LAYOUT_OK("GET /a HTTP/1.0\r\n\r\n"));
  assert_true(LAYOUT_OK("POST /a HTTP/1.1\r\nHost: h\r\nX:\r\nY:   \r\nZ:\t\r\nW: w \r\n\r\nbody"));
  assert_true(LAYOUT_OK("POST /a HTTP/1.1\r\nHost:h\r\nContent-Length: 5\r\n\r\n\0\0\0\0\0"));
}

static void bare_lf_cr_nul_and_spaces_are_seen(void **state) {
  (void)state;
  /* a bare LF ending the last field or as the blank line: the two the old check missed */
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\n\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\n\n"));
  assert_false(LAYOUT_OK("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\n\r\n\0\0"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.0\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.0\n\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\nHost: h\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n"));
  /* a NUL right before CRLF, of the last, a middle and the first field */
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\0\r\nX: 1\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\r\nY: 2\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\nX: \0\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\n\0\r\n"));
  /* a NUL in the target, the method; extra spaces in the request line */
  assert_false(LAYOUT_OK("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a?q\0 HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_false(LAYOUT_OK("GE\0T /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_false(LAYOUT_OK("GET  /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  /* (a space before the version stays in the target: refused as a target character) */
  assert_false(FRAMING_PASSES("GET /a  HTTP/1.1\r\nHost: h\r\n\r\n"));
  assert_true(FRAMING_PASSES("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  /* a bare CR ends a line for libmicrohttpd; obs-fold */
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\n\r\r\n"));
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\r\n folded\r\n\r\n"));
  /* the one it cannot: a NUL right before a bare LF reads as CRLF; the raw bytes show it
   * (rawcheck.h), and so the framing rules refuse it */
  assert_true(LAYOUT_OK("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\n\r\n"));
  assert_false(FRAMING_PASSES("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\n\r\n"));
  assert_false(FRAMING_PASSES("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\0\rY: 2\r\n\r\n"));
  assert_false(FRAMING_PASSES("OPTIONS /a HTTP/1.0\r\0\r\nX: 5\r\n\r\n"));
  /* in the request line libmicrohttpd refuses it itself */
  assert_false(LAYOUT_OK("GET /a HTTP/1.1\0\nHost: h\r\n\r\n"));
}

/* Every head made from a clean one by inserting, replacing or deleting a CR, LF, NUL, SP
 * or HTAB at every position: one that is no longer clean (CRLF only, no NUL, single spaces
 * in the request line, no fold) never passes the framing rules, and libmicrohttpd's layout
 * of a clean one always passes the layout check. */
static void any_single_edit_is_seen(void **state) {
  (void)state;
  static const char base[] = "POST /v?a=1 HTTP/1.1\r\nHost: h\r\nX-A:  1\r\nContent-Length: 2\r\n\r\nok";
  const char edits[] = {'\r', '\n', '\0', ' ', '\t'};
  size_t n = sizeof base - 1;
  int checked = 0;
  for (size_t at = 0; at <= n; at++)
    for (size_t e = 0; e < sizeof edits; e++)
      for (int op = 0; op < 3; op++) {
        char raw[256];
        size_t len = 0;
        if (op == 2 && (at == n || e > 0)) continue; /* deletion: once per position */
        memcpy(raw, base, at);
        len = at;
        if (op < 2) raw[len++] = edits[e];
        size_t from = op == 0 ? at : at + 1;
        if (from <= n) {
          memcpy(raw + len, base + from, n - from);
          len += n - from;
        }
        static mhd_sim m;
        if (!mhd_sim_parse(&m, raw, len)) continue;
        bool clean = mhd_sim_clean(raw, len);
        if (clean && !mhd_sim_layout_ok(&m))
          fail_msg("edit %d of %d at %zu: clean, but the layout check fails", op, edits[e], at);
        if (!clean && framing_passes(raw, len))
          fail_msg("edit %d of %d at %zu: not clean, but admitted", op, edits[e], at);
        checked++;
      }
  assert_true(checked > 200);
}

static void local_paths_and_limits(void **state) {
  (void)state;
  assert_int_equal(admit_fields("GET", "/gateway//health", "127.0.0.1", NOF)->kind, GW_ADMIT_LOCAL);
  assert_int_equal(admit_fields("GET", "/", "127.0.0.1", NOF)->kind, GW_ADMIT_LOCAL);
  static char big[5000];
  memset(big, 'a', sizeof big - 1);
  expect_refused(admit_fields("GET", "/election/x", "127.0.0.1", F("X-Big", big)), 431);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ambiguous_framing_is_400_and_closes),
      cmocka_unit_test(framing_accepted_once),
      cmocka_unit_test(unknown_methods_are_501),
      cmocka_unit_test(every_spelling_routes_to_the_canonical_path),
      cmocka_unit_test(scopes_decide_401_403_or_forward),
      cmocka_unit_test(unknown_keys_spend_the_anonymous_bucket_ipv6_by_64),
      cmocka_unit_test(public_host_only_from_the_list),
      cmocka_unit_test(upstream_head_has_one_framing_field_and_the_proof),
      cmocka_unit_test(local_paths_and_limits),
      cmocka_unit_test(crlf_heads_lay_out_exactly),
      cmocka_unit_test(bare_lf_cr_nul_and_spaces_are_seen),
      cmocka_unit_test(any_single_edit_is_seen),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  gw_admission_clear(&adm);
  return rc;
}
