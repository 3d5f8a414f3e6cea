/* sign — hashes and HMAC signatures (prefix sign_).
 *
 * Result URLs are capabilities: /jobs/{id}/result?expires=<unix>&sig=<hex> where sig is
 * HMAC-SHA256(secret, "<id>:<expires>"), so anyone holding the URL may fetch the result
 * until it expires, and nobody can mint or extend one without the secret. Webhook bodies
 * are signed the same way (X-Signature: sha256=<hex HMAC of the body>). */
#ifndef JOBS_SIGN_H
#define JOBS_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void sign_sha256_hex(const void *data, size_t len, char out[65]);
void sign_hmac_hex(const char *secret, const void *data, size_t len, char out[65]);

/* "/jobs/<id>/result?expires=<expires>&sig=<hex>" into out. */
void sign_result_path(const char *secret, const char *id, int64_t expires, char *out,
                      size_t cap);

typedef enum { SIGN_OK = 0, SIGN_MISSING, SIGN_BAD, SIGN_EXPIRED } sign_check_result;
/* Checks a result URL's parameters (either may be NULL) against id at now_s; the
 * comparison takes the same time whatever the signature. */
sign_check_result sign_check(const char *secret, const char *id, const char *expires,
                             const char *sig, int64_t now_s);

#endif
