/* election — fields, representation, validation and queries of elections; see election.h. */
#include "election.h"

#include <stdlib.h>
#include <string.h>

#include "voter/hal.h"
#include "voter/json.h"
#include "voter/util.h"

static const jsonv_field election_fields[] = {
    {"title", JSONV_STRING, true, 256},
    {"date", JSONV_STRING, true, 64},
    {"electionType", JSONV_STRING, false, 64},
    {"description", JSONV_STRING, false, 4096},
    /* read-only members a client may send back from a GET; id must match, version is ignored
     * (use If-Match for optimistic concurrency) */
    {"id", JSONV_STRING, false, 24},
    {"version", JSONV_INTEGER, false, 0},
    {NULL, 0, false, 0},
};

const char *election_sort_field(const char *p) {
  static const char *const allowed[] = {"title", "date", "electionType", "description", "version",
                                        NULL};
  return hal_sort_field(allowed, p);
}

int election_validate(const json_t *body, const char *path_id, json_t *errors) {
  int n = jsonv_check(body, election_fields, false, errors);
  const char *date = jsonv_str(body, "date");
  int64_t ms;
  if (date && util_parse_date(date, &ms) != 0)
    jsonv_error(errors, "date", "must be a date (YYYY-MM-DD or ISO 8601)"), n++;
  const char *id = jsonv_str(body, "id");
  if (id && path_id && strcmp(id, path_id) != 0)
    jsonv_error(errors, "id", "does not match the id in the path"), n++;
  return n;
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* The client-visible representation: id, title, date, electionType, description, version. */
static json_t *doc_to_item(const bson_t *doc) {
  bson_iter_t it;
  char id[25] = "", date[32];
  if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), id);
  json_t *date_json = json_null();
  if (bson_iter_init_find(&it, doc, "date") && BSON_ITER_HOLDS_DATE_TIME(&it)) {
    util_format_date(bson_iter_date_time(&it), date);
    date_json = json_string(date);
  }
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:I}", "id", id, "title",
                   mongo_doc_json_str(doc, "title"), "date", date_json, "electionType",
                   mongo_doc_json_str(doc, "electionType"), "description",
                   mongo_doc_json_str(doc, "description"), "version",
                   (json_int_t)mongo_doc_int(doc, "version"));
}

/* The representation a validated body will have once stored at id/version. */
static json_t *body_to_item(const json_t *body, const char *id, int64_t version) {
  int64_t ms = 0;
  char date[32];
  util_parse_date(jsonv_str(body, "date"), &ms);
  util_format_date(ms, date);
  return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I}", "id", id, "title", jsonv_str(body, "title"),
                   "date", date, "electionType", string_or_null(jsonv_str(body, "electionType")),
                   "description", string_or_null(jsonv_str(body, "description")), "version",
                   (json_int_t)version);
}

static void append_fields(bson_t *dst, const json_t *body) {
  const char *title = jsonv_str(body, "title");
  int64_t ms = 0;
  util_parse_date(jsonv_str(body, "date"), &ms);
  BSON_APPEND_UTF8(dst, "title", title);
  BSON_APPEND_UTF8(dst, "titleKey", title);
  BSON_APPEND_DATE_TIME(dst, "date", ms);
  mongo_append_str_or_null(dst, "electionType", jsonv_str(body, "electionType"));
  mongo_append_str_or_null(dst, "description", jsonv_str(body, "description"));
}

/* Absent optional fields are null in the representation: drop them, and the read-only
 * members, so a merged patch validates like a client's body. */
static void to_body(json_t *item) {
  json_object_del(item, "id");
  json_object_del(item, "version");
  static const char *const optional[] = {"electionType", "description"};
  for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
    if (json_is_null(json_object_get(item, optional[i]))) json_object_del(item, optional[i]);
}

const entity_kind election_kind = {
    .name = "election",
    .collection = "elections",
    .unique_key = "titleKey",
    .doc_to_item = doc_to_item,
    .body_to_item = body_to_item,
    .append_fields = append_fields,
    .validate = election_validate,
    .to_body = to_body,
};

entity_status election_list(entity_store *s, const mongo_page *page, const char *type_contains,
                            json_t **items, int64_t *total) {
  bson_t filter = BSON_INITIALIZER;
  char *pattern = NULL;
  if (type_contains) {
    pattern = util_regex_escape(type_contains);
    BSON_APPEND_REGEX(&filter, "electionType", pattern, "");
  }
  entity_status st = entity_find_page(s, &filter, page, items, total);
  bson_destroy(&filter);
  free(pattern);
  return st;
}

entity_status election_titles(entity_store *s, json_t **titles) {
  mongo_page page = {.size = 100000, .sort_fields = {"title"}, .sort_dirs = {1}, .nsort = 1};
  json_t *items;
  int64_t total;
  entity_status st = election_list(s, &page, NULL, &items, &total);
  if (st != ENTITY_OK) return st;
  *titles = json_array();
  size_t i;
  json_t *item;
  json_array_foreach(items, i, item) json_array_append(*titles, json_object_get(item, "title"));
  json_decref(items);
  return ENTITY_OK;
}
