/* netaddr — client addresses; see netaddr.h. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_ip_text(const struct sockaddr *sa, char *out) {
  out[0] = 0;
  if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, GW_IP_MAX);
    return;
  }
  if (sa->sa_family != AF_INET) return;
  const unsigned char *b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
  char *o = out;
  for (int i = 0; i < 4; i++) {
    unsigned v = b[i];
    if (v >= 100) *o++ = (char)('0' + v / 100);
    if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
    *o++ = (char)('0' + v % 10);
    *o++ = i < 3 ? '.' : 0;
  }
}

static int parse_ip(const char *text, size_t len, int *family, unsigned char addr[16]) {
  char buf[GW_IP_MAX];
  if (len == 0 || len >= sizeof buf) return -1;
  memcpy(buf, text, len);
  buf[len] = 0;
  memset(addr, 0, 16);
  if (inet_pton(AF_INET, buf, addr) == 1) {
    *family = AF_INET;
    return 0;
  }
  if (inet_pton(AF_INET6, buf, addr) == 1) {
    *family = AF_INET6;
    return 0;
  }
  return -1;
}

int gw_cidr_parse(const char *text, gw_cidr *out) {
  const char *slash = strchr(text, '/');
  size_t len = slash ? (size_t)(slash - text) : strlen(text);
  if (parse_ip(text, len, &out->family, out->addr) != 0) return -1;
  int max = out->family == AF_INET ? 32 : 128;
  out->bits = max;
  if (slash) {
    char *end;
    long bits = strtol(slash + 1, &end, 10);
    if (end == slash + 1 || *end || bits < 0 || bits > max) return -1;
    out->bits = (int)bits;
  }
  return 0;
}

static bool cidr_contains(const gw_cidr *c, int family, const unsigned char addr[16]) {
  if (c->family != family) return false;
  int full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(c->addr, addr, (size_t)full) != 0) return false;
  if (rest == 0) return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (c->addr[full] & mask) == (addr[full] & mask);
}

static bool match_parsed(const gw_cidr *list, int n, int family, const unsigned char addr[16]) {
  for (int i = 0; i < n; i++)
    if (cidr_contains(&list[i], family, addr)) return true;
  /* An IPv4-mapped IPv6 peer (::ffff:a.b.c.d) is the IPv4 address for our purposes. */
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == AF_INET6 && memcmp(addr, mapped, 12) == 0) {
    unsigned char v4[16] = {0};
    memcpy(v4, addr + 12, 4);
    return match_parsed(list, n, AF_INET, v4);
  }
  return false;
}

bool gw_cidr_match(const gw_cidr *list, int n, const char *ip) {
  int family;
  unsigned char addr[16];
  if (!ip || parse_ip(ip, strlen(ip), &family, addr) != 0) return false;
  return match_parsed(list, n, family, addr);
}

static void copy_ip(char *out, const char *s, size_t len) {
  if (len >= GW_IP_MAX) len = GW_IP_MAX - 1;
  memcpy(out, s, len);
  out[len] = 0;
}

void gw_client_ip(const gw_cidr *trusted, int ntrusted, const char *peer, const char *xff,
                  char *out) {
  copy_ip(out, peer ? peer : "", peer ? strlen(peer) : 0);
  if (!xff || !*xff || !gw_cidr_match(trusted, ntrusted, peer)) return;
  /* Walk entries from the right: each trusted hop vouches for the entry to its left. */
  size_t end = strlen(xff);
  for (;;) {
    while (end > 0 && (xff[end - 1] == ' ' || xff[end - 1] == '\t')) end--;
    size_t start = end;
    while (start > 0 && xff[start - 1] != ',') start--;
    size_t s = start;
    while (s < end && (xff[s] == ' ' || xff[s] == '\t')) s++;
    int family;
    unsigned char addr[16];
    if (s == end || parse_ip(xff + s, end - s, &family, addr) != 0) return; /* garbage: stop */
    copy_ip(out, xff + s, end - s);
    if (!match_parsed(trusted, ntrusted, family, addr)) return; /* first untrusted hop */
    if (start == 0) return;                                      /* all trusted: left-most */
    end = start - 1;
  }
}
