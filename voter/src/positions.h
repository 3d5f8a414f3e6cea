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
 * it and the other tries k + 1) and hands out the claim's positions in order: position i
 * of claim k lies in bucket k * POSITIONS_BUCKETS_PER_CLAIM + i / POSITIONS_PER_BUCKET. So a
 * bucket holds at most POSITIONS_PER_BUCKET votes, all written by one process, and bucket
 * numbers grow with time: the listing is in order of insertion by bucket, as MongoDB's
 * natural order (the original's listing) is in order of insertion.
 *
 * Each instance keeps a tip in vote_tips, {_id: instance, claim, bucket} (each instance is
 * the only writer of its own): the highest bucket it has handed out, written before any
 * vote goes into that bucket (once per bucket, or per bulk chunk), and the claim of the
 * first position of that hand-out. So no vote lies above the highest tip's bucket, and the
 * rest of each tip's claim above its bucket is known to be empty: a walk from the end skips
 * it (positions_span's gaps).
 *
 * The lowest bucket is POSITIONS_LEGACY (votes stored before positions existed are moved
 * there once, at start-up; 0 when there were none), or, after POST /voter/drop/votes, the floor the drop recorded:
 * the first bucket of the lowest claim any tip names. Every claim below it was finished
 * before the drop, and no process hands out positions of a finished claim again. (A vote
 * whose position was handed out before the drop and that is inserted after it, while its
 * process moved past the claim, is the one exception: it lies below the floor, is counted
 * and is read from the end, not from the start.)
 *
 * A restarted instance goes on in its tip's claim, from the bucket after the tip's.
 *
 * Costs: one tip write per POSITIONS_PER_BUCKET votes (or bulk chunk), one claim per
 * POSITIONS_PER_CLAIM. A page costs one read per bucket between it and the nearer end;
 * buckets emptied by deletions, partly used by a restart, or left empty by a crash between
 * a tip and its vote are read too. See docs/design.md, "Listing votes". */
#ifndef VOTER_POSITIONS_H
#define VOTER_POSITIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/mongo.h"

#define POSITIONS_PER_BUCKET 32
#define POSITIONS_BUCKETS_PER_CLAIM 32
#define POSITIONS_PER_CLAIM (POSITIONS_PER_BUCKET * POSITIONS_BUCKETS_PER_CLAIM)
#define POSITIONS_LEGACY (-1)

/* The vote field that holds the bucket. */
#define POSITIONS_FIELD "pg"

/* Creates the votes' index on the bucket and moves the votes stored without one into
 * POSITIONS_LEGACY (once per database: a marker in vote_tips records how many). instance is
 * this process's VOTER_INSTANCE. false (error logged) if the database cannot do it yet. */
bool positions_init(mongo_db *db, const char *instance);

/* Hands out n positions in listing order: buckets[i] for this process's next n votes,
 * claiming as many claims as needed. Thread-safe. false (error set) on a database failure:
 * the votes must then not be written. */
bool positions_take(mongo_db *db, mongoc_client_t *client, size_t n, int64_t *buckets,
                    bson_error_t *error);

/* Where the votes can be: buckets low..high, except the gaps (buckets known to be empty:
 * the rest of each tip's claim above its bucket), sorted by their first bucket. */
typedef struct positions_gap {
  int64_t from, to;
} positions_gap;

typedef struct positions_span {
  int64_t low, high; /* high < low: no bucket at all */
  positions_gap *gaps;
  size_t ngaps;
} positions_span;

/* Reads the tips into *span (freed with positions_span_free). */
bool positions_range(mongo_db *db, mongoc_client_t *client, positions_span *span,
                     bson_error_t *error);
void positions_span_free(positions_span *span);

/* After every vote was deleted: records the floor (see above) so that walks from the start
 * skip the buckets of the claims finished before. */
bool positions_after_drop(mongo_db *db, mongoc_client_t *client, bson_error_t *error);

/* Reads the live votes of one bucket, rendered, in _id order (a new array). */
typedef bool (*positions_read)(void *ctx, int64_t bucket, json_t **items, bson_error_t *error);

/* The page (page, size) of a listing of total items spread over the span's buckets: walks
 * from the nearer end, skipping what lies between it and the page, reading each bucket
 * (but the gaps) with read. A page past total reads nothing. Read from the start, a page
 * holds up to size items; read from the end, up to what total leaves for it (if total is
 * lower than the votes stored, pages read from the end shift by the difference). Pure: the
 * database is behind read. */
bool positions_page(const positions_span *span, int64_t total, int64_t page, int64_t size,
                    positions_read read, void *ctx, json_t **items, bson_error_t *error);

#endif
