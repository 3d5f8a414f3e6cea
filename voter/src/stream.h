/* stream — live results as Server-Sent Events (prefix stream_).
 *
 * GET /voter/results/{election}/stream answers text/event-stream: an event "results"
 * whose data is the same {"results": [...]} document as GET /voter/results/{election},
 * sent at once and then whenever the tallies change, at most one per STREAM_MIN_INTERVAL_MS
 * per election (changes in between are merged into the next event); a comment line as a
 * heartbeat every STREAM_HEARTBEAT_S; "retry: 1000" so browsers reconnect quickly.
 *
 * Event ids are a hash of the event's data, the same on every replica and across
 * restarts: a client reconnecting with Last-Event-ID equal to the current state's id gets
 * no repeat, any other id gets the current state at once. Nothing is lost by resuming on
 * another replica because each event is a whole snapshot. A page that opens a new
 * connection itself (EventSource cannot set headers) sends ?lastEventId= instead.
 *
 * Where changes come from: the routes that change tallies call stream_changed(); it marks
 * the election here (in-process) and announces it to every replica over RabbitMQ (see
 * tallybus.h). One hub thread owns that connection, reads an election's tallies once per
 * change for all of its local streams (one small read, whatever the number of viewers),
 * and also re-reads every STREAM_RECHECK_MS the elections that have viewers, which covers
 * writes that announce nothing (bulk ingestion, reconciliation) and lost announcements. */
#ifndef VOTER_STREAM_H
#define VOTER_STREAM_H

#include "voter/http.h"
#include "voter/mongo.h"

typedef struct stream_hub stream_hub;

typedef struct stream_options {
  int heartbeat_s;     /* comment line after this long without a write (default 15) */
  int min_interval_ms; /* between two events of one election (default 250) */
  int recheck_ms;      /* re-read of watched elections without an announcement (default 1000) */
  int max_streams;     /* open streams in this process; more get 503 (default 1000) */
} stream_options;

/* Reads STREAM_HEARTBEAT_S, STREAM_MIN_INTERVAL_MS, STREAM_RECHECK_MS, STREAM_MAX; 0 or
 * -1 on a bad value (logged). */
int stream_options_from_env(stream_options *o);

/* Starts the hub thread. NULL on failure. */
stream_hub *stream_hub_start(mongo_db *db, const char *amqp_url, const char *exchange,
                             const stream_options *o);
/* Registers GET /voter/results/{election}/stream. */
void stream_routes(http_server *srv, stream_hub *hub);
/* The tallies of election changed ("" or NULL: of every election). Any thread; never
 * blocks on the broker. hub may be NULL. */
void stream_changed(stream_hub *hub, const char *election);
/* Ends every open stream so the HTTP server can stop; new ones get 503. */
void stream_hub_shutdown(stream_hub *hub);
/* After the HTTP server is stopped: stops the thread and frees everything. */
void stream_hub_free(stream_hub *hub);

#endif
