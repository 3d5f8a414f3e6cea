/* replica — read-only copies of another service's entities, fed by its events
 * (prefix replica_).
 *
 * Applying is idempotent and ordered by the entity's version: a conditional upsert
 * `{_id, version < v}` writes only a newer state; a duplicate or stale event finds no
 * match, its upsert collides on _id, and it is acked and counted, never re-applied. A
 * delete leaves a tombstone {_id, version, deleted: true}, hidden from reads, so a late
 * older event cannot bring the entity back. Unparseable or malformed events go to the
 * dead-letter queue at once; database failures are retried through the retry queue.
 *
 * Replica documents: {_id: "<source id>", <data fields>, version, deleted, appliedAt}. */
#ifndef VOTER_REPLICA_H
#define VOTER_REPLICA_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>

#include "voter/mongo.h"

typedef enum {
  REPLICA_APPLIED = 0,
  REPLICA_DUPLICATE, /* same version already applied */
  REPLICA_STALE,     /* an older version than the one stored */
  REPLICA_INVALID,   /* not an event this replica can apply: dead-letter */
  REPLICA_ERROR      /* database failure: retry later */
} replica_result;

/* One entity kind a consumer replicates: events "<prefix>.created|updated|deleted". */
typedef struct replica_source {
  const char *prefix;     /* "election" */
  const char *collection; /* replica collection, e.g. "elections" */
  /* Fields every created/updated event's data must carry as strings (NULL-terminated). */
  const char *const *required;
} replica_source;

/* Applies one CloudEvents JSON document; error (may be NULL) receives a static reason for
 * REPLICA_INVALID/ERROR. */
replica_result replica_apply(mongo_db *db, const replica_source *sources, int nsources,
                             const char *body, size_t len, const char **error);

/* How many events this process has applied so far (any collection): a cache of replica
 * reads is stale for this process once it changes. */
uint64_t replica_changes(void);

typedef struct replica_consumer replica_consumer;

typedef struct replica_options {
  mongo_db *db;
  const char *amqp_url;
  const char *exchange;
  const char *queue;            /* e.g. "candidate.elections" */
  const replica_source *sources;
  int nsources;
  int retry_delay_ms;           /* default 1000 */
  int max_attempts;             /* default 5 */
} replica_options;

/* Starts a consumer thread (declares the queue, its retry and dead-letter queues). */
replica_consumer *replica_consumer_start(const replica_options *opts);
void replica_consumer_stop(replica_consumer *c);

/* Creates the replica collection's indexes (idempotent). */
bool replica_init(mongo_db *db, const replica_source *source);

#endif
