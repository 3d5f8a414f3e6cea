/* tallybus — tally-change announcements over a fanout exchange; see tallybus.h. */
#include "tallybus.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "voter/amqp.h"
#include "voter/log.h"
#include "voter/util.h"
#include "voter/xalloc.h"

#define CHANNEL 1
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000

struct tallybus {
  mq_endpoints nodes; /* AMQP_URL's broker list; a failure moves on to the next node */
  size_t node;
  char exchange[256];
  amqp_connection_state_t conn;
  int64_t retry_at_ms, backoff_ms;
};

static int64_t now_ms(void) { return (int64_t)(util_monotonic() * 1000.0); }

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

tallybus *tallybus_new(const char *url, const char *events_exchange) {
  tallybus *b = xcalloc(1, sizeof *b);
  char err[256];
  if (mq_endpoints_parse(url, &b->nodes, err, sizeof err) != 0) {
    log_error("tallybus: %s", err);
    free(b);
    return NULL;
  }
  snprintf(b->exchange, sizeof b->exchange, "%s.tallies", events_exchange);
  b->backoff_ms = BACKOFF_MIN_MS;
  return b;
}

static void disconnect(tallybus *b, bool graceful) {
  if (!b->conn) return;
  if (graceful) {
    amqp_channel_close(b->conn, CHANNEL, AMQP_REPLY_SUCCESS);
    amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(b->conn);
  b->conn = NULL;
}

static void failed(tallybus *b, const char *what) {
  log_fields(LOG_WARN, "tallybus: broker unavailable",
             json_pack("{s:s, s:I}", "stage", what, "retry_in_ms", (json_int_t)b->backoff_ms));
  disconnect(b, false);
  b->node = (b->node + 1) % b->nodes.n;
  b->retry_at_ms = now_ms() + b->backoff_ms;
  b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
}

static bool rpc_ok(tallybus *b) {
  return amqp_get_rpc_reply(b->conn).reply_type == AMQP_RESPONSE_NORMAL;
}

static bool connect_now(tallybus *b) {
  const mq_endpoint *ep = &b->nodes.v[b->node];
  struct timeval tv = {2, 0};
  b->conn = amqp_new_connection();
  amqp_socket_t *sock = b->conn ? amqp_tcp_socket_new(b->conn) : NULL;
  if (!sock) return failed(b, "socket"), false;
  amqp_set_rpc_timeout(b->conn, &tv);
  if (amqp_socket_open_noblock(sock, ep->host, ep->port, &tv) != AMQP_STATUS_OK)
    return failed(b, "connect"), false;
  amqp_table_entry_t prop = {.key = amqp_cstring_bytes("connection_name"),
                             .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                       .value.bytes = amqp_cstring_bytes("voter-tallybus")}};
  amqp_table_t props = {.num_entries = 1, .entries = &prop};
  amqp_rpc_reply_t r = amqp_login_with_properties(b->conn, ep->vhost, 0, AMQP_DEFAULT_FRAME_SIZE,
                                                  30, &props, AMQP_SASL_METHOD_PLAIN, ep->user,
                                                  ep->password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) return failed(b, "login"), false;
  amqp_channel_open(b->conn, CHANNEL);
  if (!rpc_ok(b)) return failed(b, "channel"), false;
  amqp_exchange_declare(b->conn, CHANNEL, amqp_cstring_bytes(b->exchange), amqp_cstring_bytes("fanout"),
                        0, 1 /* durable */, 0, 0, amqp_empty_table);
  if (!rpc_ok(b)) return failed(b, "exchange.declare"), false;
  amqp_queue_declare_ok_t *q = amqp_queue_declare(b->conn, CHANNEL, amqp_empty_bytes, 0, 0,
                                                  1 /* exclusive */, 1 /* auto-delete */, amqp_empty_table);
  if (!q || !rpc_ok(b)) return failed(b, "queue.declare"), false;
  amqp_bytes_t queue = amqp_bytes_malloc_dup(q->queue);
  amqp_queue_bind(b->conn, CHANNEL, queue, amqp_cstring_bytes(b->exchange), amqp_empty_bytes,
                  amqp_empty_table);
  bool ok = rpc_ok(b);
  if (ok) {
    amqp_basic_consume(b->conn, CHANNEL, queue, amqp_empty_bytes, 0, 1 /* no ack */, 1,
                       amqp_empty_table);
    ok = rpc_ok(b);
  }
  amqp_bytes_free(queue);
  if (!ok) return failed(b, "consume"), false;
  b->backoff_ms = BACKOFF_MIN_MS;
  log_fields(LOG_INFO, "tallybus: listening", json_pack("{s:s}", "exchange", b->exchange));
  return true;
}

static bool ensure(tallybus *b) {
  if (b->conn) return true;
  if (now_ms() < b->retry_at_ms) return false;
  return connect_now(b);
}

bool tallybus_poll(tallybus *b, int timeout_ms, tallybus_heard heard, void *ctx) {
  if (!ensure(b)) {
    sleep_ms(timeout_ms);
    return false;
  }
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    struct timeval tv = {(time_t)(left > 0 ? left / 1000 : 0), (suseconds_t)(left > 0 ? (left % 1000) * 1000 : 0)};
    amqp_envelope_t env;
    amqp_maybe_release_buffers(b->conn);
    amqp_rpc_reply_t r = amqp_consume_message(b->conn, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      char election[512];
      size_t n = env.message.body.len < sizeof election - 1 ? env.message.body.len : sizeof election - 1;
      if (n) memcpy(election, env.message.body.bytes, n);
      election[n] = 0;
      amqp_destroy_envelope(&env);
      heard(ctx, election);
      if (now_ms() >= deadline) return true;
      continue;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
      return true;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      /* a frame that is not a delivery (e.g. a channel close): read it and carry on or fail */
      amqp_frame_t f;
      struct timeval zero = {0, 0};
      if (amqp_simple_wait_frame_noblock(b->conn, &f, &zero) == AMQP_STATUS_OK &&
          f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD)
        continue;
    }
    failed(b, "consume");
    return false;
  }
}

bool tallybus_announce(tallybus *b, const char *election) {
  if (!ensure(b)) return false;
  amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG,
                                   .delivery_mode = 1 /* transient */,
                                   .content_type = amqp_cstring_bytes("text/plain")};
  int rc = amqp_basic_publish(b->conn, CHANNEL, amqp_cstring_bytes(b->exchange), amqp_empty_bytes, 0,
                              0, &props, amqp_cstring_bytes(election));
  if (rc != AMQP_STATUS_OK) {
    failed(b, "publish");
    return false;
  }
  return true;
}

void tallybus_free(tallybus *b) {
  if (!b) return;
  disconnect(b, true);
  mq_endpoints_free(&b->nodes);
  free(b);
}
