/* mongo — the suite's wrapper around mongo-c-driver (prefix mongo_).
 *
 * One mongo_db per service: a thread-safe client pool bound to the service's own
 * database. Domain code borrows a client for one operation (mongo_acquire/release) and
 * builds BSON itself; this module keeps pool set-up, error mapping and BSON<->JSON in one
 * place. Only features that both MongoDB 7 and FerretDB 1.24 support are used. */
#ifndef VOTER_MONGO_H
#define VOTER_MONGO_H

#include <jansson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>

typedef struct mongo_db mongo_db;

/* uri: mongodb://host:port/...; database: the service's database name. NULL on a bad URI. */
mongo_db *mongo_db_open(const char *uri, const char *database, const char *appname);
void mongo_db_close(mongo_db *db);
const char *mongo_db_name(const mongo_db *db);

mongoc_client_t *mongo_acquire(mongo_db *db);
void mongo_release(mongo_db *db, mongoc_client_t *client);
/* A collection handle of db's database on client; caller destroys it. */
mongoc_collection_t *mongo_collection(mongo_db *db, mongoc_client_t *client, const char *name);

/* Round trip to the server ({ping:1}); false with error set when unreachable. */
bool mongo_ping(mongo_db *db, bson_error_t *error);

/* Creates an index (idempotent); keys like {"title":1}. */
bool mongo_create_index(mongo_db *db, const char *collection, const char *name, const bson_t *keys,
                        bool unique, bson_error_t *error);

/* The most update statements one command may carry (a bulk write of more is sent as
 * several commands). FerretDB 1.24 (PostgreSQL backend) keeps each statement's query open,
 * holding one of its 50 pooled PostgreSQL connections, until the whole command ends
 * (handler/msg_update.go defers each iterator's close to the end of the command), and
 * then takes one more connection for the statement's write. A command of 50 matching
 * statements therefore waits forever for a 51st connection, and so, from then on, does
 * every request of every client: the database stops answering until FerretDB restarts.
 * Commands of a few statements hold a few connections only and release them at once. */
#define MONGO_UPDATES_PER_COMMAND 8

/* Commands of several statements hold their connections together, so several such
 * commands at once hang FerretDB just as one long one does: measured with the pool of 50,
 * seven concurrent commands of 8 update statements hung it, six did not, and forty of 2
 * did (docs/design.md, "At most 8 update statements per command"). A process therefore
 * keeps at most this many multi-statement update commands in flight (mongo_bulk_execute):
 * 2 x 8 = 16 connections, whatever its threads; the local stack's pool has 160
 * (pool_max_conns in scripts/stack and tests/harness.py), room for several replicas. */
#define MONGO_BULK_UPDATES_IN_FLIGHT 2

/* mongoc_bulk_operation_execute under the process's MONGO_BULK_UPDATES_IN_FLIGHT bound;
 * the same result. Every multi-statement update command goes through it. */
uint32_t mongo_bulk_execute(mongoc_bulk_operation_t *bulk, bson_t *reply, bson_error_t *error);

/* Logs a failed database call the one way ("<module>: <what> failed: <message>", warn):
 * each store then returns its own "unavailable" status. */
void mongo_log_failure(const char *module, const char *what, const bson_error_t *error);

/* true when the error is a duplicate-key violation (E11000). */
bool mongo_is_duplicate(const bson_error_t *error);

/* ---- reading documents ---- */

/* A string member (NULL when absent or not a string). */
const char *mongo_doc_str(const bson_t *doc, const char *key);
/* A numeric member as int64 (0 when absent). */
int64_t mongo_doc_int(const bson_t *doc, const char *key);
/* The same, telling absent from 0: false (and *out = 0) when not a number. */
bool mongo_doc_number(const bson_t *doc, const char *key, int64_t *out);
/* A date member in milliseconds since the epoch (0 when absent or not a date). */
int64_t mongo_doc_date(const bson_t *doc, const char *key);
/* true only for a boolean member that is true. */
bool mongo_doc_bool(const bson_t *doc, const char *key);
/* A string member as JSON, null when absent. */
json_t *mongo_doc_json_str(const bson_t *doc, const char *key);

/* Appends a string member, or null when value is NULL (an optional field left out). */
void mongo_append_str_or_null(bson_t *dst, const char *key, const char *value);

#define MONGO_MAX_SORT 4

/* One page of a sorted collection, in storage terms. */
typedef struct mongo_page {
  int64_t page, size;
  const char *sort_fields[MONGO_MAX_SORT]; /* document field names */
  int sort_dirs[MONGO_MAX_SORT];           /* 1 asc, -1 desc */
  int nsort;
} mongo_page;

/* Renders one stored document as its client representation (a new reference). */
typedef json_t *(*mongo_render)(const bson_t *doc);

/* Counts the documents matching filter and renders the requested page of them, sorted by
 * the page's fields with ties broken by _id so paging is stable. false (error set) on a
 * database failure. */
bool mongo_find_page(mongoc_collection_t *coll, const bson_t *filter, const mongo_page *page,
                     mongo_render render, json_t **items, int64_t *total, bson_error_t *error);

/* The requested page when the number of matching documents is already known (total, e.g.
 * from stored counters), without counting them: a page past the end reads nothing, and a
 * page in the second half is read backwards from the end (every sort direction reversed,
 * skipping only what follows it), so the first and the last page skip nothing — with an
 * index on the sort, constant cost in MongoDB whatever the size. If total is off (writes
 * not yet counted), pages read from the end shift by that much. */
bool mongo_find_page_of(mongoc_collection_t *coll, const bson_t *filter, const mongo_page *page,
                        int64_t total, mongo_render render, json_t **items, bson_error_t *error);

/* Relaxed Extended JSON conversion (ObjectId → {"$oid":...}); NULL on failure. */
json_t *mongo_bson_to_json(const bson_t *doc);
/* JSON object → BSON; false on failure (keys are expected to be validated already). */
bool mongo_json_to_bson(const json_t *obj, bson_t *out);

/* Must be called once at start and once at exit (wraps mongoc_init/cleanup). */
void mongo_global_init(void);
void mongo_global_cleanup(void);

#endif
