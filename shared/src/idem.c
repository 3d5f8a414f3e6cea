/* idem — Idempotency-Key: scoped keys, derived identities, fingerprints; see idem.h. */
#include "voter/idem.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voter/authz.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/mongo.h"
#include "voter/xalloc.h"

#define ANONYMOUS "-"

static void hex(const unsigned char *md, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* sha256 of up to three parts, concatenated. */
static void sha256_parts(const void *a, size_t na, const void *b, size_t nb, const void *c,
                         size_t nc, unsigned char md[32]) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) xalloc_oom(0, XALLOC_WHERE); /* OpenSSL's allocation: the one policy too */
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  EVP_DigestUpdate(ctx, a, na);
  EVP_DigestUpdate(ctx, b, nb);
  EVP_DigestUpdate(ctx, c, nc);
  EVP_DigestFinal_ex(ctx, md, NULL);
  EVP_MD_CTX_free(ctx);
}

bool idem_key_valid(const char *key) {
  if (!key) return false;
  size_t n = strlen(key);
  if (n == 0 || n > IDEM_KEY_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (key[i] < 0x20 || key[i] >= 0x7f) return false;
  return true;
}

void idem_scope_hash(const char *scope, const char *key, char out[65]) {
  unsigned char md[32];
  const char *s = scope && *scope ? scope : ANONYMOUS;
  sha256_parts(s, strlen(s), "\n", 1, key, strlen(key), md);
  hex(md, sizeof md, out);
}

/* The first 12 bytes of sha256(a, 0x1f, b) as an ObjectId. */
static void derived_oid(const char *a, const char *b, bson_oid_t *oid) {
  unsigned char md[32];
  sha256_parts(a, strlen(a), "\x1f", 1, b, strlen(b), md);
  memcpy(oid->bytes, md, sizeof oid->bytes);
}

void idem_object_id(const char scoped[65], const char *kind, bson_oid_t *oid) {
  derived_oid(kind, scoped, oid);
}

void idem_child_id(const char *parent, size_t n, bson_oid_t *oid) {
  char index[24];
  snprintf(index, sizeof index, "%zu", n);
  derived_oid(parent, index, oid);
}

void idem_fingerprint_bytes(const void *data, size_t len, char out[65]) {
  unsigned char md[32];
  sha256_parts(data, len, "", 0, "", 0, md);
  hex(md, sizeof md, out);
}

void idem_fingerprint(const json_t *request, char out[65]) {
  char *text = request ? json_dumps(request, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                       : NULL;
  if (!text && request) xalloc_oom(0, XALLOC_WHERE);
  const char *canon = text ? text : "null";
  idem_fingerprint_bytes(canon, strlen(canon), out);
  free(text);
}

bool idem_same_request(const bson_t *doc, const char *fingerprint) {
  const char *stored = mongo_doc_str(doc, IDEM_FIELD);
  return stored && strcmp(stored, fingerprint) == 0;
}

int idem_from_request(const http_request *req, http_response *res, idem_key *key) {
  key->present = false;
  key->scoped[0] = '\0';
  const char *k = http_header(req, "Idempotency-Key");
  if (!k) return 0;
  if (!idem_key_valid(k)) {
    http_reply_problem(res, 400, "Bad Request",
                       "Idempotency-Key must be 1 to 255 printable ASCII characters", NULL);
    return -1;
  }
  idem_scope_hash(authz_consumer(req), k, key->scoped);
  key->present = true;
  return 0;
}

static void count(const char *name, const char *kind) {
  char labels[96];
  snprintf(labels, sizeof labels, "kind=\"%s\"", kind);
  metrics_counter_inc(name, labels);
}

idem_result idem_insert(mongoc_collection_t *coll, const bson_t *doc, const char *fingerprint,
                        const char *kind, bson_t **existing, bson_error_t *error) {
  *existing = NULL;
  if (mongoc_collection_insert_one(coll, doc, NULL, NULL, error)) return IDEM_INSERTED;
  if (!mongo_is_duplicate(error)) return IDEM_ERROR;
  bson_iter_t it;
  if (!bson_iter_init_find(&it, doc, "_id")) return IDEM_TAKEN;
  bson_t filter = BSON_INITIALIZER;
  bson_append_value(&filter, "_id", 3, bson_iter_value(&it));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
  const bson_t *found;
  idem_result r = IDEM_TAKEN; /* the collision was on another unique index */
  if (mongoc_cursor_next(cur, &found)) {
    r = idem_same_request(found, fingerprint) ? IDEM_EXISTS : IDEM_MISMATCH;
    if (r == IDEM_EXISTS) *existing = bson_copy(found);
    count(r == IDEM_EXISTS ? "duplicates_detected_total" : "idempotency_mismatches_total", kind);
  } else if (mongoc_cursor_error(cur, error)) {
    r = IDEM_ERROR;
  }
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  return r;
}

void idem_describe_metrics(void) {
  metrics_describe("duplicates_detected_total", "counter",
                   "Writes that found their deterministic _id already written (a client retry "
                   "or a redelivery), absorbed instead of applied twice, by kind");
  metrics_describe("idempotency_mismatches_total", "counter",
                   "Idempotency-Key reused by the same caller with another request (422), by kind");
  metrics_describe("idempotency_takeovers_total", "counter",
                   "Retries that found an interrupted earlier attempt and finished its work, by kind");
}
