/* batch_parse — submitted bodies and work-queue chunks; see batch_parse.h. */
#include "batch_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/json.h"
#include "voter/util.h"
#include "voter/xalloc.h"

static const jsonv_field vote_fields[] = {
    VOTES_FIELDS,
    {NULL, 0, false, 0},
};

const char *batch_parse_vote_shape(const json_t *v, char *buf, size_t len) {
  if (!json_is_object(v)) return "must be a JSON object";
  json_t *errors = json_array();
  const char *problem = NULL;
  if (jsonv_check_keys(v, "", errors) + jsonv_check(v, vote_fields, false, errors) > 0) {
    json_t *first = json_array_get(errors, 0);
    snprintf(buf, len, "%s %s", json_string_value(json_object_get(first, "field")),
             json_string_value(json_object_get(first, "message")));
    problem = buf;
  }
  json_decref(errors);
  return problem;
}

json_t *batch_parse_body(const char *body, size_t len, bool ndjson, json_t *rejections,
                         json_t *lines, char *detail, size_t dlen) {
  json_t *votes = json_array();
  if (!ndjson) {
    json_error_t err;
    json_t *arr = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_array(arr)) {
      snprintf(detail, dlen, arr ? "the body must be a JSON array of votes"
                                 : "malformed JSON at line %d, column %d: %s",
               err.line, err.column, err.text);
      json_decref(arr);
      json_decref(votes);
      return NULL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
      json_array_append(votes, v);
      json_array_append_new(lines, json_integer((json_int_t)i + 1));
    }
    json_decref(arr);
    return votes;
  }
  size_t line = 0;
  for (const char *p = body, *end = body + len; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    line++;
    size_t m = n;
    while (m && (p[m - 1] == '\r' || p[m - 1] == ' ' || p[m - 1] == '\t')) m--;
    if (m > 0) {
      json_error_t err;
      json_t *v = json_loadb(p, m, JSON_REJECT_DUPLICATES, &err);
      if (!v) {
        char msg[256];
        snprintf(msg, sizeof msg, "malformed JSON at column %d: %s", err.column, err.text);
        if (json_array_size(rejections) < BATCH_MAX_REJECTIONS)
          json_array_append_new(rejections, json_pack("{s:I, s:s}", "line", (json_int_t)line, "error", msg));
        json_array_append_new(votes, json_null()); /* placeholder, counted as rejected */
      } else {
        json_array_append_new(votes, v);
      }
      json_array_append_new(lines, json_integer((json_int_t)line));
    }
    p += n + 1;
  }
  return votes;
}

bool batch_parse_chunk(const char *body, size_t len, batch_chunk *c) {
  memset(c, 0, sizeof *c);
  c->doc = json_loadb(body, len, 0, NULL);
  c->batch = jsonv_str(c->doc, "batch");
  json_t *seq = json_object_get(c->doc, "seq"), *list = json_object_get(c->doc, "votes");
  if (!c->batch || !json_is_integer(seq) || !json_is_array(list)) return false;
  c->seq = json_integer_value(seq);
  snprintf(c->key, sizeof c->key, "%s:%lld", c->batch, (long long)c->seq);
  size_t n = json_array_size(list);
  c->votes = xcalloc(n ? n : 1, sizeof *c->votes);
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_array_get(list, i);
    const char *id = jsonv_str(v, "id"), *cand = jsonv_str(v, "candidate");
    const char *election = jsonv_str(v, "election");
    if (!util_is_object_id(id) || !cand || !election) continue;
    vote_in *out = &c->votes[c->n++];
    snprintf(out->id, sizeof out->id, "%s", id);
    out->candidate = cand;
    out->election = election;
  }
  return true;
}

void batch_parse_chunk_free(batch_chunk *c) {
  free(c->votes);
  json_decref(c->doc);
  c->votes = NULL;
  c->doc = NULL;
}
