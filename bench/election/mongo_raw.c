/* mongo_raw — the reference for the election benchmark: the same operations the service
 * performs per request, done directly with mongo-c-driver against the same server.
 *
 *   insert: one document shaped like a stored election (with its outbox entry) into a
 *           collection with the same unique index;
 *   get:    find one document by _id.
 *
 * usage: mongo_raw URI DATABASE insert|get SECONDS THREADS
 * prints: ops=<n> seconds=<s> rps=<r> p50_ms=<x> p99_ms=<y> */
#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES 2000000

static mongoc_client_pool_t *pool;
static const char *dbname;
static int mode_insert;
static double duration;
static bson_oid_t target;
static double *samples;
static size_t nsamples;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bson_t *election_doc(long n) {
  char title[64];
  snprintf(title, sizeof title, "raw election %ld-%ld", (long)getpid(), n);
  bson_oid_t oid;
  bson_oid_init(&oid, NULL);
  return BCON_NEW("_id", BCON_OID(&oid), "title", BCON_UTF8(title), "titleKey", BCON_UTF8(title),
                  "date", BCON_DATE_TIME(1478563200000LL), "electionType", BCON_UTF8("FEDERAL"),
                  "description", BCON_UTF8("benchmark"), "version", BCON_INT64(1), "deleted",
                  BCON_BOOL(false), "createdAt", BCON_DATE_TIME(0), "updatedAt", BCON_DATE_TIME(0),
                  "_outbox", "[", "{", "id", BCON_UTF8("00000000-0000-4000-8000-000000000000"),
                  "type", BCON_UTF8("election.created"), "body",
                  BCON_UTF8("{\"specversion\":\"1.0\"}"), "}", "]", "_outboxSeq", BCON_INT64(1),
                  "_pending", BCON_BOOL(true));
}

static void *worker(void *arg) {
  long id = (long)(size_t)arg;
  mongoc_client_t *client = mongoc_client_pool_pop(pool);
  mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "elections");
  double end = now() + duration;
  long n = 0;
  double *local = malloc(sizeof(double) * 200000);
  size_t nlocal = 0;
  while (now() < end) {
    double t0 = now();
    bson_error_t error;
    if (mode_insert) {
      bson_t *doc = election_doc(id * 100000000L + n);
      if (!mongoc_collection_insert_one(coll, doc, NULL, NULL, &error))
        fprintf(stderr, "insert: %s\n", error.message);
      bson_destroy(doc);
    } else {
      bson_t *filter = BCON_NEW("_id", BCON_OID(&target));
      mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
      const bson_t *doc;
      if (!mongoc_cursor_next(cur, &doc)) fprintf(stderr, "get: not found\n");
      mongoc_cursor_destroy(cur);
      bson_destroy(filter);
    }
    if (nlocal < 200000) local[nlocal++] = now() - t0;
    n++;
  }
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < nlocal && nsamples < MAX_SAMPLES; i++) samples[nsamples++] = local[i];
  pthread_mutex_unlock(&lock);
  free(local);
  mongoc_collection_destroy(coll);
  mongoc_client_pool_push(pool, client);
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: mongo_raw URI DATABASE insert|get SECONDS THREADS\n");
    return 2;
  }
  mongoc_init();
  mongoc_uri_t *uri = mongoc_uri_new(argv[1]);
  pool = mongoc_client_pool_new(uri);
  dbname = argv[2];
  mode_insert = strcmp(argv[3], "insert") == 0;
  duration = atof(argv[4]);
  int threads = atoi(argv[5]);
  samples = malloc(sizeof(double) * MAX_SAMPLES);

  mongoc_client_t *client = mongoc_client_pool_pop(pool);
  mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "elections");
  bson_t *index = BCON_NEW("createIndexes", BCON_UTF8("elections"), "indexes", "[", "{", "key",
                           "{", "titleKey", BCON_INT32(1), "}", "name", BCON_UTF8("titleKey_unique"),
                           "unique", BCON_BOOL(true), "}", "]");
  bson_error_t error;
  mongoc_client_write_command_with_opts(client, dbname, index, NULL, NULL, &error);
  bson_destroy(index);
  if (!mode_insert) {
    bson_t *doc = election_doc(-1);
    bson_iter_t it;
    bson_iter_init_find(&it, doc, "_id");
    bson_oid_copy(bson_iter_oid(&it), &target);
    mongoc_collection_insert_one(coll, doc, NULL, NULL, &error);
    bson_destroy(doc);
  }
  mongoc_collection_destroy(coll);
  mongoc_client_pool_push(pool, client);

  pthread_t t[64];
  double start = now();
  for (long i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)(size_t)i);
  for (long i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
  double secs = now() - start;
  qsort(samples, nsamples, sizeof(double), cmp);
  printf("ops=%zu seconds=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f\n", nsamples, secs,
         (double)nsamples / secs, nsamples ? samples[nsamples / 2] * 1000 : 0,
         nsamples ? samples[(size_t)((double)nsamples * 0.99)] * 1000 : 0);
  free(samples);
  mongoc_client_pool_destroy(pool);
  mongoc_uri_destroy(uri);
  mongoc_cleanup();
  return 0;
}
