/* events — CloudEvents envelopes and the transactional outbox (prefix ev_).
 *
 * Outbox: a change and its pending event are written in ONE document write. Every
 * outbox-carrying document has
 *   _outbox:    [{id, type, body}]  events not yet confirmed by the broker, oldest first
 *   _outboxSeq: int                 incremented on every push (the relay's guard)
 *   _pending:   bool                true while _outbox is not empty (indexed; the relay's scan)
 * The relay publishes a document's events in order with publisher confirms and only then
 * removes them, with an update conditioned on _outboxSeq so an event pushed meanwhile is
 * never lost, written as the document's next revision (revclaim.h) so that it never
 * overlaps another process's write of the document. Several relays (one per replica) may
 * publish one event twice; consumers drop the copy by version. A crash between write and publish leaves the event in the document; the
 * relay (this process after restart, or any replica) publishes it: at-least-once, and
 * consumers drop duplicates by version. */
#ifndef VOTER_EVENTS_H
#define VOTER_EVENTS_H

#include <jansson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/mongo.h"

/* One pending event. */
typedef struct ev_event {
  char id[37];
  char *type; /* e.g. "election.updated" */
  char *body; /* the serialized CloudEvent */
} ev_event;

/* Builds a CloudEvents 1.0 structured-mode event: specversion, id (new UUID), type, source,
 * subject, time, datacontenttype, data (borrowed), and the extension "version". */
void ev_build(ev_event *ev, const char *type, const char *source, const char *subject,
              int64_t version, const json_t *data);
void ev_free(ev_event *ev);

/* Adds the outbox fields for a new document (insert): _outbox [ev], _outboxSeq 1,
 * _pending true. */
void ev_outbox_insert_fields(bson_t *doc, const ev_event *ev);

/* Adds `$push: {_outbox: ev}` and `$inc: {_outboxSeq: 1}` to an update document whose
 * `$set` the caller has already appended and in which the caller put `_pending: true`
 * (use ev_outbox_set_pending on the $set sub-document). */
void ev_outbox_update_ops(bson_t *update, const ev_event *ev);
void ev_outbox_set_pending(bson_t *set);

/* Pulls a document's outbox fields out of a read so they never reach a client. */
bool ev_is_outbox_field(const char *key);

/* The relay: one thread publishing every collection's pending events. */
typedef struct ev_relay ev_relay;
typedef struct ev_relay_options {
  mongo_db *db;
  const char *const *collections; /* NULL-terminated */
  const char *amqp_url;
  const char *exchange;
  int poll_ms;  /* scan interval when not kicked; default 1000 */
  bool paused;  /* fault injection for tests: never publish (events stay in the outbox) */
} ev_relay_options;

ev_relay *ev_relay_start(const ev_relay_options *opts);
/* Wakes the relay now (after a write) instead of at the next poll. */
void ev_relay_kick(ev_relay *r);
/* Makes one last attempt to flush, then stops the thread and frees. */
void ev_relay_stop(ev_relay *r);
bool ev_relay_broker_up(ev_relay *r);

#endif
