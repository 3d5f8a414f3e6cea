/* idem — Idempotency-Key for every service that creates things (prefix idem_).
 *
 * A client that retries a POST with the same Idempotency-Key after an error or a timeout
 * must get the same thing created once, whatever point the first attempt reached before it
 * crashed. The rule that makes this hold without locks or multi-step state machines:
 *
 *   The identity of what a keyed request creates is derived from (caller, key).
 *
 * idem_object_id() turns the scoped key into the created document's _id, so a retry
 * inserts into the same _id as the first attempt and, if that attempt got as far as the
 * insert, collides with it and finds it. There is no "pending" record, no time window and
 * no takeover: a unique _id is the only atomic step, and FerretDB (which applies an
 * update's filter and its write in separate steps) gives that as MongoDB does. Whatever
 * follows the insert (a tally, a queued message) is finished by the retry or by the
 * owner's reconciliation, never redone blindly.
 *
 * Keys are per caller: the scope is the X-Consumer-ID the gateway sets (it drops any a
 * client sends), believed only under the gateway's proof (authz_consumer: a bare header
 * from the internal network could otherwise step into another caller's keys); a request
 * without one is anonymous, a scope of its own. Two callers using the same key share
 * nothing.
 *
 * The fingerprint of the validated request is stored in the created document (IDEM_FIELD);
 * a retry under the same key with another request is refused (422), one with the same
 * request is answered as the first was (Idempotent-Replayed: true). */
#ifndef VOTER_IDEM_H
#define VOTER_IDEM_H

#include <jansson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>

#include "voter/http.h"

#define IDEM_KEY_MAX 255
/* The member of a created document holding its request's fingerprint. */
#define IDEM_FIELD "_idem"

typedef struct idem_key {
  bool present;     /* the request carried an Idempotency-Key */
  char scoped[65];  /* sha256 hex of (scope, key): the caller's key, unique across callers */
} idem_key;

typedef enum {
  IDEM_INSERTED = 0, /* the first attempt: the document is new */
  IDEM_EXISTS,       /* an earlier attempt with the same request wrote it: *existing */
  IDEM_MISMATCH,     /* an earlier attempt with another request wrote it */
  IDEM_TAKEN,        /* a duplicate on another unique index (the _id is free) */
  IDEM_ERROR         /* database failure: error set */
} idem_result;

/* 1..IDEM_KEY_MAX printable ASCII characters. */
bool idem_key_valid(const char *key);

/* sha256 hex of "<scope>\n<key>" (neither can hold a newline: both come from header
 * values), scope NULL or "" being the anonymous scope "-". The jobs service's records used
 * this form before, so its stored keys stay valid. */
void idem_scope_hash(const char *scope, const char *key, char out[65]);

/* The ObjectId a keyed request of this kind ("vote", "election", ...) creates: the first 12
 * bytes of sha256(kind, scoped). Deterministic, and different per kind and caller. */
void idem_object_id(const char scoped[65], const char *kind, bson_oid_t *oid);

/* A derived ObjectId for the n-th item of something identified by parent (the votes of a
 * keyed batch): sha256(parent, n). */
void idem_child_id(const char *parent, size_t n, bson_oid_t *oid);

/* sha256 hex of a JSON value in canonical form (keys sorted, compact): member order and
 * whitespace do not change it. NULL counts as JSON null. */
void idem_fingerprint(const json_t *request, char out[65]);

/* sha256 hex of raw bytes (for requests whose bytes are the request, e.g. a batch). */
void idem_fingerprint_bytes(const void *data, size_t len, char out[65]);

/* true when doc carries IDEM_FIELD equal to fingerprint. */
bool idem_same_request(const bson_t *doc, const char *fingerprint);

/* Reads Idempotency-Key and X-Consumer-ID. Returns 0 (key->present tells whether a key was
 * sent) or -1 after answering 400 on res for a malformed key. */
int idem_from_request(const http_request *req, http_response *res, idem_key *key);

/* Inserts doc (which carries its _id and IDEM_FIELD = fingerprint). On a duplicate _id the
 * stored document is read back and compared: IDEM_EXISTS with *existing (caller destroys)
 * for the same request, IDEM_MISMATCH for another. kind labels the
 * duplicates_detected_total metric. */
idem_result idem_insert(mongoc_collection_t *coll, const bson_t *doc, const char *fingerprint,
                        const char *kind, bson_t **existing, bson_error_t *error);

/* Declares the idempotency metrics (once, at start-up). */
void idem_describe_metrics(void);

#endif
