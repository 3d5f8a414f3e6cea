/* positions — where each vote stands in the default listing of GET /voter/votes.
 *
 * FerretDB 1.24 pushes only equality filters down to its database (no sort, no range, no
 * limit after a filter), so a page found by sort + skip reads every vote. Here a page is
 * found by equalities instead: every vote carries "pg", the number of its bucket, and the
 * listing is in bucket order, then _id order within a bucket. A page is read by walking
 * buckets from the nearer end of the listing, one equality read {pg, deleted: false} each,
 * skipping what lies before the page: the first and the last page cost a bucket or two
 * whatever the number of votes.
 *
 * Buckets come from claims. A process reserves POSITIONS_PER_CLAIM positions at a time by
 * inserting {_id: k} into vote_claims (a unique insert: of two processes trying k, one gets
 * it and the other tries k + 1), then records k as its tip ({_id: instance, claim: k} in
 * vote_tips; each instance is the only writer of its tip) and only then hands out the
 * claim's positions, in order. Position i of claim k lies in bucket
 * k * POSITIONS_BUCKETS_PER_CLAIM + i / POSITIONS_PER_BUCKET. So a bucket holds at most
 * POSITIONS_PER_BUCKET votes, all written by one process, and bucket numbers grow with
 * time: the listing is in order of insertion by claim, as MongoDB's natural order (the
 * original's listing) is in order of insertion. The highest bucket any vote can be in is
 * the last bucket of the highest tip's claim.
 *
 * The lowest is POSITIONS_LEGACY (votes stored before positions existed are moved there
 * once, at start-up), or, after POST /voter/drop/votes, the floor the drop recorded: the
 * first bucket of the lowest claim any tip names. Every claim below it was finished
 * before the drop, and no process writes into a finished claim again.
 *
 * Costs: one claim and one tip write per POSITIONS_PER_CLAIM votes. A page costs one read
 * per bucket between it and the nearer end, and buckets left empty (the rest of a claim
 * a process stopped in, deleted votes) are read too. See docs/design.md, "Listing votes". */
#ifndef VOTER_POSITIONS_H
#define VOTER_POSITIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/mongo.h"

#define POSITIONS_PER_BUCKET 128
#define POSITIONS_BUCKETS_PER_CLAIM 8
#define POSITIONS_PER_CLAIM (POSITIONS_PER_BUCKET * POSITIONS_BUCKETS_PER_CLAIM)
#define POSITIONS_LEGACY (-1)

/* The vote field that holds the bucket. */
#define POSITIONS_FIELD "pg"

/* Creates the votes' index on the bucket and moves the votes stored without one into
 * POSITIONS_LEGACY (once per database: a marker in vote_tips records it). instance is
 * this process's VOTER_INSTANCE. false (error logged) if the database cannot do it yet. */
bool positions_init(mongo_db *db, const char *instance);

/* Hands out n positions in listing order: buckets[i] for this process's next n votes,
 * claiming as many claims as needed. Thread-safe. false (error set) on a database failure:
 * the votes must then not be written. */
bool positions_take(mongo_db *db, mongoc_client_t *client, size_t n, int64_t *buckets,
                    bson_error_t *error);

/* The lowest and highest bucket a vote can be in now (*high < *low when none can be). */
bool positions_range(mongo_db *db, mongoc_client_t *client, int64_t *low, int64_t *high,
                     bson_error_t *error);

/* After every vote was deleted: records the floor (see above) so that walks from the start
 * skip the buckets of the claims finished before. */
bool positions_after_drop(mongo_db *db, mongoc_client_t *client, bson_error_t *error);

/* Reads the live votes of one bucket, rendered, in _id order (a new array). */
typedef bool (*positions_read)(void *ctx, int64_t bucket, json_t **items, bson_error_t *error);

/* The page (page, size) of a listing of total items spread over the buckets low..high:
 * walks from the nearer end, skipping what lies between it and the page, reading each
 * bucket with read. A page past total reads nothing. Read from the start, a page holds up
 * to size items; read from the end, up to what total leaves for it (if total is lower
 * than the votes stored, pages read from the end shift by the difference). Pure: the
 * database is behind read. */
bool positions_page(int64_t low, int64_t high, int64_t total, int64_t page, int64_t size,
                    positions_read read, void *ctx, json_t **items, bson_error_t *error);

#endif
