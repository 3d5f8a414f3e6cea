/* submit — parsing and validating submissions; see submit.h. */
#include "submit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ballots.h"
#include "csv.h"
#include "cvr.h"
#include "error.h"
#include "multipart.h"
#include "progress.h"
#include "rules.h"
#include "sign.h"
#include "voter/json.h"
#include "voter/xalloc.h"

#define CALLBACK_MAX 1000

static int invalid(http_response *res, const char *field, const char *message) {
  json_t *errors = json_array();
  jsonv_error(errors, field, message);
  jsonv_reply_invalid(res, errors);
  return -1;
}

/* http(s)://host..., printable, bounded: the webhook target. */
static const char *check_callback(const char *url, size_t len) {
  if (len > CALLBACK_MAX) return "must be at most 1000 characters";
  if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
    return "must be an absolute http or https URL";
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f) return "must not contain spaces or control characters";
  const char *host = strstr(url, "://") + 3;
  if (!*host || *host == '/') return "must name a host";
  return NULL;
}

static int set_callback(tab_submission *sub, http_response *res, const char *url, size_t len) {
  const char *why = check_callback(url, len);
  if (why) return invalid(res, "callbackUrl", why);
  sub->callback_url = xstrndup(url, len);
  return 0;
}

static int parse_multipart(const http_request *req, http_response *res, tab_submission *sub,
                           const char *boundary) {
  mp_part parts[MP_MAX_PARTS];
  int n;
  const char *error;
  if (mp_parse(req->body, req->body_len, boundary, parts, MP_MAX_PARTS, &n, &error) != 0) {
    http_reply_problem(res, 400, "Bad Request", error, NULL);
    return -1;
  }
  const mp_part *rules_in = NULL, *ballots = NULL, *callback = NULL;
  json_t *errors = json_array();
  for (int i = 0; i < n; i++) {
    const mp_part *p = &parts[i];
    const mp_part **slot = strcmp(p->name, "rules") == 0       ? &rules_in
                           : strcmp(p->name, "ballots") == 0     ? &ballots
                           : strcmp(p->name, "callbackUrl") == 0 ? &callback
                                                                 : NULL;
    if (!slot) {
      char msg[128];
      snprintf(msg, sizeof msg, "unknown part (expected rules, ballots, callbackUrl)");
      jsonv_error(errors, p->name[0] ? p->name : "(unnamed part)", msg);
    } else if (*slot) {
      jsonv_error(errors, p->name, "given more than once");
    } else {
      *slot = p;
    }
  }
  if (!rules_in) jsonv_error(errors, "rules", "is required (a part with the rules JSON)");
  if (!ballots) jsonv_error(errors, "ballots", "is required (a part with the ballots CSV)");
  if (json_array_size(errors) > 0) {
    jsonv_reply_invalid(res, errors);
    return -1;
  }
  json_decref(errors);
  sub->rules = xstrndup(rules_in->data, rules_in->len);
  sub->rules_len = rules_in->len;
  sub->ballots = ballots->data;
  sub->ballots_len = ballots->len;
  if (callback && callback->len > 0) return set_callback(sub, res, callback->data, callback->len);
  return 0;
}

static int parse_json(const http_request *req, http_response *res, tab_submission *sub) {
  json_t *body;
  if (jsonv_parse_body(req, res, &body) != 0) return -1;
  sub->holder = body;
  json_t *errors = json_array();
  const char *key;
  json_t *v;
  json_object_foreach(body, key, v) {
    if (strcmp(key, "rules") != 0 && strcmp(key, "ballots") != 0 && strcmp(key, "callbackUrl") != 0)
      jsonv_error(errors, key, "unknown field (expected rules, ballots, callbackUrl)");
  }
  json_t *rules_in = json_object_get(body, "rules");
  json_t *ballots = json_object_get(body, "ballots");
  json_t *callback = json_object_get(body, "callbackUrl");
  if (!rules_in || json_is_null(rules_in))
    jsonv_error(errors, "rules", "is required");
  else if (!json_is_object(rules_in) && !json_is_string(rules_in))
    jsonv_error(errors, "rules", "must be the rules object (or its JSON text)");
  if (!ballots || json_is_null(ballots))
    jsonv_error(errors, "ballots", "is required");
  else if (!json_is_string(ballots))
    jsonv_error(errors, "ballots", "must be the ballots CSV as a string");
  if (callback && !json_is_null(callback) && !json_is_string(callback))
    jsonv_error(errors, "callbackUrl", "must be a string");
  if (json_array_size(errors) > 0) {
    jsonv_reply_invalid(res, errors);
    return -1;
  }
  json_decref(errors);
  if (json_is_string(rules_in)) {
    sub->rules = xstrndup(json_string_value(rules_in), json_string_length(rules_in));
    sub->rules_len = json_string_length(rules_in);
  } else {
    /* 15 significant digits give back the decimal the client wrote (a number of up to 15
     * digits survives the trip through a double), which matters for threshold_percentage:
     * tabulate reads it as the exact decimal of the text (TABULATION-MULTI.md §1.1). */
    sub->rules =
        json_dumps(rules_in, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    sub->rules_len = sub->rules ? strlen(sub->rules) : 0;
  }
  sub->ballots = json_string_value(ballots);
  sub->ballots_len = json_string_length(ballots);
  if (json_is_string(callback))
    return set_callback(sub, res, json_string_value(callback), json_string_length(callback));
  return 0;
}

int submit_parse(const http_request *req, http_response *res, tab_submission *sub) {
  memset(sub, 0, sizeof *sub);
  const char *ct = http_header(req, "Content-Type");
  char boundary[128];
  int rc;
  if (mp_boundary(ct, boundary, sizeof boundary) == 0) {
    rc = parse_multipart(req, res, sub, boundary);
  } else if (http_is_json(req)) {
    rc = parse_json(req, res, sub);
  } else if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0) {
    http_reply_problem(res, 400, "Bad Request", "multipart/form-data needs a boundary", NULL);
    rc = -1;
  } else {
    http_reply_problem(res, 415, "Unsupported Media Type",
                       "send multipart/form-data (parts rules, ballots) or application/json",
                       NULL);
    rc = -1;
  }
  if (rc == 0 && !sub->rules) {
    http_reply_problem(res, 503, "Service Unavailable", "out of memory", NULL);
    rc = -1;
  }
  return rc;
}

/* ---- validation through tabulate's parsers ---- */

typedef struct mem_source {
  const char *p;
  size_t left;
} mem_source;

static long mem_read(void *ctx, char *buf, size_t cap, int *err) {
  (void)err;
  mem_source *m = ctx;
  size_t n = m->left < cap ? m->left : cap;
  memcpy(buf, m->p, n);
  m->p += n;
  m->left -= n;
  return (long)n;
}

static int reject(http_response *res, const char *part, const tab_error *e, bool positions) {
  char field[300], detail[1200];
  if (e->field[0]) snprintf(field, sizeof field, "%s.%s", part, e->field);
  else snprintf(field, sizeof field, "%s", part);
  json_t *item = json_pack("{s:s, s:s}", "field", field, "message", e->message);
  if (positions && e->line > 0) {
    json_object_set_new(item, "line", json_integer(e->line));
    if (e->column > 0) json_object_set_new(item, "column", json_integer(e->column));
    snprintf(detail, sizeof detail, "%s:%ld:%ld: %s", part, e->line, e->column, e->message);
  } else {
    snprintf(detail, sizeof detail, "%s: %s", part, e->message);
  }
  json_t *errors = json_array();
  json_array_append_new(errors, item);
  http_reply_problem(res, 422, "Unprocessable Entity", detail, errors);
  return -1;
}

/* sha256 over the inputs as the program will see them; JSON rules are compared by
 * content (key order and spacing do not matter), so a JSON and a multipart submission
 * of the same inputs are the same body for Idempotency-Key. */
static void body_hash(tab_submission *sub) {
  json_t *doc = json_loadb(sub->rules, sub->rules_len, 0, NULL);
  char *canon = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(doc);
  char h_rules[65], h_ballots[65], text[256];
  if (canon) sign_sha256_hex(canon, strlen(canon), h_rules);
  else sign_sha256_hex(sub->rules, sub->rules_len, h_rules);
  free(canon);
  sign_sha256_hex(sub->ballots, sub->ballots_len, h_ballots);
  char h_cb[65];
  sign_sha256_hex(sub->callback_url ? sub->callback_url : "", sub->callback_url ? strlen(sub->callback_url) : 0, h_cb);
  int n = snprintf(text, sizeof text, "rules:%s\nballots:%s\ncallback:%s\n", h_rules, h_ballots, h_cb);
  sign_sha256_hex(text, (size_t)n, sub->body_hash);
}

int submit_validate(tab_submission *sub, http_response *res) {
  tab_error err;
  tab_error_clear(&err);
  rules r;
  bool from_json = sub->holder != NULL && json_is_object(json_object_get(sub->holder, "rules"));
  if (rules_parse(&r, sub->rules, sub->rules_len, "rules", &err) != 0)
    return reject(res, "rules", &err, !from_json);
  snprintf(sub->contest, sizeof sub->contest, "%s", r.contest ? r.contest : "");
  mem_source src = {sub->ballots, sub->ballots_len};
  csv_reader *csv = csv_new(mem_read, &src, "ballots", 1u << 20, 64u << 20);
  ballot_store store;
  ballots_init(&store);
  progress prog;
  progress_init(&prog, NULL);
  int rc = -1;
  if (!csv) {
    http_reply_problem(res, 503, "Service Unavailable", "out of memory", NULL);
  } else if (cvr_read(&r, csv, &store, &prog, sub->ballots_len, &err) != 0) {
    reject(res, "ballots", &err, true);
  } else {
    sub->ballots_count = store.rows;
    rc = 0;
  }
  csv_free(csv);
  ballots_free(&store);
  rules_free(&r);
  if (rc == 0) body_hash(sub);
  return rc;
}

void submit_free(tab_submission *sub) {
  free(sub->rules);
  free(sub->callback_url);
  json_decref(sub->holder);
  memset(sub, 0, sizeof *sub);
}
