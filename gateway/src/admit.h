/* admit — the gateway's admission decision, pure: a request head and a configuration in,
 * a verdict out (prefix gw_admit). No sockets, no clocks, no shared state: the unit tests
 * (gateway/tests/test_admit.c) and the fuzzer (gateway/fuzz/fuzz_admit.c) call it directly.
 *
 * In order, a request is refused (and what status it gets) when:
 *   framing   (400, connection closed) the method is not a token; the target is not
 *             origin-form or holds a byte outside 0x21-0x7E or a '#'; a field name is not a
 *             token (whitespace before the colon keeps it in the name: "Content-Length ");
 *             a field value holds a control character (bare CR, NUL, ...); a field name
 *             that extends a framing one ("Transfer-Encodingx", which http_parser 2.9
 *             takes for Transfer-Encoding: found by fuzz_admit's oracle); more than one
 *             Content-Length (even equal), one that is not 1-18 plain digits; more than one
 *             Transfer-Encoding field, one that is not exactly "chunked", or one with
 *             Content-Length or in HTTP/1.0; HTTP/1.1 without exactly one Host; a line
 *             ended by a bare LF or CR (the last field and the blank line too), a NUL
 *             anywhere in the head, more than one space between the parts of the request
 *             line, obs-fold (h->bad_lines); anything http_parser refused in the raw bytes
             of the connection (h->raw_error, rawcheck.h): a request that would otherwise
             be forwarded or answered locally gets 400, a refused one keeps its status,
             and either way the connection is closed
 *   method    (501) a method other than GET HEAD POST PUT DELETE PATCH OPTIONS
 *   size      (431) request line and fields above max_header_bytes
 *   path      (400) the path has no normal form (voter/path.h, with encoded slashes refused)
 *   then the gateway's own paths and CORS preflights are answered locally, and
 *   route     (404) no route; a rewrite route is an alias: the rewritten path is routed again
 *             and the rules, limits and upstreams of the route it lands on apply, so a /v1
 *             spelling never has weaker rules than the canonical one
 *   rule      (405) no rule for the method
 *   caller    (401) unknown key (rate-limited like anonymous traffic: the verdict carries the
 *             anonymous bucket), or no key where the rule needs one or the anonymous scopes
 *             lack the rule's scope; (403) a valid key whose tier or scopes do not allow it
 *   body      (413) Content-Length above the route's max_body.
 * Otherwise the verdict is to forward: route, normalised upstream path, caller, scopes, the
 * rate limit to take and the body framing; gw_admit_head() then writes the upstream head. */
#ifndef GW_ADMIT_H
#define GW_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

#define GW_MAX_FIELDS 128
#define GW_PATH_MAX 8192

typedef struct gw_field {
  const char *name;
  size_t nlen;
  const char *value;
  size_t vlen;
} gw_field;

/* A request head as libmicrohttpd parsed it: every field instance, in order. */
typedef struct gw_head {
  const char *method;
  const char *target; /* the request-target as received */
  const char *version;
  const gw_field *fields;
  int nfields;
  bool too_many_fields; /* more than GW_MAX_FIELDS: 431 */
  bool bad_lines;       /* a bare LF or CR ending a line, a NUL in a line, extra spaces in
                         * the request line, obs-fold (!gw_admit_mhd_layout_ok): 400 */
  const char *raw_error; /* NULL, or what a strict parser refused in the bytes the client sent
                          * on this connection (rawcheck.h): 400, or the refusal, and close */
  const char *peer_ip;  /* the TCP peer, as text */
} gw_head;

typedef enum {
  GW_ADMIT_FORWARD,   /* to the route's upstreams */
  GW_ADMIT_LOCAL,     /* a path the gateway answers itself (/gateway/..., /, /openapi.json) */
  GW_ADMIT_PREFLIGHT, /* a CORS preflight from an allowed origin */
  GW_ADMIT_REFUSE,    /* status, title, detail */
} gw_admit_kind;

typedef enum { GW_BODY_NONE, GW_BODY_LENGTH, GW_BODY_CHUNKED } gw_body;

typedef struct gw_admission {
  gw_admit_kind kind;
  /* a refusal */
  int status;
  const char *title, *detail;
  const char *reason;   /* gateway_rejected_total{reason} (a fixed set) */
  const char *www_auth; /* WWW-Authenticate value for 401 */
  bool close;           /* answer and close: the framing cannot be trusted */
  /* the request */
  unsigned mbit;
  bool idempotent;
  gw_body body;
  uint64_t content_length;
  bool expect_continue;
  const char *query;       /* "?…" or "" (points into the target) */
  /* fields the gateway reads (NULL when absent; the last instance unless said otherwise) */
  const char *host, *request_id, *xfp, *xfh, *origin, *acrm, *connection;
  const char *accept;      /* the first Accept (an event stream takes a stream slot) */
  char *xff;               /* every X-Forwarded-For joined (owned; gw_admission_clear) */
  char client_ip[64];      /* the client: peer, or the right-most untrusted X-Forwarded-For */
  /* the decision */
  const gw_route *route;
  const gw_rule *rule;
  const gw_key *key;       /* NULL: anonymous (or unknown key, refused) */
  bool bearer;             /* the key came as Authorization: Bearer */
  const char *tier;        /* name for logs */
  unsigned scopes;
  const gw_limit *limit;   /* bucket to take from (NULL: none) */
  char identity[320];      /* its key: "key:<key>" or "ip:<address or IPv6 /64>" */
  const char *public_host; /* X-Forwarded-Host and the upstream Host (NULL: listen address) */
  /* last, and not cleared per request (zeroing 16 KiB per request shows in the profile) */
  size_t pathlen, upathlen;
  char path[GW_PATH_MAX];  /* the normalised path (the client's spelling, normalised) */
  char upath[GW_PATH_MAX]; /* the path sent upstream: normalised and rewritten */
} gw_admission;

/* Decides. a is fully overwritten; call gw_admission_clear when done. */
void gw_admit(const gw_conf *c, const gw_head *h, gw_admission *a);
void gw_admission_clear(gw_admission *a);

/* What the head builder needs besides the verdict. */
typedef struct gw_forward {
  const char *request_id;   /* the id the gateway uses (kept or generated) */
  const char *listen_host;  /* "host:port" of the gateway, when no public host is set */
  long long now_s;          /* wall clock, for the proof */
} gw_forward;

/* A growable byte string. */
typedef struct gw_bytes {
  char *data;
  size_t len, cap;
} gw_bytes;
void gw_bytes_append(gw_bytes *b, const char *s, size_t n);

/* Appends the upstream request head for a forward verdict: request line with the normalised
 * upstream path, the client's end-to-end fields less hop-by-hop ones, those listed in
 * Connection, the API key and everything the gateway sets itself (Host, X-Request-ID,
 * X-Forwarded-*, Forwarded, X-Consumer-ID, X-Consumer-Scopes, X-Gateway-Proof, framing,
 * Expect), then the gateway's own, and exactly one framing field computed from what is
 * forwarded: Transfer-Encoding: chunked (the body is re-chunked), Content-Length: N, or
 * Content-Length: 0 for a bodyless POST/PUT/PATCH. */
void gw_admit_head(const gw_conf *c, const gw_head *h, const gw_admission *a,
                   const gw_forward *f, gw_bytes *out);

/* true for a field the gateway never forwards from a client (as a field or a trailer). */
bool gw_admit_own_field(const char *name, size_t n);
/* true for a well-formed field: a token name, a value without control characters (HTAB
 * aside). Used for trailer fields too. */
bool gw_admit_field_ok(const char *name, size_t nlen, const char *value, size_t vlen);

/* An RFC 9110 token character (tchar): what field names and methods are made of. */
bool gw_admit_tchar(unsigned char c);
bool gw_admit_hop_by_hop(const char *name, size_t n);
/* true when name appears as a token in a Connection field's value (list may be NULL): a
 * field the sender made hop-by-hop, for requests and responses alike. */
bool gw_admit_listed_in(const char *list, const char *name, size_t n);

/* true when libmicrohttpd's parse of the head (pointers into its buffer, which it parses in
 * place) shows a head whose every line ended with CRLF and held no NUL, with single spaces
 * in the request line and no obs-fold: what gw_head.bad_lines reports (see admit.c for how
 * the layout tells). url: the target in the buffer; target_len: its length as uri_cb saw it
 * (query included); head_size: MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE (0: unknown, the end
 * of the head is not checked); overflow: not every field was collected. */
bool gw_admit_mhd_layout_ok(const char *method, const char *url, size_t target_len,
                            const char *version, const gw_field *f, int n, bool overflow,
                            size_t head_size);

#endif
