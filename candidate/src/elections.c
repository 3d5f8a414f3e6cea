/* elections — the election replica: consumer, reads, clear and replay; see elections.h. */
#include "elections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/hal.h"
#include "voter/httpc.h"
#include "voter/log.h"
#include "voter/replica.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define COLLECTION "elections"

static const char *const required_fields[] = {"title", NULL};
static const replica_source election_source = {
    .prefix = "election", .collection = COLLECTION, .required = required_fields};

struct elections {
  mongo_db *db;
  char *election_url, *api_key, *amqp_url, *exchange, *queue;
  int retry_delay_ms, max_attempts;
  replica_consumer *consumer;
};

static char *dup_or_null(const char *s) { return s && *s ? xstrdup(s) : NULL; }

elections *elections_open(const elections_options *o) {
  elections *e = xcalloc(1, sizeof *e);
  e->db = o->db;
  e->election_url = dup_or_null(o->election_url);
  e->api_key = dup_or_null(o->api_key);
  e->amqp_url = dup_or_null(o->amqp_url);
  e->exchange = dup_or_null(o->exchange);
  e->queue = dup_or_null(o->queue);
  e->retry_delay_ms = o->retry_delay_ms;
  e->max_attempts = o->max_attempts;
  if (!e->election_url || !e->amqp_url || !e->exchange || !e->queue) {
    elections_close(e);
    return NULL;
  }
  return e;
}

void elections_close(elections *e) {
  if (!e) return;
  replica_consumer_stop(e->consumer);
  free(e->election_url);
  free(e->api_key);
  free(e->amqp_url);
  free(e->exchange);
  free(e->queue);
  free(e);
}

bool elections_init(elections *e) {
  if (!replica_init(e->db, &election_source)) return false;
  /* The candidate store asks by title on every write. */
  bson_error_t error;
  bson_t *keys = BCON_NEW("title", BCON_INT32(1));
  bool ok = mongo_create_index(e->db, COLLECTION, "title", keys, false, &error);
  if (!ok) log_warn("elections: cannot create indexes yet: %s", error.message);
  bson_destroy(keys);
  return ok;
}

bool elections_start_consumer(elections *e) {
  replica_options opts = {.db = e->db,
                          .amqp_url = e->amqp_url,
                          .exchange = e->exchange,
                          .queue = e->queue,
                          .sources = &election_source,
                          .nsources = 1,
                          .retry_delay_ms = e->retry_delay_ms,
                          .max_attempts = e->max_attempts};
  e->consumer = replica_consumer_start(&opts);
  return e->consumer != NULL;
}

const char *elections_sort_field(const char *p) {
  static const char *const allowed[] = {"title", "date", "electionType", "description", "version",
                                        NULL};
  return hal_sort_field(allowed, p);
}

/* The representation the election service gives its elections. */
static json_t *render(const bson_t *doc) {
  bson_iter_t it;
  char id[129] = "";
  if (bson_iter_init_find(&it, doc, "_id")) {
    if (BSON_ITER_HOLDS_UTF8(&it)) snprintf(id, sizeof id, "%s", bson_iter_utf8(&it, NULL));
    else if (BSON_ITER_HOLDS_OID(&it)) bson_oid_to_string(bson_iter_oid(&it), id);
  }
  return json_pack("{s:s, s:o, s:o, s:o, s:o, s:I}", "id", id, "title", mongo_doc_json_str(doc, "title"),
                   "date", mongo_doc_json_str(doc, "date"), "electionType",
                   mongo_doc_json_str(doc, "electionType"), "description",
                   mongo_doc_json_str(doc, "description"), "version",
                   (json_int_t)mongo_doc_int(doc, "version"));
}

static elections_status db_error(const char *what, const bson_error_t *error) {
  mongo_log_failure("elections", what, error);
  return ELECTIONS_UNAVAILABLE;
}

elections_status elections_list(elections *e, const mongo_page *q, const char *type_contains,
                                json_t **items, int64_t *total) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_BOOL(&filter, "deleted", false);
  char *pattern = NULL;
  if (type_contains) {
    pattern = util_regex_escape(type_contains);
    BSON_APPEND_REGEX(&filter, "electionType", pattern, "");
  }
  mongoc_client_t *client = mongo_acquire(e->db);
  mongoc_collection_t *coll = mongo_collection(e->db, client, COLLECTION);
  bson_error_t error;
  elections_status st = ELECTIONS_OK;
  if (!mongo_find_page(coll, &filter, q, render, items, total, &error))
    st = db_error("find", &error);
  mongoc_collection_destroy(coll);
  mongo_release(e->db, client);
  bson_destroy(&filter);
  free(pattern);
  return st;
}

/* The first live document matching filter, or NULL; st tells a failure from absence. */
static bson_t *find_live(elections *e, bson_t *filter, elections_status *st) {
  BSON_APPEND_BOOL(filter, "deleted", false);
  bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
  mongoc_client_t *client = mongo_acquire(e->db);
  mongoc_collection_t *coll = mongo_collection(e->db, client, COLLECTION);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
  const bson_t *doc;
  bson_t *found = NULL;
  bson_error_t error;
  *st = ELECTIONS_NOT_FOUND;
  if (mongoc_cursor_next(cur, &doc)) {
    found = bson_copy(doc);
    *st = ELECTIONS_OK;
  } else if (mongoc_cursor_error(cur, &error)) {
    *st = db_error("read", &error);
  }
  mongoc_cursor_destroy(cur);
  mongoc_collection_destroy(coll);
  mongo_release(e->db, client);
  bson_destroy(opts);
  return found;
}

elections_status elections_get(elections *e, const char *id, json_t **item) {
  *item = NULL;
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, "_id", id);
  elections_status st;
  bson_t *doc = find_live(e, &filter, &st);
  bson_destroy(&filter);
  if (doc) {
    *item = render(doc);
    bson_destroy(doc);
  }
  return st;
}

elections_status elections_title_known(elections *e, const char *title, bool *known) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&filter, "title", title);
  elections_status st;
  bson_t *doc = find_live(e, &filter, &st);
  bson_destroy(&filter);
  *known = doc != NULL;
  if (doc) bson_destroy(doc);
  return st == ELECTIONS_UNAVAILABLE ? st : ELECTIONS_OK;
}

elections_status elections_clear(elections *e, int64_t *count) {
  bson_t filter = BSON_INITIALIZER, reply;
  bson_error_t error;
  mongoc_client_t *client = mongo_acquire(e->db);
  mongoc_collection_t *coll = mongo_collection(e->db, client, COLLECTION);
  elections_status st = ELECTIONS_OK;
  *count = 0;
  if (mongoc_collection_delete_many(coll, &filter, NULL, &reply, &error))
    *count = mongo_doc_int(&reply, "deletedCount");
  else
    st = db_error("clear", &error);
  bson_destroy(&reply);
  mongoc_collection_destroy(coll);
  mongo_release(e->db, client);
  bson_destroy(&filter);
  return st;
}

elections_status elections_request_replay(elections *e, const char *request_id,
                                          const authz_headers *auth, char *err, size_t errlen) {
  const char *proof[] = {auth ? auth->consumer : NULL, auth ? auth->scopes : NULL,
                         auth ? auth->proof : NULL, NULL};
  httpc_replay r = {.base_url = e->election_url, .path = "/election/events/replay",
                    .api_key = e->api_key, .request_id = request_id,
                    .headers = auth ? proof : NULL};
  return httpc_request_replay(&r, err, errlen) == 0 ? ELECTIONS_OK : ELECTIONS_UNAVAILABLE;
}
