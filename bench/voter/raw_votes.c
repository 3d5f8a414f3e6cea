/* raw_votes — the references for the voter benchmark, straight through mongo-c-driver:
 *
 *   insert N:     insert N vote documents (shaped like the service's) with insert_many in
 *                 chunks of 500, as fast as one client can; prints votes/s.
 *   aggregate S:  run the original's per-request results query ($match election +
 *                 $group by candidate) for S seconds; prints queries/s and p50/p99.
 *
 * usage: raw_votes URI DATABASE ELECTION insert N | aggregate SECONDS */
#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: raw_votes URI DATABASE ELECTION insert N | aggregate SECONDS\n");
    return 2;
  }
  mongoc_init();
  mongoc_client_t *client = mongoc_client_new(argv[1]);
  mongoc_collection_t *coll = mongoc_client_get_collection(client, argv[2], "votes");
  const char *election = argv[3];
  bson_error_t error;
  int rc = 0;
  if (strcmp(argv[4], "insert") == 0) {
    long n = atol(argv[5]);
    double t0 = now();
    for (long done = 0; done < n;) {
      enum { CHUNK = 500 };
      bson_t *docs[CHUNK];
      int k = 0;
      for (; k < CHUNK && done + k < n; k++) {
        char cand[32];
        snprintf(cand, sizeof cand, "Candidate %ld", (done + k) % 8);
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        docs[k] = BCON_NEW("_id", BCON_OID(&oid), "candidate", BCON_UTF8(cand), "election",
                           BCON_UTF8(election), "createdAt", BCON_DATE_TIME(0), "tallied",
                           BCON_BOOL(true), "deleted", BCON_BOOL(false));
      }
      bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
      if (!mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)k, opts, NULL, &error)) {
        fprintf(stderr, "insert_many: %s\n", error.message);
        rc = 1;
      }
      bson_destroy(opts);
      for (int i = 0; i < k; i++) bson_destroy(docs[i]);
      done += k;
      if (rc) break;
    }
    double secs = now() - t0;
    printf("votes=%ld seconds=%.2f votes_per_s=%.1f\n", n, secs, (double)n / secs);
  } else {
    double duration = atof(argv[5]), end = now() + duration;
    size_t cap = 100000, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    bson_t *pipeline = BCON_NEW("pipeline", "[", "{", "$match", "{", "election", BCON_UTF8(election),
                                "deleted", BCON_BOOL(false), "}", "}", "{", "$group", "{", "_id",
                                BCON_UTF8("$candidate"), "n", "{", "$sum", BCON_INT32(1), "}", "}",
                                "}", "]");
    double t0 = now();
    while (now() < end || n == 0) {
      double q0 = now();
      mongoc_cursor_t *cur = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
      const bson_t *doc;
      while (mongoc_cursor_next(cur, &doc)) {
      }
      if (mongoc_cursor_error(cur, &error)) {
        fprintf(stderr, "aggregate: %s\n", error.message);
        rc = 1;
      }
      mongoc_cursor_destroy(cur);
      if (n < cap) lat[n++] = now() - q0;
      if (rc) break;
    }
    double secs = now() - t0;
    qsort(lat, n, sizeof *lat, cmp);
    printf("queries=%zu seconds=%.2f qps=%.2f p50_ms=%.1f p99_ms=%.1f\n", n, secs, (double)n / secs,
           lat[n / 2] * 1000, lat[(size_t)((double)n * 0.99)] * 1000);
    bson_destroy(pipeline);
    free(lat);
  }
  mongoc_collection_destroy(coll);
  mongoc_client_destroy(client);
  mongoc_cleanup();
  return rc;
}
