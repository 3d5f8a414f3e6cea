/* proof — the gateway's signature over a forwarded request; see proof.h. */
#include "voter/proof.h"
#include "voter/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static bool has_newline(const char *s) { return s && strpbrk(s, "\r\n") != NULL; }

/* sig as 64 lowercase hex digits + NUL; -1 on a bad field or secret. */
static int proof_digest(const char *secret, size_t secret_len, const char *method,
                        const char *path, const char *consumer, const char *scopes,
                        int64_t t, char hex[65]) {
  if (!secret || secret_len < PROOF_MIN_SECRET || !method || !path) return -1;
  if (has_newline(method) || has_newline(path) || has_newline(consumer) ||
      has_newline(scopes))
    return -1;
  char tbuf[24];
  snprintf(tbuf, sizeof tbuf, "%" PRId64, t);
  const char *parts[] = {method, path, tbuf, consumer ? consumer : "", scopes ? scopes : ""};
  size_t total = 0;
  for (size_t i = 0; i < 5; i++) total += strlen(parts[i]) + 1;
  char *msg = xmalloc(total);
  size_t at = 0;
  for (size_t i = 0; i < 5; i++) {
    size_t n = strlen(parts[i]);
    memcpy(msg + at, parts[i], n);
    at += n;
    if (i < 4) msg[at++] = '\n';
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  bool ok = HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, at, md,
                 &mdlen) != NULL;
  free(msg);
  if (!ok || mdlen != 32) return -1;
  static const char digits[] = "0123456789abcdef";
  for (unsigned i = 0; i < 32; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[64] = '\0';
  return 0;
}

int proof_sign(const char *secret, size_t secret_len, const char *method, const char *path,
               const char *consumer, const char *scopes, int64_t now_s,
               char out[PROOF_TEXT_MAX]) {
  char hex[65];
  if (proof_digest(secret, secret_len, method, path, consumer, scopes, now_s, hex) != 0)
    return -1;
  snprintf(out, PROOF_TEXT_MAX, "t=%" PRId64 ",sig=%s", now_s, hex);
  return 0;
}

/* Parses "t=<1..19 digits>,sig=<64 hex>" exactly (no spaces, no sign, lowercase hex). */
static bool parse_header(const char *h, int64_t *t, const char **sig) {
  if (strncmp(h, "t=", 2) != 0) return false;
  const char *p = h + 2;
  int64_t v = 0;
  int n = 0;
  for (; *p >= '0' && *p <= '9'; p++, n++) {
    if (n >= 18) return false;
    v = v * 10 + (*p - '0');
  }
  if (n == 0 || strncmp(p, ",sig=", 5) != 0) return false;
  p += 5;
  for (int i = 0; i < 64; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return false;
  if (p[64] != '\0') return false;
  *t = v;
  *sig = p;
  return true;
}

proof_status proof_verify(const char *secret, size_t secret_len, const char *header,
                          const char *method, const char *path, const char *consumer,
                          const char *scopes, int64_t now_s) {
  if (!secret || secret_len < PROOF_MIN_SECRET) return PROOF_NO_SECRET;
  if (!header || !*header) return PROOF_MISSING;
  int64_t t;
  const char *sig;
  if (!parse_header(header, &t, &sig)) return PROOF_MALFORMED;
  if (t > now_s + PROOF_MAX_SKEW_S || t < now_s - PROOF_MAX_SKEW_S) return PROOF_EXPIRED;
  char want[65];
  if (proof_digest(secret, secret_len, method, path, consumer, scopes, t, want) != 0)
    return PROOF_MALFORMED;
  return CRYPTO_memcmp(want, sig, 64) == 0 ? PROOF_OK : PROOF_BAD_SIGNATURE;
}

proof_status proof_verify_rotating(const char *secret, size_t secret_len, const char *previous,
                                   size_t previous_len, const char *header, const char *method,
                                   const char *path, const char *consumer, const char *scopes,
                                   int64_t now_s) {
  proof_status st = proof_verify(secret, secret_len, header, method, path, consumer, scopes, now_s);
  if (st != PROOF_BAD_SIGNATURE || !previous || previous_len < PROOF_MIN_SECRET) return st;
  return proof_verify(previous, previous_len, header, method, path, consumer, scopes, now_s);
}

bool proof_scope_has(const char *scopes, const char *scope) {
  if (!scopes || !scope || !*scope) return false;
  size_t n = strlen(scope);
  for (const char *p = scopes; *p;) {
    while (*p == ' ') p++;
    const char *end = p;
    while (*end && *end != ' ') end++;
    if ((size_t)(end - p) == n && memcmp(p, scope, n) == 0) return true;
    p = end;
  }
  return false;
}

const char *proof_status_text(proof_status status) {
  switch (status) {
  case PROOF_OK: return "valid";
  case PROOF_NO_SECRET: return "this service has no gateway secret configured";
  case PROOF_MISSING: return "the request carries no gateway proof";
  case PROOF_MALFORMED: return "the gateway proof is malformed";
  case PROOF_EXPIRED: return "the gateway proof is outside its validity window";
  case PROOF_BAD_SIGNATURE: return "the gateway proof's signature does not match";
  }
  return "unknown";
}

/* ------------------------------------------------------------------ the signer */

struct proof_signer {
  EVP_MD_CTX *inner, *outer; /* SHA-256 after the key XOR ipad / opad block (RFC 2104) */
};

proof_signer *proof_signer_new(const char *secret, size_t secret_len) {
  if (!secret || secret_len < PROOF_MIN_SECRET) return NULL;
  unsigned char key[64] = {0}, ipad[64], opad[64];
  if (secret_len > sizeof key) {
    unsigned int n = 0;
    if (!EVP_Digest(secret, secret_len, key, &n, EVP_sha256(), NULL)) return NULL;
  } else {
    memcpy(key, secret, secret_len);
  }
  for (size_t i = 0; i < sizeof key; i++) {
    ipad[i] = key[i] ^ 0x36;
    opad[i] = key[i] ^ 0x5c;
  }
  OPENSSL_cleanse(key, sizeof key);
  proof_signer *s = xcalloc(1, sizeof *s);
  s->inner = EVP_MD_CTX_new();
  s->outer = EVP_MD_CTX_new();
  bool ok = s->inner && s->outer && EVP_DigestInit_ex(s->inner, EVP_sha256(), NULL) &&
            EVP_DigestUpdate(s->inner, ipad, sizeof ipad) &&
            EVP_DigestInit_ex(s->outer, EVP_sha256(), NULL) &&
            EVP_DigestUpdate(s->outer, opad, sizeof opad);
  OPENSSL_cleanse(ipad, sizeof ipad);
  OPENSSL_cleanse(opad, sizeof opad);
  if (!ok) {
    proof_signer_free(s);
    return NULL;
  }
  return s;
}

int proof_signer_sign(const proof_signer *s, const char *method, const char *path,
                      const char *consumer, const char *scopes, int64_t now_s,
                      char out[PROOF_TEXT_MAX]) {
  if (!s || !method || !path || has_newline(method) || has_newline(path) ||
      has_newline(consumer) || has_newline(scopes))
    return -1;
  char tbuf[24];
  snprintf(tbuf, sizeof tbuf, "%" PRId64, now_s);
  const char *parts[] = {method, path, tbuf, consumer ? consumer : "", scopes ? scopes : ""};
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned char inner[32], md[32];
  unsigned int n = 0;
  bool ok = c && EVP_MD_CTX_copy_ex(c, s->inner);
  for (size_t i = 0; ok && i < 5; i++)
    ok = EVP_DigestUpdate(c, parts[i], strlen(parts[i])) && (i == 4 || EVP_DigestUpdate(c, "\n", 1));
  ok = ok && EVP_DigestFinal_ex(c, inner, &n) && n == 32 && EVP_MD_CTX_copy_ex(c, s->outer) &&
       EVP_DigestUpdate(c, inner, sizeof inner) && EVP_DigestFinal_ex(c, md, &n) && n == 32;
  EVP_MD_CTX_free(c);
  if (!ok) return -1;
  static const char digits[] = "0123456789abcdef";
  char hex[65];
  for (unsigned i = 0; i < 32; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[64] = '\0';
  snprintf(out, PROOF_TEXT_MAX, "t=%" PRId64 ",sig=%s", now_s, hex);
  return 0;
}

void proof_signer_free(proof_signer *s) {
  if (!s) return;
  EVP_MD_CTX_free(s->inner);
  EVP_MD_CTX_free(s->outer);
  free(s);
}
