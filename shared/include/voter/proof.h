/* proof — how a service knows that a request came through the gateway, and with which
 * scopes. Prefix proof_.
 *
 * The gateway authenticates the client (API key → tier → scopes), then sends upstream
 *   X-Consumer-ID:     the caller's id ("" for anonymous clients)
 *   X-Consumer-Scopes: the caller's scopes, space-separated (e.g. "read vote")
 *   X-Gateway-Proof:   t=<unix seconds>,sig=<64 lowercase hex>
 * where sig = HMAC-SHA256(secret, METHOD "\n" PATH "\n" t "\n" CONSUMER "\n" SCOPES) and
 * PATH is the normalised path the gateway forwards, without the query. The secret is one
 * per deployment (GATEWAY_PROOF_SECRET), shared by the gateway and the services only;
 * during a rotation services accept the previous one too (GATEWAY_PROOF_SECRET_PREVIOUS).
 * A service that receives no valid proof treats the caller as having no scopes: a request
 * on the internal network, or a webhook aimed at a service, cannot perform admin actions.
 * A proof is valid for PROOF_MAX_SKEW_S either side of the service's clock; it binds the
 * method, path, caller and scopes, so it cannot be moved to another request of another kind
 * (replaying the very same admin request within the window is what it does not prevent —
 * the gateway is the only holder of the secret and the network between them is trusted to
 * that extent; see docs/design.md, threat model). */
#ifndef VOTER_PROOF_H
#define VOTER_PROOF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROOF_HEADER "X-Gateway-Proof"
#define PROOF_CONSUMER_HEADER "X-Consumer-ID"
#define PROOF_SCOPES_HEADER "X-Consumer-Scopes"
#define PROOF_SECRET_ENV "GATEWAY_PROOF_SECRET"
/* Rotation: services also accept proofs signed with this one while it is set (the gateway
 * signs with GATEWAY_PROOF_SECRET only). Procedure: docs/operations.md. */
#define PROOF_SECRET_PREVIOUS_ENV "GATEWAY_PROOF_SECRET_PREVIOUS"
#define PROOF_MAX_SKEW_S 300
/* A secret shorter than this is refused by proof_sign and proof_verify. */
#define PROOF_MIN_SECRET 16
/* "t=" + up to 20 digits + ",sig=" + 64 hex + NUL */
#define PROOF_TEXT_MAX 96

typedef enum {
  PROOF_OK = 0,
  PROOF_NO_SECRET,     /* secret unset or shorter than PROOF_MIN_SECRET */
  PROOF_MISSING,       /* no proof header */
  PROOF_MALFORMED,     /* header not t=<digits>,sig=<64 hex>, or a field holds a newline */
  PROOF_EXPIRED,       /* t further than PROOF_MAX_SKEW_S from now */
  PROOF_BAD_SIGNATURE, /* signature does not match (compared in constant time) */
} proof_status;

/* Writes the X-Gateway-Proof value for a request into out. consumer and scopes may be NULL
 * (= ""). 0 on success, -1 when the secret is too short or a field holds a newline. */
int proof_sign(const char *secret, size_t secret_len, const char *method, const char *path,
               const char *consumer, const char *scopes, int64_t now_s,
               char out[PROOF_TEXT_MAX]);

/* A signer holds the secret's HMAC pads hashed once (the gateway signs every request it
 * forwards; HMAC() from scratch costs several times more). Same output as proof_sign. */
typedef struct proof_signer proof_signer;
/* NULL when the secret is shorter than PROOF_MIN_SECRET (or out of memory). */
proof_signer *proof_signer_new(const char *secret, size_t secret_len);
int proof_signer_sign(const proof_signer *s, const char *method, const char *path,
                      const char *consumer, const char *scopes, int64_t now_s,
                      char out[PROOF_TEXT_MAX]);
void proof_signer_free(proof_signer *s);

/* Checks a received X-Gateway-Proof value (header may be NULL) against the request. */
proof_status proof_verify(const char *secret, size_t secret_len, const char *header,
                          const char *method, const char *path, const char *consumer,
                          const char *scopes, int64_t now_s);

/* Rotation overlap: proof_verify with secret; when that signature does not match and a
 * previous secret is given (previous may be NULL; shorter than PROOF_MIN_SECRET counts as
 * none), proof_verify with previous. Without a current secret: PROOF_NO_SECRET, whatever
 * the previous one (a previous secret alone never admits anything). */
proof_status proof_verify_rotating(const char *secret, size_t secret_len, const char *previous,
                                   size_t previous_len, const char *header, const char *method,
                                   const char *path, const char *consumer, const char *scopes,
                                   int64_t now_s);

/* true when the space-separated list scopes holds scope as a whole word. */
bool proof_scope_has(const char *scopes, const char *scope);

/* A short English reason for a status ("signature does not match", ...). */
const char *proof_status_text(proof_status status);

#endif
