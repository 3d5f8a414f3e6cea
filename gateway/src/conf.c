/* conf — configuration parsing and route matching; see conf.h. */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "netaddr.h"
#include "upstream.h"
#include "voter/proof.h"
#include "voter/xalloc.h"

/* ------------------------------------------------------------------ small parsers */

unsigned gw_method_bit(const char *m) {
  switch (m[0]) {
    case 'G': if (strcmp(m, "GET") == 0) return GW_M_GET; break;
    case 'H': if (strcmp(m, "HEAD") == 0) return GW_M_HEAD; break;
    case 'P':
      if (strcmp(m, "POST") == 0) return GW_M_POST;
      if (strcmp(m, "PUT") == 0) return GW_M_PUT;
      if (strcmp(m, "PATCH") == 0) return GW_M_PATCH;
      break;
    case 'D': if (strcmp(m, "DELETE") == 0) return GW_M_DELETE; break;
    case 'O': if (strcmp(m, "OPTIONS") == 0) return GW_M_OPTIONS; break;
    default: break;
  }
  return GW_M_OTHER;
}

bool gw_method_idempotent(const char *m) {
  return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0 ||
         strcmp(m, "PUT") == 0 || strcmp(m, "DELETE") == 0 || strcmp(m, "TRACE") == 0;
}

static const char *const scope_names[] = {"read", "vote", "write", "admin"};

unsigned gw_scope_bit(const char *name) {
  for (unsigned i = 0; i < 4; i++)
    if (strcmp(name, scope_names[i]) == 0) return 1u << i;
  return 0;
}

void gw_scopes_text(unsigned scopes, char out[32]) {
  size_t o = 0;
  out[0] = 0;
  for (unsigned i = 0; i < 4; i++) {
    if (!(scopes & (1u << i))) continue;
    o += (size_t)snprintf(out + o, 32 - o, "%s%s", o ? " " : "", scope_names[i]);
  }
}

/* Parses a non-negative decimal number with an optional unit suffix; returns the number and
 * leaves *unit pointing at the (trimmed) suffix. */
static int number_unit(const char *text, double *num, const char **unit) {
  while (isspace((unsigned char)*text)) text++;
  if (!*text) return -1;
  if (isdigit((unsigned char)*text) || *text == '.') {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || !isfinite(v) || v < 0) return -1;
    *num = v;
    text = end;
  } else {
    *num = 1; /* "s" alone means one second, "m" one minute */
  }
  while (isspace((unsigned char)*text)) text++;
  *unit = text;
  return 0;
}

int gw_duration_parse(const char *text, double *seconds) {
  double v;
  const char *u;
  if (!text || number_unit(text, &v, &u) != 0) return -1;
  double mul;
  if (!*u || strcmp(u, "s") == 0 || strcmp(u, "sec") == 0) mul = 1;
  else if (strcmp(u, "ms") == 0) mul = 0.001;
  else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0) mul = 60;
  else if (strcmp(u, "h") == 0) mul = 3600;
  else if (strcmp(u, "d") == 0) mul = 86400;
  else return -1;
  v *= mul;
  if (v <= 0 || v > 366.0 * 86400) return -1;
  *seconds = v;
  return 0;
}

int gw_size_parse(const char *text, uint64_t *bytes) {
  double v;
  const char *u;
  if (!text || !*text || number_unit(text, &v, &u) != 0) return -1;
  if (!isdigit((unsigned char)text[0])) return -1;
  double mul;
  if (!*u || strcasecmp(u, "b") == 0) mul = 1;
  else if (strcasecmp(u, "kb") == 0 || strcasecmp(u, "kib") == 0 || strcasecmp(u, "k") == 0) mul = 1024.0;
  else if (strcasecmp(u, "mb") == 0 || strcasecmp(u, "mib") == 0 || strcasecmp(u, "m") == 0) mul = 1048576.0;
  else if (strcasecmp(u, "gb") == 0 || strcasecmp(u, "gib") == 0 || strcasecmp(u, "g") == 0) mul = 1073741824.0;
  else return -1;
  v *= mul;
  if (v > 1e15) return -1;
  *bytes = (uint64_t)v;
  return 0;
}

int gw_limit_parse(const char *text, gw_limit *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!text) {
    snprintf(err, errlen, "missing policy");
    return -1;
  }
  if (strcmp(text, "unlimited") == 0) {
    out->unlimited = true;
    return 0;
  }
  char buf[128];
  if (strlen(text) >= sizeof buf) {
    snprintf(err, errlen, "policy too long");
    return -1;
  }
  strcpy(buf, text);
  char *opts = strchr(buf, ';');
  if (opts) *opts++ = 0;
  char *slash = strchr(buf, '/');
  if (!slash) {
    snprintf(err, errlen, "policy \"%s\" is not N/WINDOW or unlimited", text);
    return -1;
  }
  *slash = 0;
  char *end;
  errno = 0;
  double count = strtod(buf, &end);
  while (end && isspace((unsigned char)*end)) end++;
  if (errno || end == buf || *end || !isfinite(count) || count < 1 || count > 1e9) {
    snprintf(err, errlen, "policy \"%s\": count must be a number >= 1", text);
    return -1;
  }
  if (gw_duration_parse(slash + 1, &out->window_s) != 0) {
    snprintf(err, errlen, "policy \"%s\": bad window (use e.g. 1s, 250ms, 5m, 1h)", text);
    return -1;
  }
  out->count = count;
  out->burst = count;
  while (opts && *opts) {
    char *next = strchr(opts, ';');
    if (next) *next++ = 0;
    while (isspace((unsigned char)*opts)) opts++;
    if (strncmp(opts, "burst=", 6) == 0) {
      errno = 0;
      double b = strtod(opts + 6, &end);
      if (errno || end == opts + 6 || *end || !isfinite(b) || b < 1 || b > 1e9) {
        snprintf(err, errlen, "policy \"%s\": burst must be a number >= 1", text);
        return -1;
      }
      out->burst = b;
    } else if (*opts) {
      snprintf(err, errlen, "policy \"%s\": unknown option \"%s\"", text, opts);
      return -1;
    }
    opts = next;
  }
  return 0;
}

void gw_limit_finish(gw_limit *l) {
  snprintf(l->policy, sizeof l->policy, "\"%s\";q=%.0f;w=%.0f", l->name ? l->name : "", l->count,
           ceil(l->window_s));
  snprintf(l->key, sizeof l->key, "%s\x1f%g/%g/%g", l->name ? l->name : "", l->count, l->window_s,
           l->burst);
}

/* ------------------------------------------------------------------ freeing */

static void free_strv(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

static void conf_free(gw_conf *c) {
  if (!c) return;
  for (int i = 0; i < c->nroutes; i++) {
    gw_route *r = &c->routes[i];
    free(r->name);
    free(r->prefix);
    free(r->rewrite);
    free_strv(r->upstreams, r->nupstreams);
    free(r->instances);
    free(r->health_path);
    for (int j = 0; j < r->nrules; j++) {
      free_strv(r->rules[j].tiers, r->rules[j].ntiers);
      free(r->rules[j].limit);
    }
    free(r->rules);
  }
  free(c->routes);
  for (int i = 0; i < c->ntiers; i++) {
    for (int j = 0; j < c->tiers[i].nlimits; j++) free(c->tiers[i].limits[j].name);
    free(c->tiers[i].limits);
    free(c->tiers[i].name);
  }
  free(c->tiers);
  for (int i = 0; i < c->nkeys; i++) free(c->keys[i].key);
  free(c->keys);
  free(c->keys_file);
  proof_signer_free(c->proof);
  free_strv(c->public_hosts, c->npublic_hosts);
  free(c->trusted);
  free_strv(c->cors_origins, c->ncors_origins);
  free(c->cors_methods);
  free(c->cors_headers);
  free(c->cors_expose);
  free(c->host);
  free(c->openapi_path);
  free(c->openapi);
  free(c);
}

void gw_conf_ref(gw_conf *c) { atomic_fetch_add(&c->refs, 1); }

void gw_conf_unref(gw_conf *c) {
  if (c && atomic_fetch_sub(&c->refs, 1) == 1) conf_free(c);
}

/* ------------------------------------------------------------------ JSON reading */

typedef struct {
  char *err;
  size_t errlen;
  bool failed;
} perr;

static void fail(perr *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(perr *p, const char *fmt, ...) {
  if (p->failed) return;
  p->failed = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err, p->errlen, fmt, ap);
  va_end(ap);
}

/* Integer field in [min,max], def when absent. */
static int get_int(perr *p, json_t *obj, const char *where, const char *key, long def, long min,
                   long max) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v)) return (int)def;
  if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
    fail(p, "%s.%s: must be an integer in [%ld, %ld]", where, key, min, max);
    return (int)def;
  }
  return (int)json_integer_value(v);
}

static bool get_bool(perr *p, json_t *obj, const char *where, const char *key, bool def) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v)) return def;
  if (!json_is_boolean(v)) {
    fail(p, "%s.%s: must be true or false", where, key);
    return def;
  }
  return json_is_true(v);
}

/* Fields of obj not in known (NULL-terminated) are mistakes worth reporting: a misspelt
 * key would silently leave a limit or a timeout at its default. "$comment" is always allowed;
 * obj must be an object when present. */
static void check_fields(perr *p, json_t *obj, const char *where, const char *const *known) {
  if (!obj || json_is_null(obj)) return;
  if (!json_is_object(obj)) {
    fail(p, "%s: must be an object", where);
    return;
  }
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    bool ok = strcmp(k, "$comment") == 0;
    for (int i = 0; known[i] && !ok; i++) ok = strcmp(known[i], k) == 0;
    if (!ok) fail(p, "%s: unknown field \"%s\"", where, k);
  }
}

/* String field (copied), def (copied, may be NULL) when absent. */
static char *get_str(perr *p, json_t *obj, const char *where, const char *key, const char *def) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v)) return def ? xstrdup(def) : NULL;
  if (!json_is_string(v)) {
    fail(p, "%s.%s: must be a string", where, key);
    return NULL;
  }
  return xstrdup(json_string_value(v));
}

static uint64_t get_size(perr *p, json_t *obj, const char *where, const char *key, uint64_t def) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || json_is_null(v)) return def;
  if (json_is_integer(v) && json_integer_value(v) >= 0) return (uint64_t)json_integer_value(v);
  uint64_t n;
  if (json_is_string(v) && gw_size_parse(json_string_value(v), &n) == 0) return n;
  fail(p, "%s.%s: must be a byte count (e.g. 1048576, \"1MB\", \"512KB\")", where, key);
  return def;
}

/* Array of strings (copied). */
static char **get_strv(perr *p, json_t *arr, const char *where, int *n) {
  *n = 0;
  if (!json_is_array(arr)) {
    fail(p, "%s: must be an array of strings", where);
    return NULL;
  }
  size_t len = json_array_size(arr);
  char **v = xcalloc(len + 1, sizeof *v);
  for (size_t i = 0; i < len; i++) {
    json_t *s = json_array_get(arr, i);
    if (!json_is_string(s)) {
      fail(p, "%s[%zu]: must be a string", where, i);
      break;
    }
    v[(*n)++] = xstrdup(json_string_value(s));
  }
  return v;
}

static const gw_tier *tier_find(const gw_conf *c, const char *name) {
  for (int i = 0; i < c->ntiers; i++)
    if (strcmp(c->tiers[i].name, name) == 0) return &c->tiers[i];
  return NULL;
}

static void parse_tiers(perr *p, gw_conf *c, json_t *tiers) {
  if (!tiers) return;
  if (!json_is_object(tiers)) {
    fail(p, "tiers: must be an object {tier: {limit: policy}}");
    return;
  }
  c->tiers = xcalloc(json_object_size(tiers) + 1, sizeof *c->tiers);
  const char *name;
  json_t *limits;
  json_object_foreach(tiers, name, limits) {
    gw_tier *t = &c->tiers[c->ntiers++];
    t->name = xstrdup(name);
    if (!json_is_object(limits)) {
      fail(p, "tiers.%s: must be an object {limit: \"N/WINDOW\" | \"unlimited\"}", name);
      return;
    }
    t->limits = xcalloc(json_object_size(limits) + 1, sizeof *t->limits);
    const char *lname;
    json_t *policy;
    json_object_foreach(limits, lname, policy) {
      char msg[160];
      if (strcmp(lname, "scopes") == 0) {
        size_t si;
        json_t *sv;
        if (!json_is_array(policy)) {
          fail(p, "tiers.%s.scopes: must be an array of read, vote, write, admin", name);
          return;
        }
        json_array_foreach(policy, si, sv) {
          unsigned bit = json_is_string(sv) ? gw_scope_bit(json_string_value(sv)) : 0;
          if (!bit) {
            fail(p, "tiers.%s.scopes[%zu]: must be one of read, vote, write, admin", name, si);
            return;
          }
          t->scopes |= bit;
        }
        continue;
      }
      gw_limit *l = &t->limits[t->nlimits];
      if (gw_limit_parse(json_string_value(policy), l, msg, sizeof msg) != 0) {
        fail(p, "tiers.%s.%s: %s", name, lname, msg);
        return;
      }
      /* structured-field tokens: keep names simple so the headers stay valid */
      for (const char *s = lname; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.') {
          fail(p, "tiers.%s: limit name \"%s\" may only use letters, digits, - _ .", name, lname);
          return;
        }
      l->name = xstrdup(lname);
      gw_limit_finish(l);
      t->nlimits++;
    }
  }
  c->anonymous = tier_find(c, "anonymous");
}

static int key_cmp(const void *a, const void *b) {
  return strcmp(((const gw_key *)a)->key, ((const gw_key *)b)->key);
}

/* Adds {key: tier} pairs (inline "keys" or the keys file). A key is printable ASCII
 * without spaces, since it travels in a header field. */
static void parse_keys(perr *p, gw_conf *c, json_t *keys, const char *where) {
  if (!keys || json_is_null(keys)) return;
  if (!json_is_object(keys)) {
    fail(p, "%s: must be an object {key: tier}", where);
    return;
  }
  gw_key *nk = xrealloc(c->keys, ((size_t)c->nkeys + json_object_size(keys) + 1) * sizeof *nk);
  c->keys = nk;
  const char *key;
  json_t *tier;
  json_object_foreach(keys, key, tier) {
    const gw_tier *t = json_is_string(tier) ? tier_find(c, json_string_value(tier)) : NULL;
    if (!t || strcmp(t->name, "anonymous") == 0) {
      fail(p, "%s: key \"%.4s…\" names an unknown tier", where, key);
      return;
    }
    bool printable = *key != 0;
    for (const char *k = key; *k; k++) printable = printable && *k > 0x20 && *k < 0x7f;
    if (!printable) {
      fail(p, "%s: a key must be non-empty printable ASCII without spaces", where);
      return;
    }
    for (int i = 0; i < c->nkeys; i++)
      if (strcmp(c->keys[i].key, key) == 0) {
        fail(p, "%s: key \"%.4s…\" is given twice", where, key);
        return;
      }
    gw_key *k = &c->keys[c->nkeys++];
    k->key = xstrdup(key);
    k->tier = t;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, strlen(key), md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
      k->id[2 * i] = "0123456789abcdef"[md[i] >> 4];
      k->id[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    k->id[2 * SHA256_DIGEST_LENGTH] = 0;
  }
  qsort(c->keys, (size_t)c->nkeys, sizeof *c->keys, key_cmp);
}

int gw_conf_add_keys(gw_conf *c, const char *json, size_t len, const char *where, char *err,
                     size_t errlen) {
  perr p = {.err = err, .errlen = errlen};
  json_error_t jerr;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(err, errlen, "%s: line %d column %d: %s", where, jerr.line, jerr.column, jerr.text);
    return -1;
  }
  parse_keys(&p, c, root, where);
  json_decref(root);
  return p.failed ? -1 : 0;
}

static unsigned methods_mask(perr *p, json_t *arr, const char *where) {
  if (!arr) return GW_M_ANY;
  unsigned mask = 0;
  if (!json_is_array(arr) || json_array_size(arr) == 0) {
    fail(p, "%s.methods: must be a non-empty array", where);
    return 0;
  }
  size_t i;
  json_t *m;
  json_array_foreach(arr, i, m) {
    const char *s = json_string_value(m);
    if (!s) {
      fail(p, "%s.methods[%zu]: must be a string", where, i);
      return 0;
    }
    if (strcmp(s, "*") == 0) mask |= GW_M_ANY;
    else if (gw_method_bit(s) == GW_M_OTHER) {
      fail(p, "%s.methods[%zu]: unknown method %s", where, i, s);
      return 0;
    } else mask |= gw_method_bit(s);
  }
  return mask;
}

static void parse_rules(perr *p, gw_conf *c, gw_route *r, json_t *rules, const char *where) {
  if (!rules || json_is_null(rules)) {
    r->rules = xcalloc(1, sizeof *r->rules);
    r->rules[0].methods = GW_M_ANY;
    r->nrules = 1;
    return;
  }
  if (!json_is_array(rules)) {
    fail(p, "%s.rules: must be an array", where);
    return;
  }
  r->rules = xcalloc(json_array_size(rules) + 1, sizeof *r->rules);
  size_t i;
  json_t *j;
  json_array_foreach(rules, i, j) {
    char w[160];
    snprintf(w, sizeof w, "%s.rules[%zu]", where, i);
    if (!json_is_object(j)) {
      fail(p, "%s: must be an object", w);
      return;
    }
    static const char *const fields[] = {"methods", "auth", "tiers", "limit", "scope", NULL};
    check_fields(p, j, w, fields);
    gw_rule *rule = &r->rules[r->nrules++];
    rule->methods = methods_mask(p, json_object_get(j, "methods"), w);
    char *auth = get_str(p, j, w, "auth", "anonymous");
    if (auth && strcmp(auth, "key") == 0) rule->key_required = true;
    else if (!auth || strcmp(auth, "anonymous") != 0) fail(p, "%s.auth: must be \"anonymous\" or \"key\"", w);
    free(auth);
    json_t *tiers = json_object_get(j, "tiers");
    if (tiers) {
      rule->tiers = get_strv(p, tiers, w, &rule->ntiers);
      for (int t = 0; t < rule->ntiers; t++)
        if (!tier_find(c, rule->tiers[t])) fail(p, "%s.tiers: unknown tier %s", w, rule->tiers[t]);
    }
    rule->limit = get_str(p, j, w, "limit", NULL);
    char *scope = get_str(p, j, w, "scope", NULL);
    if (scope && !(rule->scope = gw_scope_bit(scope)))
      fail(p, "%s.scope: must be one of read, vote, write, admin", w);
    free(scope);
  }
}

static char *normalize_prefix(perr *p, const char *s, const char *where) {
  if (!s || s[0] != '/') {
    fail(p, "%s: must start with /", where);
    return NULL;
  }
  size_t n = strlen(s);
  while (n > 1 && s[n - 1] == '/') n--;
  if (strchr(s, '?') || strchr(s, '#') || strstr(s, "//")) {
    fail(p, "%s: must be a plain path", where);
    return NULL;
  }
  return xstrndup(s, n);
}

/* Expands ${VAR} and ${VAR:-default} into out (so one file serves the local stack, compose
 * and Kubernetes); an unset VAR without default is empty. -1 when malformed or too long. */
static int expand_env(const char *in, char *out, size_t cap) {
  size_t o = 0;
  for (const char *p = in; *p && o < cap - 1;) {
    if (p[0] == '$' && p[1] == '{') {
      const char *end = strchr(p, '}');
      if (!end) return -1;
      char name[128];
      const char *def = NULL;
      size_t defn = 0, n = (size_t)(end - p - 2);
      const char *colon = memchr(p + 2, ':', n);
      if (colon && colon[1] == '-') {
        def = colon + 2;
        defn = (size_t)(end - def);
        n = (size_t)(colon - p - 2);
      }
      if (n == 0 || n >= sizeof name) return -1;
      memcpy(name, p + 2, n);
      name[n] = 0;
      const char *v = getenv(name);
      size_t vn = v && *v ? strlen(v) : defn;
      if (!(v && *v)) v = def;
      if (!v) { /* ${VAR} unset: empty */
        v = "";
        vn = 0;
      }
      if (o + vn >= cap) return -1;
      memcpy(out + o, v, vn);
      o += vn;
      p = end + 1;
    } else {
      out[o++] = *p++;
    }
  }
  out[o] = 0;
  return 0;
}

/* Expands ${VAR:-default}, then accepts "http://host:port[/]" as well as "host:port". NULL
 * when the result is not host:port. */
static char *expand_upstream(const char *in) {
  char out[512];
  if (expand_env(in, out, sizeof out) != 0) return NULL;
  char *s = out;
  if (strncmp(s, "http://", 7) == 0) s += 7;
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '/') s[--n] = 0;
  const char *colon = strrchr(s, ':');
  char *end;
  long port = colon ? strtol(colon + 1, &end, 10) : 0;
  if (!colon || colon == s || !colon[1] || *end || port < 1 || port > 65535 || strchr(s, '/'))
    return NULL;
  return xstrdup(s);
}

static int route_cmp(const void *a, const void *b) {
  const gw_route *x = a, *y = b;
  if (x->prefix_len != y->prefix_len) return x->prefix_len > y->prefix_len ? -1 : 1;
  return strcmp(x->prefix, y->prefix);
}

static void parse_routes(perr *p, gw_conf *c, json_t *routes, json_t *defaults) {
  if (!json_is_array(routes) || json_array_size(routes) == 0) {
    fail(p, "routes: must be a non-empty array");
    return;
  }
  c->routes = xcalloc(json_array_size(routes) + 1, sizeof *c->routes);
  static const char *const dfields[] = {"connect_timeout_ms", "read_timeout_ms", "retries", "max_body", NULL};
  check_fields(p, defaults, "defaults", dfields);
  int d_connect = get_int(p, defaults, "defaults", "connect_timeout_ms", 1000, 1, 600000);
  int d_read = get_int(p, defaults, "defaults", "read_timeout_ms", 30000, 1, 3600000);
  int d_retries = get_int(p, defaults, "defaults", "retries", 1, 0, 10);
  uint64_t d_body = get_size(p, defaults, "defaults", "max_body", 1048576);
  size_t i;
  json_t *j;
  json_array_foreach(routes, i, j) {
    char w[64];
    snprintf(w, sizeof w, "routes[%zu]", i);
    if (!json_is_object(j)) {
      fail(p, "%s: must be an object", w);
      return;
    }
    static const char *const fields[] = {"name", "prefix", "rewrite", "upstreams", "health_path",
                                         "connect_timeout_ms", "read_timeout_ms", "retries",
                                         "max_body", "rules", NULL};
    check_fields(p, j, w, fields);
    gw_route *r = &c->routes[c->nroutes++];
    char pw[80];
    snprintf(pw, sizeof pw, "%s.prefix", w);
    r->prefix = normalize_prefix(p, json_string_value(json_object_get(j, "prefix")), pw);
    if (!r->prefix) return;
    r->prefix_len = strlen(r->prefix);
    r->name = get_str(p, j, w, "name", r->prefix);
    json_t *rw = json_object_get(j, "rewrite");
    if (rw && !json_is_null(rw)) {
      const char *s = json_string_value(rw);
      if (!s || (*s && *s != '/')) {
        fail(p, "%s.rewrite: must be \"\" or a path starting with /", w);
        return;
      }
      size_t n = strlen(s);
      while (n > 0 && s[n - 1] == '/') n--;
      r->rewrite = xstrndup(s, n); /* "" or "/x": the remainder always starts with / */
    }
    json_t *ups = json_object_get(j, "upstreams");
    char uw[80];
    snprintf(uw, sizeof uw, "%s.upstreams", w);
    r->upstreams = get_strv(p, ups, uw, &r->nupstreams);
    if (!p->failed && r->nupstreams == 0) fail(p, "%s: needs at least one upstream", uw);
    for (int u = 0; u < r->nupstreams && !p->failed; u++) {
      char *x = expand_upstream(r->upstreams[u]);
      if (!x) {
        fail(p, "%s[%d]: \"%s\" must be host:port (or http://host:port, ${VAR:-host:port})", uw, u,
             r->upstreams[u]);
        break;
      }
      free(r->upstreams[u]);
      r->upstreams[u] = x;
    }
    r->health_path = get_str(p, j, w, "health_path", "/health");
    if (r->health_path && r->health_path[0] != '/') fail(p, "%s.health_path: must start with /", w);
    r->connect_timeout_ms = get_int(p, j, w, "connect_timeout_ms", d_connect, 1, 600000);
    r->read_timeout_ms = get_int(p, j, w, "read_timeout_ms", d_read, 1, 3600000);
    r->retries = get_int(p, j, w, "retries", d_retries, 0, 10);
    r->max_body = get_size(p, j, w, "max_body", d_body);
    parse_rules(p, c, r, json_object_get(j, "rules"), w);
    if (p->failed) return;
  }
  qsort(c->routes, (size_t)c->nroutes, sizeof *c->routes, route_cmp);
  for (int k = 0; k < c->nroutes; k++) {
    c->routes[k].index = k;
    if (k > 0 && strcmp(c->routes[k].prefix, c->routes[k - 1].prefix) == 0)
      fail(p, "routes: prefix %s appears twice", c->routes[k].prefix);
  }
}

static char *join_strv(perr *p, json_t *v, const char *where, const char *def) {
  if (!v || json_is_null(v)) return xstrdup(def);
  if (json_is_string(v)) return xstrdup(json_string_value(v));
  int n;
  char **items = get_strv(p, v, where, &n);
  size_t len = 1;
  for (int i = 0; i < n; i++) len += strlen(items[i]) + 2;
  char *out = xcalloc(1, len);
  for (int i = 0; i < n; i++) {
    if (i) strcat(out, ", ");
    strcat(out, items[i]);
  }
  free_strv(items, n);
  return out;
}

gw_conf *gw_conf_parse(const char *text, size_t len, char *err, size_t errlen) {
  perr p = {.err = err, .errlen = errlen};
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(err, errlen, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    return NULL;
  }
  gw_conf *c = xcalloc(1, sizeof *c);
  atomic_init(&c->refs, 1);
  if (!json_is_object(root)) {
    fail(&p, "the configuration must be a JSON object");
    goto out;
  }
  json_t *listen = json_object_get(root, "listen");
  static const char *const listen_fields[] = {"host", "port", "threads", NULL};
  check_fields(&p, listen, "listen", listen_fields);
  c->host = get_str(&p, listen, "listen", "host", "127.0.0.1");
  c->port = get_int(&p, listen, "listen", "port", 8080, 0, 65535);
  c->threads = get_int(&p, listen, "listen", "threads", 2, 1, 64);
  c->client_timeout_s = get_int(&p, root, "", "client_timeout_s", 30, 1, 3600);
  c->max_header_bytes = (size_t)get_int(&p, root, "", "max_header_bytes", 8192, 4096, 1048576);
  c->drain_timeout_s = get_int(&p, root, "", "drain_timeout_s", 10, 0, 600);
  c->access_log = get_bool(&p, root, "", "access_log", true);
  c->openapi_path = get_str(&p, root, "", "openapi", NULL);

  json_t *hc = json_object_get(root, "health_check");
  static const char *const hc_fields[] = {"interval_ms", "timeout_ms", NULL};
  check_fields(&p, hc, "health_check", hc_fields);
  c->health_interval_ms = get_int(&p, hc, "health_check", "interval_ms", 2000, 0, 3600000);
  c->health_timeout_ms = get_int(&p, hc, "health_check", "timeout_ms", 1000, 1, 60000);
  c->dns_refresh_ms = get_int(&p, root, "", "dns_refresh_ms", 5000, 0, 86400000);
  json_t *ej = json_object_get(root, "ejection");
  static const char *const ej_fields[] = {"failures", "base_ms", "max_ms", NULL};
  check_fields(&p, ej, "ejection", ej_fields);
  c->eject_failures = get_int(&p, ej, "ejection", "failures", 3, 1, 1000);
  c->eject_base_ms = get_int(&p, ej, "ejection", "base_ms", 1000, 1, 3600000);
  c->eject_max_ms = get_int(&p, ej, "ejection", "max_ms", 60000, 1, 86400000);
  json_t *pool = json_object_get(root, "pool");
  static const char *const pool_fields[] = {"idle_timeout_ms", "max_idle_per_upstream", "buffer_bytes",
                                            "fast_wait_us", "idle_poll_us", "io_uring", "batch", NULL};
  check_fields(&p, pool, "pool", pool_fields);
  c->keepalive_idle_ms = get_int(&p, pool, "pool", "idle_timeout_ms", 15000, 100, 3600000);
  c->pool_max_idle = get_int(&p, pool, "pool", "max_idle_per_upstream", 64, 0, 10000);
  c->buffer_bytes = (size_t)get_int(&p, pool, "pool", "buffer_bytes", 65536, 4096, 16777216);
  c->fast_wait_us = get_int(&p, pool, "pool", "fast_wait_us", 2000, 0, 100000);
  c->idle_poll_us = get_int(&p, pool, "pool", "idle_poll_us", 100, 0, 100000);
  c->io_uring = get_bool(&p, pool, "pool", "io_uring", true);
  char *batch = get_str(&p, pool, "pool", "batch", "auto");
  if (batch && strcmp(batch, "auto") != 0 && strcmp(batch, "always") != 0)
    fail(&p, "pool.batch: must be \"auto\" or \"always\"");
  c->batch_always = batch && strcmp(batch, "always") == 0;
  free(batch);

  json_t *trusted = json_object_get(root, "trusted_proxies");
  if (trusted) {
    int n;
    char **v = get_strv(&p, trusted, "trusted_proxies", &n);
    c->trusted = xcalloc((size_t)n + 1, sizeof *c->trusted);
    for (int i = 0; i < n; i++) {
      if (gw_cidr_parse(v[i], &c->trusted[c->ntrusted]) != 0)
        fail(&p, "trusted_proxies[%d]: \"%s\" is not an address or CIDR range", i, v[i]);
      else c->ntrusted++;
    }
    free_strv(v, n);
  }

  json_t *cors = json_object_get(root, "cors");
  static const char *const cors_fields[] = {"origins", "methods", "headers", "expose", "max_age_s", NULL};
  check_fields(&p, cors, "cors", cors_fields);
  json_t *origins = cors ? json_object_get(cors, "origins") : NULL;
  if (origins) c->cors_origins = get_strv(&p, origins, "cors.origins", &c->ncors_origins);
  c->cors_methods = join_strv(&p, cors ? json_object_get(cors, "methods") : NULL, "cors.methods",
                              "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  c->cors_headers =
      join_strv(&p, cors ? json_object_get(cors, "headers") : NULL, "cors.headers",
                "Content-Type, Accept, Authorization, X-API-Key, X-Request-ID, If-Match, If-None-Match");
  c->cors_expose = join_strv(&p, cors ? json_object_get(cors, "expose") : NULL, "cors.expose",
                             "X-Request-ID, Location, ETag, RateLimit, RateLimit-Policy, Retry-After");
  c->cors_max_age_s = get_int(&p, cors, "cors", "max_age_s", 600, 0, 86400);

  parse_tiers(&p, c, json_object_get(root, "tiers"));
  if (!p.failed) parse_keys(&p, c, json_object_get(root, "keys"), "keys");
  char *kf = get_str(&p, root, "", "keys_file", NULL);
  if (kf) {
    char expanded[1024];
    if (expand_env(kf, expanded, sizeof expanded) != 0) fail(&p, "keys_file: cannot expand \"%s\"", kf);
    else if (*expanded) c->keys_file = xstrdup(expanded);
    free(kf);
  }
  json_t *ph = json_object_get(root, "public_hosts");
  if (ph) {
    c->public_hosts = get_strv(&p, ph, "public_hosts", &c->npublic_hosts);
    for (int i = 0; i < c->npublic_hosts && !p.failed; i++) {
      char expanded[512];
      if (expand_env(c->public_hosts[i], expanded, sizeof expanded) != 0 || !*expanded) {
        fail(&p, "public_hosts[%d]: cannot expand \"%s\"", i, c->public_hosts[i]);
        break;
      }
      free(c->public_hosts[i]);
      c->public_hosts[i] = xstrdup(expanded);
      for (const char *h = c->public_hosts[i]; *h; h++)
        if (*h <= 0x20 || *h >= 0x7f || *h == '/' || *h == ',') {
          fail(&p, "public_hosts[%d]: must be host or host:port", i);
          break;
        }
    }
  }
  if (!p.failed) parse_routes(&p, c, json_object_get(root, "routes"), json_object_get(root, "defaults"));

  static const char *const known[] = {"listen", "client_timeout_s", "max_header_bytes",
                                      "drain_timeout_s", "access_log", "openapi", "health_check", "dns_refresh_ms",
                                      "ejection", "pool", "trusted_proxies", "cors", "tiers",
                                      "keys", "keys_file", "public_hosts", "routes", "defaults",
                                      NULL};
  check_fields(&p, root, "configuration", known);
out:
  json_decref(root);
  if (p.failed) {
    conf_free(c);
    return NULL;
  }
  return c;
}

/* ------------------------------------------------------------------ loading */

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = (n + 4096 + 1) * 2;
      char *nb = xrealloc(buf, cap);
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  bool bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

gw_conf *gw_conf_load(const char *path, char *err, size_t errlen) {
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  char msg[512];
  gw_conf *c = gw_conf_parse(text, len, msg, sizeof msg);
  free(text);
  if (!c) {
    snprintf(err, errlen, "%s: %s", path, msg);
    return NULL;
  }
  const char *env;
  if ((env = getenv("HTTP_HOST")) && *env) {
    free(c->host);
    c->host = xstrdup(env);
  }
  if ((env = getenv("HTTP_PORT")) && *env) c->port = atoi(env);
  if ((env = getenv("HTTP_THREADS")) && *env && atoi(env) > 0) c->threads = atoi(env);
  if ((env = getenv("GATEWAY_OPENAPI")) && *env) {
    free(c->openapi_path);
    c->openapi_path = xstrdup(env);
  }
  if (c->keys_file) {
    size_t klen;
    char *ktext = read_file(c->keys_file, &klen);
    if (!ktext) {
      snprintf(err, errlen, "%s: keys_file %s: %s", path, c->keys_file, strerror(errno));
      gw_conf_unref(c);
      return NULL;
    }
    int rc = gw_conf_add_keys(c, ktext, klen, c->keys_file, msg, sizeof msg);
    free(ktext);
    if (rc != 0) {
      snprintf(err, errlen, "%s: %s", path, msg);
      gw_conf_unref(c);
      return NULL;
    }
  }
  if ((env = getenv(PROOF_SECRET_ENV)) && *env) {
    if (strlen(env) < PROOF_MIN_SECRET) {
      snprintf(err, errlen, "%s is set but shorter than %d bytes: refusing to sign with it",
               PROOF_SECRET_ENV, PROOF_MIN_SECRET);
      gw_conf_unref(c);
      return NULL;
    }
    c->proof = proof_signer_new(env, strlen(env));
    if (!c->proof) {
      snprintf(err, errlen, "%s: cannot prepare the proof signer", PROOF_SECRET_ENV);
      gw_conf_unref(c);
      return NULL;
    }
  }
  if (c->openapi_path) {
    /* relative to the configuration file's directory, so a config and its documents move
     * together */
    char full[4096];
    const char *slash = strrchr(path, '/');
    if (c->openapi_path[0] != '/' && slash)
      snprintf(full, sizeof full, "%.*s/%s", (int)(slash - path), path, c->openapi_path);
    else snprintf(full, sizeof full, "%s", c->openapi_path);
    c->openapi = read_file(full, &c->openapi_len); /* absent: /openapi.json answers 404 */
  }
  for (int i = 0; i < c->nroutes; i++) {
    gw_route *r = &c->routes[i];
    r->instances = xcalloc((size_t)r->nupstreams, sizeof *r->instances);
    for (int u = 0; u < r->nupstreams; u++) {
      r->instances[u] = gw_instance_get(r->upstreams[u], r->health_path, msg, sizeof msg);
      if (!r->instances[u]) {
        snprintf(err, errlen, "%s: route %s: %s", path, r->name, msg);
        gw_conf_unref(c);
        return NULL;
      }
    }
  }
  return c;
}

/* ------------------------------------------------------------------ lookups */

const gw_route *gw_route_match(const gw_conf *c, const char *path, size_t len) {
  for (int i = 0; i < c->nroutes; i++) {
    const gw_route *r = &c->routes[i];
    if (r->prefix_len == 1) return r; /* "/" matches everything */
    if (len < r->prefix_len || memcmp(path, r->prefix, r->prefix_len) != 0) continue;
    if (len == r->prefix_len || path[r->prefix_len] == '/') return r;
  }
  return NULL;
}

int gw_route_rewrite(const gw_route *r, const char *path, size_t len, char *out, size_t outlen) {
  const char *head = path;
  size_t headlen = 0;
  const char *rest = path;
  size_t restlen = len;
  if (r->rewrite) {
    head = r->rewrite;
    headlen = strlen(r->rewrite);
    if (r->prefix_len > 1) {
      rest = path + r->prefix_len;
      restlen = len - r->prefix_len;
    }
  }
  if (headlen + restlen + 2 > outlen) return -1;
  memcpy(out, head, headlen);
  memcpy(out + headlen, rest, restlen);
  size_t n = headlen + restlen;
  if (n == 0) out[n++] = '/'; /* "/v1" rewritten to "" is the root */
  out[n] = 0;
  return (int)n;
}

const gw_rule *gw_rule_for(const gw_route *r, unsigned method_bit) {
  for (int i = 0; i < r->nrules; i++)
    if (r->rules[i].methods & method_bit) return &r->rules[i];
  return NULL;
}

void gw_route_allow(const gw_route *r, char out[64]) {
  static const struct { unsigned bit; const char *name; } m[] = {
      {GW_M_GET, "GET"}, {GW_M_HEAD, "HEAD"}, {GW_M_POST, "POST"}, {GW_M_PUT, "PUT"},
      {GW_M_PATCH, "PATCH"}, {GW_M_DELETE, "DELETE"}, {GW_M_OPTIONS, "OPTIONS"}};
  unsigned any = 0;
  for (int i = 0; i < r->nrules; i++) any |= r->rules[i].methods;
  size_t o = 0;
  out[0] = 0;
  for (size_t i = 0; i < sizeof m / sizeof *m; i++)
    if (any & m[i].bit) o += (size_t)snprintf(out + o, 64 - o, "%s%s", o ? ", " : "", m[i].name);
}

bool gw_rule_allows_tier(const gw_rule *rule, const gw_tier *tier) {
  if (!rule->tiers) return true;
  if (!tier) return false;
  for (int i = 0; i < rule->ntiers; i++)
    if (strcmp(rule->tiers[i], tier->name) == 0) return true;
  return false;
}

const gw_limit *gw_tier_limit(const gw_tier *t, const char *name) {
  if (!t || !name) return NULL;
  for (int i = 0; i < t->nlimits; i++)
    if (strcmp(t->limits[i].name, name) == 0) return &t->limits[i];
  return NULL;
}

const gw_key *gw_key_find(const gw_conf *c, const char *key) {
  if (!key || !c->nkeys) return NULL;
  gw_key probe = {.key = (char *)key};
  return bsearch(&probe, c->keys, (size_t)c->nkeys, sizeof *c->keys, key_cmp);
}

bool gw_cors_origin_allowed(const gw_conf *c, const char *origin) {
  if (!origin) return false;
  for (int i = 0; i < c->ncors_origins; i++)
    if (strcmp(c->cors_origins[i], "*") == 0 || strcmp(c->cors_origins[i], origin) == 0)
      return true;
  return false;
}
