/* json — strict request-body parsing and validation on jansson (prefix jsonv_).
 *
 * Validation collects every problem as {field, message} so a client fixes its request in
 * one round trip. Keys starting with '$' or containing '.' are refused anywhere in a
 * document: they are MongoDB operator/path syntax and must never reach a query. */
#ifndef VOTER_JSON_H
#define VOTER_JSON_H

#include <jansson.h>
#include <stdbool.h>

#include "voter/http.h"

typedef enum { JSONV_STRING, JSONV_INTEGER, JSONV_BOOLEAN, JSONV_OBJECT, JSONV_ANY } jsonv_type;

typedef struct jsonv_field {
  const char *name;
  jsonv_type type;
  bool required;
  size_t max_len; /* strings: maximum length in bytes (0: no limit) */
} jsonv_field;

/* Parses the request body as one JSON object: 415 when the Content-Type is not JSON, 400
 * when empty or malformed (with line/column), 422 when not an object or when a key is
 * unsafe. On failure the problem response is set and -1 returned. */
int jsonv_parse_body(const http_request *req, http_response *res, json_t **out);

/* Checks obj against fields (NULL-name terminated): missing required fields, wrong types,
 * over-long strings and (unless allow_unknown) unknown fields. A JSON null counts as
 * absent. Appends {field, message} to errors; returns the number of problems added. */
int jsonv_check(const json_t *obj, const jsonv_field *fields, bool allow_unknown, json_t *errors);

/* Appends an error for keys starting with '$' or containing '.', recursively. */
int jsonv_check_keys(const json_t *value, const char *path, json_t *errors);

/* Appends {field, message} to errors. */
void jsonv_error(json_t *errors, const char *field, const char *message);

/* Replies 422 with the collected errors (stolen). */
void jsonv_reply_invalid(http_response *res, json_t *errors);

/* A string member or NULL (also NULL for JSON null / non-strings). */
const char *jsonv_str(const json_t *obj, const char *key);

#endif
