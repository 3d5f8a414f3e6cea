/* submit — turning a POST /jobs/tabulations request into validated inputs (prefix submit_).
 *
 * Accepts multipart/form-data (parts rules, ballots, optional callbackUrl) or JSON
 * {"rules": {...} | "<json text>", "ballots": "<csv text>", "callbackUrl": "..."}, and
 * validates both inputs with tabulate's own parsers (the tabulator_core library: the same
 * code the batch program runs), so a job that can only fail with "invalid input" is
 * refused with 422 and the line/column at fault, before anything is stored or enqueued. */
#ifndef JOBS_SUBMIT_H
#define JOBS_SUBMIT_H

#include <jansson.h>
#include <stdint.h>

#include "voter/http.h"

typedef struct tab_submission {
  char *rules;            /* owned JSON text */
  size_t rules_len;
  const char *ballots;    /* into the request body or `holder` */
  size_t ballots_len;
  char *callback_url;     /* owned, NULL when none */
  char contest[256];
  int64_t ballots_count;  /* rows, known after validation */
  char body_hash[65];     /* of the normalized inputs (Idempotency-Key comparison) */
  json_t *holder;         /* the parsed JSON body, kept while ballots points into it */
} tab_submission;

/* Parses the request; on failure sets the problem response (400/415/422) and returns -1. */
int submit_parse(const http_request *req, http_response *res, tab_submission *sub);
/* Validates rules and ballots; on failure sets 422 and returns -1. Fills contest,
 * ballots_count and body_hash. */
int submit_validate(tab_submission *sub, http_response *res);
void submit_free(tab_submission *sub);

#endif
