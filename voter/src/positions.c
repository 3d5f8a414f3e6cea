/* positions — where each vote stands in the default listing; see positions.h. */
#include "positions.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "voter/log.h"
#include "voter/util.h"

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
  int64_t claim; /* the claim being handed out, -1 before the first */
  int64_t next;  /* its next position; POSITIONS_PER_CLAIM when used up */
} alloc = {.mutex = PTHREAD_MUTEX_INITIALIZER, .instance = "0", .claim = -1,
           .next = POSITIONS_PER_CLAIM};

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
    ok = mongoc_collection_update_many(votes, legacy, set, NULL, &reply, &error) &&
         (mongoc_collection_insert_one(tips, marker, NULL, NULL, &error) ||
          mongo_is_duplicate(&error));
    if (ok && mongo_doc_int(&reply, "modifiedCount") > 0)
      log_fields(LOG_INFO, "moved the votes stored without a listing position to the first bucket",
                 json_pack("{s:I}", "votes", (json_int_t)mongo_doc_int(&reply, "modifiedCount")));
    bson_destroy(&reply);
    bson_destroy(legacy);
    bson_destroy(set);
  }
  if (!ok) mongo_log_failure("positions", "move legacy votes", &error);
  bson_destroy(marker);
  mongoc_collection_destroy(tips);
  mongoc_collection_destroy(votes);
  mongo_release(db, client);
  return ok;
}

/* The tips' highest and lowest claims (-1, -1 when there is none) and the floor (-1 when
 * none was recorded). */
static bool read_tips(mongoc_collection_t *tips, int64_t *lowest, int64_t *highest,
                      int64_t *floor, bson_error_t *error) {
  bson_t all = BSON_INITIALIZER;
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(tips, &all, NULL, NULL);
  const bson_t *doc;
  *lowest = *highest = *floor = -1;
  while (mongoc_cursor_next(cur, &doc)) {
    int64_t v;
    if (mongo_doc_number(doc, "claim", &v) && v >= 0) {
      if (*highest < v) *highest = v;
      if (*lowest < 0 || v < *lowest) *lowest = v;
    } else if (mongo_doc_number(doc, "floor", &v) && v > *floor) {
      *floor = v;
    }
  }
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  return ok;
}

/* Claims the next free claim number above every tip and records it as this instance's
 * tip; only then may its positions be handed out. Caller holds alloc.mutex. */
static bool claim_next(mongo_db *db, mongoc_client_t *client, bson_error_t *error) {
  mongoc_collection_t *claims = mongo_collection(db, client, CLAIMS);
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  int64_t lowest, highest, floor;
  bool ok = read_tips(tips, &lowest, &highest, &floor, error);
  int64_t k = (highest > alloc.claim ? highest : alloc.claim) + 1;
  bool claimed = false;
  for (int attempt = 0; ok && !claimed && attempt < CLAIM_ATTEMPTS; attempt++, k++) {
    bson_t *doc = BCON_NEW("_id", BCON_INT64(k), "by", BCON_UTF8(alloc.instance), "at",
                           BCON_DATE_TIME(util_now_ms()));
    claimed = mongoc_collection_insert_one(claims, doc, NULL, NULL, error);
    if (!claimed && !mongo_is_duplicate(error)) ok = false;
    bson_destroy(doc);
    if (claimed) break;
  }
  if (ok && !claimed) {
    bson_set_error(error, MONGOC_ERROR_COLLECTION, MONGOC_ERROR_DUPLICATE_KEY,
                   "%d claim numbers from %lld on were all taken", CLAIM_ATTEMPTS,
                   (long long)(k - CLAIM_ATTEMPTS));
    ok = false;
  }
  if (ok) {
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(alloc.instance));
    bson_t *set = BCON_NEW("$set", "{", "claim", BCON_INT64(k), "at", BCON_DATE_TIME(util_now_ms()), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    ok = mongoc_collection_update_one(tips, filter, set, opts, NULL, error);
    bson_destroy(filter);
    bson_destroy(set);
    bson_destroy(opts);
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
  bool ok = true;
  pthread_mutex_lock(&alloc.mutex);
  for (size_t i = 0; ok && i < n; i++) {
    if (alloc.next >= POSITIONS_PER_CLAIM) ok = claim_next(db, client, error);
    if (ok) {
      buckets[i] = alloc.claim * POSITIONS_BUCKETS_PER_CLAIM + alloc.next / POSITIONS_PER_BUCKET;
      alloc.next++;
    }
  }
  pthread_mutex_unlock(&alloc.mutex);
  return ok;
}

bool positions_range(mongo_db *db, mongoc_client_t *client, int64_t *low, int64_t *high,
                     bson_error_t *error) {
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  int64_t lowest, highest, floor;
  bool ok = read_tips(tips, &lowest, &highest, &floor, error);
  mongoc_collection_destroy(tips);
  *low = floor >= 0 ? floor : POSITIONS_LEGACY;
  *high = highest >= 0 ? (highest + 1) * POSITIONS_BUCKETS_PER_CLAIM - 1 : POSITIONS_LEGACY;
  return ok;
}

bool positions_after_drop(mongo_db *db, mongoc_client_t *client, bson_error_t *error) {
  mongoc_collection_t *tips = mongo_collection(db, client, TIPS);
  int64_t lowest, highest, floor;
  bool ok = read_tips(tips, &lowest, &highest, &floor, error);
  /* a lost update between two drops leaves one of two floors, each safe */
  if (ok && lowest >= 0 && lowest * POSITIONS_BUCKETS_PER_CLAIM > floor) {
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(FLOOR));
    bson_t *set = BCON_NEW("$set", "{", "floor", BCON_INT64(lowest * POSITIONS_BUCKETS_PER_CLAIM), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    ok = mongoc_collection_update_one(tips, filter, set, opts, NULL, error);
    bson_destroy(filter);
    bson_destroy(set);
    bson_destroy(opts);
  }
  mongoc_collection_destroy(tips);
  return ok;
}

bool positions_page(int64_t low, int64_t high, int64_t total, int64_t page, int64_t size,
                    positions_read read, void *ctx, json_t **items, bson_error_t *error) {
  json_t *out = json_array();
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
  for (int64_t b = from_end ? high : low; want > 0 && b >= low && b <= high; b += from_end ? -1 : 1) {
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
