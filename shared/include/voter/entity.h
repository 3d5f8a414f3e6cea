/* entity — the owned, versioned, event-emitting entity every domain service stores
 * (prefix entity_).
 *
 * An entity lives in one collection as {_id: ObjectId, <fields>, version, deleted,
 * createdAt, updatedAt, + the outbox fields of events.h}. Every change bumps the version
 * and pushes its CloudEvent ("<name>.created|updated|deleted", data = the representation,
 * or {id, version} for deletes) into the document's outbox in the SAME write; the relay
 * publishes it. Writes are conditioned on the version they read (optimistic concurrency,
 * If-Match), written as the document's next revision (revclaim.h: a claim inserted first, so
 * two replicas never both write one revision) and hold the document's in-process lock
 * (doclock.h). A delete keeps a
 * tombstone (deleted: true, version bumped; the unique-key field set to a per-id marker so
 * the key is free again), so a PUT that re-creates the id continues the version sequence
 * and replicas holding the tombstone accept it.
 *
 * What differs per entity (fields, representation, validation, extra checks) comes in an
 * entity_kind; this module knows nothing about HTTP. */
#ifndef VOTER_ENTITY_H
#define VOTER_ENTITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/events.h"
#include "voter/mongo.h"

typedef enum {
  ENTITY_OK = 0,
  ENTITY_CREATED,
  ENTITY_NOT_FOUND,
  ENTITY_DUPLICATE,    /* a unique key is taken */
  ENTITY_PRECONDITION, /* If-Match did not match */
  ENTITY_INVALID,      /* errors filled */
  ENTITY_MISMATCH,     /* Idempotency-Key reused by the caller with another body */
  ENTITY_UNAVAILABLE   /* database unreachable */
} entity_status;

typedef struct entity_kind {
  const char *name;       /* "election": event type prefix and log name */
  const char *collection; /* "elections" */
  const char *unique_key; /* field holding the unique key (NULL: none) */
  /* The client representation of a stored document (id, fields, version). */
  json_t *(*doc_to_item)(const bson_t *doc);
  /* The representation a validated body will have once stored at id/version. */
  json_t *(*body_to_item)(const json_t *body, const char *id, int64_t version);
  /* Appends the stored fields (including the unique key) of a validated body. */
  void (*append_fields)(bson_t *dst, const json_t *body);
  /* Validates a full representation; path_id must match a body "id". Returns the number
   * of problems added to errors. */
  int (*validate)(const json_t *body, const char *path_id, json_t *errors);
  /* Turns a representation into a body a client could send (drops read-only and absent
   * members), as the base of a merge patch. */
  void (*to_body)(json_t *item);
  /* Optional: checked with the document locked before every create/replace; current is
   * the stored document (tombstones included) or NULL. ENTITY_OK to proceed. */
  entity_status (*check)(void *ctx, const bson_t *current, const json_t *body, json_t *errors);
} entity_kind;

typedef struct entity_store entity_store;

entity_store *entity_store_open(mongo_db *db, ev_relay *relay, const char *source,
                                const entity_kind *kind, void *check_ctx);
void entity_store_close(entity_store *s);
mongo_db *entity_store_db(const entity_store *s);

/* Creates the indexes every entity needs (its unique key, the outbox scan, deleted);
 * false while the database is unreachable. */
bool entity_store_init(entity_store *s);

entity_status entity_create(entity_store *s, const json_t *body, json_t **item, json_t *errors);
/* entity_create with an Idempotency-Key (scoped: idem_key.scoped): the id is derived from
 * it, so a retry after a crash at any point finds the entity instead of creating another.
 * ENTITY_CREATED with *replayed set when an earlier attempt created it (*item: the first
 * answer), ENTITY_MISMATCH for another body under the same key. */
entity_status entity_create_keyed(entity_store *s, const json_t *body, const char scoped[65],
                                  json_t **item, bool *replayed, json_t *errors);
entity_status entity_get(entity_store *s, const char *id, json_t **item);
/* Full replace; creates the id (ENTITY_CREATED) when absent or deleted. if_match < 0:
 * unconditional. */
entity_status entity_put(entity_store *s, const char *id, const json_t *body, int64_t if_match,
                         json_t **item, json_t *errors);
/* RFC 7396 merge patch on the current representation, then full validation; conditioned on
 * the version it was merged from (merged again on a race unless If-Match was given). */
entity_status entity_patch(entity_store *s, const char *id, const json_t *patch,
                           int64_t if_match, json_t **item, json_t *errors);
entity_status entity_delete(entity_store *s, const char *id, int64_t if_match);
/* A page of live entities matching filter (deleted: false is added). */
entity_status entity_find_page(entity_store *s, const bson_t *filter, const mongo_page *page,
                               json_t **items, int64_t *total);
/* Deletes every live entity, each with its own "<name>.deleted" event. */
entity_status entity_drop_all(entity_store *s, int64_t *count);
/* Re-publishes every live entity as "<name>.updated" at its current version. */
entity_status entity_replay(entity_store *s, int64_t *count);

/* RFC 7396 on JSON values: null removes, objects merge recursively, others replace. */
void entity_merge_patch(json_t *target, const json_t *patch);

#endif
