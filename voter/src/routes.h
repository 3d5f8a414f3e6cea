/* routes — the voter service's HTTP handlers: parse, validate, call the domain, render. */
#ifndef VOTER_ROUTES_H
#define VOTER_ROUTES_H

#include "batch.h"
#include "stream.h"
#include "voter/http.h"
#include "voter/mongo.h"
#include "voter/replica.h"

typedef struct voter_app {
  mongo_db *db;
  batch_ctx *batch;
  const char *candidate_url; /* for POST /voter/drop/candidates (replay request) */
  const char *candidate_api_key; /* X-API-Key on that request, when candidate_url is a gateway */
  stream_hub *stream;        /* told about every tally change (live results) */
  /* the parts' configuration and handles (app.c) */
  replica_consumer *consumer;
  stream_options stream_opts;
  long retry_ms, max_attempts, chunk, ingest_workers;
} voter_app;

void voter_routes(http_server *srv, voter_app *app);

#endif
