/* live_mongo — the mongo module against a real FerretDB (MONGODB_URI from the environment,
 * set by tests/harness.py with-deps, which gives FerretDB's pool 160 PostgreSQL
 * connections like scripts/stack).
 *
 * mongo_bulk_execute keeps at most MONGO_BULK_UPDATES_IN_FLIGHT multi-statement update
 * commands of the process in flight. Without that bound, 60 threads each sending commands
 * of MONGO_UPDATES_PER_COMMAND matching update statements hung FerretDB for every client
 * (each such command holds about one pooled connection per statement until it ends:
 * docs/design.md, "Local database"); with it, every thread's commands finish and every
 * increment is applied once. Each run uses its own database. */
#include "voter/mongo.h"
#include "voter/log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define THREADS 60
#define SECONDS 3

static mongo_db *db;
static char dbname[64];

typedef struct {
  int index;
  int done;     /* commands that succeeded */
  bool failed;
  char error[sizeof(((bson_error_t *)0)->message)];
} worker;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *work(void *arg) {
  worker *w = arg;
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *coll = mongo_collection(db, client, "counters");
  int64_t stop = now_ms() + SECONDS * 1000;
  while (now_ms() < stop) {
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, NULL);
    for (int j = 0; j < MONGO_UPDATES_PER_COMMAND; j++) {
      bson_t *filter = BCON_NEW("_id", BCON_INT32(w->index * MONGO_UPDATES_PER_COMMAND + j));
      bson_t *inc = BCON_NEW("$inc", "{", "n", BCON_INT32(1), "}");
      mongoc_bulk_operation_update_one_with_opts(bulk, filter, inc, NULL, NULL);
      bson_destroy(filter);
      bson_destroy(inc);
    }
    bson_error_t error;
    uint32_t ok = mongo_bulk_execute(bulk, NULL, &error);
    mongoc_bulk_operation_destroy(bulk);
    if (!ok) {
      w->failed = true;
      snprintf(w->error, sizeof w->error, "%s", error.message);
      break;
    }
    w->done++;
  }
  mongoc_collection_destroy(coll);
  mongo_release(db, client);
  return NULL;
}

static void many_bulk_updates_at_once_all_finish(void **state) {
  (void)state;
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *coll = mongo_collection(db, client, "counters");
  const int docs = THREADS * MONGO_UPDATES_PER_COMMAND;
  bson_t **seed = calloc((size_t)docs, sizeof *seed);
  for (int i = 0; i < docs; i++) seed[i] = BCON_NEW("_id", BCON_INT32(i), "n", BCON_INT32(0));
  bson_error_t error;
  bool seeded = mongoc_collection_insert_many(coll, (const bson_t **)seed, (size_t)docs, NULL, NULL, &error);
  for (int i = 0; i < docs; i++) bson_destroy(seed[i]);
  free(seed);
  assert_true(seeded);

  static worker workers[THREADS];
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) {
    workers[t] = (worker){.index = t};
    assert_int_equal(pthread_create(&threads[t], NULL, work, &workers[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  int total = 0, least = -1;
  for (int t = 0; t < THREADS; t++) {
    if (workers[t].failed) fail_msg("thread %d: %s (after %d commands)", t, workers[t].error, workers[t].done);
    total += workers[t].done;
    if (least < 0 || workers[t].done < least) least = workers[t].done;
  }
  printf("live_mongo: %d threads, %d commands of %d statements in %d s (fewest per thread %d)\n",
         THREADS, total, MONGO_UPDATES_PER_COMMAND, SECONDS, least);
  assert_true(least > 0);

  /* every increment applied once: each counter equals its thread's command count */
  bson_t all = BSON_INITIALIZER;
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &all, NULL, NULL);
  const bson_t *doc;
  int seen = 0;
  while (mongoc_cursor_next(cur, &doc)) {
    int id = (int)mongo_doc_int(doc, "_id");
    assert_int_equal(mongo_doc_int(doc, "n"), workers[id / MONGO_UPDATES_PER_COMMAND].done);
    seen++;
  }
  assert_false(mongoc_cursor_error(cur, &error));
  mongoc_cursor_destroy(cur);
  assert_int_equal(seen, docs);
  mongoc_collection_destroy(coll);
  mongo_release(db, client);
}

static int setup(void **state) {
  (void)state;
  const char *uri = getenv("MONGODB_URI");
  if (!uri) {
    fprintf(stderr, "live_mongo: MONGODB_URI is not set (run through tests/harness.py with-deps)\n");
    return -1;
  }
  snprintf(dbname, sizeof dbname, "live_mongo_%ld_%d", (long)time(NULL), (int)getpid());
  mongo_global_init();
  db = mongo_db_open(uri, dbname, "live_mongo");
  return db ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mongo_db_close(db);
  mongo_global_cleanup();
  return 0;
}

int main(void) {
  log_init("live_mongo", "warn");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(many_bulk_updates_at_once_all_finish),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
