/* routes — the election service's HTTP handlers: parse, validate, call the domain, render. */
#ifndef ELECTION_ROUTES_H
#define ELECTION_ROUTES_H

#include "election.h"
#include "voter/http.h"

void election_routes(http_server *srv, entity_store *store);

#endif
