/* amqp — the suite's one wrapper around rabbitmq-c (prefix mq_).
 *
 * An mq_conn is one AMQP connection with one channel in confirm mode, owned by ONE
 * thread (rabbitmq-c connections are not thread-safe). It reconnects by itself with
 * exponential backoff and jitter; every call that needs the broker first tries to
 * (re)connect and fails fast while the backoff window is open, so callers (the outbox
 * relay, consumers) never block for long on a dead broker.
 *
 * Brokers: the url given to mq_conn_new / mq_consume is one amqp:// URL or a
 * comma-separated list of them, one per node of a RabbitMQ cluster (AMQP_URL, e.g.
 * "amqp://u:p@h1:5672/vhost,amqp://u:p@h2:5672/vhost"; see mq_endpoints_parse). A
 * connection starts at a random node of the list (spreading clients over the cluster)
 * and, when its node goes away, reconnects to the next one that answers: each connect
 * attempt tries every node once, in list order from the one after the node it lost, and
 * only backs off once they all failed.
 *
 * Topology, declared on every (re)connect. Every durable queue is a quorum queue
 * (x-queue-type: quorum, replicated by the cluster's Raft; one replica on one node):
 *   - the events exchange (topic, durable) with an alternate exchange
 *     "<exchange>.unrouted" (fanout) bound to the queue "<exchange>.unrouted",
 *     so an event nobody is bound to yet is parked, never dropped;
 *   - per consumer queue Q (mq_queue_spec): Q (bound to the events exchange with the
 *     given keys; x-single-active-consumer when the spec asks), Q.retry (x-message-ttl =
 *     retry delay, dead-lettering back to Q through the default exchange, at-least-once:
 *     x-dead-letter-strategy at-least-once + x-overflow reject-publish, so a message that
 *     expires while Q's leader is away is held until Q confirms it) and Q.dlq.
 * A queue's type and arguments cannot change in place: a broker that still holds the
 * classic queues of an older version refuses these declarations with 406
 * PRECONDITION_FAILED (logged); delete those queues (docs/operations.md).
 *
 * Headers: x-attempts (int, failed handler runs so far), x-error (why it was
 * dead-lettered) and, on copies sent to Q.retry / Q.dlq by mq_consume, x-routing-key
 * (the event's original routing key, handed back as mq_message.routing_key).
 */
#ifndef VOTER_AMQP_H
#define VOTER_AMQP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mq_conn mq_conn;

/* Message properties for publishing; every field optional (NULL/0). */
typedef struct mq_props {
  const char *message_id;   /* CloudEvents id */
  const char *type;         /* event type, e.g. "election.created" */
  const char *content_type; /* default "application/cloudevents+json" */
  int attempts;             /* x-attempts header when > 0 */
  const char *error;        /* x-error header (why it was dead-lettered) when set */
} mq_props;

/* ---- broker addresses ---- */

#define MQ_MAX_ENDPOINTS 16

/* One node's address, parsed from an amqp:// URL (strings owned). */
typedef struct mq_endpoint {
  char *host;
  int port;
  char *user;
  char *password;
  char *vhost;
} mq_endpoint;

typedef struct mq_endpoints {
  mq_endpoint *v;
  size_t n;
} mq_endpoints;

/* Parses a broker list: one URL or several separated by commas (blanks around each are
 * ignored), each amqp://user:pass@host:port[/vhost] (no path or /%2F: the default vhost;
 * a trailing slash names the empty vhost and is refused, as are amqps://, empty entries
 * and more than MQ_MAX_ENDPOINTS). A comma inside a password must be written %2C. On
 * success fills *out (free with mq_endpoints_free) and returns 0; otherwise -1 with the
 * reason in err (which never contains a password) and *out empty. */
int mq_endpoints_parse(const char *urls, mq_endpoints *out, char *err, size_t errlen);
void mq_endpoints_free(mq_endpoints *e);

/* ---- connections ---- */

/* url: one broker URL or a comma-separated list (mq_endpoints_parse); exchange: the
 * events exchange name; name: connection name shown in the management UI. Does not
 * connect yet. NULL on a bad url (logged). */
mq_conn *mq_conn_new(const char *url, const char *exchange, const char *name);
void mq_conn_free(mq_conn *c);

/* Connects (and declares the exchange topology) unless connected or inside the backoff
 * window. 0 when connected, -1 otherwise; never sleeps (a connect attempt itself is
 * bounded: 2 s TCP connect, 5 s login/RPC). Backoff: 100 ms doubling to 30 s, +-20%
 * jitter, after a failed attempt or a dropped connection; reset once a connection has
 * stayed up 10 s (one that dies sooner keeps backing off, so a broker that refuses every
 * time is not hammered). On a connected publisher it also services heartbeats and
 * notices a close from the broker: call it (or publish) at least every 30 s. */
int mq_ensure(mq_conn *c);
bool mq_is_connected(const mq_conn *c);
/* The node this connection is on (an entry of its list), NULL while disconnected. */
const mq_endpoint *mq_current_endpoint(const mq_conn *c);
/* Closes the connection (if any); the next mq_ensure reconnects at once. */
void mq_disconnect(mq_conn *c);

/* Publishes persistent + mandatory to the events exchange (exchange NULL) or to an
 * explicit exchange ("" is the default exchange, routing key = queue name), then waits
 * up to timeout_ms for the broker's confirm. 0 only on Basic.Ack; -1 on nack, return,
 * timeout, channel error (e.g. unknown exchange) or connection loss: on any of these the
 * connection is dropped and backs off. Connects first when needed (mq_ensure). */
int mq_publish(mq_conn *c, const char *exchange, const char *routing_key, const void *body,
               size_t len, const mq_props *props, int timeout_ms);

/* Pipelined form for the outbox relay: publish n messages to the events exchange, then
 * wait up to timeout_ms for their confirms. Returns how many leading messages were
 * confirmed (n on full success); when short, the connection is dropped as above and
 * the rest must be published again (they may have reached the broker: at-least-once). */
typedef struct mq_message_out {
  const char *routing_key;
  const void *body;
  size_t len;
  mq_props props;
} mq_message_out;
size_t mq_publish_batch(mq_conn *c, const mq_message_out *msgs, size_t n, int timeout_ms);

/* ---- consuming ---- */

typedef struct mq_queue_spec {
  const char *queue;         /* Q */
  const char *const *keys;   /* NULL-terminated routing keys bound on the events exchange */
  int retry_delay_ms;        /* TTL of Q.retry; default 1000 when 0 */
  int max_attempts;          /* after this many transient failures -> Q.dlq; default 5 */
  int prefetch;              /* basic.qos; default 32 */
  bool single_active;        /* Q gets x-single-active-consumer: of all consumers attached
                                to Q, the broker delivers to one at a time (the others
                                stand by and take over when it goes away), so messages are
                                applied in queue order by one process. Like every queue
                                argument it cannot change on an existing queue. */
} mq_queue_spec;

/* A prefix put before every queue name this process declares or consumes (from
 * AMQP_QUEUE_PREFIX; default none). Several deployments - or test runs - can then share
 * one broker without sharing queues. Metric labels keep the unprefixed name. Call once at
 * start-up, before any thread uses the module. */
void mq_set_queue_prefix(const char *prefix);

/* Declares Q, Q.retry and Q.dlq for spec (also done by mq_consume), connecting first
 * when needed. -1 (connection dropped) when the broker refuses, e.g. an existing Q.retry
 * with a different retry delay (406 PRECONDITION_FAILED). */
int mq_declare_queue(mq_conn *c, const mq_queue_spec *spec);

typedef struct mq_message {
  const char *routing_key;
  const char *message_id; /* may be NULL */
  const char *type;       /* may be NULL */
  const void *body;
  size_t len;
  int attempts;           /* 0 on first delivery; from x-attempts */
  bool redelivered;
} mq_message;

typedef enum {
  MQ_ACK = 0,   /* done (applied, duplicate or stale): ack */
  MQ_RETRY,     /* transient failure: to Q.retry with attempts+1, Q.dlq past max_attempts */
  MQ_REJECT     /* poison (unparseable, invalid): straight to Q.dlq */
} mq_verdict;

/* error may be set by the handler (static or owned by the handler until the next call)
 * and is copied into the x-error header when the message is dead-lettered. msg and its
 * strings live only during the call; body is not NUL-terminated. The handler runs on the
 * consumer's thread between heartbeats: keep it well under 30 s. */
typedef mq_verdict (*mq_handler)(void *ctx, const mq_message *msg, const char **error);

/* Runs a consumer until *stop becomes non-zero: (re)connects with backoff, declares the
 * topology, consumes with manual acks, calls handler per message and acks only after the
 * verdict is carried out (retry/dead-letter re-publish confirmed first; if that fails the
 * message is left unacked and the connections are dropped, so the broker redelivers it
 * after the backoff). Checks *stop at least every 250 ms (a connect attempt in progress
 * finishes first: up to 2 s per node against hosts that drop packets). Uses its own
 * connections (one consuming, one publishing; each on its own node of a list), so it is
 * meant to own a thread. While the publishing one is down it takes no deliveries, and
 * after 2 s down it also drops the consuming one (its deliveries go back to the queue).
 * Returns 0 on stop,
 * after closing its connections; -1 at once on bad arguments or url. Counts
 * events_consumed_total{queue,result="ack|retry|dead"} in metrics. */
int mq_consume(const char *url, const char *exchange, const mq_queue_spec *spec,
               mq_handler handler, void *ctx, volatile sig_atomic_t *stop);

#endif
