/* sign — hashes and HMAC signatures; see sign.h. */
#include "sign.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void to_hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = 0;
}

void sign_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(data, len, digest);
  to_hex(digest, sizeof digest, out);
}

void sign_hmac_hex(const char *secret, const void *data, size_t len, char out[65]) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), data, len, digest, &n);
  to_hex(digest, n, out);
}

static void mac_for(const char *secret, const char *id, int64_t expires, char out[65]) {
  char text[64];
  int n = snprintf(text, sizeof text, "%s:%lld", id, (long long)expires);
  sign_hmac_hex(secret, text, (size_t)n, out);
}

void sign_result_path(const char *secret, const char *id, int64_t expires, char *out,
                      size_t cap) {
  char mac[65];
  mac_for(secret, id, expires, mac);
  snprintf(out, cap, "/jobs/%s/result?expires=%lld&sig=%s", id, (long long)expires, mac);
}

sign_check_result sign_check(const char *secret, const char *id, const char *expires,
                             const char *sig, int64_t now_s) {
  if (!expires || !sig || !*expires || !*sig) return SIGN_MISSING;
  char *end;
  errno = 0;
  long long exp = strtoll(expires, &end, 10);
  if (errno || *end || exp <= 0 || strlen(id) > 24) return SIGN_BAD;
  char mac[65];
  mac_for(secret, id, exp, mac);
  /* Compare as much as a valid signature has, in constant time. */
  if (strlen(sig) != 64 || CRYPTO_memcmp(mac, sig, 64) != 0) return SIGN_BAD;
  return exp < now_s ? SIGN_EXPIRED : SIGN_OK;
}
