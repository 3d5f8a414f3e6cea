/* tally_logic — the decisions behind the voter's tallies (prefix tally_), apart from the
 * database calls in votes.c so they can be tested alone: how a bulk chunk is bucketed and
 * whether it is counted, recounted or left alone, when a retry finishes an interrupted
 * vote, and how tallies become results and winners. */
#ifndef VOTER_TALLY_LOGIC_H
#define VOTER_TALLY_LOGIC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "votes.h"

/* A keyed retry that finds its vote written but not counted recounts the election only
 * when the vote is older than this: no live request (of any replica) takes that long
 * between its insert and its tally, so the recount cannot race it. */
#define TALLY_SETTLE_MS 5000

/* The votes of one (election, candidate) in a chunk. */
typedef struct tally_bucket {
  const char *election, *candidate;
  int64_t n;
} tally_bucket;

/* Distinct elections of votes, in first-seen order, into out (room for n); the count. */
size_t tally_distinct_elections(const vote_in *votes, size_t n, const char **out);

/* Per-(election, candidate) counts of votes, in first-seen order, into out (room for n);
 * the number of buckets. Strings are borrowed from votes. */
size_t tally_buckets(const vote_in *votes, size_t n, tally_bucket *out);

/* What a delivery of a bulk chunk does to the tallies. */
typedef enum {
  TALLY_CHUNK_COUNT = 0, /* first delivery: add its buckets */
  TALLY_CHUNK_RECOUNT,   /* redelivery of an interrupted count, or of votes that arrived after
                            their marker was closed: recount its elections from the votes */
  TALLY_CHUNK_NOTHING    /* redelivery of a chunk counted whole: nothing changed */
} tally_chunk_plan;

/* fresh: this delivery wrote the chunk's marker; counted: the marker (of an earlier
 * delivery) says "counted"; inserted: how many of its votes this delivery inserted. */
tally_chunk_plan tally_plan_chunk(bool fresh, bool counted, int64_t inserted);

/* Whether a keyed retry that found its vote should recount the election: only a live vote
 * left uncounted (tallied false) by an attempt older than TALLY_SETTLE_MS. */
bool tally_retry_recounts(bool tallied, bool deleted, int64_t created_ms, int64_t now_ms);

/* Results from tally rows [{candidate, votes}]: rows without a candidate or with no votes
 * (a recount can leave zero) are dropped, the rest sorted by votes descending, then by
 * candidate name. Takes rows (stolen) and returns the new array. */
json_t *tally_results(json_t *rows);

/* The sum of the results' votes. */
int64_t tally_total(const json_t *results);

/* Every result tied at the most votes (a new array; empty without results); *max gets that
 * number (0 without results). */
json_t *tally_winners(const json_t *results, int64_t *max);

#endif
