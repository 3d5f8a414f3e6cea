/* batch_parse — reading what bulk ingestion receives (prefix batch_parse_), apart from the
 * queue and the database so it can be tested alone: a submitted body split into votes
 * (NDJSON or a JSON array, with line numbers and per-line JSON errors), and a work-queue
 * chunk turned back into the votes to write. */
#ifndef VOTER_BATCH_PARSE_H
#define VOTER_BATCH_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "votes.h"

/* Rejections listed in a batch's answer; more are only counted. */
#define BATCH_MAX_REJECTIONS 1000

/* Splits body into vote values, one per non-blank line (NDJSON: trailing CR, spaces and
 * tabs ignored; a line that is not JSON becomes null and a rejection {line, error}) or per
 * element (a JSON array). lines receives each value's line (1-based; the element's index
 * for an array). NULL when the body as a whole is unusable (an array body that is not a
 * JSON array), with the reason in detail. Duplicate keys are malformed JSON. */
json_t *batch_parse_body(const char *body, size_t len, bool ndjson, json_t *rejections,
                         json_t *lines, char *detail, size_t dlen);

/* Checks one vote's shape: an object with safe keys (no "$" prefix, no "."), candidate and
 * election strings (1..256), nothing else. NULL when well-formed, else the first problem
 * ("<field> <message>", in buf, or static). Whether they are known is votes_check's. */
const char *batch_parse_vote_shape(const json_t *v, char *buf, size_t len);

/* One work-queue message: {batch, seq, votes: [{id, candidate, election}]}. */
typedef struct batch_chunk {
  json_t *doc;      /* owns the strings below */
  const char *batch;
  int64_t seq;
  char key[64];     /* "<batch>:<seq>": names the chunk for votes_insert_many */
  vote_in *votes;   /* the well-formed votes (ObjectId id, candidate and election strings) */
  size_t n;
} batch_chunk;

/* false for a message that is not a chunk (no batch, seq or votes array): dead-letter.
 * Malformed votes inside a chunk are skipped (they were validated before publishing).
 * Either way batch_parse_chunk_free(c) afterwards. */
bool batch_parse_chunk(const char *body, size_t len, batch_chunk *c);
void batch_parse_chunk_free(batch_chunk *c);

#endif
