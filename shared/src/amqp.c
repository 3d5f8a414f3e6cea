/* amqp — the suite's one wrapper around rabbitmq-c; see amqp.h for the contract.
 *
 * Notes on rabbitmq-c 0.11 (Debian 12) that shaped this file:
 *   - There is no amqp_publisher_confirm_wait: after amqp_confirm_select we read the
 *     Basic.Ack / Basic.Nack / Basic.Return frames ourselves (mq_await_confirms).
 *   - Heartbeats are only sent and checked inside the library's own waits. A connection
 *     nobody waits on goes silent and the broker closes it after two intervals, so every
 *     wait here is short (<= 250 ms) and mq_ensure polls an idle publishing connection.
 *   - amqp_consume_message puts any frame that is not a Basic.Deliver back and returns
 *     AMQP_STATUS_UNEXPECTED_STATE; the caller must read that frame itself.
 *   - Without amqp_set_rpc_timeout / amqp_set_handshake_timeout an RPC or the login
 *     waits forever on a broker that accepted the TCP connection but does not answer.
 *   - amqp_parse_url edits its argument in place and the parsed fields point into it,
 *     so mq_endpoints_parse parses a scratch copy and keeps copies of the fields.
 *
 * Notes on quorum queues (RabbitMQ 3.10) that shaped the declarations:
 *   - They cannot be exclusive, auto-delete or non-durable: only the suite's durable
 *     queues are quorum queues (the voter's SSE tally bus keeps a classic exclusive one).
 *   - Dead-lettering defaults to at-most-once (a message expiring in Q.retry while Q has
 *     no leader would be dropped). at-least-once needs x-overflow reject-publish on the
 *     source queue, else the broker silently falls back to at-most-once.
 *   - A consumer on a surviving node stays attached while the queue elects a new leader;
 *     deliveries it had not acked come again (redelivered), which the handlers' versioned
 *     idempotent writes absorb.
 */
#include "voter/amqp.h"

#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/xalloc.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MQ_CHANNEL 1
#define MQ_CONNECT_TIMEOUT_MS 2000
#define MQ_HANDSHAKE_TIMEOUT_MS 5000
#define MQ_RPC_TIMEOUT_MS 5000
#define MQ_HEARTBEAT_S 30
#define MQ_BACKOFF_MIN_MS 100
#define MQ_BACKOFF_MAX_MS 30000
/* A connection that dies sooner than this after connecting does not reset the backoff:
 * otherwise a broker that accepts and then refuses (or a message it keeps refusing)
 * would be retried every 100 ms forever. */
#define MQ_STABLE_MS 10000
#define MQ_POLL_MS 250
#define MQ_REPUBLISH_TIMEOUT_MS 5000
/* How long a consumer keeps its consuming connection while the re-publish one is down. */
#define MQ_REPUBLISH_GRACE_MS 2000
#define MQ_QUEUE_NAME_MAX 255 /* AMQP shortstr */
#define MQ_DEFAULT_CONTENT_TYPE "application/cloudevents+json"
#define MQ_CONSUMED_METRIC "events_consumed_total"

/* Header carrying the event's own routing key across a trip through Q.retry: the
 * message comes back from Q.retry with routing key Q, and handlers dispatch on the key. */
#define MQ_HDR_ROUTING_KEY "x-routing-key"
#define MQ_HDR_ATTEMPTS "x-attempts"
#define MQ_HDR_ERROR "x-error"

typedef enum { MQ_ROLE_PUBLISH, MQ_ROLE_CONSUME } mq_role;

struct mq_conn {
  mq_endpoints nodes; /* the broker list, at least one */
  size_t node;        /* the node in use, or the first one the next attempt tries */
  char *exchange;     /* the events exchange */
  char *unrouted;     /* "<exchange>.unrouted": alternate exchange and its parking queue */
  char *name;         /* connection_name shown by the broker */
  mq_role role;       /* PUBLISH: confirm mode; CONSUME: qos + basic.consume of spec */
  mq_queue_spec spec; /* CONSUME only; defaults applied */

  amqp_connection_state_t amqp; /* NULL while disconnected */
  bool sane;                    /* the protocol state allows an orderly close */
  bool channel_open;            /* false once the broker closed our channel */
  uint64_t next_tag;            /* delivery tag the broker gives our next publish */
  int64_t connected_at_ms;
  int64_t retry_at_ms; /* no connect attempt before this: the backoff window */
  int64_t backoff_ms;  /* base length of the next window */
  uint64_t rng;        /* xorshift state for the jitter */
  char error[512];     /* why the last operation failed, for the log */
};

/* ---- small helpers ---- */

static int64_t mq_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval mq_timeval(int64_t ms) {
  if (ms < 0) ms = 0;
  struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
  return tv;
}

static void mq_sleep_ms(int64_t ms) {
  if (ms <= 0) return;
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static char *mq_strdup_bytes(amqp_bytes_t b) {
  char *s = xmalloc(b.len + 1);
  if (!s) return NULL;
  if (b.len) memcpy(s, b.bytes, b.len);
  s[b.len] = '\0';
  return s;
}

static bool mq_bytes_eq(amqp_bytes_t b, const char *s) {
  size_t n = s ? strlen(s) : 0;
  return b.len == n && (n == 0 || memcmp(b.bytes, s, n) == 0);
}

static const amqp_field_value_t *mq_header(const amqp_basic_properties_t *p, const char *key) {
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return NULL;
  for (int i = 0; i < p->headers.num_entries; i++)
    if (mq_bytes_eq(p->headers.entries[i].key, key)) return &p->headers.entries[i].value;
  return NULL;
}

/* Any integer kind: other clients (pika, amqplib) pick the width by the value. */
static int mq_header_int(const amqp_basic_properties_t *p, const char *key) {
  const amqp_field_value_t *v = mq_header(p, key);
  int64_t n = 0;
  if (!v) return 0;
  switch (v->kind) {
  case AMQP_FIELD_KIND_I8: n = v->value.i8; break;
  case AMQP_FIELD_KIND_U8: n = v->value.u8; break;
  case AMQP_FIELD_KIND_I16: n = v->value.i16; break;
  case AMQP_FIELD_KIND_U16: n = v->value.u16; break;
  case AMQP_FIELD_KIND_I32: n = v->value.i32; break;
  case AMQP_FIELD_KIND_U32: n = v->value.u32; break;
  case AMQP_FIELD_KIND_I64: n = v->value.i64; break;
  case AMQP_FIELD_KIND_U64: n = v->value.u64 > INT32_MAX ? INT32_MAX : (int64_t)v->value.u64; break;
  default: return 0;
  }
  return n < 0 ? 0 : n > INT32_MAX ? INT32_MAX : (int)n;
}

static amqp_bytes_t mq_header_str(const amqp_basic_properties_t *p, const char *key) {
  const amqp_field_value_t *v = mq_header(p, key);
  if (v && (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES))
    return v->value.bytes;
  return amqp_empty_bytes;
}

/* Describes a failed RPC reply for the log: the broker's own words when it closed the
 * channel or connection (e.g. 406 PRECONDITION_FAILED on mismatched arguments). */
static void mq_describe_reply(amqp_rpc_reply_t r, char *buf, size_t len) {
  switch (r.reply_type) {
  case AMQP_RESPONSE_NORMAL: snprintf(buf, len, "ok"); return;
  case AMQP_RESPONSE_NONE: snprintf(buf, len, "missing RPC reply"); return;
  case AMQP_RESPONSE_LIBRARY_EXCEPTION:
    snprintf(buf, len, "%s", amqp_error_string2(r.library_error));
    return;
  case AMQP_RESPONSE_SERVER_EXCEPTION:
    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      const amqp_channel_close_t *m = r.reply.decoded;
      snprintf(buf, len, "channel closed by broker: %u %.*s", m->reply_code,
               (int)m->reply_text.len, (const char *)m->reply_text.bytes);
    } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      const amqp_connection_close_t *m = r.reply.decoded;
      snprintf(buf, len, "connection closed by broker: %u %.*s", m->reply_code,
               (int)m->reply_text.len, (const char *)m->reply_text.bytes);
    } else {
      snprintf(buf, len, "unexpected server method 0x%08x", (unsigned)r.reply.id);
    }
    return;
  }
  snprintf(buf, len, "unknown reply type");
}

static void mq_log(mq_conn *c, log_level level, const char *msg, const char *error) {
  const mq_endpoint *ep = &c->nodes.v[c->node];
  json_t *f = json_pack("{s:s, s:s, s:i, s:s}", "connection", c->name, "host", ep->host, "port",
                        ep->port, "vhost", ep->vhost);
  if (f && error) json_object_set_new(f, "error", json_string(error));
  log_fields(level, msg, f);
}

/* ---- connection life cycle ---- */

static uint64_t mq_random(mq_conn *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return c->rng;
}

static int64_t mq_jitter(mq_conn *c, int64_t ms) {
  return ms * (int64_t)(800 + mq_random(c) % 401) / 1000; /* +-20% */
}

/* Opens the next backoff window and doubles the one after it. */
static void mq_backoff(mq_conn *c) {
  int64_t wait = mq_jitter(c, c->backoff_ms);
  c->retry_at_ms = mq_now_ms() + wait;
  c->backoff_ms = c->backoff_ms * 2 > MQ_BACKOFF_MAX_MS ? MQ_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* graceful: say goodbye when the protocol state allows it (we only gave up on a
 * message); with a dead or hung socket a close RPC would just wait for its timeout. */
static void mq_close(mq_conn *c, bool graceful) {
  if (!c->amqp) return;
  if (graceful && c->sane) {
    if (c->channel_open) amqp_channel_close(c->amqp, MQ_CHANNEL, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c->amqp, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(c->amqp);
  c->amqp = NULL;
  c->sane = false;
  c->channel_open = false;
}

/* Drops a connection after an error and opens a backoff window, so the caller's next
 * mq_ensure fails fast instead of hammering a broker that just failed us. */
static void mq_fail(mq_conn *c, bool graceful, const char *why) {
  if (!c->amqp) return;
  if (mq_now_ms() - c->connected_at_ms >= MQ_STABLE_MS) c->backoff_ms = MQ_BACKOFF_MIN_MS;
  mq_close(c, graceful);
  mq_backoff(c);
  mq_log(c, LOG_WARN, "amqp connection dropped", why);
  /* The next attempt starts at the next node: this one may be gone (its own turn comes
   * last in the round, so a lone broker is still retried). */
  c->node = (c->node + 1) % c->nodes.n;
}

/* Checks the reply of the RPC just made; on failure records why in c->error. */
static int mq_rpc_check(mq_conn *c, const char *what) {
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c->amqp);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return 0;
  char desc[sizeof c->error - 64];
  mq_describe_reply(r, desc, sizeof desc);
  snprintf(c->error, sizeof c->error, "%s: %s", what, desc);
  /* The broker closes the channel on any RPC error (we never answer with close-ok: the
   * connection is closed right after). A closed connection or a library error (timeout,
   * socket) leaves nothing to close politely. */
  c->channel_open = false;
  if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
    c->sane = false;
  return -1;
}

static amqp_table_entry_t mq_str_entry(const char *key, const char *value) {
  amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = amqp_cstring_bytes(value);
  return e;
}

static amqp_table_entry_t mq_int_entry(const char *key, int32_t value) {
  amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
  e.value.kind = AMQP_FIELD_KIND_I32;
  e.value.value.i32 = value;
  return e;
}

static int mq_declare_exchange(mq_conn *c, const char *name, const char *type,
                               amqp_table_t args) {
  amqp_exchange_declare(c->amqp, MQ_CHANNEL, amqp_cstring_bytes(name), amqp_cstring_bytes(type),
                        0, 1, 0, 0, args);
  return mq_rpc_check(c, "exchange.declare");
}

static amqp_table_entry_t mq_bool_entry(const char *key, bool value) {
  amqp_table_entry_t e = {.key = amqp_cstring_bytes(key)};
  e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  e.value.value.boolean = value;
  return e;
}

#define MQ_QUEUE_ARGS_MAX 8

/* Declares a durable quorum queue with args (up to MQ_QUEUE_ARGS_MAX - 1 entries) plus
 * x-queue-type. */
static int mq_declare_durable_queue(mq_conn *c, const char *name, const amqp_table_entry_t *args,
                                    int nargs) {
  amqp_table_entry_t all[MQ_QUEUE_ARGS_MAX];
  int n = 0;
  for (; n < nargs && n < MQ_QUEUE_ARGS_MAX - 1; n++) all[n] = args[n];
  all[n++] = mq_str_entry("x-queue-type", "quorum");
  amqp_table_t table = {.num_entries = n, .entries = all};
  amqp_queue_declare(c->amqp, MQ_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, table);
  return mq_rpc_check(c, "queue.declare");
}

static int mq_bind(mq_conn *c, const char *queue, const char *exchange, const char *key) {
  amqp_queue_bind(c->amqp, MQ_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                  amqp_cstring_bytes(key), amqp_empty_table);
  return mq_rpc_check(c, "queue.bind");
}

/* The events exchange parks what nobody is bound to in "<exchange>.unrouted" (through
 * its alternate exchange), so a mandatory publish to it is never returned. */
static int mq_declare_topology(mq_conn *c) {
  amqp_table_entry_t ae = mq_str_entry("alternate-exchange", c->unrouted);
  amqp_table_t ae_args = {.num_entries = 1, .entries = &ae};
  if (mq_declare_exchange(c, c->unrouted, "fanout", amqp_empty_table) != 0 ||
      mq_declare_durable_queue(c, c->unrouted, NULL, 0) != 0 ||
      mq_bind(c, c->unrouted, c->unrouted, "") != 0 ||
      mq_declare_exchange(c, c->exchange, "topic", ae_args) != 0)
    return -1;
  return 0;
}

static mq_queue_spec mq_spec_defaults(const mq_queue_spec *spec) {
  mq_queue_spec s = *spec;
  if (s.retry_delay_ms <= 0) s.retry_delay_ms = 1000;
  if (s.max_attempts <= 0) s.max_attempts = 5;
  if (s.prefetch <= 0) s.prefetch = 32;
  return s;
}

static int mq_spec_names(const mq_queue_spec *spec, char retry[MQ_QUEUE_NAME_MAX + 1],
                         char dlq[MQ_QUEUE_NAME_MAX + 1]) {
  if (!spec->queue || !*spec->queue) return -1;
  int a = snprintf(retry, MQ_QUEUE_NAME_MAX + 1, "%s.retry", spec->queue);
  int b = snprintf(dlq, MQ_QUEUE_NAME_MAX + 1, "%s.dlq", spec->queue);
  return a > MQ_QUEUE_NAME_MAX || b > MQ_QUEUE_NAME_MAX ? -1 : 0;
}

/* Q.retry holds a failed message for retry_delay_ms, then the broker dead-letters it
 * through the default exchange straight back into Q (and only Q: going through the
 * events exchange would hand it again to every other queue bound to its key). The
 * dead-lettering is at-least-once: Q.retry keeps the message until Q has confirmed it,
 * even across a leader change, and refuses new publishes (nack: the consumer leaves the
 * original unacked and it comes back) rather than dropping old ones were it ever full. */
static int mq_declare_spec(mq_conn *c, const mq_queue_spec *raw) {
  mq_queue_spec spec = mq_spec_defaults(raw);
  char retry[MQ_QUEUE_NAME_MAX + 1], dlq[MQ_QUEUE_NAME_MAX + 1];
  if (mq_spec_names(&spec, retry, dlq) != 0) {
    snprintf(c->error, sizeof c->error, "queue name missing or too long");
    return -1;
  }
  amqp_table_entry_t retry_args[] = {
      mq_int_entry("x-message-ttl", spec.retry_delay_ms),
      mq_str_entry("x-dead-letter-exchange", ""),
      mq_str_entry("x-dead-letter-routing-key", spec.queue),
      mq_str_entry("x-dead-letter-strategy", "at-least-once"),
      mq_str_entry("x-overflow", "reject-publish"),
  };
  amqp_table_entry_t sac = mq_bool_entry("x-single-active-consumer", true);
  if (mq_declare_durable_queue(c, spec.queue, &sac, spec.single_active ? 1 : 0) != 0 ||
      mq_declare_durable_queue(c, retry, retry_args,
                               (int)(sizeof retry_args / sizeof retry_args[0])) != 0 ||
      mq_declare_durable_queue(c, dlq, NULL, 0) != 0)
    return -1;
  for (const char *const *k = spec.keys; k && *k; k++)
    if (mq_bind(c, spec.queue, c->exchange, *k) != 0) return -1;
  return 0;
}

static int mq_start_consuming(mq_conn *c) {
  uint16_t prefetch = (uint16_t)(c->spec.prefetch > UINT16_MAX ? UINT16_MAX : c->spec.prefetch);
  amqp_basic_qos(c->amqp, MQ_CHANNEL, 0, prefetch, 0);
  if (mq_rpc_check(c, "basic.qos") != 0) return -1;
  amqp_basic_consume(c->amqp, MQ_CHANNEL, amqp_cstring_bytes(c->spec.queue), amqp_empty_bytes, 0,
                     0 /* manual acks */, 0, amqp_empty_table);
  return mq_rpc_check(c, "basic.consume");
}

/* One attempt on one node: TCP connect, login, channel, confirm mode or consumer,
 * topology. 0, or -1 with the connection closed, c->error and *stage_out set. */
static int mq_connect_node(mq_conn *c, const mq_endpoint *ep, const char **stage_out) {
  const char *stage = "socket";
  struct timeval connect_tv = mq_timeval(MQ_CONNECT_TIMEOUT_MS);
  struct timeval handshake_tv = mq_timeval(MQ_HANDSHAKE_TIMEOUT_MS);
  struct timeval rpc_tv = mq_timeval(MQ_RPC_TIMEOUT_MS);
  amqp_table_entry_t prop = mq_str_entry("connection_name", c->name);
  amqp_table_t props = {.num_entries = 1, .entries = &prop};
  amqp_socket_t *sock = NULL;
  amqp_rpc_reply_t r;
  int rc;

  snprintf(c->error, sizeof c->error, "out of memory");
  c->amqp = amqp_new_connection();
  if (!c->amqp || !(sock = amqp_tcp_socket_new(c->amqp))) goto err;
  amqp_set_handshake_timeout(c->amqp, &handshake_tv);
  amqp_set_rpc_timeout(c->amqp, &rpc_tv);

  stage = "connect";
  rc = amqp_socket_open_noblock(sock, ep->host, ep->port, &connect_tv);
  if (rc != AMQP_STATUS_OK) {
    snprintf(c->error, sizeof c->error, "%s", amqp_error_string2(rc));
    goto err;
  }

  stage = "login";
  r = amqp_login_with_properties(c->amqp, ep->vhost, AMQP_DEFAULT_MAX_CHANNELS,
                                 AMQP_DEFAULT_FRAME_SIZE, MQ_HEARTBEAT_S, &props,
                                 AMQP_SASL_METHOD_PLAIN, ep->user, ep->password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    mq_describe_reply(r, c->error, sizeof c->error);
    goto err;
  }
  c->sane = true;

  stage = "channel";
  amqp_channel_open(c->amqp, MQ_CHANNEL);
  if (mq_rpc_check(c, "channel.open") != 0) goto err;
  c->channel_open = true;
  if (c->role == MQ_ROLE_PUBLISH) {
    amqp_confirm_select(c->amqp, MQ_CHANNEL);
    if (mq_rpc_check(c, "confirm.select") != 0) goto err;
    c->next_tag = 1; /* confirm mode numbers publishes per channel from 1 */
  }

  stage = "topology";
  if (mq_declare_topology(c) != 0) goto err;
  if (c->role == MQ_ROLE_CONSUME &&
      (mq_declare_spec(c, &c->spec) != 0 || mq_start_consuming(c) != 0))
    goto err;

  return 0;

err:
  mq_close(c, true);
  *stage_out = stage;
  return -1;
}

/* One round: every node once, from c->node on, until one accepts us; the backoff
 * window opens only when they all failed (a dead node costs a refused TCP connect, or
 * up to the connect timeout when its host drops packets). */
static int mq_connect(mq_conn *c) {
  for (size_t i = 0; i < c->nodes.n; i++) {
    size_t at = (c->node + i) % c->nodes.n;
    const mq_endpoint *ep = &c->nodes.v[at];
    const char *stage = "socket";
    if (mq_connect_node(c, ep, &stage) == 0) {
      c->node = at;
      c->connected_at_ms = mq_now_ms();
      mq_log(c, LOG_INFO, "amqp connected", NULL);
      return 0;
    }
    bool last = i + 1 == c->nodes.n;
    if (last) mq_backoff(c);
    json_t *f = json_pack("{s:s, s:s, s:i, s:s, s:s}", "connection", c->name, "host", ep->host,
                          "port", ep->port, "stage", stage, "error", c->error);
    if (f && last)
      json_object_set_new(f, "retry_in_ms", json_integer(c->retry_at_ms - mq_now_ms()));
    if (f && !last)
      json_object_set_new(f, "next", json_string(c->nodes.v[(at + 1) % c->nodes.n].host));
    log_fields(LOG_WARN, "amqp connection attempt failed", f);
  }
  return -1;
}

/* ---- broker addresses ---- */

static void mq_endpoint_free(mq_endpoint *ep) {
  free(ep->host);
  free(ep->user);
  free(ep->password);
  free(ep->vhost);
}

void mq_endpoints_free(mq_endpoints *e) {
  if (!e) return;
  for (size_t i = 0; i < e->n; i++) mq_endpoint_free(&e->v[i]);
  free(e->v);
  e->v = NULL;
  e->n = 0;
}

/* Parses one URL (len bytes at text, blanks already trimmed) into ep. */
static int mq_endpoint_parse(const char *text, size_t len, mq_endpoint *ep, char *why,
                             size_t whylen) {
  char *scratch = xstrndup(text, len); /* amqp_parse_url writes into it */
  struct amqp_connection_info info;
  amqp_default_connection_info(&info);
  int rc = -1;
  if (amqp_parse_url(scratch, &info) != AMQP_STATUS_OK) {
    snprintf(why, whylen, "not a valid URL (expected amqp://user:pass@host:port[/vhost])");
  } else if (info.ssl) {
    snprintf(why, whylen, "amqps:// is not supported by this build");
  } else if (!*info.vhost) {
    /* "amqp://host/" names the empty vhost, which no broker has: almost always a typo for
     * the default vhost, and the broker would only say "access refused" on every retry. */
    snprintf(why, whylen, "names the empty vhost (trailing slash); omit the path or use /%%2F");
  } else {
    *ep = (mq_endpoint){.host = xstrdup(info.host),
                        .port = info.port,
                        .user = xstrdup(info.user),
                        .password = xstrdup(info.password),
                        .vhost = xstrdup(info.vhost)};
    rc = 0;
  }
  free(scratch);
  return rc;
}

int mq_endpoints_parse(const char *urls, mq_endpoints *out, char *err, size_t errlen) {
  char why[160];
  size_t count = 1;
  *out = (mq_endpoints){0};
  if (err && errlen) err[0] = '\0';
  if (!urls) {
    if (err) snprintf(err, errlen, "amqp url missing");
    return -1;
  }
  for (const char *p = urls; *p; p++) count += *p == ',';
  if (count > MQ_MAX_ENDPOINTS) {
    if (err) snprintf(err, errlen, "amqp url list has %zu entries (at most %d)", count,
                      MQ_MAX_ENDPOINTS);
    return -1;
  }
  out->v = xcalloc(count, sizeof *out->v);
  const char *p = urls;
  for (size_t i = 0; i < count; i++) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    int rc = a == b ? (snprintf(why, sizeof why, "is empty"), -1)
                    : mq_endpoint_parse(a, (size_t)(b - a), &out->v[i], why, sizeof why);
    if (rc != 0) {
      /* the position, never the text: it may hold a password */
      if (err && count == 1) snprintf(err, errlen, "amqp url %s", why);
      else if (err) snprintf(err, errlen, "amqp url list entry %zu of %zu %s", i + 1, count, why);
      mq_endpoints_free(out);
      return -1;
    }
    out->n++;
    p = *end ? end + 1 : end;
  }
  return 0;
}

/* ---- connections ---- */

mq_conn *mq_conn_new(const char *url, const char *exchange, const char *name) {
  if (!url || !exchange || !*exchange) return NULL;
  char err[256];
  mq_endpoints nodes;
  if (mq_endpoints_parse(url, &nodes, err, sizeof err) != 0) {
    log_error("%s", err);
    return NULL;
  }
  mq_conn *c = xcalloc(1, sizeof *c);
  c->nodes = nodes;
  c->exchange = xstrdup(exchange);
  c->name = xstrdup(name && *name ? name : "voter");
  c->unrouted = xasprintf("%s.unrouted", exchange);

  c->backoff_ms = MQ_BACKOFF_MIN_MS;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)c ^
           (uint64_t)getpid();
  if (!c->rng) c->rng = 0x9e3779b97f4a7c15ULL;
  /* Start at a random node, so the clients of a cluster spread over its nodes. */
  c->node = (size_t)(mq_random(c) % c->nodes.n);
  return c;
}

void mq_conn_free(mq_conn *c) {
  if (!c) return;
  mq_close(c, true);
  mq_endpoints_free(&c->nodes);
  free(c->exchange);
  free(c->unrouted);
  free(c->name);
  free(c);
}

bool mq_is_connected(const mq_conn *c) { return c && c->amqp; }

const mq_endpoint *mq_current_endpoint(const mq_conn *c) {
  return c && c->amqp ? &c->nodes.v[c->node] : NULL;
}

void mq_disconnect(mq_conn *c) {
  if (!c) return;
  mq_close(c, true);
  c->retry_at_ms = 0;
}

/* Lets an idle publishing connection service its heartbeats and notice a close the
 * broker sent meanwhile (e.g. on shutdown), so mq_ensure's 0 means "really up". */
static void mq_poll_idle(mq_conn *c) {
  for (;;) {
    amqp_frame_t f;
    struct timeval zero = {0, 0};
    int rc = amqp_simple_wait_frame_noblock(c->amqp, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT) break;
    if (rc != AMQP_STATUS_OK) {
      mq_fail(c, false, amqp_error_string2(rc));
      return;
    }
    if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_ok_t ok = {0};
      amqp_send_method(c->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      mq_fail(c, false, "connection closed by broker");
      return;
    }
    if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_ok_t ok = {0};
      amqp_send_method(c->amqp, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      c->channel_open = false;
      mq_fail(c, true, "channel closed by broker");
      return;
    }
    /* Anything else on an idle confirm channel is a stray we can ignore. */
  }
  amqp_maybe_release_buffers(c->amqp);
}

int mq_ensure(mq_conn *c) {
  if (!c) return -1;
  if (c->amqp) {
    if (c->role == MQ_ROLE_PUBLISH) mq_poll_idle(c);
    if (c->amqp) return 0;
  }
  if (mq_now_ms() < c->retry_at_ms) return -1;
  return mq_connect(c);
}

/* ---- publishing ---- */

typedef enum { MQ_PENDING = 0, MQ_ACKED, MQ_FAILED } mq_confirm;

static int mq_send(mq_conn *c, const char *exchange, const char *routing_key, const void *body,
                   size_t len, const mq_props *props, const char *origin_key) {
  amqp_basic_properties_t p;
  memset(&p, 0, sizeof p);
  p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  p.content_type = amqp_cstring_bytes(props && props->content_type ? props->content_type
                                                                    : MQ_DEFAULT_CONTENT_TYPE);
  p.delivery_mode = 2; /* persistent */
  if (props && props->message_id) {
    p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    p.message_id = amqp_cstring_bytes(props->message_id);
  }
  if (props && props->type) {
    p._flags |= AMQP_BASIC_TYPE_FLAG;
    p.type = amqp_cstring_bytes(props->type);
  }
  amqp_table_entry_t headers[3];
  int nh = 0;
  if (props && props->attempts > 0) headers[nh++] = mq_int_entry(MQ_HDR_ATTEMPTS, props->attempts);
  if (props && props->error) headers[nh++] = mq_str_entry(MQ_HDR_ERROR, props->error);
  if (origin_key) headers[nh++] = mq_str_entry(MQ_HDR_ROUTING_KEY, origin_key);
  if (nh) {
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers.num_entries = nh;
    p.headers.entries = headers;
  }
  amqp_bytes_t content = {.len = len, .bytes = (void *)body};
  return amqp_basic_publish(c->amqp, MQ_CHANNEL, amqp_cstring_bytes(exchange),
                            amqp_cstring_bytes(routing_key), 1 /* mandatory */, 0, &p, content);
}

static void mq_mark(mq_confirm *state, size_t n, uint64_t first_tag, uint64_t tag, bool multiple,
                    mq_confirm to) {
  if (tag < first_tag) return;
  uint64_t hi = tag - first_tag;
  uint64_t lo = multiple ? 0 : hi;
  for (uint64_t i = lo; i <= hi && i < n; i++)
    if (state[i] == MQ_PENDING) state[i] = to;
}

/* A Basic.Return carries no delivery tag. The broker sends it before the Basic.Ack of
 * the same message, so the returned one is still pending; among those, match on what
 * the return echoes (routing key, message id, size). Without a match, fail the first
 * pending one: under-counting only means a re-publish, never a loss. */
static void mq_mark_returned(mq_confirm *state, size_t n, const mq_message_out *msgs,
                             amqp_bytes_t routing_key, const amqp_message_t *m) {
  amqp_bytes_t id = (m->properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? m->properties.message_id
                                                                       : amqp_empty_bytes;
  size_t first = n;
  for (size_t i = 0; i < n; i++) {
    if (state[i] != MQ_PENDING) continue;
    if (first == n) first = i;
    if (mq_bytes_eq(routing_key, msgs[i].routing_key) && msgs[i].len == m->body.len &&
        mq_bytes_eq(id, msgs[i].props.message_id)) {
      state[i] = MQ_FAILED;
      return;
    }
  }
  if (first < n) state[first] = MQ_FAILED;
}

/* Reads confirms until the leading run of acked messages is settled: all acked, or the
 * first not-acked one failed, or the deadline passed. Returns the leading acked count;
 * *why is set when that is short of n. *graceful tells whether the protocol state
 * still allows an orderly close. */
static size_t mq_await_confirms(mq_conn *c, const mq_message_out *msgs, size_t n,
                                uint64_t first_tag, mq_confirm *state, int timeout_ms,
                                const char **why, bool *graceful) {
  int64_t deadline = mq_now_ms() + timeout_ms;
  size_t leading = 0;
  *why = NULL;
  *graceful = true;
  for (;;) {
    while (leading < n && state[leading] == MQ_ACKED) leading++;
    if (leading == n) return n;
    if (state[leading] == MQ_FAILED) {
      *why = c->error; /* set where it was marked failed */
      return leading;
    }
    int64_t left = deadline - mq_now_ms();
    if (left <= 0) {
      *why = "timed out waiting for publisher confirms";
      *graceful = false; /* late confirms may still be in flight */
      return leading;
    }
    amqp_frame_t f;
    struct timeval tv = mq_timeval(left);
    int rc = amqp_simple_wait_frame_noblock(c->amqp, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) continue;
    if (rc != AMQP_STATUS_OK) {
      *why = amqp_error_string2(rc);
      *graceful = false;
      return leading;
    }
    if (f.frame_type != AMQP_FRAME_METHOD) continue; /* heartbeats are eaten by the library */
    switch (f.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
      const amqp_basic_ack_t *a = f.payload.method.decoded;
      mq_mark(state, n, first_tag, a->delivery_tag, a->multiple, MQ_ACKED);
      break;
    }
    case AMQP_BASIC_NACK_METHOD: {
      const amqp_basic_nack_t *a = f.payload.method.decoded;
      mq_mark(state, n, first_tag, a->delivery_tag, a->multiple, MQ_FAILED);
      snprintf(c->error, sizeof c->error, "nacked by the broker (delivery tag %" PRIu64 "%s)",
               a->delivery_tag, a->multiple ? " and before" : "");
      break;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      const amqp_basic_return_t *ret = f.payload.method.decoded;
      /* Copy what we need before amqp_read_message reuses the frame pool. */
      snprintf(c->error, sizeof c->error, "returned by the broker: %u %.*s (routing key %.*s)",
               ret->reply_code, (int)ret->reply_text.len, (const char *)ret->reply_text.bytes,
               (int)ret->routing_key.len, (const char *)ret->routing_key.bytes);
      char *rk = mq_strdup_bytes(ret->routing_key);
      amqp_message_t m;
      amqp_rpc_reply_t r = amqp_read_message(c->amqp, f.channel, &m, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL || !rk) {
        free(rk);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) amqp_destroy_message(&m);
        *why = "could not read a returned message";
        *graceful = false;
        return leading;
      }
      mq_mark_returned(state, n, msgs, amqp_cstring_bytes(rk), &m);
      amqp_destroy_message(&m);
      free(rk);
      break;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      /* e.g. 404 on a publish to an exchange that does not exist */
      const amqp_channel_close_t *m = f.payload.method.decoded;
      snprintf(c->error, sizeof c->error, "channel closed by broker: %u %.*s", m->reply_code,
               (int)m->reply_text.len, (const char *)m->reply_text.bytes);
      amqp_channel_close_ok_t ok = {0};
      amqp_send_method(c->amqp, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      c->channel_open = false;
      *why = c->error;
      return leading;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_connection_close_ok_t ok = {0};
      amqp_send_method(c->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      *why = "connection closed by broker";
      *graceful = false;
      return leading;
    }
    default: break;
    }
  }
}

/* The one publish path: pipelines n messages to one exchange, then collects confirms.
 * origin_key (consumer re-publishes only) is carried as the x-routing-key header. */
static size_t mq_publish_n(mq_conn *c, const char *exchange, const mq_message_out *msgs,
                           size_t n, const char *origin_key, int timeout_ms) {
  if (!c || n == 0) return 0;
  if (c->role != MQ_ROLE_PUBLISH || mq_ensure(c) != 0) return 0;
  mq_confirm one = MQ_PENDING;
  mq_confirm *state = n == 1 ? &one : xcalloc(n, sizeof *state);
  if (!state) return 0;

  const char *why = NULL;
  bool graceful = true;
  size_t done = 0;
  uint64_t first_tag = c->next_tag;
  size_t sent = 0;
  for (; sent < n; sent++) {
    const mq_message_out *m = &msgs[sent];
    int rc = mq_send(c, exchange, m->routing_key ? m->routing_key : "", m->body, m->len, &m->props,
                     origin_key);
    if (rc != AMQP_STATUS_OK) {
      why = amqp_error_string2(rc);
      graceful = false;
      break;
    }
    c->next_tag++;
  }
  if (sent > 0) {
    /* Even after a send error, the messages that went out may have been confirmed. */
    const char *wait_why = NULL;
    bool wait_graceful = true;
    done = mq_await_confirms(c, msgs, sent, first_tag, state, timeout_ms, &wait_why,
                             &wait_graceful);
    if (!why) why = wait_why;
    graceful = graceful && wait_graceful;
  }
  if (done < n) {
    if (!why) why = "publish failed";
    mq_fail(c, graceful, why);
  } else {
    amqp_maybe_release_buffers(c->amqp);
    log_debug("amqp published %zu message(s) to exchange '%s'", n, exchange);
  }
  if (state != &one) free(state);
  return done;
}

int mq_publish(mq_conn *c, const char *exchange, const char *routing_key, const void *body,
               size_t len, const mq_props *props, int timeout_ms) {
  if (!c || !routing_key) return -1;
  mq_message_out m = {.routing_key = routing_key, .body = body, .len = len};
  if (props) m.props = *props;
  return mq_publish_n(c, exchange ? exchange : c->exchange, &m, 1, NULL, timeout_ms) == 1 ? 0 : -1;
}

size_t mq_publish_batch(mq_conn *c, const mq_message_out *msgs, size_t n, int timeout_ms) {
  if (!c || !msgs) return 0;
  return mq_publish_n(c, c->exchange, msgs, n, NULL, timeout_ms);
}

/* ---- queue name prefix ---- */

static char mq_prefix[64];

void mq_set_queue_prefix(const char *prefix) {
  snprintf(mq_prefix, sizeof mq_prefix, "%s", prefix ? prefix : "");
}

/* The broker-side name of a logical queue: prefix + name. NULL when too long. */
static const char *mq_physical(const char *queue, char buf[MQ_QUEUE_NAME_MAX + 1]) {
  if (!queue) return NULL;
  int n = snprintf(buf, MQ_QUEUE_NAME_MAX + 1, "%s%s", mq_prefix, queue);
  return n > MQ_QUEUE_NAME_MAX ? NULL : buf;
}

int mq_declare_queue(mq_conn *c, const mq_queue_spec *logical) {
  char retry[MQ_QUEUE_NAME_MAX + 1], dlq[MQ_QUEUE_NAME_MAX + 1], name[MQ_QUEUE_NAME_MAX + 1];
  if (!c || !logical) return -1;
  mq_queue_spec physical = *logical;
  physical.queue = mq_physical(logical->queue, name);
  const mq_queue_spec *spec = &physical;
  if (!physical.queue || mq_spec_names(spec, retry, dlq) != 0) return -1;
  if (mq_ensure(c) != 0) return -1;
  if (mq_declare_spec(c, spec) != 0) {
    /* The broker closed the channel: the connection is of no use any more. */
    mq_fail(c, true, c->error);
    return -1;
  }
  return 0;
}

/* ---- consuming ---- */

typedef struct mq_consumer {
  mq_conn *in;  /* consuming: qos + manual acks, never publishes */
  mq_conn *out; /* publishing with confirms: retry and dead-letter re-publishes */
  char retry[MQ_QUEUE_NAME_MAX + 1];
  char dlq[MQ_QUEUE_NAME_MAX + 1];
  char labels_ack[MQ_QUEUE_NAME_MAX + 64];
  char labels_retry[MQ_QUEUE_NAME_MAX + 64];
  char labels_dead[MQ_QUEUE_NAME_MAX + 64];
  mq_handler handler;
  void *ctx;
} mq_consumer;

/* Carries out one verdict. The original is acked only once the retry/dead-letter copy is
 * confirmed; if that fails, the message stays unacked and the consuming connection is
 * dropped, so the broker redelivers it after the backoff instead of it being lost. */
static void mq_handle(mq_consumer *k, amqp_envelope_t *env) {
  const amqp_basic_properties_t *p = &env->message.properties;
  amqp_bytes_t origin = mq_header_str(p, MQ_HDR_ROUTING_KEY);
  char *routing_key = mq_strdup_bytes(origin.len ? origin : env->routing_key);
  char *message_id =
      p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG ? mq_strdup_bytes(p->message_id) : NULL;
  char *type = p->_flags & AMQP_BASIC_TYPE_FLAG ? mq_strdup_bytes(p->type) : NULL;
  char *content_type =
      p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG ? mq_strdup_bytes(p->content_type) : NULL;
  if (!routing_key || ((p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) && !message_id) ||
      ((p->_flags & AMQP_BASIC_TYPE_FLAG) && !type) ||
      ((p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) && !content_type)) {
    mq_fail(k->in, false, "out of memory"); /* unacked: comes back later */
    goto out;
  }

  mq_message msg = {
      .routing_key = routing_key,
      .message_id = message_id,
      .type = type,
      .body = env->message.body.bytes,
      .len = env->message.body.len,
      .attempts = mq_header_int(p, MQ_HDR_ATTEMPTS),
      .redelivered = env->redelivered != 0,
  };
  const char *error = NULL;
  mq_verdict verdict = k->handler(k->ctx, &msg, &error);

  const char *labels = k->labels_ack;
  if (verdict != MQ_ACK) {
    bool retry = verdict == MQ_RETRY && msg.attempts + 1 < k->in->spec.max_attempts;
    mq_message_out copy = {.routing_key = retry ? k->retry : k->dlq,
                           .body = msg.body,
                           .len = msg.len,
                           .props = {.message_id = message_id,
                                     .type = type,
                                     .content_type = content_type,
                                     .attempts = msg.attempts + 1}};
    if (!retry)
      copy.props.error = error ? error
                         : verdict == MQ_RETRY ? "retries exhausted"
                                               : "rejected";
    labels = retry ? k->labels_retry : k->labels_dead;
    if (mq_publish_n(k->out, "", &copy, 1, routing_key, MQ_REPUBLISH_TIMEOUT_MS) != 1) {
      mq_fail(k->in, true, "re-publish failed; message left for redelivery");
      goto out;
    }
  }
  int rc = amqp_basic_ack(k->in->amqp, MQ_CHANNEL, env->delivery_tag, 0);
  if (rc != AMQP_STATUS_OK) {
    mq_fail(k->in, false, amqp_error_string2(rc));
    goto out;
  }
  metrics_counter_inc(MQ_CONSUMED_METRIC, labels);
  if (labels != k->labels_ack) {
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:i}", "queue", k->in->spec.queue, "to",
                          labels == k->labels_retry ? k->retry : k->dlq, "routing_key",
                          routing_key, "message_id", message_id ? message_id : "", "attempts",
                          msg.attempts + 1);
    if (f && error) json_object_set_new(f, "error", json_string(error));
    /* A dead letter needs a person; a retry is routine. */
    log_fields(labels == k->labels_dead ? LOG_WARN : LOG_DEBUG,
               labels == k->labels_dead ? "event dead-lettered" : "event scheduled for retry", f);
  }

out:
  free(routing_key);
  free(message_id);
  free(type);
  free(content_type);
}

/* Something other than a delivery arrived on the consuming channel: the broker cancelled
 * us (queue deleted), closed the channel or the connection. All end this connection. */
static void mq_consume_unexpected(mq_conn *in) {
  amqp_frame_t f;
  struct timeval tv = mq_timeval(MQ_POLL_MS);
  int rc = amqp_simple_wait_frame_noblock(in->amqp, &f, &tv);
  if (rc != AMQP_STATUS_OK) {
    mq_fail(in, false, amqp_error_string2(rc));
    return;
  }
  if (f.frame_type != AMQP_FRAME_METHOD) return;
  switch (f.payload.method.id) {
  case AMQP_BASIC_CANCEL_METHOD: mq_fail(in, true, "consumer cancelled by broker"); return;
  case AMQP_CHANNEL_CLOSE_METHOD: {
    amqp_channel_close_ok_t ok = {0};
    amqp_send_method(in->amqp, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    in->channel_open = false;
    mq_fail(in, true, "channel closed by broker");
    return;
  }
  case AMQP_CONNECTION_CLOSE_METHOD: {
    amqp_connection_close_ok_t ok = {0};
    amqp_send_method(in->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    mq_fail(in, false, "connection closed by broker");
    return;
  }
  default: return;
  }
}

static int64_t mq_wait_left(const mq_conn *c) {
  if (c->amqp) return 0;
  int64_t left = c->retry_at_ms - mq_now_ms();
  return left > 0 ? left : 0;
}

int mq_consume(const char *url, const char *exchange, const mq_queue_spec *spec,
               mq_handler handler, void *ctx, volatile sig_atomic_t *stop) {
  if (!spec || !spec->queue || !handler || !stop) return -1;
  /* Metric labels keep the logical name; the broker sees the prefixed one. */
  char physical_name[MQ_QUEUE_NAME_MAX + 1];
  mq_queue_spec physical = *spec;
  physical.queue = mq_physical(spec->queue, physical_name);
  if (!physical.queue) return -1;
  mq_consumer k = {.handler = handler, .ctx = ctx};
  int rc = -1;
  char name[MQ_QUEUE_NAME_MAX + 32];
  snprintf(name, sizeof name, "consume %s", spec->queue);
  k.in = mq_conn_new(url, exchange, name);
  snprintf(name, sizeof name, "consume %s (re-publish)", spec->queue);
  k.out = mq_conn_new(url, exchange, name);
  if (!k.in || !k.out) goto done;
  k.in->role = MQ_ROLE_CONSUME;
  k.in->spec = mq_spec_defaults(&physical);
  if (mq_spec_names(&k.in->spec, k.retry, k.dlq) != 0) {
    log_error("amqp consumer queue name too long: %s", spec->queue);
    goto done;
  }
  /* Queue names come from code, never from input: no label escaping needed. */
  snprintf(k.labels_ack, sizeof k.labels_ack, "queue=\"%s\",result=\"ack\"", spec->queue);
  snprintf(k.labels_retry, sizeof k.labels_retry, "queue=\"%s\",result=\"retry\"", spec->queue);
  snprintf(k.labels_dead, sizeof k.labels_dead, "queue=\"%s\",result=\"dead\"", spec->queue);
  metrics_describe(MQ_CONSUMED_METRIC, "counter",
                   "Events taken off a queue, by result: ack, retry (sent to the retry queue) "
                   "or dead (sent to the dead-letter queue).");

  int64_t out_down_since = 0;
  while (!*stop) {
    /* The publishing side first, so the consumer never holds deliveries it cannot
     * retry; mq_ensure also keeps its heartbeats going while it is idle. */
    if (mq_ensure(k.out) != 0) {
      /* Without a way to retry, hand the prefetched deliveries back (another replica may
       * take them) rather than sit on them, missing heartbeats, through the backoff.
       * Abrupt: the broker is likely gone too, and a close RPC could wait for its timeout.
       * Not at once: on a cluster the re-publish connection may just have lost its node
       * and be back on another one within a backoff step, while the consuming one, on
       * a surviving node, is fine (dropping it would redeliver everything it holds). */
      if (!out_down_since) out_down_since = mq_now_ms();
      if (mq_now_ms() - out_down_since >= MQ_REPUBLISH_GRACE_MS)
        mq_fail(k.in, false, "re-publish connection is down");
    } else {
      out_down_since = 0;
    }
    if (!mq_is_connected(k.out) || mq_ensure(k.in) != 0) {
      int64_t left = mq_wait_left(k.out) > mq_wait_left(k.in) ? mq_wait_left(k.out)
                                                               : mq_wait_left(k.in);
      mq_sleep_ms(left < MQ_POLL_MS ? (left > 0 ? left : 1) : MQ_POLL_MS);
      continue;
    }
    amqp_envelope_t env;
    struct timeval tv = mq_timeval(MQ_POLL_MS);
    amqp_maybe_release_buffers(k.in->amqp);
    amqp_rpc_reply_t r = amqp_consume_message(k.in->amqp, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      mq_handle(&k, &env);
      amqp_destroy_envelope(&env);
    } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
               r.library_error == AMQP_STATUS_TIMEOUT) {
      continue;
    } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
               r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      mq_consume_unexpected(k.in);
    } else {
      char desc[512];
      mq_describe_reply(r, desc, sizeof desc);
      mq_fail(k.in, false, desc);
    }
  }
  rc = 0;

done:
  /* Closing the consuming channel hands unacked deliveries back to the queue. */
  mq_conn_free(k.in);
  mq_conn_free(k.out);
  return rc;
}
