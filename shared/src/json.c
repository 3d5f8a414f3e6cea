/* json — strict parsing and validation; see json.h. */
#include "voter/json.h"

#include <stdio.h>
#include <string.h>

void jsonv_error(json_t *errors, const char *field, const char *message) {
  json_array_append_new(errors, json_pack("{s:s, s:s}", "field", field, "message", message));
}

void jsonv_reply_invalid(http_response *res, json_t *errors) {
  http_reply_problem(res, 422, "Unprocessable Entity", "the request body is not valid", errors);
}

const char *jsonv_str(const json_t *obj, const char *key) {
  return json_string_value(json_object_get(obj, key));
}

int jsonv_check_keys(const json_t *value, const char *path, json_t *errors) {
  int n = 0;
  if (json_is_object(value)) {
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)value, key, member) {
      char sub[256];
      snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
      if (key[0] == '$' || strchr(key, '.')) {
        jsonv_error(errors, sub, "field names must not start with '$' or contain '.'");
        n++;
      }
      n += jsonv_check_keys(member, sub, errors);
    }
  } else if (json_is_array(value)) {
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item) {
      char sub[256];
      snprintf(sub, sizeof sub, "%s[%zu]", path, i);
      n += jsonv_check_keys(item, sub, errors);
    }
  }
  return n;
}

int jsonv_parse_body(const http_request *req, http_response *res, json_t **out) {
  *out = NULL;
  if (!http_is_json(req)) {
    http_reply_problem(res, 415, "Unsupported Media Type",
                       "the request body must be JSON (Content-Type: application/json)", NULL);
    return -1;
  }
  if (req->body_len == 0) {
    http_reply_problem(res, 400, "Bad Request", "the request body is empty", NULL);
    return -1;
  }
  json_error_t err;
  json_t *doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
  if (!doc) {
    char detail[300];
    snprintf(detail, sizeof detail, "malformed JSON at line %d, column %d: %s", err.line,
             err.column, err.text);
    http_reply_problem(res, 400, "Bad Request", detail, NULL);
    return -1;
  }
  json_t *errors = json_array();
  if (!json_is_object(doc)) {
    jsonv_error(errors, "", "the body must be a JSON object");
  } else {
    jsonv_check_keys(doc, "", errors);
  }
  if (json_array_size(errors)) {
    json_decref(doc);
    jsonv_reply_invalid(res, errors);
    return -1;
  }
  json_decref(errors);
  *out = doc;
  return 0;
}

static const char *type_name(jsonv_type t) {
  switch (t) {
  case JSONV_STRING: return "a string";
  case JSONV_INTEGER: return "an integer";
  case JSONV_BOOLEAN: return "a boolean";
  case JSONV_OBJECT: return "an object";
  default: return "a value";
  }
}

static bool type_ok(const json_t *v, jsonv_type t) {
  switch (t) {
  case JSONV_STRING: return json_is_string(v);
  case JSONV_INTEGER: return json_is_integer(v);
  case JSONV_BOOLEAN: return json_is_boolean(v);
  case JSONV_OBJECT: return json_is_object(v);
  default: return true;
  }
}

int jsonv_check(const json_t *obj, const jsonv_field *fields, bool allow_unknown, json_t *errors) {
  int n = 0;
  char msg[128];
  for (const jsonv_field *f = fields; f->name; f++) {
    const json_t *v = json_object_get(obj, f->name);
    if (!v || json_is_null(v)) {
      if (f->required) jsonv_error(errors, f->name, "is required"), n++;
      continue;
    }
    if (!type_ok(v, f->type)) {
      snprintf(msg, sizeof msg, "must be %s", type_name(f->type));
      jsonv_error(errors, f->name, msg), n++;
      continue;
    }
    if (f->type == JSONV_STRING) {
      size_t len = json_string_length(v);
      if (f->required && len == 0) {
        jsonv_error(errors, f->name, "must not be empty"), n++;
      } else if (f->max_len && len > f->max_len) {
        snprintf(msg, sizeof msg, "must be at most %zu bytes", f->max_len);
        jsonv_error(errors, f->name, msg), n++;
      } else if (memchr(json_string_value(v), 0, len)) {
        jsonv_error(errors, f->name, "must not contain NUL characters"), n++;
      }
    }
  }
  if (!allow_unknown) {
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)obj, key, member) {
      bool known = false;
      for (const jsonv_field *f = fields; f->name && !known; f++) known = strcmp(f->name, key) == 0;
      if (!known) jsonv_error(errors, key, "is not a known field"), n++;
    }
  }
  return n;
}
