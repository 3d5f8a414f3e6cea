/* votes — votes, tallies, idempotency; see votes.h. */
#include "votes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally_logic.h"
#include "voter/crashpoint.h"
#include "voter/events.h"
#include "voter/idem.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/replica_read.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define VOTES "votes"
#define TALLIES "tallies"
#define CHUNKS "chunks"

static vs_status db_error(const char *what, const bson_error_t *e) {
  mongo_log_failure("votes", what, e);
  return VS_UNAVAILABLE;
}

/* Serializes every tally change of one election in this process. */
static void election_lock(const char *election) {
  char key[600];
  snprintf(key, sizeof key, "tally\x1f%s", election);
  ev_doc_lock(key);
}

static void election_unlock(const char *election) {
  char key[600];
  snprintf(key, sizeof key, "tally\x1f%s", election);
  ev_doc_unlock(key);
}

static void tally_key(char *out, size_t len, const char *election, const char *candidate) {
  snprintf(out, len, "%s\x1f%s", election, candidate);
}

bool votes_init(mongo_db *db) {
  bson_error_t error;
  bson_t *by_election = BCON_NEW("election", BCON_INT32(1), "tallied", BCON_INT32(1));
  bson_t *tallied = BCON_NEW("tallied", BCON_INT32(1));
  bson_t *tally = BCON_NEW("election", BCON_INT32(1));
  bson_t *chunk = BCON_NEW("state", BCON_INT32(1));
  metrics_describe("votes_recounts_total", "counter",
                   "Elections whose tallies were recomputed from the votes, by reason "
                   "(startup, periodic, retry, chunk)");
  metrics_describe("votes_chunks_recounted_total", "counter",
                   "Bulk chunks redelivered after an interrupted count, whose elections were recounted");
  idem_describe_metrics();
  bool ok = mongo_create_index(db, VOTES, "election_tallied", by_election, false, &error) &&
            mongo_create_index(db, VOTES, "tallied", tallied, false, &error) &&
            mongo_create_index(db, CHUNKS, "state", chunk, false, &error) &&
            mongo_create_index(db, TALLIES, "election", tally, false, &error);
  if (!ok) log_warn("votes: cannot create indexes yet: %s", error.message);
  bson_destroy(by_election);
  bson_destroy(chunk);
  bson_destroy(tallied);
  bson_destroy(tally);
  return ok;
}

/* The replicas decide what a vote may name: a live election with this title, and a live
 * candidate of this full name standing in it. */
vs_status votes_check(mongo_db *db, const char *candidate, const char *election) {
  bool found;
  const char *const election_match[] = {"title", election, NULL};
  if (replica_read_known(db, "elections", election_match, &found) != REPLICA_READ_OK)
    return VS_UNAVAILABLE;
  if (!found) return VS_UNKNOWN_ELECTION;
  const char *const candidate_match[] = {"fullName", candidate, "election", election, NULL};
  if (replica_read_known(db, "candidates", candidate_match, &found) != REPLICA_READ_OK)
    return VS_UNAVAILABLE;
  return found ? VS_OK : VS_UNKNOWN_CANDIDATE;
}

static bool tally_add(mongoc_collection_t *tallies, const char *election, const char *candidate,
                      int64_t delta, bson_error_t *error) {
  char key[1100];
  tally_key(key, sizeof key, election, candidate);
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(key));
  bson_t *update = BCON_NEW("$inc", "{", "votes", BCON_INT64(delta), "}", "$set", "{", "election",
                            BCON_UTF8(election), "candidate", BCON_UTF8(candidate), "}");
  bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
  bool ok = mongoc_collection_update_one(tallies, filter, update, opts, NULL, error);
  bson_destroy(filter);
  bson_destroy(update);
  bson_destroy(opts);
  return ok;
}

static json_t *vote_item(const char *id, const char *candidate, const char *election) {
  return json_pack("{s:s, s:s, s:s}", "id", id, "candidate", candidate, "election", election);
}

static json_t *doc_to_vote(const bson_t *doc);
static vs_status recount(mongoc_collection_t *votes, mongoc_collection_t *tallies,
                         const char *election, const char *reason);

/* Counts a vote just inserted: its tally, then its flag. If either step is lost (a crash,
 * a failed write) the vote stays tallied: false and a recount repairs the tally from the
 * votes; nothing here is ever redone blindly. */
static void count_new_vote(mongoc_collection_t *votes, mongoc_collection_t *tallies,
                           const bson_oid_t *oid, const char *election, const char *candidate) {
  bson_error_t error;
  CRASH_POINT("vote.inserted");
  if (!tally_add(tallies, election, candidate, 1, &error)) {
    log_warn("votes: tally update failed, reconciliation will recount: %s", error.message);
    return;
  }
  CRASH_POINT("vote.tallied");
  bson_t *filter = BCON_NEW("_id", BCON_OID(oid));
  bson_t *update = BCON_NEW("$set", "{", "tallied", BCON_BOOL(true), "}");
  mongoc_collection_update_one(votes, filter, update, NULL, NULL, &error);
  bson_destroy(filter);
  bson_destroy(update);
}

/* A retry found the vote an earlier attempt wrote. If that attempt stopped before the
 * vote was counted (tallied still false) and is old enough that no live request of any
 * replica can still be counting it, the retry finishes the work: a recount of the
 * election, under its lock. A younger one is left to its own request or to the
 * reconciliation, which only looks at votes older than its period. */
static vs_status finish_earlier_attempt(mongoc_collection_t *votes, mongoc_collection_t *tallies,
                                        const bson_t *doc) {
  bson_iter_t it;
  int64_t created = 0;
  if (bson_iter_init_find(&it, doc, "createdAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
    created = bson_iter_date_time(&it);
  if (!tally_retry_recounts(mongo_doc_bool(doc, "tallied"), mongo_doc_bool(doc, "deleted"),
                            created, util_now_ms()))
    return VS_OK;
  metrics_counter_inc("idempotency_takeovers_total", "kind=\"vote\"");
  return recount(votes, tallies, mongo_doc_str(doc, "election"), "retry");
}

vs_status votes_create(mongo_db *db, const char *candidate, const char *election,
                       const vote_key *key, json_t **item) {
  bson_oid_t oid;
  if (key) bson_oid_copy(key->id, &oid);
  else bson_oid_init(&oid, NULL);
  char id[25];
  bson_oid_to_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  bson_t *doc = BCON_NEW("_id", BCON_OID(&oid), "candidate", BCON_UTF8(candidate), "election",
                         BCON_UTF8(election), "createdAt", BCON_DATE_TIME(util_now_ms()),
                         "tallied", BCON_BOOL(false), "deleted", BCON_BOOL(false));
  if (key) BSON_APPEND_UTF8(doc, IDEM_FIELD, key->fingerprint);
  bson_error_t error;
  bson_t *existing = NULL;
  vs_status st = VS_CREATED;
  *item = NULL;
  election_lock(election);
  idem_result r = key ? idem_insert(votes, doc, key->fingerprint, "vote", &existing, &error)
                      : (mongoc_collection_insert_one(votes, doc, NULL, NULL, &error) ? IDEM_INSERTED
                                                                                       : IDEM_ERROR);
  switch (r) {
  case IDEM_INSERTED:
    count_new_vote(votes, tallies, &oid, election, candidate);
    *item = vote_item(id, candidate, election);
    break;
  case IDEM_EXISTS:
    st = finish_earlier_attempt(votes, tallies, existing);
    if (st == VS_OK) {
      st = VS_REPLAYED;
      *item = doc_to_vote(existing);
    }
    break;
  case IDEM_MISMATCH: st = VS_MISMATCH; break;
  default: st = db_error("insert vote", &error); break;
  }
  election_unlock(election);
  if (existing) bson_destroy(existing);
  bson_destroy(doc);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongo_release(db, client);
  return st;
}

vs_status votes_find_keyed(mongo_db *db, const vote_key *key, json_t **item) {
  *item = NULL;
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  bson_t *filter = BCON_NEW("_id", BCON_OID(key->id));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(votes, filter, NULL, NULL);
  const bson_t *doc;
  bson_error_t error;
  vs_status st = VS_NOT_FOUND;
  if (mongoc_cursor_next(cur, &doc)) {
    st = idem_same_request(doc, key->fingerprint) ? VS_REPLAYED : VS_MISMATCH;
    if (st == VS_REPLAYED) *item = doc_to_vote(doc);
  } else if (mongoc_cursor_error(cur, &error)) {
    st = db_error("read vote", &error);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  mongoc_collection_destroy(votes);
  mongo_release(db, client);
  return st;
}

static json_t *doc_to_vote(const bson_t *doc) {
  bson_iter_t it;
  char id[25] = "";
  const char *candidate = "", *election = "";
  if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), id);
  if (bson_iter_init_find(&it, doc, "candidate") && BSON_ITER_HOLDS_UTF8(&it))
    candidate = bson_iter_utf8(&it, NULL);
  if (bson_iter_init_find(&it, doc, "election") && BSON_ITER_HOLDS_UTF8(&it))
    election = bson_iter_utf8(&it, NULL);
  return vote_item(id, candidate, election);
}

/* Reads a live vote. */
static vs_status read_vote(mongoc_collection_t *votes, const bson_oid_t *oid, json_t **item) {
  bson_t *filter = BCON_NEW("_id", BCON_OID(oid), "deleted", BCON_BOOL(false));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(votes, filter, NULL, NULL);
  const bson_t *doc;
  bson_error_t error;
  vs_status st = VS_NOT_FOUND;
  *item = NULL;
  if (mongoc_cursor_next(cur, &doc)) {
    *item = doc_to_vote(doc);
    st = VS_OK;
  } else if (mongoc_cursor_error(cur, &error)) {
    st = db_error("read vote", &error);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  return st;
}

vs_status votes_get(mongo_db *db, const char *id, json_t **item) {
  *item = NULL;
  if (!util_is_object_id(id)) return VS_NOT_FOUND;
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  vs_status st = read_vote(votes, &oid, item);
  mongoc_collection_destroy(votes);
  mongo_release(db, client);
  return st;
}

vs_status votes_delete(mongo_db *db, const char *id) {
  json_t *item;
  vs_status st = votes_get(db, id, &item);
  if (st != VS_OK) return st;
  char election[512], candidate[512];
  snprintf(election, sizeof election, "%s", json_string_value(json_object_get(item, "election")));
  snprintf(candidate, sizeof candidate, "%s", json_string_value(json_object_get(item, "candidate")));
  json_decref(item);
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, id);
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  bson_error_t error;
  election_lock(election);
  /* Mark first (deleted, uncounted): a crash after this point is repaired by
   * reconciliation, which counts only live votes and then purges marked ones. */
  bson_t *filter = BCON_NEW("_id", BCON_OID(&oid), "deleted", BCON_BOOL(false));
  bson_t *mark = BCON_NEW("$set", "{", "deleted", BCON_BOOL(true), "tallied", BCON_BOOL(false), "}");
  bson_t reply;
  if (!mongoc_collection_update_one(votes, filter, mark, NULL, &reply, &error)) {
    st = db_error("mark vote deleted", &error);
  } else {
    bson_iter_t it;
    bool matched = bson_iter_init_find(&it, &reply, "matchedCount") && bson_iter_as_int64(&it) > 0;
    if (!matched) {
      st = VS_NOT_FOUND; /* deleted concurrently */
    } else if (tally_add(tallies, election, candidate, -1, &error)) {
      /* A vote cast with an Idempotency-Key stays as a counted tombstone: a late retry of
       * that key must find it, not cast it again. */
      bson_t *byid = BCON_NEW("_id", BCON_OID(&oid), IDEM_FIELD, "{", "$exists", BCON_BOOL(false), "}");
      bson_t *keyed = BCON_NEW("_id", BCON_OID(&oid));
      bson_t *settle = BCON_NEW("$set", "{", "tallied", BCON_BOOL(true), "}");
      mongoc_collection_delete_one(votes, byid, NULL, NULL, &error);
      mongoc_collection_update_one(votes, keyed, settle, NULL, NULL, &error);
      bson_destroy(byid);
      bson_destroy(keyed);
      bson_destroy(settle);
    }
  }
  bson_destroy(&reply);
  election_unlock(election);
  bson_destroy(filter);
  bson_destroy(mark);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongo_release(db, client);
  return st;
}

vs_status votes_list(mongo_db *db, const mongo_page *page, json_t **items, int64_t *total) {
  bson_t *filter = BCON_NEW("deleted", BCON_BOOL(false));
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  bson_error_t error;
  vs_status st = VS_OK;
  if (!mongo_find_page(votes, filter, page, doc_to_vote, items, total, &error))
    st = db_error("list votes", &error);
  mongoc_collection_destroy(votes);
  mongo_release(db, client);
  bson_destroy(filter);
  return st;
}

static bool set_chunk_counted(mongoc_collection_t *chunks, const char *chunk, bson_error_t *error) {
  bson_t *filter = BCON_NEW("_id", BCON_UTF8(chunk));
  bson_t *update = BCON_NEW("$set", "{", "state", BCON_UTF8("counted"), "}");
  bool ok = mongoc_collection_update_one(chunks, filter, update, NULL, NULL, error);
  bson_destroy(filter);
  bson_destroy(update);
  return ok;
}

/* A chunk is counted once: its marker {_id: chunk, state, elections} is written before the
 * votes ("counting") and flipped to "counted" after the tallies. The votes themselves are
 * stored already counted, so a chunk costs three writes besides the insert, not one per
 * vote. A redelivered chunk whose marker says "counted" changes nothing; one that says
 * "counting" (a crash in between) has its elections recounted from the votes. */
vs_status votes_insert_many(mongo_db *db, const vote_in *v, size_t n, const char *chunk,
                           int64_t *written) {
  *written = 0;
  if (n == 0) return VS_OK;
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  mongoc_collection_t *chunks = mongo_collection(db, client, CHUNKS);
  bson_t **docs = xcalloc(n, sizeof *docs);
  const char **elections = xcalloc(n, sizeof *elections);
  tally_bucket *buckets = xcalloc(n, sizeof *buckets);
  int64_t now = util_now_ms();
  for (size_t i = 0; i < n; i++) {
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, v[i].id);
    docs[i] = BCON_NEW("_id", BCON_OID(&oid), "candidate", BCON_UTF8(v[i].candidate), "election",
                       BCON_UTF8(v[i].election), "createdAt", BCON_DATE_TIME(now), "tallied",
                       BCON_BOOL(true), "deleted", BCON_BOOL(false), "chunk", BCON_UTF8(chunk));
  }
  size_t ne = tally_distinct_elections(v, n, elections);
  for (size_t e = 0; e < ne; e++) election_lock(elections[e]);
  bson_error_t error;
  vs_status st = VS_OK;

  /* the marker, with the elections a recount would need */
  bson_t marker = BSON_INITIALIZER, arr;
  BSON_APPEND_UTF8(&marker, "_id", chunk);
  BSON_APPEND_UTF8(&marker, "state", "counting");
  BSON_APPEND_DATE_TIME(&marker, "createdAt", now);
  BSON_APPEND_ARRAY_BEGIN(&marker, "elections", &arr);
  for (size_t e = 0; e < ne; e++) {
    char key[24];
    snprintf(key, sizeof key, "%zu", e);
    BSON_APPEND_UTF8(&arr, key, elections[e]);
  }
  bson_append_array_end(&marker, &arr);
  bool fresh = mongoc_collection_insert_one(chunks, &marker, NULL, NULL, &error);
  bool counted = false; /* a redelivery whose marker says "counted" */
  if (!fresh) {
    if (!mongo_is_duplicate(&error)) {
      st = db_error("chunk marker", &error);
    } else {
      bson_t *filter = BCON_NEW("_id", BCON_UTF8(chunk));
      mongoc_cursor_t *cur = mongoc_collection_find_with_opts(chunks, filter, NULL, NULL);
      const bson_t *doc;
      const char *state = NULL;
      if (mongoc_cursor_next(cur, &doc)) state = mongo_doc_str(doc, "state");
      counted = state && strcmp(state, "counted") == 0;
      mongoc_cursor_destroy(cur);
      bson_destroy(filter);
    }
  }
  bson_destroy(&marker);
  CRASH_POINT("chunk.marked");
  /* The votes go in on every delivery, "counted" or not: a marker can say "counted" for
   * votes that never arrived (the reconciliation closes markers a crash left "counting",
   * and the redelivery carrying the votes may come after it). Unordered, so on a
   * redelivery the votes already written collide on _id and the rest still go in. */
  int64_t inserted = 0;
  if (st == VS_OK) {
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    bson_t reply;
    bool ok = mongoc_collection_insert_many(votes, (const bson_t **)docs, n, opts, &reply, &error);
    /* without a count, assume some went in: a needless recount is harmless */
    inserted = bson_has_field(&reply, "insertedCount") ? mongo_doc_int(&reply, "insertedCount")
                                                       : (int64_t)n;
    if (!ok && !mongo_is_duplicate(&error)) st = db_error("insert votes", &error);
    bson_destroy(&reply);
    bson_destroy(opts);
  }
  if (st == VS_OK && !fresh && inserted < (int64_t)n)
    metrics_counter_add("duplicates_detected_total", "kind=\"chunk vote\"",
                        (double)((int64_t)n - inserted));
  CRASH_POINT("chunk.inserted");
  tally_chunk_plan plan = tally_plan_chunk(fresh, counted, inserted);
  if (st == VS_OK && plan == TALLY_CHUNK_COUNT) {
    size_t nb = tally_buckets(v, n, buckets);
    for (size_t b = 0; st == VS_OK && b < nb; b++) {
      if (!tally_add(tallies, buckets[b].election, buckets[b].candidate, buckets[b].n, &error))
        st = db_error("tally", &error);
      else
        *written += buckets[b].n;
    }
  } else if (st == VS_OK && plan == TALLY_CHUNK_RECOUNT) {
    /* interrupted before its tallies, or votes that came after the marker was closed */
    metrics_counter_inc("votes_chunks_recounted_total", "");
    for (size_t e = 0; st == VS_OK && e < ne; e++)
      st = recount(votes, tallies, elections[e], "chunk");
    *written = inserted;
  }
  CRASH_POINT("chunk.tallied");
  if (st == VS_OK && !counted && !set_chunk_counted(chunks, chunk, &error))
    st = db_error("chunk marker", &error); /* stays "counting": reconciliation recounts */
  for (size_t e = ne; e-- > 0;) election_unlock(elections[e]);
  for (size_t i = 0; i < n; i++) bson_destroy(docs[i]);
  free(docs);
  free(elections);
  free(buckets);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongoc_collection_destroy(chunks);
  mongo_release(db, client);
  return st;
}

vs_status votes_results(mongo_db *db, const char *election, json_t **results) {
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  bson_t *filter = BCON_NEW("election", BCON_UTF8(election));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(tallies, filter, NULL, NULL);
  const bson_t *doc;
  json_t *rows = json_array();
  while (mongoc_cursor_next(cur, &doc)) {
    const char *candidate = mongo_doc_str(doc, "candidate");
    if (candidate)
      json_array_append_new(rows, json_pack("{s:s, s:I}", "candidate", candidate, "votes",
                                            (json_int_t)mongo_doc_int(doc, "votes")));
  }
  bson_error_t error;
  vs_status st = VS_OK;
  *results = NULL;
  if (mongoc_cursor_error(cur, &error)) {
    st = db_error("read tallies", &error);
    json_decref(rows);
  } else {
    *results = tally_results(rows);
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  mongoc_collection_destroy(tallies);
  mongo_release(db, client);
  return st;
}

vs_status votes_drop_all(mongo_db *db) {
  mongoc_client_t *client = mongo_acquire(db);
  bson_error_t error;
  vs_status st = VS_OK;
  bson_t empty = BSON_INITIALIZER;
  const char *names[] = {VOTES, TALLIES};
  for (int i = 0; i < 2 && st == VS_OK; i++) {
    mongoc_collection_t *coll = mongo_collection(db, client, names[i]);
    if (!mongoc_collection_delete_many(coll, &empty, NULL, NULL, &error))
      st = db_error("drop", &error);
    mongoc_collection_destroy(coll);
  }
  mongo_release(db, client);
  return st;
}

/* Recounts one election from its live votes, then purges its deleted votes (keyed ones
 * stay as tombstones, so a late retry of their key finds them instead of voting again).
 * reason labels votes_recounts_total. */
static vs_status recount(mongoc_collection_t *votes, mongoc_collection_t *tallies,
                         const char *election, const char *reason) {
  bson_error_t error;
  char labels[64];
  snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
  metrics_counter_inc("votes_recounts_total", labels);
  bson_t *pipeline = BCON_NEW("pipeline", "[", "{", "$match", "{", "election", BCON_UTF8(election),
                              "deleted", BCON_BOOL(false), "}", "}", "{", "$group", "{", "_id",
                              BCON_UTF8("$candidate"), "n", "{", "$sum", BCON_INT32(1), "}", "}",
                              "}", "]");
  mongoc_cursor_t *cur = mongoc_collection_aggregate(votes, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
  bson_t *clear = BCON_NEW("election", BCON_UTF8(election));
  vs_status st = VS_OK;
  json_t *counts = json_object();
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    const char *candidate = NULL;
    int64_t n = 0;
    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it)) candidate = bson_iter_utf8(&it, NULL);
    if (bson_iter_init_find(&it, doc, "n") && BSON_ITER_HOLDS_NUMBER(&it)) n = bson_iter_as_int64(&it);
    if (candidate) json_object_set_new(counts, candidate, json_integer(n));
  }
  if (mongoc_cursor_error(cur, &error)) st = db_error("recount", &error);
  mongoc_cursor_destroy(cur);
  if (st == VS_OK && !mongoc_collection_delete_many(tallies, clear, NULL, NULL, &error))
    st = db_error("clear tallies", &error);
  const char *candidate;
  json_t *n;
  json_object_foreach(counts, candidate, n) {
    if (st == VS_OK && !tally_add(tallies, election, candidate, json_integer_value(n), &error))
      st = db_error("write tally", &error);
  }
  if (st == VS_OK) {
    bson_t *live = BCON_NEW("election", BCON_UTF8(election), "tallied", BCON_BOOL(false));
    bson_t *set = BCON_NEW("$set", "{", "tallied", BCON_BOOL(true), "}");
    bson_t *dead = BCON_NEW("election", BCON_UTF8(election), "deleted", BCON_BOOL(true), IDEM_FIELD,
                            "{", "$exists", BCON_BOOL(false), "}");
    if (!mongoc_collection_update_many(votes, live, set, NULL, NULL, &error) ||
        !mongoc_collection_delete_many(votes, dead, NULL, NULL, &error))
      st = db_error("mark recounted", &error);
    bson_destroy(live);
    bson_destroy(set);
    bson_destroy(dead);
  }
  json_decref(counts);
  bson_destroy(clear);
  bson_destroy(pipeline);
  return st;
}

vs_status votes_reconcile(mongo_db *db, int64_t age_ms, int *elections) {
  const char *reason = age_ms == 0 ? "startup" : "periodic";
  *elections = 0;
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  bson_t *filter = BCON_NEW("tallied", BCON_BOOL(false), "createdAt", "{", "$lt",
                            BCON_DATE_TIME(util_now_ms() - age_ms), "}");
  bson_t *opts = BCON_NEW("projection", "{", "election", BCON_INT32(1), "}", "limit", BCON_INT64(10000));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(votes, filter, opts, NULL);
  json_t *names = json_object();
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "election") && BSON_ITER_HOLDS_UTF8(&it))
      json_object_set_new(names, bson_iter_utf8(&it, NULL), json_true());
  }
  bson_error_t error;
  vs_status st = mongoc_cursor_error(cur, &error) ? db_error("find uncounted", &error) : VS_OK;
  mongoc_cursor_destroy(cur);
  /* chunks a crash left between marker and tallies */
  mongoc_collection_t *chunks = mongo_collection(db, client, CHUNKS);
  bson_t *stuck = BCON_NEW("state", BCON_UTF8("counting"), "createdAt", "{", "$lt",
                           BCON_DATE_TIME(util_now_ms() - age_ms), "}");
  json_t *stuck_ids = json_array();
  cur = mongoc_collection_find_with_opts(chunks, stuck, NULL, NULL);
  while (st == VS_OK && mongoc_cursor_next(cur, &doc)) {
    bson_iter_t it, e;
    const char *id = mongo_doc_str(doc, "_id");
    if (id) json_array_append_new(stuck_ids, json_string(id));
    if (bson_iter_init_find(&it, doc, "elections") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &e))
      while (bson_iter_next(&e))
        if (BSON_ITER_HOLDS_UTF8(&e)) json_object_set_new(names, bson_iter_utf8(&e, NULL), json_true());
  }
  if (mongoc_cursor_error(cur, &error)) st = db_error("find interrupted chunks", &error);
  mongoc_cursor_destroy(cur);
  bson_destroy(stuck);
  const char *election;
  json_t *unused;
  json_object_foreach(names, election, unused) {
    if (st != VS_OK) break;
    election_lock(election);
    st = recount(votes, tallies, election, reason);
    election_unlock(election);
    if (st == VS_OK) {
      (*elections)++;
      log_fields(LOG_WARN, "recounted an election after an interrupted write",
                 json_pack("{s:s}", "election", election));
    }
  }
  size_t i;
  json_t *sid;
  json_array_foreach(stuck_ids, i, sid) {
    if (st == VS_OK && !set_chunk_counted(chunks, json_string_value(sid), &error))
      st = db_error("chunk marker", &error);
  }
  json_decref(stuck_ids);
  mongoc_collection_destroy(chunks);
  json_decref(names);
  bson_destroy(filter);
  bson_destroy(opts);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongo_release(db, client);
  return st;
}
