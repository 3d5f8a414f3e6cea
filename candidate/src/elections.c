/* elections — the election replica: consumer, reads, clear and replay; see elections.h. */
#include "elections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/hal.h"
#include "voter/httpc.h"
#include "voter/log.h"
#include "voter/replica_read.h"
#include "voter/replica.h"
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

static elections_status status_of(replica_read_status st) {
  switch (st) {
  case REPLICA_READ_OK: return ELECTIONS_OK;
  case REPLICA_READ_NOT_FOUND: return ELECTIONS_NOT_FOUND;
  default: return ELECTIONS_UNAVAILABLE;
  }
}

elections_status elections_list(elections *e, const mongo_page *q, const char *type_contains,
                                json_t **items, int64_t *total) {
  return status_of(replica_read_list(e->db, COLLECTION, "electionType", type_contains, q, render,
                                     items, total));
}

elections_status elections_get(elections *e, const char *id, json_t **item) {
  return status_of(replica_read_get(e->db, COLLECTION, id, render, item));
}

elections_status elections_title_known(elections *e, const char *title, bool *known) {
  const char *const match[] = {"title", title, NULL};
  return status_of(replica_read_known(e->db, COLLECTION, match, known));
}

elections_status elections_clear(elections *e, int64_t *count) {
  return status_of(replica_read_clear(e->db, COLLECTION, count));
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
