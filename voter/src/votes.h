/* votes — votes, per-election tallies and idempotency keys (no HTTP here).
 *
 * Documents:
 *   votes:       {_id: ObjectId, candidate, election, createdAt, tallied, deleted, chunk?}
 *   chunks:      {_id: chunk, state: "counting"|"counted", elections, createdAt}
 *   tallies:     {_id: "<election>\x1f<candidate>", election, candidate, votes}
 *   idempotency: {_id: key, fingerprint, state: "pending"|"done", status, response, createdAt}
 *
 * Results are read from the tallies, one small read per request whatever the number of
 * votes. A vote is inserted with tallied: false, its tally is incremented, then it is
 * marked tallied; every change to one election's tallies in this process holds that
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
  VS_CONFLICT,          /* idempotency key reused with another body, or still in progress */
  VS_UNAVAILABLE
} vs_status;

typedef struct vote_in {
  char id[25]; /* set by votes_insert_many's caller or generated */
  const char *candidate;
  const char *election;
} vote_in;

bool votes_init(mongo_db *db);

/* Checks the replicas: the election is live and the candidate (full name) is live in it. */
vs_status votes_check(mongo_db *db, const char *candidate, const char *election);

/* Inserts one vote and counts it; *item gets {id, candidate, election}. */
vs_status votes_create(mongo_db *db, const char *candidate, const char *election, json_t **item);
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

/* Idempotency: begin returns VS_OK (new key, go ahead), VS_CREATED (done before: status and
 * response returned), VS_CONFLICT (other body, or in progress). */
vs_status votes_idem_begin(mongo_db *db, const char *key, const char *fingerprint, int *status,
                           char **response);
void votes_idem_finish(mongo_db *db, const char *key, int status, const char *response);
void votes_idem_abort(mongo_db *db, const char *key);

#endif
