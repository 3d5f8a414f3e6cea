/* workq — the durable AMQP work queue "jobs.work" shared by every jobs replica (prefix wq_).
 *
 * A message is just {"id": "<job id>"}; the job document is the truth. The consumer holds
 * a delivery unacknowledged for as long as its job runs here and acks it only once the
 * job reached a final state or was handed back (re-queued): if this replica dies, the
 * broker gives the message to another replica at once, which finds the job by its lease.
 *
 * The shared mq_consume cannot do this - its handler must return within the heartbeat
 * interval and acks right after - so this module owns a consuming connection of its own
 * (rabbitmq-c directly), whose thread keeps servicing heartbeats while jobs run and acks
 * deliveries when the workers report them done (wq_done, from any thread). Prefetch is the
 * replica's concurrency, so the broker never hands this replica more than it can run.
 * Publishing goes through the shared mq_conn (confirmed, persistent, mandatory). */
#ifndef JOBS_WORKQ_H
#define JOBS_WORKQ_H

#include <stdbool.h>
#include <stdint.h>

#define WQ_QUEUE "jobs.work"

typedef struct workq workq;

/* A delivery as the application sees it: stable until wq_done. */
typedef struct wq_delivery {
  uint64_t tag;
  uint64_t generation; /* connection it arrived on; acks on a newer one are dropped */
  char job_id[25];
  int64_t note;        /* the application's memo across WQ_LATER offers (0 at first) */
} wq_delivery;

typedef enum {
  WQ_ACK,     /* nothing (more) to do for this message: ack now */
  WQ_TAKEN,   /* the application runs the job and calls wq_done later */
  WQ_LATER,   /* offer the same delivery again after *later_ms (lease not yet expired,
                 or no free worker) */
} wq_verdict;

/* Called on the consumer thread; must be quick (database reads and one write). */
typedef wq_verdict (*wq_dispatch)(void *ctx, wq_delivery *d, long *later_ms);

/* The publisher; queue_prefix: AMQP_QUEUE_PREFIX (already given to mq_set_queue_prefix),
 * prefetch: how many deliveries the consumer may hold (the replica's concurrency). */
workq *wq_new(const char *amqp_url, const char *exchange, const char *queue_prefix,
              int prefetch);
/* Starts the consumer thread: fn decides about each delivery. 0 or -1. */
int wq_consume(workq *q, wq_dispatch fn, void *ctx);
/* Stops taking new deliveries: the consumer is cancelled at the broker, and deliveries
 * already on their way are handed back. */
void wq_drain(workq *q);
/* Stops the consumer thread (after acking what wq_done reported) and closes the
 * connections: deliveries not acked yet go back to the queue. */
void wq_stop(workq *q);

/* The job of delivery d is final or re-queued: ack it; requeue: nack it back to the
 * queue instead (shutdown). Thread-safe. */
void wq_done(workq *q, const wq_delivery *d, bool requeue);

/* Publishes a work message for job id (confirmed). 0 or -1. Thread-safe. */
int wq_publish(workq *q, const char *job_id);

bool wq_connected(workq *q);

#endif
