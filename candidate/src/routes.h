/* routes — the candidate service's HTTP handlers: parse, validate, call the domain, render. */
#ifndef CANDIDATE_ROUTES_H
#define CANDIDATE_ROUTES_H

#include "candidate.h"
#include "elections.h"
#include "voter/http.h"

/* What the handlers work on; owned by main for the server's lifetime. */
typedef struct candidate_api {
  entity_store *store;
  elections *replica;
} candidate_api;

void candidate_routes(http_server *srv, candidate_api *api);

#endif
