/* authz — what a service lets a caller do: admin operations (drops, replays, simulation,
 * deleting votes, cancelling jobs) only for requests that carry a valid gateway proof
 * (proof.h) holding the `admin` scope (prefix authz_).
 *
 * The secret is GATEWAY_PROOF_SECRET, read once per process; while a secret is being
 * rotated, proofs made with GATEWAY_PROOF_SECRET_PREVIOUS are accepted too (proof.h,
 * proof_verify_rotating; docs/operations.md). Without a current secret (or with one
 * shorter than PROOF_MIN_SECRET) every admin operation is refused: the service fails
 * closed and says so once in its log at start. Everything else is unaffected: reads,
 * votes and writes stay the gateway's business (rules and scopes there). */
#ifndef VOTER_AUTHZ_H
#define VOTER_AUTHZ_H

#include <stdbool.h>

#include "voter/http.h"
#include "voter/proof.h"

/* Reads GATEWAY_PROOF_SECRET and logs once when it is missing or too short. Called by
 * service_http_options at start; later calls (and authz_admin) reuse the first result. */
void authz_init(void);

/* true when the request proves it came through the gateway with the `admin` scope.
 * Otherwise answers 403 problem+json (the reason in its detail) and returns false.
 * An http_guard (http.h): authz_route_admin installs it in front of a handler. */
bool authz_admin(const http_request *req, http_response *res);

/* The caller's id as the gateway vouches for it: the X-Consumer-ID of a request whose proof
 * verifies (whatever its scopes), or NULL (no proof, a bad one, no secret, or anonymous).
 * A service that scopes data by caller takes the id from here, never from the bare header,
 * which anything on the internal network could set. */
const char *authz_consumer(const http_request *req);

/* http_route for an admin operation: the handler runs only when authz_admin lets it. */
int authz_route_admin(http_server *s, const char *method, const char *pattern, http_handler fn,
                      void *ctx);

/* The three header lines ("Name: value") a service sends when an admin operation it is
 * performing asks another service for one (voter → candidate replay, candidate → election
 * replay): the original caller's id and scopes, signed for method and path now. */
typedef struct authz_headers {
  char consumer[192];
  char scopes[160];
  char proof[PROOF_TEXT_MAX + 32];
} authz_headers;

/* Fills out for a request to another service made while handling req (which passed
 * authz_admin). -1 when this service has no secret (the callee would refuse anyway). */
int authz_forward(const http_request *req, const char *method, const char *path,
                  authz_headers *out);

#endif
