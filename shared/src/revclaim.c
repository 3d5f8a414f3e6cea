/* revclaim — revision claims by unique insert; see revclaim.h. */
#include "voter/revclaim.h"

#include <stdio.h>
#include <string.h>

#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/mongo.h"
#include "voter/util.h"

int64_t rev_of(const bson_t *doc) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, "_rev") && BSON_ITER_HOLDS_NUMBER(&it)) return bson_iter_as_int64(&it);
  return 0;
}

void rev_collection_name(const char *collection, char *out, size_t len) {
  snprintf(out, len, "%s_revs", collection);
}

/* "<id>:<rev>", the claim's _id; the id as text (ObjectId hex or the string). */
static void claim_id(const bson_value_t *id, int64_t rev, char *out, size_t len) {
  char text[128] = "?";
  if (id->value_type == BSON_TYPE_OID) bson_oid_to_string(&id->value.v_oid, text);
  else if (id->value_type == BSON_TYPE_UTF8) snprintf(text, sizeof text, "%s", id->value.v_utf8.str);
  snprintf(out, len, "%s:%lld", text, (long long)rev);
}

/* The filter {_id, _rev: base, ...extra} (a document never claimed has no _rev). */
static void base_filter(bson_t *filter, const bson_value_t *id, int64_t base, const bson_t *extra) {
  BSON_APPEND_VALUE(filter, "_id", id);
  if (extra) bson_concat(filter, extra);
  if (base > 0) {
    BSON_APPEND_INT64(filter, "_rev", base);
  } else {
    bson_t ex;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "_rev", &ex);
    BSON_APPEND_BOOL(&ex, "$exists", false);
    bson_append_document_end(filter, &ex);
  }
}

/* update with _rev: rev and _revBy: nonce (the claim that wrote it) added to its $set (a
 * $set is added when it has none). */
static void with_rev(const bson_t *update, int64_t rev, const char *nonce, bson_t *out) {
  bson_iter_t it;
  bool had_set = false;
  bson_init(out);
  if (bson_iter_init(&it, update)) {
    while (bson_iter_next(&it)) {
      const char *key = bson_iter_key(&it);
      if (strcmp(key, "$set") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t inner, set;
        bson_iter_document(&it, &len, &data);
        BSON_APPEND_DOCUMENT_BEGIN(out, "$set", &set);
        if (bson_init_static(&inner, data, len)) bson_concat(&set, &inner);
        BSON_APPEND_INT64(&set, "_rev", rev);
        BSON_APPEND_UTF8(&set, "_revBy", nonce);
        bson_append_document_end(out, &set);
        had_set = true;
      } else {
        BSON_APPEND_VALUE(out, key, bson_iter_value(&it));
      }
    }
  }
  if (!had_set) {
    bson_t set;
    BSON_APPEND_DOCUMENT_BEGIN(out, "$set", &set);
    BSON_APPEND_INT64(&set, "_rev", rev);
    BSON_APPEND_UTF8(&set, "_revBy", nonce);
    bson_append_document_end(out, &set);
  }
}

/* Applies update as revision base+1 (filtered on base). *matched: the document was at
 * base. */
static bool apply(mongoc_collection_t *coll, const bson_value_t *id, int64_t base,
                  const bson_t *extra, const bson_t *update, const char *nonce, bool *matched,
                  bson_error_t *error) {
  bson_t filter = BSON_INITIALIZER, full, reply;
  base_filter(&filter, id, base, extra);
  with_rev(update, base + 1, nonce, &full);
  bool ok = mongoc_collection_update_one(coll, &filter, &full, NULL, &reply, error);
  *matched = ok && mongo_doc_int(&reply, "matchedCount") > 0;
  bson_destroy(&reply);
  bson_destroy(&full);
  bson_destroy(&filter);
  return ok;
}

/* The revision the document has now (-1 when it cannot be read); *mine: written by the
 * claim with this nonce. */
static int64_t current_rev(mongoc_collection_t *coll, const bson_value_t *id, const char *nonce,
                           bool *mine) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_VALUE(&filter, "_id", id);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
  const bson_t *doc;
  int64_t rev = -1;
  *mine = false;
  if (mongoc_cursor_next(cur, &doc)) {
    rev = rev_of(doc);
    const char *by = mongo_doc_str(doc, "_revBy");
    *mine = by && strcmp(by, nonce) == 0;
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  return rev;
}

/* Claims are kept for the last REV_KEEP revisions of a document: the claim of revision
 * rev - REV_KEEP goes when rev is written. A writer that read a revision so old that its
 * claim id is free again wins that claim, matches nothing and reads again (its nonce is
 * not on the document), so pruning never makes a write look applied. */
#define REV_KEEP 16

static void prune(mongoc_collection_t *revs, const bson_value_t *id, int64_t rev) {
  if (rev <= REV_KEEP) return;
  char cid[160];
  claim_id(id, rev - REV_KEEP, cid, sizeof cid);
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(cid));
  bson_error_t error;
  mongoc_collection_delete_one(revs, filter, NULL, NULL, &error);
  bson_destroy(filter);
}

static void withdraw(mongoc_collection_t *revs, const char *cid) {
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(cid));
  bson_error_t error;
  mongoc_collection_delete_one(revs, filter, NULL, NULL, &error);
  bson_destroy(filter);
}

/* Another writer holds the claim cid on base+1: when it is older than REV_STALE_MS, its
 * writer is taken for dead and its stored update is applied here (roll forward), under
 * the claim's nonce, so that writer - should it only have been slow - recognises it. */
static void roll_forward(mongoc_collection_t *coll, mongoc_collection_t *revs,
                         const bson_value_t *id, int64_t base, const char *cid) {
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(cid));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(revs, filter, NULL, NULL);
  const bson_t *claim;
  bson_iter_t it;
  const char *nonce = NULL;
  if (mongoc_cursor_next(cur, &claim) && (nonce = mongo_doc_str(claim, "nonce")) &&
      bson_iter_init_find(&it, claim, "createdAt") && BSON_ITER_HOLDS_DATE_TIME(&it) &&
      util_now_ms() - bson_iter_date_time(&it) > REV_STALE_MS &&
      bson_iter_init_find(&it, claim, "update") && BSON_ITER_HOLDS_BINARY(&it)) {
    uint32_t len;
    const uint8_t *data;
    bson_t update, extra;
    bson_iter_binary(&it, NULL, &len, &data);
    bool ok = bson_init_static(&update, data, len);
    bool has_extra = bson_iter_init_find(&it, claim, "filter") && BSON_ITER_HOLDS_BINARY(&it);
    if (has_extra) {
      bson_iter_binary(&it, NULL, &len, &data);
      ok = ok && bson_init_static(&extra, data, len);
    }
    bson_error_t error;
    bool matched = false, mine;
    if (ok && !apply(coll, id, base, has_extra ? &extra : NULL, &update, nonce, &matched, &error)) {
      if (mongo_is_duplicate(&error)) withdraw(revs, cid); /* it can never apply */
      else log_warn("revclaim: cannot roll %s forward: %s", cid, error.message);
    } else if (ok && matched) {
      metrics_counter_inc("revision_claims_rolled_forward_total", "");
    } else if (ok && current_rev(coll, id, nonce, &mine) == base) {
      withdraw(revs, cid); /* its guard no longer holds: it can never apply */
    }
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
}

rev_result rev_update(mongoc_collection_t *coll, mongoc_collection_t *revs, const bson_value_t *id,
                      int64_t rev, const bson_t *extra, const bson_t *update, bson_error_t *error) {
  char cid[160], nonce[25];
  claim_id(id, rev + 1, cid, sizeof cid);
  bson_oid_t unique; /* 12 bytes unique to this process and moment: the claim's nonce */
  bson_oid_init(&unique, NULL);
  bson_oid_to_string(&unique, nonce);
  bson_t claim = BSON_INITIALIZER;
  BSON_APPEND_UTF8(&claim, "_id", cid);
  BSON_APPEND_UTF8(&claim, "nonce", nonce);
  /* as BSON bytes: a stored document may not have "$set" and the like as keys */
  BSON_APPEND_BINARY(&claim, "update", BSON_SUBTYPE_BINARY, bson_get_data(update), update->len);
  if (extra) BSON_APPEND_BINARY(&claim, "filter", BSON_SUBTYPE_BINARY, bson_get_data(extra), extra->len);
  BSON_APPEND_DATE_TIME(&claim, "createdAt", util_now_ms());
  bool won = mongoc_collection_insert_one(revs, &claim, NULL, NULL, error);
  bson_destroy(&claim);
  if (!won) {
    if (!mongo_is_duplicate(error)) return REV_ERROR;
    roll_forward(coll, revs, id, rev, cid);
    return REV_BUSY;
  }
  bool matched, mine;
  if (!apply(coll, id, rev, extra, update, nonce, &matched, error)) {
    if (!mongo_is_duplicate(error)) return REV_ERROR; /* the claim stays: rolled forward later */
    withdraw(revs, cid);
    return REV_DUPLICATE;
  }
  if (matched) {
    prune(revs, id, rev + 1);
    return REV_APPLIED;
  }
  int64_t now = current_rev(coll, id, nonce, &mine);
  /* a helper rolled this claim forward (this writer was slower than REV_STALE_MS) */
  if (mine && now == rev + 1) return REV_APPLIED;
  /* Nothing of this claim was written: the guard did not hold at rev, or the revision
   * this writer read is long gone (its claim id was pruned and free again). The claim is
   * withdrawn so that it is never rolled forward. */
  withdraw(revs, cid);
  return extra && now == rev ? REV_UNMATCHED : REV_BUSY;
}
