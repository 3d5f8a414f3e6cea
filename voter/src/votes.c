/* votes — votes, tallies, idempotency; see votes.h. */
#include "votes.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "positions.h"
#include "tally_logic.h"
#include "voter/config.h"
#include "voter/crashpoint.h"
#include "voter/doclock.h"
#include "voter/events.h"
#include "voter/idem.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/replica.h"
#include "voter/replica_read.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define VOTES "votes"
#define TALLIES "tallies"
#define CHUNKS "chunks"
#define DELETIONS "vote_deletions"

static vs_status db_error(const char *what, const bson_error_t *e) {
  mongo_log_failure("votes", what, e);
  return VS_UNAVAILABLE;
}

/* ---- election locks (in this process; doclock.h: not across processes, see the tally
 * shards below for what holds across them) ----
 *
 * Each election has a read/write lock, "tally\x1f<election>". Every writer of votes or
 * tallies (a vote, a deletion, a bulk chunk) holds it SHARED from its first write to its
 * tally write, so two chunks of one election insert their votes at the same time. A
 * recount holds it EXCLUSIVE: it recomputes the shard from the votes, and must never see
 * votes inserted whose writer has not yet added them to the tally (it would count them,
 * and the writer would add them again). The tally write itself is serialised by a second,
 * plain lock, "tallyw\x1f<election>" (FerretDB loses concurrent $inc of one document even
 * from one process over two connections), taken inside the shared hold and held only
 * for that write. A path that decides to recount while holding the election shared
 * releases it and takes it exclusive; the recount is absolute, so what changed in the
 * gap is counted. */
#define ELECTION_LOCK "tally"
#define TALLY_WRITE_LOCK "tallyw"
#define ELECTION_KEY "%s\x1f%s" /* prefix, election */

/* Applies a doclock operation to the key "<prefix>\x1f<election>". */
static void on_election_key(const char *prefix, const char *election, void (*op)(const char *key)) {
  char key[600];
  snprintf(key, sizeof key, ELECTION_KEY, prefix, election);
  op(key);
}

static void election_shared(const char *e) { on_election_key(ELECTION_LOCK, e, doclock_shared); }
static void election_exclusive(const char *e) { on_election_key(ELECTION_LOCK, e, doclock_exclusive); }
static void election_release(const char *e) { on_election_key(ELECTION_LOCK, e, doclock_release); }
static void tally_write_lock(const char *e) { on_election_key(TALLY_WRITE_LOCK, e, doclock_lock); }
static void tally_write_unlock(const char *e) { on_election_key(TALLY_WRITE_LOCK, e, doclock_unlock); }

/* The keys of a chunk's elections under prefix, for the doclock set functions. */
static char **election_keys(const char *prefix, const char *const *elections, size_t ne) {
  char **keys = xcalloc(ne ? ne : 1, sizeof *keys);
  for (size_t e = 0; e < ne; e++) keys[e] = xasprintf(ELECTION_KEY, prefix, elections[e]);
  return keys;
}

static void election_keys_free(char **keys, size_t ne) {
  for (size_t e = 0; e < ne; e++) free(keys[e]);
  free(keys);
}

/* ---- tally shards ----
 *
 * Several replicas of the service count into one database, and FerretDB applies an
 * update's filter and its write in separate steps: two processes incrementing one tally
 * document lose increments (tests/test_replicas.py saw 7 of 150). So no tally document has
 * two writers: each instance (VOTER_INSTANCE, unique per live replica; "0" by default)
 * counts into its own shard {_id: "<election>\x1f<candidate>\x1f<instance>"} (instance "0"
 * keeps the original id "<election>\x1f<candidate>", so a single replica's data is as
 * before), serialised by its election's locks (above), and results sum the shards.
 * Every vote records the shard that counted it (field "shard", absent for "0"), and a
 * deletion is claimed by a unique insert {_id: vote} into vote_deletions naming the shard
 * that took it off ("by"), so each shard can be recounted from the database alone:
 *   shard S = votes counted by S (live, or deleted through a claim) - claims by S.
 * A recount only ever rewrites the recounting instance's own shard. */
static char instance[40] = "0";

/* VOTER_KNOWN_TTL_MS: see "known targets" below. */
static int64_t known_ttl_ms = 1000;
/* VOTER_FLAG_GATHER_MS: see "tallied flags, written behind" below. */
static long flag_gather_ms = 20;

static bool default_shard(void) { return strcmp(instance, "0") == 0; }

/* Restricts a votes/tallies filter to this instance's shard. */
static void own_shard(bson_t *filter) {
  if (default_shard()) {
    bson_t ex;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "shard", &ex);
    BSON_APPEND_BOOL(&ex, "$exists", false);
    bson_append_document_end(filter, &ex);
  } else {
    BSON_APPEND_UTF8(filter, "shard", instance);
  }
}

static void tally_key(char *out, size_t len, const char *election, const char *candidate) {
  if (default_shard()) snprintf(out, len, "%s\x1f%s", election, candidate);
  else snprintf(out, len, "%s\x1f%s\x1f%s", election, candidate, instance);
}

/* The instance name: 1 to 32 of [A-Za-z0-9._-]. */
static bool instance_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n >= 33) return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      return false;
  return true;
}

bool votes_init(mongo_db *db) {
  const char *name = cfg_str("VOTER_INSTANCE", "0");
  if (!instance_valid(name)) {
    log_error("VOTER_INSTANCE must be 1 to 32 of A-Z a-z 0-9 . _ - (got \"%s\")", name);
    exit(2);
  }
  snprintf(instance, sizeof instance, "%s", name);
  long ttl;
  if (cfg_long("VOTER_KNOWN_TTL_MS", 1000, 0, 60000, &ttl) != 0) exit(2);
  known_ttl_ms = ttl;
  if (cfg_long("VOTER_FLAG_GATHER_MS", 20, 0, 60000, &flag_gather_ms) != 0) exit(2);
  bson_error_t error;
  bson_t *by_election = BCON_NEW("election", BCON_INT32(1), "tallied", BCON_INT32(1));
  bson_t *tallied = BCON_NEW("tallied", BCON_INT32(1));
  bson_t *tally = BCON_NEW("election", BCON_INT32(1));
  bson_t *chunk = BCON_NEW("state", BCON_INT32(1));
  bson_t *claims = BCON_NEW("election", BCON_INT32(1));
  metrics_describe("votes_recounts_total", "counter",
                   "Elections whose tallies were recomputed from the votes, by reason "
                   "(startup, periodic, retry, chunk)");
  metrics_describe("votes_deletion_marks_repaired_total", "counter",
                   "Deleted votes found unmarked by the reconciliation (a concurrent write "
                   "overwrote the mark) and marked again");
  metrics_describe("votes_chunks_recounted_total", "counter",
                   "Bulk chunks redelivered after an interrupted count, whose elections were recounted");
  idem_describe_metrics();
  bool ok = mongo_create_index(db, VOTES, "election_tallied", by_election, false, &error) &&
            mongo_create_index(db, VOTES, "tallied", tallied, false, &error) &&
            mongo_create_index(db, CHUNKS, "state", chunk, false, &error) &&
            mongo_create_index(db, TALLIES, "election", tally, false, &error) &&
            mongo_create_index(db, DELETIONS, "election", claims, false, &error);
  if (!ok) log_warn("votes: cannot create indexes yet: %s", error.message);
  ok = ok && positions_init(db, instance);
  bson_destroy(by_election);
  bson_destroy(chunk);
  bson_destroy(tallied);
  bson_destroy(tally);
  bson_destroy(claims);
  return ok;
}

/* ---- known targets ----
 *
 * Every vote (and every line of a batch) asks the replicas whether its election and
 * candidate are live: two reads per vote, the same answer thousands of times. A "yes" is
 * kept for VOTER_KNOWN_TTL_MS (default 1000; 0 turns the cache off) in a small table of
 * this process, and forgotten at once when this process applies any replica event
 * (replica_changes()). So a deleted election or candidate refuses votes as soon as this
 * process's replica has the deletion, and in any case within the TTL of it reaching the
 * database (another replica of the service applied it). The replica is itself only
 * eventually consistent with its source: the TTL adds at most that much to its lag. A "no"
 * is never kept: a new candidate is votable as soon as the replica has it. */
#define KNOWN_SLOTS 256

typedef struct {
  char key[520];
  int64_t until_ms;
  uint64_t changes;
} known_slot;

static known_slot known[KNOWN_SLOTS];
static pthread_mutex_t known_mutex = PTHREAD_MUTEX_INITIALIZER;

/* key = election \x1f candidate; false when it does not fit (never cached). */
static bool known_key(char *key, size_t len, const char *candidate, const char *election) {
  int n = snprintf(key, len, "%s\x1f%s", election, candidate);
  return n > 0 && (size_t)n < len;
}

static unsigned known_hash(const char *key) {
  unsigned h = 2166136261u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
  return h % KNOWN_SLOTS;
}

static bool known_hit(const char *key) {
  known_slot *s = &known[known_hash(key)];
  pthread_mutex_lock(&known_mutex);
  bool hit = strcmp(s->key, key) == 0 && s->changes == replica_changes() &&
             util_now_ms() < s->until_ms;
  pthread_mutex_unlock(&known_mutex);
  return hit;
}

/* changes: replica_changes() read before the replicas were, so an event applied in
 * between makes the entry stale at once. */
static void known_put(const char *key, uint64_t changes) {
  known_slot *s = &known[known_hash(key)];
  pthread_mutex_lock(&known_mutex);
  snprintf(s->key, sizeof s->key, "%s", key);
  s->changes = changes;
  s->until_ms = util_now_ms() + known_ttl_ms;
  pthread_mutex_unlock(&known_mutex);
}

/* The replicas decide what a vote may name: a live election with this title, and a live
 * candidate of this full name standing in it. */
vs_status votes_check(mongo_db *db, const char *candidate, const char *election) {
  char key[sizeof known[0].key];
  bool cacheable = known_ttl_ms > 0 && known_key(key, sizeof key, candidate, election);
  if (cacheable && known_hit(key)) return VS_OK;
  uint64_t changes = replica_changes();
  bool found;
  const char *const election_match[] = {"title", election, NULL};
  if (replica_read_known(db, "elections", election_match, &found) != REPLICA_READ_OK)
    return VS_UNAVAILABLE;
  if (!found) return VS_UNKNOWN_ELECTION;
  const char *const candidate_match[] = {"fullName", candidate, "election", election, NULL};
  if (replica_read_known(db, "candidates", candidate_match, &found) != REPLICA_READ_OK)
    return VS_UNAVAILABLE;
  if (!found) return VS_UNKNOWN_CANDIDATE;
  if (cacheable) known_put(key, changes);
  return VS_OK;
}

/* The filter and update that add delta to this instance's shard of a tally (upserted). */
static void tally_change(const char *election, const char *candidate, int64_t delta,
                         bson_t *filter, bson_t *update) {
  char key[1100];
  tally_key(key, sizeof key, election, candidate);
  bson_init(filter);
  BSON_APPEND_UTF8(filter, "_id", key);
  bson_t inc, set;
  bson_init(update);
  BSON_APPEND_DOCUMENT_BEGIN(update, "$inc", &inc);
  BSON_APPEND_INT64(&inc, "votes", delta);
  bson_append_document_end(update, &inc);
  BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
  BSON_APPEND_UTF8(&set, "election", election);
  BSON_APPEND_UTF8(&set, "candidate", candidate);
  if (!default_shard()) BSON_APPEND_UTF8(&set, "shard", instance);
  bson_append_document_end(update, &set);
}

/* Adds delta to this instance's shard of a tally. */
static bool tally_add(mongoc_collection_t *tallies, const char *election, const char *candidate,
                      int64_t delta, bson_error_t *error) {
  bson_t filter, update;
  tally_change(election, candidate, delta, &filter, &update);
  bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
  bool ok = mongoc_collection_update_one(tallies, &filter, &update, opts, NULL, error);
  bson_destroy(&filter);
  bson_destroy(&update);
  bson_destroy(opts);
  return ok;
}

/* Adds a chunk's buckets to this instance's tally shards, MONGO_UPDATES_PER_COMMAND to a
 * command (one round trip for most chunks instead of one per candidate). Ordered: on a
 * failure the later ones are not applied, and the chunk is recounted or retried as a whole
 * by its marker. */
static bool tally_add_buckets(mongoc_collection_t *tallies, const tally_bucket *b, size_t nb,
                              bson_error_t *error) {
  bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
  bool ok = true;
  for (size_t at = 0; ok && at < nb; at += MONGO_UPDATES_PER_COMMAND) {
    size_t end = nb - at < MONGO_UPDATES_PER_COMMAND ? nb : at + MONGO_UPDATES_PER_COMMAND;
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(tallies, NULL);
    for (size_t i = at; i < end; i++) {
      bson_t filter, update;
      tally_change(b[i].election, b[i].candidate, b[i].n, &filter, &update);
      mongoc_bulk_operation_update_one_with_opts(bulk, &filter, &update, opts, NULL);
      bson_destroy(&filter);
      bson_destroy(&update);
    }
    ok = mongo_bulk_execute(bulk, NULL, error) != 0;
    mongoc_bulk_operation_destroy(bulk);
  }
  bson_destroy(opts);
  return ok;
}

/* The shard a stored vote or marker names ("0" when it has none). */
static const char *doc_shard(const bson_t *doc) {
  const char *s = mongo_doc_str(doc, "shard");
  return s ? s : "0";
}

static bool is_own_shard(const bson_t *doc) { return strcmp(doc_shard(doc), instance) == 0; }

static json_t *vote_item(const char *id, const char *candidate, const char *election) {
  return json_pack("{s:s, s:s, s:s}", "id", id, "candidate", candidate, "election", election);
}

static json_t *doc_to_vote(const bson_t *doc);
static vs_status recount(mongoc_collection_t *votes, mongoc_collection_t *tallies,
                         mongoc_collection_t *claims, const char *election, const char *reason);

/* ---- tallied flags, written behind ----
 *
 * "tallied: true" only tells the reconciliation that a vote needs no recount: the recount
 * is absolute (shard_counts reads the votes themselves), so a vote counted but still
 * flagged false costs at worst a needless recount, never a wrong tally. The flag therefore
 * leaves the request's path: count_new_vote queues the vote's id and a writer thread sets
 * the queued flags in bulk writes (few round trips for all the votes that arrived within
 * VOTER_FLAG_GATHER_MS, default 20, or while the previous write ran; at most
 * MONGO_UPDATES_PER_COMMAND flags per command, see flag_write). A crash loses the queue:
 * those votes are recounted at start-up, as a crash between tally and flag always did.
 * Stopping flushes it (votes_stop). */
#define FLAG_BATCH 500

/* FerretDB writes an update as the whole document it read (filter and write are separate
 * steps): a flag write that read a vote before a deletion marked it and wrote after would
 * put back "deleted: false" (seen in CI: a vote deleted right after it was cast stayed in
 * the listing; the tallies were right, they rest on the deletion claim). So a deletion in
 * this process first withdraws the vote's flag (flag_withhold): queued, it is dropped;
 * being written, the deletion waits for that write; queued later, while the deletion is
 * under way, it is dropped. A dropped flag leaves the vote "tallied: false": at worst a
 * needless recount. Another replica's flag write can still race a deletion: the
 * reconciliation checks this instance's finished deletions once they are older than its
 * period, and marks again a vote found unmarked (recheck_deletions). */
static struct {
  pthread_mutex_t mutex;
  pthread_cond_t wake, written;
  pthread_t thread;
  bool started, stopping;
  mongo_db *db;
  bson_oid_t *ids;
  size_t n, cap;
  const bson_oid_t *inflight; /* the batch being written */
  size_t ninflight;
  bson_oid_t *withheld; /* votes being deleted in this process */
  size_t nwithheld, capwithheld;
} flags = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
           .written = PTHREAD_COND_INITIALIZER};

static bool oid_in(const bson_oid_t *oid, const bson_oid_t *set, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (bson_oid_equal(oid, &set[i])) return true;
  return false;
}

/* Withdraws a vote's tallied flag before its deletion marks it (see above): drops it from
 * the queue, waits while a write carrying it runs, and keeps it out of later batches until
 * flag_release. */
static void flag_withhold(const bson_oid_t *oid) {
  pthread_mutex_lock(&flags.mutex);
  if (flags.nwithheld == flags.capwithheld) {
    flags.capwithheld = flags.capwithheld ? 2 * flags.capwithheld : 8;
    flags.withheld = xrealloc(flags.withheld, flags.capwithheld * sizeof *flags.withheld);
  }
  bson_oid_copy(oid, &flags.withheld[flags.nwithheld++]);
  size_t kept = 0;
  for (size_t i = 0; i < flags.n; i++)
    if (!bson_oid_equal(oid, &flags.ids[i])) bson_oid_copy(&flags.ids[i], &flags.ids[kept++]);
  flags.n = kept;
  while (oid_in(oid, flags.inflight, flags.ninflight)) pthread_cond_wait(&flags.written, &flags.mutex);
  pthread_mutex_unlock(&flags.mutex);
}

static void flag_release(const bson_oid_t *oid) {
  pthread_mutex_lock(&flags.mutex);
  for (size_t i = 0; i < flags.nwithheld; i++)
    if (bson_oid_equal(oid, &flags.withheld[i])) {
      bson_oid_copy(&flags.withheld[--flags.nwithheld], &flags.withheld[i]);
      break;
    }
  pthread_mutex_unlock(&flags.mutex);
}

/* Sets tallied: true on n votes, in bulk writes of MONGO_UPDATES_PER_COMMAND statements
 * (one command of hundreds would hold as many of FerretDB's PostgreSQL connections, see
 * mongo.h, and above 50 hang the database for every client). A failure leaves the rest to
 * the reconciliation. */
static void flag_write(mongo_db *db, const bson_oid_t *ids, size_t n) {
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
  bson_t *set = BCON_NEW("$set", "{", "tallied", BCON_BOOL(true), "}");
  for (size_t at = 0; at < n; at += MONGO_UPDATES_PER_COMMAND) {
    size_t end = n - at < MONGO_UPDATES_PER_COMMAND ? n : at + MONGO_UPDATES_PER_COMMAND;
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(votes, opts);
    for (size_t i = at; i < end; i++) {
      bson_t *filter = BCON_NEW("_id", BCON_OID(&ids[i]));
      mongoc_bulk_operation_update_one_with_opts(bulk, filter, set, NULL, NULL);
      bson_destroy(filter);
    }
    bson_error_t error;
    bool ok = mongo_bulk_execute(bulk, NULL, &error);
    mongoc_bulk_operation_destroy(bulk);
    if (!ok) {
      log_warn("votes: tallied flags not written, reconciliation will recount: %s", error.message);
      break;
    }
  }
  bson_destroy(set);
  bson_destroy(opts);
  mongoc_collection_destroy(votes);
  mongo_release(db, client);
}

static void *flag_main(void *arg) {
  (void)arg;
  bson_oid_t batch[FLAG_BATCH];
  pthread_mutex_lock(&flags.mutex);
  for (;;) {
    while (flags.n == 0 && !flags.stopping) pthread_cond_wait(&flags.wake, &flags.mutex);
    if (flags.n == 0) break; /* stopping, and nothing left */
    /* a few milliseconds more gathers the next votes of a client casting one at a time
     * into the same write (one write per VOTER_FLAG_GATHER_MS, not one per vote) */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += flag_gather_ms / 1000;
    until.tv_nsec += flag_gather_ms % 1000 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (flags.n < FLAG_BATCH && !flags.stopping &&
           pthread_cond_timedwait(&flags.wake, &flags.mutex, &until) == 0) {
    }
    size_t taken = flags.n < FLAG_BATCH ? flags.n : FLAG_BATCH, n = 0;
    for (size_t i = 0; i < taken; i++) /* a vote being deleted keeps its flag false */
      if (!oid_in(&flags.ids[i], flags.withheld, flags.nwithheld)) bson_oid_copy(&flags.ids[i], &batch[n++]);
    memmove(flags.ids, flags.ids + taken, (flags.n - taken) * sizeof *flags.ids);
    flags.n -= taken;
    flags.inflight = batch;
    flags.ninflight = n;
    pthread_mutex_unlock(&flags.mutex);
    if (n) flag_write(flags.db, batch, n);
    pthread_mutex_lock(&flags.mutex);
    flags.ninflight = 0;
    pthread_cond_broadcast(&flags.written);
  }
  pthread_mutex_unlock(&flags.mutex);
  return NULL;
}

/* Queues a counted vote's flag; the writer starts with the first one. */
static void flag_later(mongo_db *db, const bson_oid_t *oid) {
  pthread_mutex_lock(&flags.mutex);
  if (!flags.started && !flags.stopping) {
    flags.db = db;
    flags.started = pthread_create(&flags.thread, NULL, flag_main, NULL) == 0;
  }
  if (flags.started) {
    if (flags.n == flags.cap) {
      flags.cap = flags.cap ? 2 * flags.cap : 64;
      flags.ids = xrealloc(flags.ids, flags.cap * sizeof *flags.ids);
    }
    bson_oid_copy(oid, &flags.ids[flags.n++]);
    pthread_cond_signal(&flags.wake);
  }
  pthread_mutex_unlock(&flags.mutex);
}

void votes_stop(void) {
  pthread_mutex_lock(&flags.mutex);
  flags.stopping = true;
  pthread_cond_signal(&flags.wake);
  bool started = flags.started;
  pthread_mutex_unlock(&flags.mutex);
  if (started) pthread_join(flags.thread, NULL);
  free(flags.ids);
  flags.ids = NULL;
  flags.n = flags.cap = 0;
  free(flags.withheld);
  flags.withheld = NULL;
  flags.nwithheld = flags.capwithheld = 0;
  flags.started = false;
}

/* Counts a vote just inserted (the caller holds its election shared): its tally, then
 * (behind, see above) its flag. If either step is lost (a crash, a failed write) the vote
 * stays tallied: false and a recount repairs the tally from the votes; nothing here is
 * ever redone blindly. */
static void count_new_vote(mongo_db *db, mongoc_collection_t *tallies, const bson_oid_t *oid,
                           const char *election, const char *candidate) {
  bson_error_t error;
  CRASH_POINT("vote.inserted");
  tally_write_lock(election);
  bool ok = tally_add(tallies, election, candidate, 1, &error);
  tally_write_unlock(election);
  if (!ok) {
    log_warn("votes: tally update failed, reconciliation will recount: %s", error.message);
    return;
  }
  CRASH_POINT("vote.tallied");
  flag_later(db, oid);
}

/* A retry found the vote an earlier attempt wrote. If that attempt stopped before the
 * vote was counted (tallied still false) and is old enough that no live request of any
 * replica can still be counting it, the retry finishes the work: a recount of the
 * election (the caller takes the election exclusive for it). A younger one is left to its
 * own request or to the reconciliation, which only looks at votes older than its period. */
static bool earlier_attempt_unfinished(const bson_t *doc) {
  bson_iter_t it;
  int64_t created = 0;
  if (bson_iter_init_find(&it, doc, "createdAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
    created = bson_iter_date_time(&it);
  if (!tally_retry_recounts(mongo_doc_bool(doc, "tallied"), mongo_doc_bool(doc, "deleted"),
                            created, util_now_ms()))
    return false;
  /* another instance's shard is recounted by that instance (its reconciliation) */
  return is_own_shard(doc);
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
  mongoc_collection_t *claims = mongo_collection(db, client, DELETIONS);
  bson_error_t error;
  int64_t bucket = POSITIONS_LEGACY;
  bool placed = positions_take(db, client, 1, &bucket, &error);
  bson_t *doc = BCON_NEW("_id", BCON_OID(&oid), "candidate", BCON_UTF8(candidate), "election",
                         BCON_UTF8(election), "createdAt", BCON_DATE_TIME(util_now_ms()),
                         "tallied", BCON_BOOL(false), "deleted", BCON_BOOL(false),
                         POSITIONS_FIELD, BCON_INT64(bucket));
  if (!default_shard()) BSON_APPEND_UTF8(doc, "shard", instance);
  if (key) BSON_APPEND_UTF8(doc, IDEM_FIELD, key->fingerprint);
  bson_t *existing = NULL;
  vs_status st = VS_CREATED;
  *item = NULL;
  election_shared(election);
  idem_result r = !placed ? IDEM_ERROR
                  : key   ? idem_insert(votes, doc, key->fingerprint, "vote", &existing, &error)
                          : (mongoc_collection_insert_one(votes, doc, NULL, NULL, &error) ? IDEM_INSERTED
                                                                                           : IDEM_ERROR);
  switch (r) {
  case IDEM_INSERTED:
    count_new_vote(db, tallies, &oid, election, candidate);
    *item = vote_item(id, candidate, election);
    break;
  case IDEM_EXISTS:
    st = VS_OK;
    if (earlier_attempt_unfinished(existing)) {
      /* the same request (IDEM_EXISTS), so the same election; no upgrade in place
       * (doclock.h): released, then taken exclusive */
      election_release(election);
      election_exclusive(election);
      metrics_counter_inc("idempotency_takeovers_total", "kind=\"vote\"");
      st = recount(votes, tallies, claims, election, "retry");
    }
    if (st == VS_OK) {
      st = VS_REPLAYED;
      *item = doc_to_vote(existing);
    }
    break;
  case IDEM_MISMATCH: st = VS_MISMATCH; break;
  default: st = db_error("insert vote", &error); break;
  }
  election_release(election); /* shared, or exclusive after a recount: released alike */
  if (existing) bson_destroy(existing);
  bson_destroy(doc);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongoc_collection_destroy(claims);
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

/* Marks a vote whose deletion this shard claimed. */
static bool mark_deleted(mongoc_collection_t *votes, const bson_oid_t *oid, bson_error_t *error) {
  bson_t *filter = BCON_NEW("_id", BCON_OID(oid));
  bson_t *mark = BCON_NEW("$set", "{", "deleted", BCON_BOOL(true), "deletedBy", BCON_UTF8(instance), "}");
  bool ok = mongoc_collection_update_one(votes, filter, mark, NULL, NULL, error);
  bson_destroy(filter);
  bson_destroy(mark);
  return ok;
}

/* Sets field (true) on a vote's deletion claim: "done" once the deletion is counted in
 * this shard, "checked" once the reconciliation saw the vote still marked. */
static bool claim_set(mongoc_collection_t *claims, const bson_oid_t *id, const char *field,
                      bson_error_t *error) {
  bson_t *filter = BCON_NEW("_id", BCON_OID(id));
  bson_t *set = BCON_NEW("$set", "{", field, BCON_BOOL(true), "}");
  bool ok = mongoc_collection_update_one(claims, filter, set, NULL, NULL, error);
  bson_destroy(filter);
  bson_destroy(set);
  return ok;
}

/* Takes a deleted vote off this shard's tally (the caller holds its election shared). */
static bool uncount_vote(mongoc_collection_t *tallies, const char *election,
                         const char *candidate, bson_error_t *error) {
  tally_write_lock(election);
  bool ok = tally_add(tallies, election, candidate, -1, error);
  tally_write_unlock(election);
  return ok;
}

/* A deletion is claimed first, by inserting {_id: vote} into vote_deletions: of two
 * replicas deleting one vote at once exactly one gets the insert (the other answers 404),
 * where a filter {deleted: false} let both through. Then the vote is marked (deleted,
 * deletedBy: this shard), this shard's tally decremented and the claim marked done; a
 * crash in between leaves the claim "not done", and this instance's reconciliation
 * finishes the marks and recounts its shard. Deleted votes stay as tombstones: the shard
 * arithmetic counts them (and a late retry of a keyed vote's key must find it). */
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
  mongoc_collection_t *claims = mongo_collection(db, client, DELETIONS);
  bson_error_t error;
  election_shared(election);
  flag_withhold(&oid);
  bson_t *claim = BCON_NEW("_id", BCON_OID(&oid), "election", BCON_UTF8(election), "candidate",
                           BCON_UTF8(candidate), "by", BCON_UTF8(instance), "done", BCON_BOOL(false),
                           "createdAt", BCON_DATE_TIME(util_now_ms()));
  if (!mongoc_collection_insert_one(claims, claim, NULL, NULL, &error)) {
    st = mongo_is_duplicate(&error) ? VS_NOT_FOUND /* deleted by another request */
                                    : db_error("claim vote deletion", &error);
  } else if (!mark_deleted(votes, &oid, &error) ||
             !uncount_vote(tallies, election, candidate, &error)) {
    /* claimed: the deletion happened; reconciliation finishes the marks and the count */
    log_warn("votes: deletion left unfinished, reconciliation will finish it: %s", error.message);
  } else {
    claim_set(claims, &oid, "done", &error);
  }
  flag_release(&oid);
  election_release(election);
  bson_destroy(claim);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongoc_collection_destroy(claims);
  mongo_release(db, client);
  return st;
}

/* The number of live votes, from the tallies (every election, every shard): a handful of
 * small documents instead of counting a million votes. Votes not yet counted (a request
 * between its insert and its tally, a crash the reconciliation has not repaired) are
 * missing from it until they are. */
static bool live_votes(mongoc_collection_t *tallies, int64_t *total, bson_error_t *error) {
  bson_t all = BSON_INITIALIZER;
  bson_t *opts = BCON_NEW("projection", "{", "votes", BCON_INT32(1), "}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(tallies, &all, opts, NULL);
  const bson_t *doc;
  *total = 0;
  while (mongoc_cursor_next(cur, &doc)) *total += mongo_doc_int(doc, "votes");
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  if (*total < 0) *total = 0;
  return ok;
}

/* The live votes of one listing bucket (positions.h), in _id order. */
static bool read_bucket(void *ctx, int64_t bucket, json_t **items, bson_error_t *error) {
  mongoc_collection_t *votes = ctx;
  bson_t *filter = BCON_NEW(POSITIONS_FIELD, BCON_INT64(bucket), "deleted", BCON_BOOL(false));
  bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "projection", "{", "candidate",
                          BCON_INT32(1), "election", BCON_INT32(1), "}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(votes, filter, opts, NULL);
  const bson_t *doc;
  json_t *out = json_array();
  while (mongoc_cursor_next(cur, &doc)) json_array_append_new(out, doc_to_vote(doc));
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  bson_destroy(opts);
  if (ok) *items = out;
  else json_decref(out);
  return ok;
}

/* A page of the live votes. Its total comes from the tallies (live_votes). In the default
 * order (listing positions, see positions.h) the page is found by walking buckets from the
 * nearer end; sorted by a field, it is read from the nearer end by sort and skip
 * (mongo_find_page_of). See docs/design.md, "Listing votes". */
vs_status votes_list(mongo_db *db, const mongo_page *page, json_t **items, int64_t *total) {
  bson_t *filter = BCON_NEW("deleted", BCON_BOOL(false));
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  bson_error_t error;
  vs_status st = VS_OK;
  positions_span span = {0};
  *items = NULL;
  if (!live_votes(tallies, total, &error))
    st = db_error("list votes", &error);
  else if (page->nsort > 0 /* sorted by a field: FerretDB reads and sorts every vote */
               ? !mongo_find_page_of(votes, filter, page, *total, doc_to_vote, items, &error)
               : !positions_range(db, client, &span, &error) ||
                     !positions_page(&span, *total, page->page, page->size, read_bucket, votes,
                                     items, &error))
    st = db_error("list votes", &error);
  positions_span_free(&span);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
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
  bson_error_t error;
  int64_t *places = xcalloc(n, sizeof *places);
  if (!positions_take(db, client, n, places, &error)) {
    free(places);
    mongo_release(db, client);
    return db_error("take listing positions", &error);
  }
  mongoc_collection_t *votes = mongo_collection(db, client, VOTES);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  mongoc_collection_t *chunks = mongo_collection(db, client, CHUNKS);
  mongoc_collection_t *claims = mongo_collection(db, client, DELETIONS);
  bson_t **docs = xcalloc(n, sizeof *docs);
  const char **elections = xcalloc(n, sizeof *elections);
  tally_bucket *buckets = xcalloc(n, sizeof *buckets);
  int64_t now = util_now_ms();
  size_t ne = tally_distinct_elections(v, n, elections);
  /* sets: two elections may share a stripe, and another chunk may list them otherwise.
   * Held shared from the marker to its flip, so other chunks of these elections insert
   * beside this one, and no recount (exclusive) sees this chunk's votes before its tally
   * write has added them. */
  char **lock_keys = election_keys(ELECTION_LOCK, elections, ne);
  char **write_keys = election_keys(TALLY_WRITE_LOCK, elections, ne);
  doclock_shared_set((const char *const *)lock_keys, (unsigned)ne);
  vs_status st = VS_OK;

  /* the marker, with the elections a recount would need */
  bson_t marker = BSON_INITIALIZER, arr;
  BSON_APPEND_UTF8(&marker, "_id", chunk);
  BSON_APPEND_UTF8(&marker, "state", "counting");
  BSON_APPEND_DATE_TIME(&marker, "createdAt", now);
  if (!default_shard()) BSON_APPEND_UTF8(&marker, "shard", instance);
  BSON_APPEND_ARRAY_BEGIN(&marker, "elections", &arr);
  for (size_t e = 0; e < ne; e++) {
    char key[24];
    snprintf(key, sizeof key, "%zu", e);
    BSON_APPEND_UTF8(&arr, key, elections[e]);
  }
  bson_append_array_end(&marker, &arr);
  bool fresh = mongoc_collection_insert_one(chunks, &marker, NULL, NULL, &error);
  bool counted = false; /* a redelivery whose marker says "counted" */
  bool mine = true;     /* the marker is this shard's: only this instance closes it */
  if (!fresh) {
    if (!mongo_is_duplicate(&error)) {
      st = db_error("chunk marker", &error);
    } else {
      bson_t *filter = BCON_NEW("_id", BCON_UTF8(chunk));
      mongoc_cursor_t *cur = mongoc_collection_find_with_opts(chunks, filter, NULL, NULL);
      const bson_t *doc;
      const char *state = NULL;
      if (mongoc_cursor_next(cur, &doc)) {
        state = mongo_doc_str(doc, "state");
        mine = is_own_shard(doc);
      }
      counted = state && strcmp(state, "counted") == 0;
      mongoc_cursor_destroy(cur);
      bson_destroy(filter);
    }
  }
  bson_destroy(&marker);
  CRASH_POINT("chunk.marked");
  /* A first delivery's votes are stored counted: its marker, "counting" until the tally
   * write, stands for them through a crash. A redelivery's are stored uncounted (tallied:
   * false) and marked by its recount: its marker may already say "counted" (closed by the
   * reconciliation), and a crash between this insert and that recount would otherwise
   * leave votes in no tally with nothing pointing at them. */
  for (size_t i = 0; i < n; i++) {
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, v[i].id);
    docs[i] = BCON_NEW("_id", BCON_OID(&oid), "candidate", BCON_UTF8(v[i].candidate), "election",
                       BCON_UTF8(v[i].election), "createdAt", BCON_DATE_TIME(now), "tallied",
                       BCON_BOOL(fresh), "deleted", BCON_BOOL(false), "chunk", BCON_UTF8(chunk),
                       POSITIONS_FIELD, BCON_INT64(places[i]));
    if (!default_shard()) BSON_APPEND_UTF8(docs[i], "shard", instance);
  }
  free(places);
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
  /* another instance's marker counts as closed here: only the votes this delivery
   * inserted (into this shard) are this instance's to recount */
  tally_chunk_plan plan = tally_plan_chunk(fresh, counted || !mine, inserted);
  if (st == VS_OK && plan == TALLY_CHUNK_COUNT) {
    size_t nb = tally_buckets(v, n, buckets);
    doclock_lock_set((const char *const *)write_keys, (unsigned)ne);
    bool ok = tally_add_buckets(tallies, buckets, nb, &error);
    doclock_unlock_set((const char *const *)write_keys, (unsigned)ne);
    if (!ok) st = db_error("tally", &error);
    else *written = (int64_t)n;
  } else if (st == VS_OK && plan == TALLY_CHUNK_RECOUNT) {
    /* interrupted before its tallies, or votes that came after the marker was closed; a
     * marker of another instance (it died holding the chunk) is that instance's to recount
     * and close: this one recounts its own shard, which holds the votes it inserted now.
     * A recount needs the elections exclusive: released, then taken so (no upgrade in
     * place, doclock.h); chunks in flight finish their tally writes first, and the
     * recount, absolute, counts whatever they and this one inserted. The marker flips
     * under the same hold. */
    doclock_release_set((const char *const *)lock_keys, (unsigned)ne);
    doclock_exclusive_set((const char *const *)lock_keys, (unsigned)ne);
    CRASH_POINT("chunk.recounting");
    metrics_counter_inc("votes_chunks_recounted_total", "");
    for (size_t e = 0; st == VS_OK && e < ne; e++)
      st = recount(votes, tallies, claims, elections[e], "chunk");
    *written = inserted;
  }
  CRASH_POINT("chunk.tallied");
  if (st == VS_OK && mine && !counted && !set_chunk_counted(chunks, chunk, &error))
    st = db_error("chunk marker", &error); /* stays "counting": reconciliation recounts */
  doclock_release_set((const char *const *)lock_keys, (unsigned)ne);
  election_keys_free(lock_keys, ne);
  election_keys_free(write_keys, ne);
  for (size_t i = 0; i < n; i++) bson_destroy(docs[i]);
  free(docs);
  free(elections);
  free(buckets);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongoc_collection_destroy(chunks);
  mongoc_collection_destroy(claims);
  mongo_release(db, client);
  return st;
}

/* The sum of every shard's tally per candidate (see "tally shards" above), as results. */
vs_status votes_results(mongo_db *db, const char *election, json_t **results) {
  mongoc_client_t *client = mongo_acquire(db);
  mongoc_collection_t *tallies = mongo_collection(db, client, TALLIES);
  bson_t *filter = BCON_NEW("election", BCON_UTF8(election));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(tallies, filter, NULL, NULL);
  const bson_t *doc;
  json_t *sums = json_object();
  while (mongoc_cursor_next(cur, &doc)) {
    const char *candidate = mongo_doc_str(doc, "candidate");
    if (!candidate) continue;
    json_int_t before = json_integer_value(json_object_get(sums, candidate));
    json_object_set_new(sums, candidate, json_integer(before + (json_int_t)mongo_doc_int(doc, "votes")));
  }
  bson_error_t error;
  vs_status st = VS_OK;
  *results = NULL;
  if (mongoc_cursor_error(cur, &error)) {
    st = db_error("read tallies", &error);
  } else {
    json_t *rows = json_array();
    const char *candidate;
    json_t *sum;
    json_object_foreach(sums, candidate, sum)
      json_array_append_new(rows, json_pack("{s:s, s:O}", "candidate", candidate, "votes", sum));
    *results = tally_results(rows);
  }
  json_decref(sums);
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
  const char *names[] = {VOTES, TALLIES, DELETIONS};
  for (int i = 0; i < 3 && st == VS_OK; i++) {
    mongoc_collection_t *coll = mongo_collection(db, client, names[i]);
    if (!mongoc_collection_delete_many(coll, &empty, NULL, NULL, &error))
      st = db_error("drop", &error);
    mongoc_collection_destroy(coll);
  }
  if (st == VS_OK && !positions_after_drop(db, client, &error))
    st = db_error("drop: listing floor", &error);
  mongo_release(db, client);
  return st;
}

/* Adds sign * (the documents of coll matching match, per candidate) to counts. */
static bool add_counts(mongoc_collection_t *coll, const bson_t *match, int sign, json_t *counts,
                       bson_error_t *error) {
  bson_t pipeline = BSON_INITIALIZER, stages, stage, group, sum;
  BSON_APPEND_ARRAY_BEGIN(&pipeline, "pipeline", &stages);
  BSON_APPEND_DOCUMENT_BEGIN(&stages, "0", &stage);
  BSON_APPEND_DOCUMENT(&stage, "$match", match);
  bson_append_document_end(&stages, &stage);
  BSON_APPEND_DOCUMENT_BEGIN(&stages, "1", &stage);
  BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &group);
  BSON_APPEND_UTF8(&group, "_id", "$candidate");
  BSON_APPEND_DOCUMENT_BEGIN(&group, "n", &sum);
  BSON_APPEND_INT32(&sum, "$sum", 1);
  bson_append_document_end(&group, &sum);
  bson_append_document_end(&stage, &group);
  bson_append_document_end(&stages, &stage);
  bson_append_array_end(&pipeline, &stages);
  mongoc_cursor_t *cur = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, &pipeline, NULL, NULL);
  const bson_t *doc;
  while (mongoc_cursor_next(cur, &doc)) {
    const char *candidate = mongo_doc_str(doc, "_id");
    if (!candidate) continue;
    json_int_t before = json_integer_value(json_object_get(counts, candidate));
    json_object_set_new(counts, candidate,
                        json_integer(before + sign * (json_int_t)mongo_doc_int(doc, "n")));
  }
  bool ok = !mongoc_cursor_error(cur, error);
  mongoc_cursor_destroy(cur);
  bson_destroy(&pipeline);
  return ok;
}

/* This shard's counts for one election, from the database alone: the votes it counted
 * (live, or deleted through a claim: a deleted vote of the old design, which purged or
 * kept keyed ones without deletedBy, counts nowhere) minus the deletions it claimed. */
static bool shard_counts(mongoc_collection_t *votes, mongoc_collection_t *claims,
                         const char *election, json_t *counts, bson_error_t *error) {
  bson_t *live = BCON_NEW("election", BCON_UTF8(election), "deleted", BCON_BOOL(false));
  bson_t *gone = BCON_NEW("election", BCON_UTF8(election), "deleted", BCON_BOOL(true), "deletedBy",
                          "{", "$exists", BCON_BOOL(true), "}");
  bson_t *taken = BCON_NEW("election", BCON_UTF8(election), "by", BCON_UTF8(instance));
  own_shard(live);
  own_shard(gone);
  bool ok = add_counts(votes, live, 1, counts, error) && add_counts(votes, gone, 1, counts, error) &&
            add_counts(claims, taken, -1, counts, error);
  bson_destroy(live);
  bson_destroy(gone);
  bson_destroy(taken);
  return ok;
}

/* Finishes the deletions of this election this shard claimed but did not finish (a crash
 * or a failed write between claim and count): marks their votes. */
static bool finish_deletions(mongoc_collection_t *votes, mongoc_collection_t *claims,
                             const char *election, bson_error_t *error) {
  bson_t *open = BCON_NEW("election", BCON_UTF8(election), "by", BCON_UTF8(instance), "done",
                          BCON_BOOL(false));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(claims, open, NULL, NULL);
  const bson_t *doc;
  bool ok = true;
  bson_iter_t it;
  while (ok && mongoc_cursor_next(cur, &doc))
    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it))
      ok = mark_deleted(votes, bson_iter_oid(&it), error);
  if (ok && mongoc_cursor_error(cur, error)) ok = false;
  mongoc_cursor_destroy(cur);
  bson_destroy(open);
  return ok;
}

/* Recounts this instance's shard of one election from the database (shard_counts), after
 * finishing its interrupted deletions, then marks the shard's votes and claims settled.
 * Only this shard is rewritten: the others have their own single writers. Callers hold the
 * election EXCLUSIVE, so none of this instance's writers is between its insert and its
 * tally write (they hold it shared for that span). reason labels votes_recounts_total. */
static vs_status recount(mongoc_collection_t *votes, mongoc_collection_t *tallies,
                         mongoc_collection_t *claims, const char *election, const char *reason) {
  bson_error_t error;
  char labels[64];
  snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
  metrics_counter_inc("votes_recounts_total", labels);
  json_t *counts = json_object();
  vs_status st = VS_OK;
  if (!finish_deletions(votes, claims, election, &error) ||
      !shard_counts(votes, claims, election, counts, &error))
    st = db_error("recount", &error);
  bson_t *clear = BCON_NEW("election", BCON_UTF8(election));
  own_shard(clear);
  if (st == VS_OK && !mongoc_collection_delete_many(tallies, clear, NULL, NULL, &error))
    st = db_error("clear tallies", &error);
  const char *candidate;
  json_t *n;
  json_object_foreach(counts, candidate, n) {
    if (st == VS_OK && json_integer_value(n) != 0 &&
        !tally_add(tallies, election, candidate, json_integer_value(n), &error))
      st = db_error("write tally", &error);
  }
  if (st == VS_OK) {
    bson_t *uncounted = BCON_NEW("election", BCON_UTF8(election), "tallied", BCON_BOOL(false));
    own_shard(uncounted);
    bson_t *set = BCON_NEW("$set", "{", "tallied", BCON_BOOL(true), "}");
    bson_t *open = BCON_NEW("election", BCON_UTF8(election), "by", BCON_UTF8(instance), "done",
                            BCON_BOOL(false));
    bson_t *done = BCON_NEW("$set", "{", "done", BCON_BOOL(true), "}");
    if (!mongoc_collection_update_many(votes, uncounted, set, NULL, NULL, &error) ||
        !mongoc_collection_update_many(claims, open, done, NULL, NULL, &error))
      st = db_error("mark recounted", &error);
    bson_destroy(uncounted);
    bson_destroy(set);
    bson_destroy(open);
    bson_destroy(done);
  }
  json_decref(counts);
  bson_destroy(clear);
  return st;
}

/* This instance's finished deletions older than age_ms, not yet checked: a vote still
 * unmarked (another replica's flag write put "deleted: false" back, see flag_withhold) is
 * marked again, then the claim is marked checked. Tallies need nothing: they count the
 * claim, not the mark (shard_counts). */
static vs_status recheck_deletions(mongoc_collection_t *votes, mongoc_collection_t *claims,
                                   int64_t age_ms) {
  bson_t *finished = BCON_NEW("by", BCON_UTF8(instance), "done", BCON_BOOL(true), "checked", "{",
                              "$ne", BCON_BOOL(true), "}", "createdAt", "{", "$lt",
                              BCON_DATE_TIME(util_now_ms() - age_ms), "}");
  bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(1000));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(claims, finished, opts, NULL);
  bson_error_t error;
  vs_status st = VS_OK;
  const bson_t *doc;
  bson_iter_t it;
  while (st == VS_OK && mongoc_cursor_next(cur, &doc)) {
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it)) continue;
    const bson_oid_t *oid = bson_iter_oid(&it);
    bson_t *unmarked = BCON_NEW("_id", BCON_OID(oid), "deleted", BCON_BOOL(false));
    int64_t n = mongoc_collection_count_documents(votes, unmarked, NULL, NULL, NULL, &error);
    bson_destroy(unmarked);
    if (n < 0) {
      st = db_error("find unmarked deleted vote", &error);
      break;
    }
    if (n > 0) {
      if (!mark_deleted(votes, oid, &error)) {
        st = db_error("mark deleted vote", &error);
        break;
      }
      metrics_counter_inc("votes_deletion_marks_repaired_total", "");
      char hex[25];
      bson_oid_to_string(oid, hex);
      log_fields(LOG_WARN, "marked a deleted vote again (its mark was overwritten)",
                 json_pack("{s:s}", "vote", hex));
    }
    if (!claim_set(claims, oid, "checked", &error)) st = db_error("deletion checked", &error);
  }
  if (st == VS_OK && mongoc_cursor_error(cur, &error)) st = db_error("find finished deletions", &error);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(finished);
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
  own_shard(filter); /* the other shards are their instances' to reconcile */
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
  own_shard(stuck);
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
  /* deletions this shard claimed and did not finish */
  mongoc_collection_t *claims = mongo_collection(db, client, DELETIONS);
  bson_t *open = BCON_NEW("by", BCON_UTF8(instance), "done", BCON_BOOL(false), "createdAt", "{",
                          "$lt", BCON_DATE_TIME(util_now_ms() - age_ms), "}");
  cur = mongoc_collection_find_with_opts(claims, open, NULL, NULL);
  while (st == VS_OK && mongoc_cursor_next(cur, &doc)) {
    const char *e = mongo_doc_str(doc, "election");
    if (e) json_object_set_new(names, e, json_true());
  }
  if (mongoc_cursor_error(cur, &error)) st = db_error("find unfinished deletions", &error);
  mongoc_cursor_destroy(cur);
  bson_destroy(open);
  const char *election;
  json_t *unused;
  json_object_foreach(names, election, unused) {
    if (st != VS_OK) break;
    election_exclusive(election);
    st = recount(votes, tallies, claims, election, reason);
    election_release(election);
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
  if (st == VS_OK) st = recheck_deletions(votes, claims, age_ms);
  mongoc_collection_destroy(chunks);
  mongoc_collection_destroy(claims);
  json_decref(names);
  bson_destroy(filter);
  bson_destroy(opts);
  mongoc_collection_destroy(votes);
  mongoc_collection_destroy(tallies);
  mongo_release(db, client);
  return st;
}
