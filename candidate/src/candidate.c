/* candidate — fields, representation, validation and queries of candidates; see
 * candidate.h. */
#include "candidate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/hal.h"
#include "voter/json.h"
#include "voter/log.h"
#include "voter/replica_read.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define NAME_MAX_LEN 256
/* The wire name (sic) and the spelling also accepted on input. */
#define EXPERIENCE "politcalExperience"
#define EXPERIENCE_ALIAS "politicalExperience"

static const jsonv_field candidate_fields[] = {
    {"firstName", JSONV_STRING, true, NAME_MAX_LEN},
    {"lastName", JSONV_STRING, true, NAME_MAX_LEN},
    {"politicalParty", JSONV_STRING, false, 256},
    {"election", JSONV_STRING, true, 256},
    {"homeState", JSONV_STRING, false, 256},
    {EXPERIENCE, JSONV_STRING, false, 4096},
    {EXPERIENCE_ALIAS, JSONV_STRING, false, 4096},
    /* read-only members a client may send back from a GET: fullName must equal the
     * derived value, id must match the path, version is ignored (use If-Match) */
    {"fullName", JSONV_STRING, false, 2 * NAME_MAX_LEN + 1},
    {"id", JSONV_STRING, false, 24},
    {"version", JSONV_INTEGER, false, 0},
    {NULL, 0, false, 0},
};

bool candidate_indexes(mongo_db *db) {
  bson_error_t error;
  bson_t *election = BCON_NEW("deleted", BCON_INT32(1), "election", BCON_INT32(1));
  bson_t *last = BCON_NEW("deleted", BCON_INT32(1), "lastName", BCON_INT32(1));
  bool ok = mongo_create_index(db, "candidates", "deleted_election", election, false, &error) &&
            mongo_create_index(db, "candidates", "deleted_lastName", last, false, &error);
  if (!ok) log_warn("candidate: cannot create indexes yet: %s", error.message);
  bson_destroy(election);
  bson_destroy(last);
  return ok;
}

const char *candidate_sort_field(const char *p) {
  static const char *const allowed[] = {"firstName", "lastName",  "fullName",
                                        "politicalParty", "election", "homeState",
                                        EXPERIENCE,  "version",   NULL};
  return hal_sort_field(allowed, p);
}

/* "<first> <last>"; caller frees. */
static char *full_name(const char *first, const char *last) {
  size_t n = strlen(first) + strlen(last) + 2;
  char *out = xmalloc(n);
  snprintf(out, n, "%s %s", first, last);
  return out;
}

/* The experience from either spelling (validation made sure at most one is given). */
static const char *experience(const json_t *body) {
  const char *v = jsonv_str(body, EXPERIENCE);
  return v ? v : jsonv_str(body, EXPERIENCE_ALIAS);
}

int candidate_validate(const json_t *body, const char *path_id, json_t *errors) {
  int n = jsonv_check(body, candidate_fields, false, errors);
  if (jsonv_str(body, EXPERIENCE) && jsonv_str(body, EXPERIENCE_ALIAS))
    jsonv_error(errors, EXPERIENCE_ALIAS,
                "give " EXPERIENCE " or its alias " EXPERIENCE_ALIAS ", not both"), n++;
  const char *first = jsonv_str(body, "firstName"), *last = jsonv_str(body, "lastName");
  const char *given = jsonv_str(body, "fullName");
  if (given && first && last) {
    char *derived = full_name(first, last);
    if (strcmp(given, derived) != 0)
      jsonv_error(errors, "fullName", "is derived from firstName and lastName; omit it"), n++;
    free(derived);
  }
  const char *id = jsonv_str(body, "id");
  if (id && path_id && strcmp(id, path_id) != 0)
    jsonv_error(errors, "id", "does not match the id in the path"), n++;
  return n;
}

/* ---- documents <-> representations ---- */

/* The client-visible representation: id, the fields, fullName, version. */
static json_t *doc_to_item(const bson_t *doc) {
  bson_iter_t it;
  char id[25] = "";
  if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), id);
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "id", id, "firstName",
                   mongo_doc_json_str(doc, "firstName"), "lastName", mongo_doc_json_str(doc, "lastName"),
                   "fullName", mongo_doc_json_str(doc, "fullName"), "politicalParty",
                   mongo_doc_json_str(doc, "politicalParty"), "election",
                   mongo_doc_json_str(doc, "election"), "homeState", mongo_doc_json_str(doc, "homeState"),
                   EXPERIENCE, mongo_doc_json_str(doc, EXPERIENCE), "version",
                   (json_int_t)mongo_doc_int(doc, "version"));
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* The representation a validated body will have once stored at id/version, for the event
 * and the response. */
static json_t *body_to_item(const json_t *body, const char *id, int64_t version) {
  const char *first = jsonv_str(body, "firstName"), *last = jsonv_str(body, "lastName");
  char *full = full_name(first, last);
  json_t *item = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:I}", "id", id, "firstName",
                           first, "lastName", last, "fullName", full, "politicalParty",
                           string_or_null(jsonv_str(body, "politicalParty")), "election",
                           jsonv_str(body, "election"), "homeState",
                           string_or_null(jsonv_str(body, "homeState")), EXPERIENCE,
                           string_or_null(experience(body)), "version", (json_int_t)version);
  free(full);
  return item;
}

/* Appends the entity's fields (and the uniqueness key) from a validated body. */
static void append_fields(bson_t *dst, const json_t *body) {
  const char *first = jsonv_str(body, "firstName"), *last = jsonv_str(body, "lastName");
  const char *election = jsonv_str(body, "election");
  char *full = full_name(first, last);
  size_t keylen = strlen(election) + strlen(full) + 2;
  char *key = xmalloc(keylen);
  snprintf(key, keylen, "%s\x1f%s", election, full);
  BSON_APPEND_UTF8(dst, "firstName", first);
  BSON_APPEND_UTF8(dst, "lastName", last);
  BSON_APPEND_UTF8(dst, "fullName", full);
  mongo_append_str_or_null(dst, "politicalParty", jsonv_str(body, "politicalParty"));
  BSON_APPEND_UTF8(dst, "election", election);
  mongo_append_str_or_null(dst, "homeState", jsonv_str(body, "homeState"));
  mongo_append_str_or_null(dst, EXPERIENCE, experience(body));
  BSON_APPEND_UTF8(dst, "nameKey", key);
  free(key);
  free(full);
}

/* Only a write that sets or changes the election needs it to exist in the replica (a
 * candidate of a since-deleted election can still be corrected). */
static entity_status check_election(void *ctx, const bson_t *current, const json_t *body,
                                    json_t *errors) {
  elections *replica = ctx;
  const char *election = jsonv_str(body, "election");
  const char *stored = current ? mongo_doc_str(current, "election") : NULL;
  if (stored && strcmp(stored, election) == 0) return ENTITY_OK;
  bool known = false;
  if (elections_title_known(replica, election, &known) != ELECTIONS_OK) return ENTITY_UNAVAILABLE;
  if (known) return ENTITY_OK;
  jsonv_error(errors, "election",
              "no election with this title is known to the candidate service (yet)");
  return ENTITY_INVALID;
}

/* Read-only and absent optional members (null in the representation) are dropped so a
 * merged patch validates like a client's body; fullName is derived again. */
static void to_body(json_t *item) {
  json_object_del(item, "id");
  json_object_del(item, "version");
  json_object_del(item, "fullName");
  static const char *const optional[] = {"politicalParty", "homeState", EXPERIENCE};
  for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
    if (json_is_null(json_object_get(item, optional[i]))) json_object_del(item, optional[i]);
}

const entity_kind candidate_kind = {
    .name = "candidate",
    .collection = "candidates",
    .unique_key = "nameKey",
    .doc_to_item = doc_to_item,
    .body_to_item = body_to_item,
    .append_fields = append_fields,
    .validate = candidate_validate,
    .to_body = to_body,
    .check = check_election,
};

entity_status candidate_patch(entity_store *s, const char *id, const json_t *patch,
                              int64_t if_match, json_t **item, json_t *errors) {
  *item = NULL;
  /* The alias names the stored field: a patch of it patches politcalExperience. */
  if (json_object_get(patch, EXPERIENCE) && json_object_get(patch, EXPERIENCE_ALIAS)) {
    jsonv_error(errors, EXPERIENCE_ALIAS,
                "give " EXPERIENCE " or its alias " EXPERIENCE_ALIAS ", not both");
    return ENTITY_INVALID;
  }
  json_t *p = json_copy((json_t *)patch);
  json_t *alias = json_object_get(p, EXPERIENCE_ALIAS);
  if (alias) {
    json_object_set(p, EXPERIENCE, alias);
    json_object_del(p, EXPERIENCE_ALIAS);
  }
  entity_status st = entity_patch(s, id, p, if_match, item, errors);
  json_decref(p);
  return st;
}

entity_status candidate_list(entity_store *s, const mongo_page *page, const char *election_contains,
                             json_t **items, int64_t *total) {
  bson_t filter = BSON_INITIALIZER;
  char *pattern = NULL;
  if (election_contains) {
    pattern = util_regex_escape(election_contains);
    BSON_APPEND_REGEX(&filter, "election", pattern, "");
  }
  entity_status st = entity_find_page(s, &filter, page, items, total);
  bson_destroy(&filter);
  free(pattern);
  return st;
}

entity_status candidate_summary(entity_store *s, const char *election, json_t **list) {
  /* the same rows, from the same kind of collection, as the voter's replica serves */
  replica_read_status st =
      replica_read_summary(entity_store_db(s), &replica_candidate_summary, election, list);
  return st == REPLICA_READ_OK ? ENTITY_OK : ENTITY_UNAVAILABLE;
}
