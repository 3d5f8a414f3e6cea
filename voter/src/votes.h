/* votes — votes and per-election tallies (no HTTP here).
 *
 * Documents:
 *   votes:   {_id: ObjectId, candidate, election, createdAt, tallied, deleted, pg, chunk?,
 *             _idem?, shard?, deletedBy?}  pg: the vote's listing bucket (positions.h)
 *   chunks:  {_id: chunk, state: "counting"|"counted", elections, createdAt, shard?}
 *   tallies: {_id: "<election>\x1f<candidate>[\x1f<instance>]", election, candidate, votes,
 *             shard?}  one shard per replica (VOTER_INSTANCE; "0", the default, has no
 *             suffix and no shard field); results are the sum of the shards
 *   vote_deletions: {_id: vote, election, candidate, by: instance, done, createdAt}
 *   vote_claims: {_id: claim number, by, at}; vote_tips: {_id: instance, claim, at}, plus
 *             {_id: "~legacy", moved} and {_id: "~floor", floor}  (listing positions, positions.h)
 *
 * Several replicas share the database: each counts into its own shard only and claims a
 * deletion by inserting into vote_deletions, so no tally document has two writers (see
 * "tally shards" in votes.c and docs/design.md, "Several replicas").
 *
 * A vote cast with an Idempotency-Key has the _id derived from the caller and the key
 * (idem.h) and carries its request's fingerprint in _idem: a retry, after a crash at any
 * point, inserts into the same _id, finds the vote and answers with it; the vote exists
 * once whatever happened. A deleted keyed vote stays as a tombstone for the same reason.
 *
 * Results are read from the tallies, one small read per request whatever the number of
 * votes. A vote is inserted with tallied: false, its tally is incremented, then it is
 * marked tallied (behind the request, in bulk); every change to one election's tallies in this process holds that
 * election's lock. A crash between those steps leaves tallied: false behind, and
 * votes_reconcile() (at start-up and periodically) recomputes the affected elections'
 * tallies from the votes themselves, the source of truth. Bulk chunks are counted as a whole:
 * a marker per chunk instead of a flag per vote (see votes_insert_many). */
#ifndef VOTER_VOTES_H
#define VOTER_VOTES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/mongo.h"

typedef enum {
  VS_OK = 0,
  VS_CREATED,
  VS_NOT_FOUND,
  VS_UNKNOWN_CANDIDATE, /* not known in that election (replica) */
  VS_UNKNOWN_ELECTION,
  VS_REPLAYED,          /* an earlier attempt with this Idempotency-Key wrote it: *item */
  VS_MISMATCH,          /* Idempotency-Key reused by the caller with another request */
  VS_UNAVAILABLE
} vs_status;

/* The fields of a vote as a client sends it, for a jsonv_field list (voter/json.h): one
 * definition for the single POST (routes.c, which also lets a GET body's id come back)
 * and the lines of a batch (batch_parse.c). */
#define VOTES_FIELDS                                                                       \
  {"candidate", JSONV_STRING, true, 256}, {"election", JSONV_STRING, true, 256}

typedef struct vote_in {
  char id[25]; /* set by votes_insert_many's caller or generated */
  const char *candidate;
  const char *election;
} vote_in;

bool votes_init(mongo_db *db);

/* Writes the tallied flags still queued (see "tallied flags, written behind" in votes.c) and
 * stops their writer; before the database handle is closed. */
void votes_stop(void);

/* Checks the replicas: the election is live and the candidate (full name) is live in it. */
vs_status votes_check(mongo_db *db, const char *candidate, const char *election);

/* What makes a vote keyed: its derived _id and its request's fingerprint (idem.h). */
typedef struct vote_key {
  const bson_oid_t *id;
  const char *fingerprint;
} vote_key;

/* Inserts one vote and counts it: VS_CREATED, *item gets {id, candidate, election}. With a
 * key (else NULL): VS_REPLAYED with the vote an earlier attempt wrote (finishing its count
 * if that attempt was cut short), VS_MISMATCH for another request under the same key. */
vs_status votes_create(mongo_db *db, const char *candidate, const char *election,
                       const vote_key *key, json_t **item);
/* The vote a keyed request wrote, whatever its state: VS_REPLAYED (*item), VS_MISMATCH,
 * VS_NOT_FOUND. For a retry that no longer passes validation (its candidate was deleted
 * since), which must still be answered with its vote. */
vs_status votes_find_keyed(mongo_db *db, const vote_key *key, json_t **item);
vs_status votes_get(mongo_db *db, const char *id, json_t **item);
vs_status votes_delete(mongo_db *db, const char *id);
/* A page of live votes (sort fields are storage names). */
vs_status votes_list(mongo_db *db, const mongo_page *page, json_t **items, int64_t *total);

/* Inserts votes whose ids are set (duplicates from a redelivery are skipped) and counts the
 * ones of this chunk not yet counted; chunk names this group of votes uniquely and is the
 * same on a redelivery. *written gets how many were newly counted. */
vs_status votes_insert_many(mongo_db *db, const vote_in *votes, size_t n, const char *chunk,
                           int64_t *written);

/* Tallies: [{candidate, votes}] sorted by votes desc, then name; one read. */
vs_status votes_results(mongo_db *db, const char *election, json_t **results);
vs_status votes_drop_all(mongo_db *db);

/* Recomputes the tallies of every election with uncounted votes older than age_ms. */
vs_status votes_reconcile(mongo_db *db, int64_t age_ms, int *elections);

#endif
