/* callback — webhook target policy; see callback.h. */
#include "callback.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include "voter/xalloc.h"

#define NAME_MAX_LEN 253

typedef enum { E_PUBLIC, E_ANY, E_CIDR, E_NAME } entry_kind;

typedef struct entry {
  entry_kind kind;
  int family; /* E_CIDR: AF_INET (4 bytes) or AF_INET6 (16) */
  unsigned char addr[16];
  int prefix;
  int port;   /* 0: any */
  bool wildcard;                 /* E_NAME "*.example.org": subdomains of name */
  char name[NAME_MAX_LEN + 1];   /* E_NAME, lower case, no trailing dot */
} entry;

struct cb_policy {
  bool none;
  int n;
  entry *e;
};

/* An address in canonical form: IPv4-mapped IPv6 becomes IPv4. */
typedef struct address {
  int family;
  unsigned char b[16];
} address;

static bool parse_address(const char *text, address *a) {
  struct in6_addr v6;
  if (inet_pton(AF_INET, text, a->b) == 1) {
    a->family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text, &v6) != 1) return false;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(v6.s6_addr, mapped, 12) == 0) {
    a->family = AF_INET;
    memcpy(a->b, v6.s6_addr + 12, 4);
  } else {
    a->family = AF_INET6;
    memcpy(a->b, v6.s6_addr, 16);
  }
  return true;
}

static bool special_v4(const unsigned char *b) {
  unsigned a = b[0], c = b[1];
  return a == 0 || a == 10 || a == 127 || a >= 224 ||     /* this net, private, loopback,
                                                             multicast, reserved, broadcast */
         (a == 100 && (c & 0xc0) == 64) ||                /* 100.64/10 CGNAT */
         (a == 169 && c == 254) ||                        /* link-local, cloud metadata */
         (a == 172 && (c & 0xf0) == 16) ||                /* 172.16/12 */
         (a == 192 && c == 168) ||                        /* 192.168/16 */
         (a == 192 && c == 0 && (b[2] == 0 || b[2] == 2)) || /* IETF, TEST-NET-1 */
         (a == 192 && c == 88 && b[2] == 99) ||           /* 6to4 relay anycast */
         (a == 198 && (c & 0xfe) == 18) ||                /* 198.18/15 benchmarking */
         (a == 198 && c == 51 && b[2] == 100) ||          /* TEST-NET-2 */
         (a == 203 && c == 0 && b[2] == 113);             /* TEST-NET-3 */
}

static bool special(const address *a) {
  if (a->family == AF_INET) return special_v4(a->b);
  const unsigned char *b = a->b;
  static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (memcmp(b, nat64, 12) == 0) return special_v4(b + 12); /* 64:ff9b::/96 */
  if ((b[0] & 0xe0) != 0x20) return true; /* outside 2000::/3: ::, ::1, ULA, link-local,
                                             multicast, 64:ff9b:1::/48, discard, ... */
  if (b[0] == 0x20 && b[1] == 0x01 && (b[2] & 0xfe) == 0) return true; /* 2001::/23 */
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return true; /* doc */
  if (b[0] == 0x20 && b[1] == 0x02) return true;                         /* 6to4 */
  if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0) return true;   /* 3fff::/20 doc */
  return false;
}

bool cb_address_special(const char *text) {
  address a;
  return !parse_address(text, &a) || special(&a);
}

static bool in_cidr(const entry *e, const address *a) {
  if (e->family != a->family) return false;
  int full = e->prefix / 8, rest = e->prefix % 8;
  if (memcmp(e->addr, a->b, (size_t)full) != 0) return false;
  if (!rest) return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (e->addr[full] & mask) == (a->b[full] & mask);
}

static int parse_port(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  return (*s && !*end && v >= 1 && v <= 65535) ? (int)v : -1;
}

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > NAME_MAX_LEN) return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.') return false;
  return s[0] != '.' && s[0] != '-';
}

/* One entry, trimmed; -1 with err set when malformed. */
static int parse_entry(const char *text, entry *e, char *err, size_t errlen) {
  char buf[NAME_MAX_LEN + 16];
  memset(e, 0, sizeof *e);
  if (strlen(text) >= sizeof buf) goto bad;
  snprintf(buf, sizeof buf, "%s", text);
  if (strcmp(buf, "*") == 0) return e->kind = E_ANY, 0;
  if (strcasecmp(buf, "public") == 0) return e->kind = E_PUBLIC, 0;
  address a;
  char *slash = strchr(buf, '/');
  if (slash) { /* CIDR */
    *slash = 0;
    int prefix = parse_port(slash + 1); /* 1..65535, or -1 */
    if (strcmp(slash + 1, "0") == 0) prefix = 0;
    if (!parse_address(buf, &a) || prefix < 0 || prefix > (a.family == AF_INET ? 32 : 128))
      goto bad;
    e->kind = E_CIDR;
    e->family = a.family;
    memcpy(e->addr, a.b, sizeof a.b);
    e->prefix = prefix;
    return 0;
  }
  char *host = buf, *port = NULL;
  if (buf[0] == '[') { /* [v6] or [v6]:port */
    char *close = strchr(buf, ']');
    if (!close || (close[1] && close[1] != ':')) goto bad;
    *close = 0;
    host = buf + 1;
    if (close[1] == ':') port = close + 2;
  } else if (strchr(buf, ':') == strrchr(buf, ':') && strchr(buf, ':')) { /* one colon */
    port = strchr(buf, ':');
    *port++ = 0;
  }
  if (port && (e->port = parse_port(port)) < 0) goto bad;
  if (parse_address(host, &a)) {
    e->kind = E_CIDR;
    e->family = a.family;
    memcpy(e->addr, a.b, sizeof a.b);
    e->prefix = a.family == AF_INET ? 32 : 128;
    return 0;
  }
  if (buf[0] == '[') goto bad;
  e->kind = E_NAME;
  if (strncmp(host, "*.", 2) == 0) {
    e->wildcard = true;
    host += 2;
  }
  size_t n = strlen(host);
  if (n && host[n - 1] == '.') host[--n] = 0;
  if (!valid_name(host)) goto bad;
  for (size_t i = 0; i < n; i++) e->name[i] = (char)tolower((unsigned char)host[i]);
  e->name[n] = 0;
  return 0;
bad:
  snprintf(err, errlen,
           "JOBS_CALLBACK_ALLOW: cannot read the entry \"%s\" (expected public, *, none, a CIDR, "
           "an address or a host name, optionally with :port)",
           text);
  return -1;
}

cb_policy *cb_policy_new(const char *spec, char *err, size_t errlen) {
  cb_policy *p = xcalloc(1, sizeof *p);
  char *copy = xstrdup(spec ? spec : "");
  size_t cap = 1;
  for (const char *s = copy ? copy : ""; *s; s++) cap += *s == ',';
  if (p) p->e = xcalloc(cap, sizeof *p->e);
  if (!p || !copy || !p->e) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ' || *tok == '\t') tok++;
    size_t n = strlen(tok);
    while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t')) tok[--n] = 0;
    if (!n) continue;
    if (strcasecmp(tok, "none") == 0) {
      p->none = true;
      continue;
    }
    if (parse_entry(tok, &p->e[p->n], err, errlen) != 0) goto fail;
    p->n++;
  }
  if (p->none && p->n) {
    snprintf(err, errlen, "JOBS_CALLBACK_ALLOW: \"none\" cannot be combined with other entries");
    goto fail;
  }
  if (!p->n) p->none = true; /* nothing listed: nothing allowed */
  free(copy);
  return p;
fail:
  free(copy);
  cb_policy_free(p);
  return NULL;
}

void cb_policy_free(cb_policy *p) {
  if (!p) return;
  free(p->e);
  free(p);
}

static bool name_matches(const entry *e, const char *host) {
  if (!e->wildcard) return strcmp(e->name, host) == 0;
  size_t n = strlen(host), m = strlen(e->name);
  return n > m + 1 && host[n - m - 1] == '.' && strcmp(host + n - m, e->name) == 0;
}

static bool address_allowed(const cb_policy *p, const address *a, int port) {
  for (int i = 0; i < p->n; i++) {
    const entry *e = &p->e[i];
    if (e->kind == E_PUBLIC && !special(a)) return true;
    if (e->kind == E_CIDR && (!e->port || e->port == port) && in_cidr(e, a)) return true;
  }
  return false;
}

static int refuse(char *why, size_t cap, const char *text) {
  snprintf(why, cap, "%s", text);
  return -1;
}

/* The CURLOPT_CONNECT_TO entry "::ADDRESS:" (any host, any port → this address, same
 * port): libcurl then connects to the address checked and resolves nothing, however the
 * URL spells its host (a trailing dot, upper case, a numeric form). false if it does not
 * fit (a caller passing no room for it wants no pin). */
static bool write_pin(const address *a, char *pin, size_t cap) {
  if (!cap) return true; /* the caller only asks whether the URL is allowed */
  char text[INET6_ADDRSTRLEN];
  if (!inet_ntop(a->family, a->b, text, sizeof text)) return false;
  int n = snprintf(pin, cap, a->family == AF_INET6 ? "::[%s]:" : "::%s:", text);
  return n > 0 && (size_t)n < cap;
}

int cb_check(const cb_policy *p, const char *url, char *pin, size_t pincap, char *why,
             size_t whycap) {
  if (pincap) pin[0] = 0;
  if (p->none) return refuse(why, whycap, "callbacks are disabled on this service");
  /* libcurl's own parser: the host checked is the host libcurl will connect to */
  CURLU *u = curl_url();
  char *scheme = NULL, *rawhost = NULL, *portstr = NULL, *zone = NULL;
  int rc = -1;
  if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &rawhost, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &portstr, CURLU_DEFAULT_PORT) != CURLUE_OK) {
    refuse(why, whycap, "must be an absolute http or https URL");
    goto out;
  }
  if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
    refuse(why, whycap, "must be an absolute http or https URL");
    goto out;
  }
  if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK && zone) {
    refuse(why, whycap, "must not name an IPv6 zone");
    goto out;
  }
  int port = parse_port(portstr);
  char host[NAME_MAX_LEN + 3];
  size_t n = strlen(rawhost);
  if (n >= sizeof host || port < 0) {
    refuse(why, whycap, "must name a host");
    goto out;
  }
  if (rawhost[0] == '[' && n >= 2 && rawhost[n - 1] == ']') { /* IPv6 literal */
    memcpy(host, rawhost + 1, n - 2);
    host[n - 2] = 0;
  } else {
    for (size_t i = 0; i <= n; i++) host[i] = (char)tolower((unsigned char)rawhost[i]);
    if (n && host[n - 1] == '.') host[n - 1] = 0;
  }
  for (int i = 0; i < p->n; i++) {
    const entry *e = &p->e[i];
    if (e->kind == E_ANY || (e->kind == E_NAME && (!e->port || e->port == port) &&
                             name_matches(e, host))) {
      rc = 0;
      goto out;
    }
  }
  address lit;
  if (parse_address(host, &lit)) { /* a literal: no resolution; pinned all the same */
    if (!address_allowed(p, &lit, port))
      rc = refuse(why, whycap, "the address is not one this service may call "
                               "(JOBS_CALLBACK_ALLOW)");
    else
      rc = write_pin(&lit, pin, pincap) ? 0 : refuse(why, whycap, "internal: pin too long");
    goto out;
  }
  /* One resolution, here (it also reads the numeric forms 127.1, 0x7f.1, 2130706433 the
   * way inet_aton does); libcurl resolves nothing: it connects to the first address. */
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
    refuse(why, whycap, "the host name does not resolve");
    goto out;
  }
  /* Every address must be allowed: a name with one bad address is refused outright. */
  address first = {0};
  bool have_first = false;
  rc = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void *raw = ai->ai_family == AF_INET
                          ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                          : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    address a;
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
        !inet_ntop(ai->ai_family, raw, text, sizeof text) || !parse_address(text, &a) ||
        !address_allowed(p, &a, port)) {
      rc = refuse(why, whycap, "the host resolves to an address this service may not call "
                               "(JOBS_CALLBACK_ALLOW)");
      break;
    }
    if (!have_first) first = a, have_first = true;
  }
  freeaddrinfo(res);
  if (rc == 0 && !write_pin(&first, pin, pincap))
    rc = refuse(why, whycap, "internal: pin too long");
  if (rc != 0 && pincap) pin[0] = 0;
out:
  curl_free(scheme);
  curl_free(rawhost);
  curl_free(portstr);
  curl_free(zone);
  curl_url_cleanup(u);
  return rc;
}
