/* conf — the gateway's route table, keys, tiers and limits, parsed from JSON (prefix gw_conf_).
 *
 * A gw_conf is immutable once loaded and shared by every loop thread; SIGHUP builds a new
 * one and swaps the pointer, and the old one is freed when its last user lets go (a
 * reference count, touched once per loop per reload, never per request). Parsing is pure:
 * it neither resolves host names nor touches the upstream registry, so the fuzzer can feed
 * it anything; gw_conf_load() then attaches instances (upstream.h) and reads the OpenAPI file.
 * The format is documented in gateway/README.md. */
#ifndef GW_CONF_H
#define GW_CONF_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_instance;

/* Methods as bits, so a rule's method set is one mask. */
enum {
  GW_M_GET = 1 << 0,
  GW_M_HEAD = 1 << 1,
  GW_M_POST = 1 << 2,
  GW_M_PUT = 1 << 3,
  GW_M_DELETE = 1 << 4,
  GW_M_PATCH = 1 << 5,
  GW_M_OPTIONS = 1 << 6,
  GW_M_OTHER = 1 << 7,
  GW_M_ANY = 0xff
};
unsigned gw_method_bit(const char *method);
/* Idempotent per RFC 9110 §9.2.2 (GET HEAD OPTIONS PUT DELETE, TRACE). */
bool gw_method_idempotent(const char *method);

/* A token bucket policy: `count` requests per `window_s`, bucket size `burst`. */
typedef struct gw_limit {
  char *name;       /* the policy name used in RateLimit-Policy */
  bool unlimited;
  double count;     /* quota per window */
  double window_s;
  double burst;     /* bucket capacity (defaults to count) */
  /* rendered once by gw_limit_finish, so a request formats no numbers */
  char policy[160]; /* the RateLimit-Policy value: "name";q=N;w=SECONDS */
  char key[192];    /* bucket key prefix: name and numbers */
} gw_limit;

/* Parses "N/WINDOW[;burst=B]" ("1/5m", "20/s", "100/1s;burst=200") or "unlimited".
 * WINDOW is a duration (ms, s, m, h, d; a bare unit means 1). 0 on success. */
int gw_limit_parse(const char *text, gw_limit *out, char *err, size_t errlen);
/* Renders policy and key once name is set (gw_conf_parse does it). */
void gw_limit_finish(gw_limit *l);
/* Parses a duration ("250ms", "5m", "1h", "2s", a bare number is seconds) into seconds. */
int gw_duration_parse(const char *text, double *seconds);
/* Parses a byte size (1048576, "1MB", "10MiB", "512KB"; MB means MiB here). */
int gw_size_parse(const char *text, uint64_t *bytes);

/* Scopes: what a caller may do. A tier holds a set; a rule may name the one it needs. */
enum { GW_SCOPE_READ = 1, GW_SCOPE_VOTE = 2, GW_SCOPE_WRITE = 4, GW_SCOPE_ADMIN = 8 };
/* The bit of a scope name, 0 when unknown. */
unsigned gw_scope_bit(const char *name);
/* The set as sent upstream (X-Consumer-Scopes): space-separated, in the order
 * read vote write admin; "" for none. */
void gw_scopes_text(unsigned scopes, char out[32]);

typedef struct gw_tier {
  char *name;
  unsigned scopes;   /* GW_SCOPE_* */
  gw_limit *limits;
  int nlimits;
} gw_tier;

/* Who may use a route with a given method, and which limit applies. */
typedef struct gw_rule {
  unsigned methods;  /* GW_M_* mask */
  bool key_required; /* false: anonymous allowed (a key, if sent, must still be valid) */
  char **tiers;      /* tiers allowed (NULL: every tier) */
  int ntiers;
  char *limit;       /* limit name looked up in the caller's tier (NULL: none) */
  unsigned scope;    /* GW_SCOPE_* the caller's tier must hold (0: none) */
} gw_rule;

typedef struct gw_route {
  int index;
  char *name;
  char *prefix;       /* no trailing slash, except "/" itself */
  size_t prefix_len;
  char *rewrite;      /* replacement for prefix, NULL: keep the path */
  char **upstreams;   /* "host:port" as written */
  int nupstreams;
  struct gw_instance **instances; /* attached by gw_conf_load (NULL after a pure parse) */
  char *health_path;
  int connect_timeout_ms;
  int read_timeout_ms;
  int retries;        /* extra attempts on other instances */
  uint64_t max_body;
  gw_rule *rules;
  int nrules;
} gw_route;

typedef struct gw_cidr {
  int family; /* AF_INET or AF_INET6 */
  unsigned char addr[16];
  int bits;
} gw_cidr;

typedef struct gw_key {
  char *key;
  const gw_tier *tier;
  char id[65]; /* SHA-256 of the key in hex: the X-Consumer-ID upstreams see */
} gw_key;

typedef struct gw_conf {
  atomic_int refs;
  /* server (listen address and threads are read once at start; reload keeps them) */
  char *host;
  int port;
  int threads;
  int client_timeout_s;
  size_t max_header_bytes;
  int drain_timeout_s;
  bool access_log;
  /* routes, longest prefix first */
  gw_route *routes;
  int nroutes;
  /* keys and tiers */
  gw_tier *tiers;
  int ntiers;
  const gw_tier *anonymous; /* the tier of requests without a key (may be NULL) */
  gw_key *keys;             /* sorted by key for bsearch */
  int nkeys;
  char *keys_file;          /* extra keys {key: tier}, read by gw_conf_load (NULL: none) */
  /* the gateway's proof to upstreams (voter/proof.h); NULL: not sent */
  struct proof_signer *proof;
  /* the host names clients use (X-Forwarded-Host); none: the listen address */
  char **public_hosts;
  int npublic_hosts;
  /* client address */
  gw_cidr *trusted;
  int ntrusted;
  /* CORS */
  char **cors_origins;      /* "*" allows any origin */
  int ncors_origins;
  char *cors_methods;
  char *cors_headers;
  char *cors_expose;
  int cors_max_age_s;
  /* upstream health */
  int health_interval_ms;
  int health_timeout_ms;
  int dns_refresh_ms;       /* host names of upstreams are resolved again this often; 0 = never */
  int eject_failures;
  int eject_base_ms;
  int eject_max_ms;
  int keepalive_idle_ms;
  int pool_max_idle;
  size_t buffer_bytes;      /* per-request streaming buffer, each direction */
  int idle_poll_us;         /* after answering, poll for the client's next request this long before sleeping */
  int fast_wait_us;         /* fast path: how long a loop may wait for a quick upstream answer */
  bool io_uring;            /* batch upstream sends with io_uring when the kernel allows it */
  bool batch_always;        /* batch even when requests come one at a time ("auto": only when busy) */
  /* documents */
  char *openapi_path;
  char *openapi;            /* the file's content, NULL when absent */
  size_t openapi_len;
} gw_conf;

/* Parses a configuration text. On error returns NULL and writes a message naming the
 * offending field into err. */
gw_conf *gw_conf_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads the file, parses it, applies overrides from the environment (HTTP_HOST, HTTP_PORT,
 * HTTP_THREADS, GATEWAY_OPENAPI), reads the keys file and the OpenAPI file, takes the proof
 * secret from GATEWAY_PROOF_SECRET (refused when set but shorter than PROOF_MIN_SECRET) and
 * attaches instances. */
gw_conf *gw_conf_load(const char *path, char *err, size_t errlen);

void gw_conf_ref(gw_conf *c);
void gw_conf_unref(gw_conf *c);

/* The route serving path (raw, no query), or NULL. Whole segments only: "/voter" matches
 * "/voter" and "/voter/…", never "/voterX". */
const gw_route *gw_route_match(const gw_conf *c, const char *path, size_t len);

/* Writes the upstream path for a matched request path (prefix rewritten) into out.
 * Returns its length, or -1 when it does not fit. */
int gw_route_rewrite(const gw_route *r, const char *path, size_t len, char *out, size_t outlen);

/* The first rule of the route that covers method, or NULL. */
/* The Allow value of a 405 from r: the methods its rules name ("GET, POST"), in a fixed order. */
void gw_route_allow(const gw_route *r, char out[64]);
const gw_rule *gw_rule_for(const gw_route *r, unsigned method_bit);
bool gw_rule_allows_tier(const gw_rule *rule, const gw_tier *tier);
const gw_limit *gw_tier_limit(const gw_tier *t, const char *name);
const gw_key *gw_key_find(const gw_conf *c, const char *key);

bool gw_cors_origin_allowed(const gw_conf *c, const char *origin);
/* Adds the keys of a JSON object {key: tier} (the keys file's format); 0 or -1 with err. */
int gw_conf_add_keys(gw_conf *c, const char *json, size_t len, const char *where, char *err,
                     size_t errlen);

#endif
