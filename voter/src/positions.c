/* positions — where each vote stands in the default listing; see positions.h. */
#include "positions.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/log.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define VOTES "votes"
#define CLAIMS "vote_claims"
#define TIPS "vote_tips"
/* vote_tips documents that are not an instance's tip (instance names cannot start with ~) */
#define LEGACY_MOVED "~legacy"
#define FLOOR "~floor"
/* how many taken claim numbers one claim skips before giving up (each is another
 * process's claim made since this one read the tips) */
#define CLAIM_ATTEMPTS 64

static struct {
  pthread_mutex_t mutex;
  char instance[40];
  int64_t claim;     /* the claim being handed out, -1 before the first */
  int64_t next;      /* its next position; POSITIONS_PER_CLAIM when used up */
  int64_t published, published_claim; /* what this instance's tip names, -1 before the first */
} alloc = {.mutex = PTHREAD_MUTEX_INITIALIZER, .instance = "0", .claim = -1,
           .next = POSITIONS_PER_CLAIM, .published = -1, .published_claim = -1};

static bool resume_own_claim(mongoc_collection_t *tips, bson_error_t *error);

bool positions_init(mongo_db *db, const char *instance) {
  pthread_mutex_lock(&alloc.mutex);
  snprintf(alloc.instance, sizeof alloc.instance, "%s", instance);
  pthread_mutex_unlock(&alloc.mutex);
  bson_error_t error;
  bson_t *keys = BCON_NEW(POSITIONS_FIELD, BCON_INT32(1));
  bool ok = mongo_create_index(db, VOTES, POSITIONS_FIELD, keys, false, &error);
  bson_destroy(keys);
  if (!ok) {
    mongo_log_failure("positions", "create index", &error);
    return false;
  }
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  bson_t *marker = BCON_NEW("_id", BCON_UTF8(LEGACY_MOVED));
  int64_t moved = mongoc_collection_count_documents(tips, marker, NULL, NULL, NULL, &error);
  ok = moved >= 0;
  if (ok && moved == 0) {
    /* once per database: FerretDB reads every vote for this filter */
    bson_t *legacy = BCON_NEW(POSITIONS_FIELD, "{", "$exists", BCON_BOOL(false), "}");
    bson_t *set = BCON_NEW("$set", "{", POSITIONS_FIELD, BCON_INT64(POSITIONS_LEGACY), "}");
    bson_t reply;
    ok = mongoc_collection_update_many(votes, legacy, set, NULL, &reply, &error);
    int64_t n = ok ? mongo_doc_int(&reply, "modifiedCount") : 0;
    bson_destroy(&reply);
    /* how many were moved: with none, walks from the start need not read the bucket */
    bson_t *done = BCON_NEW("_id", BCON_UTF8(LEGACY_MOVED), "moved", BCON_INT64(n));
    ok = ok && (mongoc_collection_insert_one(tips, done, NULL, NULL, &error) ||
                mongo_is_duplicate(&error));
    bson_destroy(done);
    if (ok && n > 0)
      log_fields(LOG_INFO, "moved the votes stored without a listing position to the first bucket",
                 json_pack("{s:I}", "votes", (json_int_t)n));
    bson_destroy(legacy);
    bson_destroy(set);
  }
  if (!ok) mongo_log_failure("positions", "move legacy votes", &error);
  if (ok && !resume_own_claim(tips, &error)) {
    mongo_log_failure("positions", "read this instance's tip", &error);
    ok = false;
  }
  bson_destroy(marker);
  mongoc_collection_destroy(tips);
  mongoc_collection_destroy(votes);
  mongo_release(db, client);
  return ok;
}

/* One tip: the claim of its latest hand-out's first position, and the highest bucket it
 * handed out (the claim's last if the tip names none). false for a document that is not a
 * tip. */
static bool tip_of(const bson_t *doc, int64_t *claim, int64_t *bucket) {
  if (!mongo_doc_number(doc, "claim", claim) || *claim < 0) return false;
  if (!mongo_doc_number(doc, "bucket", bucket) || *bucket < *claim * POSITIONS_BUCKETS_PER_CLAIM)
    *bucket = (*claim + 1) * POSITIONS_BUCKETS_PER_CLAIM - 1;
  return true;
}

/* Reads every document of vote_tips, calling each for it. */
static bool read_tips(mongoc_collection_t *tips, void (*each)(const bson_t *doc, void *ctx),
                      void *ctx, bson_error_t *error) {
  bson_t all = BSON_INITIALIZER;
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(tips, &all, NULL, NULL);
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) each(doc, ctx);
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  return ok;
}

/* A restarted instance goes on in the claim its tip names, from the bucket after the tip's
 * (the tip's own may be partly used): a restart then leaves no claim half empty behind,
 * only that bucket. Safe because an instance name belongs to one live process. */
static bool resume_own_claim(mongoc_collection_t *tips, bson_error_t *error) {
  bson_t *mine = BCON_NEW("_id", BCON_UTF8(alloc.instance));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(tips, mine, NULL, NULL);
  const bson_t *doc;
  int64_t claim, bucket;
  pthread_mutex_lock(&alloc.mutex);
  if (alloc.claim < 0 && mongoc_cursor_next(cur, &doc) && tip_of(doc, &claim, &bucket)) {
    alloc.claim = bucket / POSITIONS_BUCKETS_PER_CLAIM;
    alloc.next = (bucket % POSITIONS_BUCKETS_PER_CLAIM + 1) * POSITIONS_PER_BUCKET;
    alloc.published = bucket;
    alloc.published_claim = claim;
  }
  pthread_mutex_unlock(&alloc.mutex);
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  bson_destroy(mine);
  return ok;
}

typedef struct {
  int64_t lowest_claim, highest_claim, floor;
} tips_summary;

static void summarize(const bson_t *doc, void *ctx) {
  tips_summary *t = ctx;
  int64_t claim, bucket, floor;
  if (tip_of(doc, &claim, &bucket)) {
    if (t->highest_claim < claim) t->highest_claim = claim;
    if (t->lowest_claim < 0 || claim < t->lowest_claim) t->lowest_claim = claim;
  } else if (mongo_doc_number(doc, "floor", &floor) && floor > t->floor) {
    t->floor = floor;
  }
}

/* $set of fields on the vote_tips document id, created if missing. */
static bool upsert_tips_doc(mongoc_collection_t *tips, const char *id, const bson_t *fields,
                            bson_error_t *error) {
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
  bson_t update = BSON_INITIALIZER;
  BSON_APPEND_DOCUMENT(&update, "$set", fields);
  bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
  bool ok = mongoc_collection_update_one(tips, filter, &update, opts, NULL, error);
  bson_destroy(filter);
  bson_destroy(&update);
  bson_destroy(opts);
  return ok;
}

/* Writes this instance's tip: the highest bucket handed out, and the claim of the first
 * position of this hand-out. Caller holds alloc.mutex. */
static bool publish_tip(mongo_db *db, mongoc_client_t *client, int64_t claim, int64_t bucket,
                        bson_error_t *error) {
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  bson_t *fields = BCON_NEW("claim", BCON_INT64(claim), "bucket", BCON_INT64(bucket), "at",
                            BCON_DATE_TIME(util_now_ms()));
  bool ok = upsert_tips_doc(tips, alloc.instance, fields, error);
  bson_destroy(fields);
  mongoc_collection_destroy(tips);
  if (ok) {
    alloc.published = bucket;
    alloc.published_claim = claim;
  }
  return ok;
}

/* Claims the next free claim number above every tip. Caller holds alloc.mutex. */
static bool claim_next(mongo_db *db, mongoc_client_t *client, bson_error_t *error) {
  mongoc_collection_t *claims = mongo_collection(db, client, CLAIMS);
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  tips_summary t = {-1, -1, -1};
  bool ok = read_tips(tips, summarize, &t, error);
  int64_t k = (t.highest_claim > alloc.claim ? t.highest_claim : alloc.claim) + 1;
  bool claimed = false;
  for (int attempt = 0; ok && !claimed && attempt < CLAIM_ATTEMPTS; attempt++) {
    bson_t *doc = BCON_NEW("_id", BCON_INT64(k), "by", BCON_UTF8(alloc.instance), "at",
                           BCON_DATE_TIME(util_now_ms()));
    claimed = mongoc_collection_insert_one(claims, doc, NULL, NULL, error);
    if (!claimed && !mongo_is_duplicate(error)) ok = false;
    bson_destroy(doc);
    if (!claimed) k++;
  }
  if (ok && !claimed) {
    bson_set_error(error, MONGOC_ERROR_COLLECTION, MONGOC_ERROR_DUPLICATE_KEY,
                   "%d claim numbers up to %lld were all taken", CLAIM_ATTEMPTS, (long long)k);
    ok = false;
  }
  if (ok) {
    alloc.claim = k;
    alloc.next = 0;
  }
  mongoc_collection_destroy(claims);
  mongoc_collection_destroy(tips);
  return ok;
}

bool positions_take(mongo_db *db, mongoc_client_t *client, size_t n, int64_t *buckets,
                    bson_error_t *error) {
  if (n == 0) return true;
  bool ok = true;
  int64_t first_claim = -1;
  pthread_mutex_lock(&alloc.mutex);
  for (size_t i = 0; ok && i < n; i++) {
    if (alloc.next >= POSITIONS_PER_CLAIM) ok = claim_next(db, client, error);
    if (ok) {
      if (first_claim < 0) first_claim = alloc.claim;
      buckets[i] = alloc.claim * POSITIONS_BUCKETS_PER_CLAIM + alloc.next / POSITIONS_PER_BUCKET;
      alloc.next++;
    }
  }
  /* the tip first: no vote may lie above it (buckets only grow, so the last is the highest),
   * and a drop's floor must not pass a claim still handed out */
  if (ok && (buckets[n - 1] > alloc.published || first_claim > alloc.published_claim))
    ok = publish_tip(db, client, first_claim, buckets[n - 1], error);
  pthread_mutex_unlock(&alloc.mutex);
  return ok;
}

static void add_tip(const bson_t *doc, void *ctx) {
  positions_span *span = ctx;
  int64_t claim, bucket, floor;
  if (tip_of(doc, &claim, &bucket)) {
    if (span->high < bucket) span->high = bucket;
    /* the rest of the claim the bucket is in: no one else hands it out */
    int64_t last = (bucket / POSITIONS_BUCKETS_PER_CLAIM + 1) * POSITIONS_BUCKETS_PER_CLAIM - 1;
    if (bucket < last) {
      span->gaps = xrealloc(span->gaps, (span->ngaps + 1) * sizeof *span->gaps);
      span->gaps[span->ngaps++] = (positions_gap){bucket + 1, last};
    }
  } else if (mongo_doc_number(doc, "floor", &floor) && floor > span->low) {
    span->low = floor;
  } else if (mongo_doc_number(doc, "moved", &floor) && floor == 0 && span->low < 0) {
    span->low = 0; /* no vote was stored without a position: the legacy bucket is empty */
  }
}

static int gap_order(const void *a, const void *b) {
  const positions_gap *x = a, *y = b;
  return (x->from > y->from) - (x->from < y->from);
}

bool positions_range(mongo_db *db, mongoc_client_t *client, positions_span *span,
                     bson_error_t *error) {
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  *span = (positions_span){.low = POSITIONS_LEGACY, .high = POSITIONS_LEGACY};
  bool ok = read_tips(tips, add_tip, span, error);
  mongoc_collection_destroy(tips);
  if (span->ngaps > 1) qsort(span->gaps, span->ngaps, sizeof *span->gaps, gap_order);
  return ok;
}

void positions_span_free(positions_span *span) {
  free(span->gaps);
  span->gaps = NULL;
  span->ngaps = 0;
}

bool positions_after_drop(mongo_db *db, mongoc_client_t *client, bson_error_t *error) {
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  tips_summary t = {-1, -1, -1};
  bool ok = read_tips(tips, summarize, &t, error);
  int64_t floor = t.lowest_claim * POSITIONS_BUCKETS_PER_CLAIM;
  /* a lost update between two drops leaves one of two floors, each safe */
  if (ok && t.lowest_claim >= 0 && floor > t.floor) {
    bson_t *fields = BCON_NEW("floor", BCON_INT64(floor));
    ok = upsert_tips_doc(tips, FLOOR, fields, error);
    bson_destroy(fields);
  }
  mongoc_collection_destroy(tips);
  return ok;
}

/* The next bucket to read after b walking by step, past the gaps (sorted, may overlap). */
static int64_t next_bucket(const positions_span *span, int64_t b, int step) {
  b += step;
  for (bool moved = true; moved;) {
    moved = false;
    for (size_t i = 0; i < span->ngaps; i++)
      if (b >= span->gaps[i].from && b <= span->gaps[i].to) {
        b = step > 0 ? span->gaps[i].to + 1 : span->gaps[i].from - 1;
        moved = true;
      }
  }
  return b;
}

bool positions_page(const positions_span *span, int64_t total, int64_t page, int64_t size,
                    positions_read read, void *ctx, json_t **items, bson_error_t *error) {
  json_t *out = json_array();
  int64_t low = span->low, high = span->high;
  *items = NULL;
  int64_t first = page * size;
  if (first >= total || high < low) {
    *items = out;
    return true;
  }
  int64_t on_page = total - first < size ? total - first : size;
  bool from_end = first + on_page / 2 > total / 2;
  int64_t skip = from_end ? total - first - on_page : first;
  int64_t want = from_end ? on_page : size;
  int step = from_end ? -1 : 1;
  for (int64_t b = next_bucket(span, from_end ? high + 1 : low - 1, step);
       want > 0 && b >= low && b <= high; b = next_bucket(span, b, step)) {
    json_t *got;
    if (!read(ctx, b, &got, error)) {
      json_decref(out);
      return false;
    }
    int64_t n = (int64_t)json_array_size(got);
    if (skip >= n) {
      skip -= n;
    } else if (from_end) { /* the bucket's items from its last, each put in front */
      for (int64_t i = n - 1 - skip; i >= 0 && want > 0; i--, want--)
        json_array_insert(out, 0, json_array_get(got, (size_t)i));
      skip = 0;
    } else {
      for (int64_t i = skip; i < n && want > 0; i++, want--)
        json_array_append(out, json_array_get(got, (size_t)i));
      skip = 0;
    }
    json_decref(got);
  }
  *items = out;
  return true;
}
