/* tallybus — "the tallies of election E changed", announced to every voter replica over
 * RabbitMQ (prefix tallybus_).
 *
 * A fanout exchange "<events exchange>.tallies" (durable, so it outlives any replica);
 * each replica binds its own server-named, exclusive, auto-delete queue to it, so every
 * replica hears every announcement and a stopped replica leaves nothing behind. The
 * messages are hints, not data: transient, unconfirmed, consumed without acks. One lost
 * (broker down, a replica reconnecting) only delays an update until the stream module's
 * periodic re-read (see stream.h), never corrupts anything — which is why this does not
 * go through the shared amqp module's durable, confirmed, dead-lettered queues, and uses
 * rabbitmq-c directly for the two things that module does not do: fanout and exclusive
 * auto-delete queues.
 *
 * A tallybus is owned by one thread (rabbitmq-c connections are not thread-safe). */
#ifndef VOTER_TALLYBUS_H
#define VOTER_TALLYBUS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tallybus tallybus;

/* Does not connect yet. NULL on a bad url (logged). */
tallybus *tallybus_new(const char *url, const char *events_exchange);
void tallybus_free(tallybus *b);

typedef void (*tallybus_heard)(void *ctx, const char *election);

/* Connects when needed (backoff 250 ms doubling to 10 s after a failure), then waits up to
 * timeout_ms for announcements, calling heard for each. Returns true when connected. */
bool tallybus_poll(tallybus *b, int timeout_ms, tallybus_heard heard, void *ctx);

/* Announces a change of one election's tallies ("" = every election). false when not
 * connected or the publish failed (the connection is then dropped). */
bool tallybus_announce(tallybus *b, const char *election);

#endif
