/* workq — the work queue: a long-holding consumer and a confirmed publisher; see workq.h. */
#include "workq.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voter/amqp.h"
#include "voter/json.h"
#include "voter/log.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define CHANNEL 1
#define HEARTBEAT_S 30
#define POLL_MS 100
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000
#define PUBLISHER_KEEPALIVE_MS 10000

typedef struct done_item {
  uint64_t tag, generation;
  bool requeue;
} done_item;

typedef struct held_item {
  wq_delivery d;
  int64_t due_ms;
} held_item;

struct workq {
  char *url, *exchange;
  mq_endpoints nodes; /* AMQP_URL's broker list */
  size_t node;        /* the node the consumer is on, or tries first next time */
  char queue[256]; /* with the prefix: the broker's name */
  int prefetch;
  wq_dispatch fn;
  void *ctx;
  pthread_t thread;
  bool started;
  atomic_int stop, draining;
  atomic_bool connected;

  pthread_mutex_t pub_lock; /* the publisher is shared by HTTP threads and the sweeper */
  mq_conn *pub;
  bool declared;

  pthread_mutex_t done_lock;
  done_item *done;
  size_t ndone, done_cap;

  /* consumer thread only */
  amqp_connection_state_t conn;
  char consumer_tag[128];
  bool cancelled; /* basic.cancel sent after wq_drain */
  uint64_t generation;
  held_item *held;
  size_t nheld, held_cap;
  long backoff_ms;
  int64_t next_connect_ms, next_keepalive_ms;
};

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static const char *reply_text(amqp_rpc_reply_t r, char *buf, size_t cap) {
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
    snprintf(buf, cap, "%s", amqp_error_string2(r.library_error));
  else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION)
    snprintf(buf, cap, "server closed the %s", r.reply.id == AMQP_CONNECTION_CLOSE_METHOD
                                                   ? "connection" : "channel");
  else
    snprintf(buf, cap, "no reply");
  return buf;
}

static void disconnect(workq *q, const char *why) {
  if (!q->conn) return;
  if (why) log_warn("jobs: work queue connection lost: %s", why);
  amqp_destroy_connection(q->conn); /* abrupt: unacked deliveries go back to the queue */
  q->conn = NULL;
  q->nheld = 0; /* their deliveries are the broker's again */
  atomic_store(&q->connected, false);
  q->node = (q->node + 1) % q->nodes.n; /* this node may be gone: the next one first */
  q->next_connect_ms = util_now_ms() + q->backoff_ms;
  q->backoff_ms = q->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : q->backoff_ms * 2;
}

static int check(workq *q, const char *what) {
  amqp_rpc_reply_t r = amqp_get_rpc_reply(q->conn);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return 0;
  char buf[128], why[256];
  snprintf(why, sizeof why, "%s: %s", what, reply_text(r, buf, sizeof buf));
  disconnect(q, why);
  return -1;
}

/* One attempt on the current node; a failure moves on to the next node (disconnect). */
static int connect_consumer(workq *q) {
  const mq_endpoint *info = &q->nodes.v[q->node];
  q->conn = amqp_new_connection();
  amqp_socket_t *sock = amqp_tcp_socket_new(q->conn);
  struct timeval tv = {2, 0}, rpc = {5, 0};
  amqp_set_handshake_timeout(q->conn, &rpc);
  amqp_set_rpc_timeout(q->conn, &rpc);
  int rc = sock ? amqp_socket_open_noblock(sock, info->host, info->port, &tv) : AMQP_STATUS_NO_MEMORY;
  if (rc != AMQP_STATUS_OK) {
    log_warn("jobs: work queue cannot connect to %s:%d: %s", info->host, info->port,
             amqp_error_string2(rc));
    disconnect(q, NULL);
    return -1;
  }
  amqp_table_entry_t prop = {.key = amqp_cstring_bytes("connection_name")};
  prop.value.kind = AMQP_FIELD_KIND_UTF8;
  prop.value.value.bytes = amqp_cstring_bytes("jobs work consumer");
  amqp_table_t props = {.num_entries = 1, .entries = &prop};
  amqp_rpc_reply_t r =
      amqp_login_with_properties(q->conn, info->vhost, 0, AMQP_DEFAULT_FRAME_SIZE, HEARTBEAT_S,
                                 &props, AMQP_SASL_METHOD_PLAIN, info->user, info->password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    char buf[128];
    log_warn("jobs: work queue login failed: %s", reply_text(r, buf, sizeof buf));
    disconnect(q, NULL);
    return -1;
  }
  amqp_channel_open(q->conn, CHANNEL);
  if (check(q, "channel.open")) return -1;
  /* Passive: the publisher declared the queue (mq_declare_queue: a quorum queue with its
   * retry and dead-letter queues), so its arguments live in one place. When it does not
   * exist yet, have the publisher declare it before the next attempt. */
  amqp_queue_declare(q->conn, CHANNEL, amqp_cstring_bytes(q->queue), 1 /* passive */, 0, 0, 0,
                     amqp_empty_table);
  if (check(q, "queue.declare (passive)")) {
    pthread_mutex_lock(&q->pub_lock);
    q->declared = false;
    pthread_mutex_unlock(&q->pub_lock);
    q->next_keepalive_ms = 0;
    return -1;
  }
  amqp_basic_qos(q->conn, CHANNEL, 0, (uint16_t)q->prefetch, 0);
  if (check(q, "basic.qos")) return -1;
  amqp_basic_consume_ok_t *ok = amqp_basic_consume(
      q->conn, CHANNEL, amqp_cstring_bytes(q->queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  if (check(q, "basic.consume")) return -1;
  snprintf(q->consumer_tag, sizeof q->consumer_tag, "%.*s", (int)ok->consumer_tag.len,
           (const char *)ok->consumer_tag.bytes);
  q->cancelled = false;
  q->generation++;
  q->backoff_ms = BACKOFF_MIN_MS;
  atomic_store(&q->connected, true);
  log_fields(LOG_INFO, "work queue consumer connected",
             json_pack("{s:s, s:i, s:s, s:i}", "queue", q->queue, "prefetch", q->prefetch, "host",
                       info->host, "port", info->port));
  return 0;
}

static void ack(workq *q, uint64_t tag, bool requeue) {
  int rc = requeue ? amqp_basic_nack(q->conn, CHANNEL, tag, 0, 1)
                   : amqp_basic_ack(q->conn, CHANNEL, tag, 0);
  if (rc != AMQP_STATUS_OK) disconnect(q, amqp_error_string2(rc));
}

static void flush_done(workq *q) {
  pthread_mutex_lock(&q->done_lock);
  size_t n = q->ndone;
  done_item *items = NULL;
  if (n) {
    items = xmalloc(n * sizeof *items);
    if (items) memcpy(items, q->done, n * sizeof *items);
    else n = 0;
    q->ndone = 0;
  }
  pthread_mutex_unlock(&q->done_lock);
  for (size_t i = 0; i < n && q->conn; i++)
    if (items[i].generation == q->generation) ack(q, items[i].tag, items[i].requeue);
  free(items);
}

static void hold(workq *q, const wq_delivery *d, long later_ms) {
  if (q->nheld == q->held_cap) {
    size_t cap = q->held_cap ? q->held_cap * 2 : 8;
    held_item *h = xrealloc(q->held, cap * sizeof *h);
    if (!h) { /* cannot keep it: let the broker have it back */
      ack(q, d->tag, true);
      return;
    }
    q->held = h;
    q->held_cap = cap;
  }
  q->held[q->nheld].d = *d;
  q->held[q->nheld].due_ms = util_now_ms() + later_ms;
  q->nheld++;
}

static void offer(workq *q, wq_delivery *d) {
  if (atomic_load(&q->draining)) {
    ack(q, d->tag, true);
    return;
  }
  long later = 1000;
  switch (q->fn(q->ctx, d, &later)) {
  case WQ_ACK: ack(q, d->tag, false); break;
  case WQ_TAKEN: break;
  case WQ_LATER: hold(q, d, later > 0 ? later : 100); break;
  }
}

static void recheck_held(workq *q) {
  int64_t now = util_now_ms();
  for (size_t i = 0; i < q->nheld && q->conn;) {
    if (q->held[i].due_ms > now) {
      i++;
      continue;
    }
    wq_delivery d = q->held[i].d;
    q->held[i] = q->held[--q->nheld];
    offer(q, &d);
  }
}

static void on_message(workq *q, amqp_envelope_t *env) {
  wq_delivery d = {.tag = env->delivery_tag, .generation = q->generation};
  json_t *doc = json_loadb(env->message.body.bytes, env->message.body.len, 0, NULL);
  const char *id = jsonv_str(doc, "id");
  if (!id || !util_is_object_id(id)) {
    log_warn("jobs: dropping a malformed work message");
    json_decref(doc);
    ack(q, d.tag, false);
    return;
  }
  memcpy(d.job_id, id, 25);
  json_decref(doc);
  offer(q, &d);
}

/* A frame other than a delivery: the broker closing the channel or connection. */
static void on_unexpected(workq *q) {
  amqp_frame_t frame;
  struct timeval tv = {0, 0};
  if (amqp_simple_wait_frame_noblock(q->conn, &frame, &tv) != AMQP_STATUS_OK) return;
  if (frame.frame_type == AMQP_FRAME_METHOD &&
      (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
       frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD))
    disconnect(q, "closed by the broker");
}

static void keep_publisher_alive(workq *q) {
  int64_t now = util_now_ms();
  if (now < q->next_keepalive_ms) return;
  q->next_keepalive_ms = now + PUBLISHER_KEEPALIVE_MS;
  pthread_mutex_lock(&q->pub_lock);
  if (mq_ensure(q->pub) == 0 && !q->declared) {
    mq_queue_spec spec = {.queue = WQ_QUEUE};
    q->declared = mq_declare_queue(q->pub, &spec) == 0;
  }
  pthread_mutex_unlock(&q->pub_lock);
}

static void *consumer_main(void *arg) {
  workq *q = arg;
  while (!atomic_load(&q->stop)) {
    keep_publisher_alive(q);
    if (!q->conn) {
      if (atomic_load(&q->draining) || util_now_ms() < q->next_connect_ms ||
          connect_consumer(q) != 0) {
        sleep_ms(POLL_MS);
        continue;
      }
    }
    flush_done(q);
    if (q->conn && atomic_load(&q->draining) && !q->cancelled) {
      amqp_basic_cancel(q->conn, CHANNEL, amqp_cstring_bytes(q->consumer_tag));
      q->cancelled = true;
      if (check(q, "basic.cancel")) continue;
    }
    if (q->conn) recheck_held(q);
    if (!q->conn) continue;
    amqp_envelope_t env;
    struct timeval tv = {0, POLL_MS * 1000};
    amqp_maybe_release_buffers(q->conn);
    amqp_rpc_reply_t r = amqp_consume_message(q->conn, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      on_message(q, &env);
      amqp_destroy_envelope(&env);
    } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
               r.library_error == AMQP_STATUS_TIMEOUT) {
      continue;
    } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
               r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      on_unexpected(q);
    } else {
      char buf[128];
      disconnect(q, reply_text(r, buf, sizeof buf));
    }
  }
  flush_done(q);
  if (q->conn) {
    amqp_channel_close(q->conn, CHANNEL, AMQP_REPLY_SUCCESS);
    amqp_connection_close(q->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(q->conn);
    q->conn = NULL;
  }
  return NULL;
}

workq *wq_new(const char *amqp_url, const char *exchange, const char *queue_prefix,
              int prefetch) {
  workq *q = xcalloc(1, sizeof *q);
  snprintf(q->queue, sizeof q->queue, "%s%s", queue_prefix, WQ_QUEUE);
  q->url = xstrdup(amqp_url);
  q->exchange = xstrdup(exchange);
  q->prefetch = prefetch > 0 ? prefetch : 1;
  q->backoff_ms = BACKOFF_MIN_MS;
  pthread_mutex_init(&q->pub_lock, NULL);
  pthread_mutex_init(&q->done_lock, NULL);
  q->pub = mq_conn_new(amqp_url, exchange, "jobs work publisher");
  if (!q->pub || mq_endpoints_parse(amqp_url, &q->nodes, NULL, 0) != 0) {
    mq_conn_free(q->pub);
    pthread_mutex_destroy(&q->pub_lock);
    pthread_mutex_destroy(&q->done_lock);
    free(q->url);
    free(q->exchange);
    free(q);
    return NULL;
  }
  /* the queue exists before the first job is accepted (best effort: retried on publish) */
  if (mq_ensure(q->pub) == 0) {
    mq_queue_spec spec = {.queue = WQ_QUEUE};
    q->declared = mq_declare_queue(q->pub, &spec) == 0;
  }
  return q;
}

int wq_consume(workq *q, wq_dispatch fn, void *ctx) {
  q->fn = fn;
  q->ctx = ctx;
  if (pthread_create(&q->thread, NULL, consumer_main, q) != 0) return -1;
  q->started = true;
  return 0;
}

void wq_drain(workq *q) {
  if (q) atomic_store(&q->draining, 1);
}

void wq_stop(workq *q) {
  if (!q) return;
  atomic_store(&q->stop, 1);
  if (q->started) pthread_join(q->thread, NULL);
  mq_conn_free(q->pub);
  mq_endpoints_free(&q->nodes);
  pthread_mutex_destroy(&q->pub_lock);
  pthread_mutex_destroy(&q->done_lock);
  free(q->done);
  free(q->held);
  free(q->url);
  free(q->exchange);
  free(q);
}

void wq_done(workq *q, const wq_delivery *d, bool requeue) {
  pthread_mutex_lock(&q->done_lock);
  if (q->ndone == q->done_cap) {
    size_t cap = q->done_cap ? q->done_cap * 2 : 8;
    done_item *items = xrealloc(q->done, cap * sizeof *items);
    if (items) {
      q->done = items;
      q->done_cap = cap;
    }
  }
  /* Without room the delivery stays unacked until the connection ends: redelivered, and
   * the job's final state makes that harmless. */
  if (q->ndone < q->done_cap)
    q->done[q->ndone++] = (done_item){d->tag, d->generation, requeue};
  pthread_mutex_unlock(&q->done_lock);
}

int wq_publish(workq *q, const char *job_id) {
  char body[64], msgid[37];
  int n = snprintf(body, sizeof body, "{\"id\":\"%s\"}", job_id);
  util_uuid(msgid);
  mq_props props = {.message_id = msgid, .type = "jobs.work", .content_type = "application/json"};
  pthread_mutex_lock(&q->pub_lock);
  int rc = -1;
  for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
    if (!q->declared) {
      mq_queue_spec spec = {.queue = WQ_QUEUE};
      q->declared = mq_declare_queue(q->pub, &spec) == 0;
      if (!q->declared) break;
    }
    rc = mq_publish(q->pub, "", q->queue, body, (size_t)n, &props, 5000);
    if (rc != 0) q->declared = false; /* returned as unroutable: the queue may be gone */
  }
  pthread_mutex_unlock(&q->pub_lock);
  return rc;
}

bool wq_connected(workq *q) { return q && atomic_load(&q->connected); }
