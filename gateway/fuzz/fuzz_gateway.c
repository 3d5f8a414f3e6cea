/* fuzz_gateway — libFuzzer target over everything the gateway parses itself.
 *
 * The first byte picks the parser, the rest is its input:
 *   0  the JSON configuration (gw_conf_parse), then route matching on a few paths
 *   1  X-Forwarded-For with a trusted peer (gw_client_ip) and CIDR strings
 *   2  request paths against a fixed route table (gw_route_match + gw_route_rewrite)
 *   3  rate-limit policies, durations and sizes (gw_limit_parse, gw_duration_parse,
 *      gw_size_parse), then a token bucket take and the RateLimit fields
 * Built only with -DVOTER_FUZZ=ON and clang; CTest runs it for 30 s on fuzz/corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "netaddr.h"
#include "ratelimit.h"

static gw_conf *table;

static const char table_json[] =
    "{\"routes\": ["
    "{\"prefix\": \"/voter\", \"upstreams\": [\"127.0.0.1:1\"]},"
    "{\"prefix\": \"/v1\", \"rewrite\": \"\", \"upstreams\": [\"127.0.0.1:1\"]},"
    "{\"prefix\": \"/v1/jobs\", \"rewrite\": \"/jobs\", \"upstreams\": [\"127.0.0.1:1\"]},"
    "{\"prefix\": \"/a/b/c\", \"rewrite\": \"/x\", \"upstreams\": [\"127.0.0.1:1\"]}]}";

static char *cstr(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) abort();
  memcpy(s, data, size);
  s[size] = 0;
  return s;
}

static void match_and_rewrite(const gw_conf *c, const char *path, size_t len) {
  const gw_route *r = gw_route_match(c, path, len);
  if (!r) return;
  /* whole segments only */
  if (r->prefix_len > 1 && !(len == r->prefix_len || path[r->prefix_len] == '/')) abort();
  char out[512];
  int n = gw_route_rewrite(r, path, len, out, sizeof out);
  if (n >= 0 && (size_t)n != strlen(out)) abort();
  gw_rule_for(r, GW_M_POST);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (!table) {
    char err[256];
    table = gw_conf_parse(table_json, sizeof table_json - 1, err, sizeof err);
    if (!table) abort();
  }
  uint8_t which = data[0] % 4;
  data++;
  size--;
  char *s = cstr(data, size);
  char err[512];
  switch (which) {
    case 0: {
      gw_conf *c = gw_conf_parse((const char *)data, size, err, sizeof err);
      if (c) {
        match_and_rewrite(c, "/voter/1", 8);
        match_and_rewrite(c, "/", 1);
        gw_key_find(c, "k");
        gw_cors_origin_allowed(c, "http://x");
        gw_conf_unref(c);
      }
      break;
    }
    case 1: {
      gw_cidr trusted[3];
      int n = 0;
      if (gw_cidr_parse("127.0.0.0/8", &trusted[n]) == 0) n++;
      if (gw_cidr_parse("10.0.0.0/8", &trusted[n]) == 0) n++;
      if (gw_cidr_parse("fd00::/8", &trusted[n]) == 0) n++;
      char ip[GW_IP_MAX];
      gw_client_ip(trusted, n, "127.0.0.1", s, ip);
      if (strlen(ip) >= GW_IP_MAX) abort();
      gw_cidr c;
      gw_cidr_parse(s, &c);
      gw_cidr_match(trusted, n, s);
      break;
    }
    case 2:
      match_and_rewrite(table, s, strlen(s)); /* paths are C strings (libmicrohttpd) */
      break;
    case 3: {
      gw_limit l;
      double secs;
      uint64_t bytes;
      gw_duration_parse(s, &secs);
      gw_size_parse(s, &bytes);
      if (gw_limit_parse(s, &l, err, sizeof err) == 0 && !l.unlimited) {
        l.name = (char *)"fuzz";
        gw_limit_finish(&l);
        gw_rl_result r;
        gw_rl_take(&l, "t", "id", 1.0, &r);
        char policy[160], value[160];
        gw_rl_format(&l, &r, policy, sizeof policy, value, sizeof value);
      }
      break;
    }
  }
  free(s);
  return 0;
}
