/* live_amqp — the amqp module against a real RabbitMQ (AMQP_URL from the environment,
 * set by tests/harness.py with-deps).
 *
 * Every run uses its own exchange and queue names, so runs never see each other's
 * messages. The broker is inspected with plain rabbitmq-c (passive declares, basic.get)
 * rather than through the module under test. Connection loss is simulated with a small
 * TCP proxy in this process, so the test needs no control over the broker itself. */
#include "voter/amqp.h"
#include "voter/log.h"
#include "voter/metrics.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#define TIMEOUT_MS 5000

static const char *amqp_url;
static char prefix[64];  /* unique per run */
static char exchange[96];
static char unrouted[128];

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void name_of(char *out, size_t len, const char *what) {
  snprintf(out, len, "%s.%s", prefix, what);
}

/* ---- plain rabbitmq-c, to look at the broker independently of the module ---- */

typedef struct raw {
  amqp_connection_state_t conn;
} raw;

static raw raw_open(void) {
  char *url = strdup(amqp_url);
  struct amqp_connection_info info;
  assert_non_null(url);
  assert_int_equal(amqp_parse_url(url, &info), AMQP_STATUS_OK);
  raw r = {.conn = amqp_new_connection()};
  amqp_socket_t *sock = amqp_tcp_socket_new(r.conn);
  assert_non_null(sock);
  assert_int_equal(amqp_socket_open(sock, info.host, info.port), AMQP_STATUS_OK);
  amqp_rpc_reply_t rep = amqp_login(r.conn, info.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                                    AMQP_SASL_METHOD_PLAIN, info.user, info.password);
  assert_int_equal(rep.reply_type, AMQP_RESPONSE_NORMAL);
  amqp_channel_open(r.conn, 1);
  assert_int_equal(amqp_get_rpc_reply(r.conn).reply_type, AMQP_RESPONSE_NORMAL);
  free(url);
  return r;
}

static void raw_close(raw *r) {
  amqp_channel_close(r->conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(r->conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(r->conn);
}

/* After a passive declare of something missing the broker closed channel 1 (404): it
 * must hear close-ok before the channel number can be opened again. */
static void raw_reopen(raw *r) {
  amqp_rpc_reply_t rep = amqp_get_rpc_reply(r->conn);
  assert_int_equal(rep.reply_type, AMQP_RESPONSE_SERVER_EXCEPTION);
  assert_int_equal(rep.reply.id, AMQP_CHANNEL_CLOSE_METHOD);
  amqp_channel_close_ok_t ok = {0};
  assert_int_equal(amqp_send_method(r->conn, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok), 0);
  amqp_maybe_release_buffers(r->conn);
  amqp_channel_open(r->conn, 1);
  assert_int_equal(amqp_get_rpc_reply(r->conn).reply_type, AMQP_RESPONSE_NORMAL);
}

/* Passive declare: the queue's message and consumer counts, or NULL when it does not exist
 * (reopens the channel the broker closed on the 404). */
static amqp_queue_declare_ok_t *raw_queue(raw *r, const char *queue) {
  amqp_queue_declare_ok_t *ok =
      amqp_queue_declare(r->conn, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
  if (!ok) raw_reopen(r);
  return ok;
}

/* Message count of a queue, or -1 when it does not exist. */
static int raw_count(raw *r, const char *queue) {
  amqp_queue_declare_ok_t *ok = raw_queue(r, queue);
  return ok ? (int)ok->message_count : -1;
}

static bool raw_exchange_exists(raw *r, const char *name) {
  if (amqp_exchange_declare(r->conn, 1, amqp_cstring_bytes(name), amqp_cstring_bytes("topic"), 1,
                            0, 0, 0, amqp_empty_table))
    return true;
  raw_reopen(r);
  return false;
}

/* Waits until a consumer is attached to the queue: the consumer declares its queues, then
 * binds them, then consumes, so this is when its topology is complete (a message published
 * after the queue exists but before its binding would be parked as unrouted). */
static void raw_wait_consuming(raw *r, const char *queue, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    amqp_queue_declare_ok_t *ok = raw_queue(r, queue);
    if (ok && ok->consumer_count > 0) return;
    if (now_ms() >= deadline) fail_msg("no consumer on %s after %d ms", queue, timeout_ms);
    sleep_ms(20);
  }
}

/* Polls until the queue holds want messages (or the deadline passes). */
static int raw_wait_count(raw *r, const char *queue, int want, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  int n;
  while ((n = raw_count(r, queue)) != want && now_ms() < deadline) sleep_ms(20);
  return n;
}

typedef struct got {
  char body[256];
  char routing_key[256];
  char message_id[128];
  char type[128];
  char content_type[128];
  char error[256];
  char origin_key[256];
  int attempts;
  int delivery_mode;
} got;

static void copy_bytes(char *out, size_t len, amqp_bytes_t b) {
  snprintf(out, len, "%.*s", (int)b.len, (const char *)b.bytes);
}

static void raw_headers(const amqp_basic_properties_t *p, got *g) {
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    char key[64];
    copy_bytes(key, sizeof key, e->key);
    if (strcmp(key, "x-attempts") == 0 && e->value.kind == AMQP_FIELD_KIND_I32)
      g->attempts = e->value.value.i32;
    else if (strcmp(key, "x-error") == 0)
      copy_bytes(g->error, sizeof g->error, e->value.value.bytes);
    else if (strcmp(key, "x-routing-key") == 0)
      copy_bytes(g->origin_key, sizeof g->origin_key, e->value.value.bytes);
  }
}

/* basic.get with auto-ack; false when the queue is empty. */
static bool raw_get(raw *r, const char *queue, got *g) {
  memset(g, 0, sizeof *g);
  amqp_rpc_reply_t rep = amqp_basic_get(r->conn, 1, amqp_cstring_bytes(queue), 1);
  assert_int_equal(rep.reply_type, AMQP_RESPONSE_NORMAL);
  if (rep.reply.id != AMQP_BASIC_GET_OK_METHOD) return false;
  amqp_basic_get_ok_t *ok = rep.reply.decoded;
  copy_bytes(g->routing_key, sizeof g->routing_key, ok->routing_key);
  amqp_message_t m;
  assert_int_equal(amqp_read_message(r->conn, 1, &m, 0).reply_type, AMQP_RESPONSE_NORMAL);
  copy_bytes(g->body, sizeof g->body, m.body);
  const amqp_basic_properties_t *p = &m.properties;
  if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
    copy_bytes(g->message_id, sizeof g->message_id, p->message_id);
  if (p->_flags & AMQP_BASIC_TYPE_FLAG) copy_bytes(g->type, sizeof g->type, p->type);
  if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
    copy_bytes(g->content_type, sizeof g->content_type, p->content_type);
  if (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) g->delivery_mode = p->delivery_mode;
  raw_headers(p, g);
  amqp_destroy_message(&m);
  amqp_maybe_release_buffers(r->conn);
  return true;
}

/* ---- a TCP proxy that can cut every connection: "the broker went away" ---- */

#define PROXY_MAX 32

typedef struct proxy {
  int listen_fd;
  int port;
  int upstream_port;
  int wake[2];
  pthread_t thread;
  pthread_mutex_t lock;
  bool refusing; /* accept and close at once: the broker is down */
  bool cut;      /* close every live pair */
  bool quit;
  int pairs[PROXY_MAX][2];
  int npairs;
} proxy;

static int listen_loopback(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 16), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static int connect_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                          .sin_port = htons((uint16_t)port)};
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static bool write_all(int fd, const char *buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, (size_t)n);
    if (w <= 0) return false;
    buf += w;
    n -= w;
  }
  return true;
}

static void proxy_drop(proxy *p, int i) {
  close(p->pairs[i][0]);
  close(p->pairs[i][1]);
  p->pairs[i][0] = p->pairs[p->npairs - 1][0];
  p->pairs[i][1] = p->pairs[p->npairs - 1][1];
  p->npairs--;
}

static void *proxy_run(void *arg) {
  proxy *p = arg;
  for (;;) {
    struct pollfd fds[2 + 2 * PROXY_MAX];
    int n = 0;
    fds[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
    for (int i = 0; i < p->npairs; i++) {
      fds[n++] = (struct pollfd){.fd = p->pairs[i][0], .events = POLLIN};
      fds[n++] = (struct pollfd){.fd = p->pairs[i][1], .events = POLLIN};
    }
    if (poll(fds, (nfds_t)n, -1) < 0) continue;
    pthread_mutex_lock(&p->lock);
    bool quit = p->quit, cut = p->cut, refusing = p->refusing;
    p->cut = false;
    pthread_mutex_unlock(&p->lock);
    if (fds[0].revents) {
      char b[16];
      if (read(p->wake[0], b, sizeof b) < 0) continue;
    }
    if (quit || cut) {
      while (p->npairs) proxy_drop(p, 0);
      if (quit) return NULL;
      continue; /* the pollfd array is stale */
    }
    if (fds[1].revents & POLLIN) {
      int client = accept(p->listen_fd, NULL, NULL);
      int upstream = client >= 0 && !refusing && p->npairs < PROXY_MAX
                         ? connect_loopback(p->upstream_port)
                         : -1;
      if (upstream < 0) {
        if (client >= 0) close(client);
      } else {
        p->pairs[p->npairs][0] = client;
        p->pairs[p->npairs][1] = upstream;
        p->npairs++;
      }
      continue;
    }
    for (int i = 0; i < p->npairs; i++) {
      for (int side = 0; side < 2; side++) {
        if (!fds[2 + 2 * i + side].revents) continue;
        char buf[65536];
        ssize_t r = read(p->pairs[i][side], buf, sizeof buf);
        if (r <= 0 || !write_all(p->pairs[i][1 - side], buf, r)) {
          proxy_drop(p, i);
          goto next_round; /* indices shifted */
        }
      }
    }
  next_round:;
  }
}

static void proxy_poke(proxy *p) {
  char b = 1;
  assert_int_equal(write(p->wake[1], &b, 1), 1);
}

static void proxy_start(proxy *p, int upstream_port) {
  memset(p, 0, sizeof *p);
  p->upstream_port = upstream_port;
  p->listen_fd = listen_loopback(&p->port);
  assert_int_equal(pipe(p->wake), 0);
  pthread_mutex_init(&p->lock, NULL);
  assert_int_equal(pthread_create(&p->thread, NULL, proxy_run, p), 0);
}

/* down: cut every connection and refuse new ones; up: accept again. */
static void proxy_set_down(proxy *p, bool down) {
  pthread_mutex_lock(&p->lock);
  p->refusing = down;
  if (down) p->cut = true;
  pthread_mutex_unlock(&p->lock);
  proxy_poke(p);
}

static void proxy_stop(proxy *p) {
  pthread_mutex_lock(&p->lock);
  p->quit = true;
  pthread_mutex_unlock(&p->lock);
  proxy_poke(p);
  pthread_join(p->thread, NULL);
  close(p->listen_fd);
  close(p->wake[0]);
  close(p->wake[1]);
  pthread_mutex_destroy(&p->lock);
}

static void pct_encode(char *out, size_t len, const char *s) {
  size_t o = 0;
  for (; *s && o + 4 < len; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '.' || ch == '_' || ch == '~')
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, len - o, "%%%02X", ch);
  }
  out[o] = '\0';
}

/* AMQP_URL with the host and port replaced by the proxy's. */
static void url_via(char *out, size_t len, int port, int *upstream_port) {
  char *url = strdup(amqp_url);
  struct amqp_connection_info info;
  char user[128], pass[128], vhost[128];
  assert_int_equal(amqp_parse_url(url, &info), AMQP_STATUS_OK);
  pct_encode(user, sizeof user, info.user);
  pct_encode(pass, sizeof pass, info.password);
  pct_encode(vhost, sizeof vhost, info.vhost);
  if (upstream_port) *upstream_port = info.port;
  snprintf(out, len, "amqp://%s:%s@127.0.0.1:%d/%s", user, pass, port, vhost);
  free(url);
}

/* ---- a consumer on its own thread ---- */

typedef struct seen {
  char body[64];
  char routing_key[128];
  char message_id[64];
  char type[64];
  int attempts;
  bool redelivered;
  int64_t at_ms;
} seen;

/* Owns copies of everything mq_consume reads, so a failed assertion (a longjmp out of
 * the test) never leaves the thread reading a dead stack frame. */
typedef struct consumer {
  char url[512];
  char queue[128];
  char keybuf[4][64];
  const char *keys[5];
  mq_queue_spec spec;
  pthread_t thread;
  bool running;
  volatile sig_atomic_t stop;
  int rc;
  pthread_mutex_t lock;
  seen seen[1024];
  int nseen;
} consumer;

static mq_verdict record(consumer *k, const mq_message *m) {
  pthread_mutex_lock(&k->lock);
  if (k->nseen < (int)(sizeof k->seen / sizeof k->seen[0])) {
    seen *s = &k->seen[k->nseen++];
    snprintf(s->body, sizeof s->body, "%.*s", (int)m->len, (const char *)m->body);
    snprintf(s->routing_key, sizeof s->routing_key, "%s", m->routing_key);
    snprintf(s->message_id, sizeof s->message_id, "%s", m->message_id ? m->message_id : "");
    snprintf(s->type, sizeof s->type, "%s", m->type ? m->type : "");
    s->attempts = m->attempts;
    s->redelivered = m->redelivered;
    s->at_ms = now_ms();
  }
  pthread_mutex_unlock(&k->lock);
  return MQ_ACK;
}

/* The body says what to answer: "retry…", "reject…", anything else is acked. */
static mq_verdict by_body(void *ctx, const mq_message *m, const char **error) {
  record(ctx, m);
  if (m->len >= 5 && memcmp(m->body, "retry", 5) == 0) {
    *error = "database unavailable";
    return MQ_RETRY;
  }
  if (m->len >= 6 && memcmp(m->body, "reject", 6) == 0) {
    *error = "body is not JSON";
    return MQ_REJECT;
  }
  return MQ_ACK;
}

static void *consume_run(void *arg) {
  consumer *k = arg;
  k->rc = mq_consume(k->url, exchange, &k->spec, by_body, k, &k->stop);
  return NULL;
}

static consumer *running[4]; /* stopped by stop_consumers after every test */

static void consume_start(consumer *k, const char *url, const mq_queue_spec *spec) {
  memset(k, 0, sizeof *k);
  snprintf(k->url, sizeof k->url, "%s", url);
  snprintf(k->queue, sizeof k->queue, "%s", spec->queue);
  k->spec = *spec;
  k->spec.queue = k->queue;
  k->spec.keys = k->keys;
  for (int i = 0; i < 4 && spec->keys[i]; i++) {
    snprintf(k->keybuf[i], sizeof k->keybuf[i], "%s", spec->keys[i]);
    k->keys[i] = k->keybuf[i];
  }
  k->rc = -99;
  pthread_mutex_init(&k->lock, NULL);
  assert_int_equal(pthread_create(&k->thread, NULL, consume_run, k), 0);
  k->running = true;
  for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
    if (!running[i]) {
      running[i] = k;
      break;
    }
}

/* Stops the consumer and returns how long mq_consume took to notice. */
static int64_t consume_stop(consumer *k) {
  int64_t t0 = now_ms();
  k->stop = 1;
  pthread_join(k->thread, NULL);
  int64_t took = now_ms() - t0;
  k->running = false;
  for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
    if (running[i] == k) running[i] = NULL;
  pthread_mutex_destroy(&k->lock);
  assert_int_equal(k->rc, 0);
  return took;
}

static int stop_consumers(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
    if (running[i] && running[i]->running) consume_stop(running[i]);
  return 0;
}

static int seen_count(consumer *k) {
  pthread_mutex_lock(&k->lock);
  int n = k->nseen;
  pthread_mutex_unlock(&k->lock);
  return n;
}

static bool wait_seen(consumer *k, int want, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  while (seen_count(k) < want && now_ms() < deadline) sleep_ms(10);
  return seen_count(k) >= want;
}

static double consumed(const char *queue, const char *result) {
  char labels[256];
  snprintf(labels, sizeof labels, "queue=\"%s\",result=\"%s\"", queue, result);
  return metrics_value("events_consumed_total", labels);
}

/* ---- tests ---- */

static void connect_declares_the_exchange_topology(void **state) {
  (void)state;
  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp topology");
  assert_non_null(c);
  assert_false(mq_is_connected(c));
  assert_int_equal(mq_ensure(c), 0);
  assert_true(mq_is_connected(c));

  raw r = raw_open();
  assert_true(raw_exchange_exists(&r, exchange));
  assert_true(raw_exchange_exists(&r, unrouted));
  assert_int_equal(raw_count(&r, unrouted), 0);

  char q[128], retry[160], dlq[160];
  name_of(q, sizeof q, "topology");
  snprintf(retry, sizeof retry, "%s.retry", q);
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  const char *keys[] = {"topology.created", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys};
  assert_int_equal(mq_declare_queue(c, &spec), 0);
  assert_int_equal(raw_count(&r, q), 0);
  assert_int_equal(raw_count(&r, retry), 0);
  assert_int_equal(raw_count(&r, dlq), 0);
  /* declaring again (every reconnect does) is harmless */
  assert_int_equal(mq_declare_queue(c, &spec), 0);
  assert_true(mq_is_connected(c));

  /* a different retry delay on the same queue is a broker error, not a crash */
  mq_queue_spec other = spec;
  other.retry_delay_ms = 4321;
  assert_int_equal(mq_declare_queue(c, &other), -1);
  assert_false(mq_is_connected(c));

  raw_close(&r);
  mq_conn_free(c);
}

static void url_with_trailing_slash_is_refused(void **state) {
  (void)state;
  char url[512];
  url_via(url, sizeof url, 5672, NULL);
  char *slash = strrchr(url, '/');
  slash[1] = '\0'; /* ".../" : the empty vhost */
  assert_null(mq_conn_new(url, exchange, "x"));
  assert_null(mq_conn_new("http://nope", exchange, "x"));
  assert_null(mq_conn_new(amqp_url, "", "x"));
}

static void publish_is_confirmed_and_routed(void **state) {
  (void)state;
  char q[128];
  name_of(q, sizeof q, "routed");
  const char *keys[] = {"routed.created", "routed.updated", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys};
  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp publish");
  assert_int_equal(mq_declare_queue(c, &spec), 0);

  mq_props props = {.message_id = "id-1", .type = "routed.created"};
  assert_int_equal(mq_publish(c, NULL, "routed.created", "{\"a\":1}", 7, &props, TIMEOUT_MS), 0);
  props = (mq_props){.content_type = "text/plain", .attempts = 2, .error = "why"};
  assert_int_equal(mq_publish(c, NULL, "routed.updated", "two", 3, &props, TIMEOUT_MS), 0);
  assert_int_equal(mq_publish(c, NULL, "routed.updated", "three", 5, NULL, TIMEOUT_MS), 0);

  raw r = raw_open();
  got g;
  assert_true(raw_get(&r, q, &g));
  assert_string_equal(g.body, "{\"a\":1}");
  assert_string_equal(g.routing_key, "routed.created");
  assert_string_equal(g.message_id, "id-1");
  assert_string_equal(g.type, "routed.created");
  assert_string_equal(g.content_type, "application/cloudevents+json");
  assert_int_equal(g.delivery_mode, 2);
  assert_int_equal(g.attempts, 0);
  assert_true(raw_get(&r, q, &g));
  assert_string_equal(g.body, "two");
  assert_string_equal(g.content_type, "text/plain");
  assert_int_equal(g.attempts, 2);
  assert_string_equal(g.error, "why");
  assert_true(raw_get(&r, q, &g));
  assert_string_equal(g.body, "three");
  assert_false(raw_get(&r, q, &g));
  raw_close(&r);
  mq_conn_free(c);
}

static void unbound_key_is_parked_in_unrouted(void **state) {
  (void)state;
  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp unrouted");
  mq_props props = {.message_id = "lost-1"};
  assert_int_equal(mq_publish(c, NULL, "nobody.listens", "parked", 6, &props, TIMEOUT_MS), 0);
  raw r = raw_open();
  got g;
  assert_int_equal(raw_wait_count(&r, unrouted, 1, 2000), 1);
  assert_true(raw_get(&r, unrouted, &g));
  assert_string_equal(g.body, "parked");
  assert_string_equal(g.routing_key, "nobody.listens");
  assert_string_equal(g.message_id, "lost-1");
  raw_close(&r);
  mq_conn_free(c);
}

static void returned_or_refused_publish_fails_and_backs_off(void **state) {
  (void)state;
  char missing[128];
  name_of(missing, sizeof missing, "no-such-queue");
  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp returned");
  /* default exchange, no such queue: mandatory makes the broker return it */
  assert_int_equal(mq_publish(c, "", missing, "x", 1, NULL, TIMEOUT_MS), -1);
  assert_false(mq_is_connected(c));
  int64_t t0 = now_ms();
  assert_int_equal(mq_ensure(c), -1); /* inside the ~100 ms window: no attempt */
  assert_true(now_ms() - t0 < 20);
  sleep_ms(150);
  assert_int_equal(mq_ensure(c), 0);

  /* an exchange that does not exist: the broker closes the channel (404) */
  assert_int_equal(mq_publish(c, "no-such-exchange-anywhere", "k", "x", 1, NULL, TIMEOUT_MS), -1);
  assert_false(mq_is_connected(c));

  /* an explicit disconnect is not a failure: reconnect at once */
  sleep_ms(600);
  assert_int_equal(mq_ensure(c), 0);
  mq_disconnect(c);
  assert_false(mq_is_connected(c));
  assert_int_equal(mq_ensure(c), 0);
  assert_int_equal(mq_publish(c, NULL, "nobody.listens", "y", 1, NULL, TIMEOUT_MS), 0);
  mq_conn_free(c);

  raw r = raw_open();
  got g;
  assert_int_equal(raw_wait_count(&r, unrouted, 1, 2000), 1);
  assert_true(raw_get(&r, unrouted, &g));
  raw_close(&r);
}

static void batch_of_500_is_confirmed_and_consumed_in_order(void **state) {
  (void)state;
  enum { N = 500 };
  char q[128], q_single[128];
  name_of(q, sizeof q, "batch");
  name_of(q_single, sizeof q_single, "single");
  const char *keys[] = {"batch.item", NULL};
  const char *single_keys[] = {"single.item", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys, .prefetch = 50};
  mq_queue_spec single_spec = {.queue = q_single, .keys = single_keys};
  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp batch");
  assert_int_equal(mq_declare_queue(c, &spec), 0);
  assert_int_equal(mq_declare_queue(c, &single_spec), 0);

  static char bodies[N][32], ids[N][32];
  static mq_message_out msgs[N];
  for (int i = 0; i < N; i++) {
    snprintf(bodies[i], sizeof bodies[i], "{\"seq\":%d}", i);
    snprintf(ids[i], sizeof ids[i], "m-%d", i);
    msgs[i] = (mq_message_out){.routing_key = "batch.item",
                               .body = bodies[i],
                               .len = strlen(bodies[i]),
                               .props = {.message_id = ids[i], .type = "batch.item"}};
  }
  int64_t t0 = now_ms();
  assert_int_equal(mq_publish_batch(c, msgs, N, 10000), N);
  int64_t batch_ms = now_ms() - t0;

  t0 = now_ms();
  for (int i = 0; i < N; i++)
    assert_int_equal(mq_publish(c, NULL, "single.item", bodies[i], strlen(bodies[i]),
                                &msgs[i].props, TIMEOUT_MS),
                     0);
  int64_t single_ms = now_ms() - t0;
  fprintf(stderr,
          "[ perf     ] %d persistent messages: mq_publish_batch %lld ms (%.0f msg/s), "
          "mq_publish one by one %lld ms (%.0f msg/s)\n",
          N, (long long)batch_ms, N * 1000.0 / (double)(batch_ms ? batch_ms : 1),
          (long long)single_ms, N * 1000.0 / (double)(single_ms ? single_ms : 1));

  raw r = raw_open();
  assert_int_equal(raw_wait_count(&r, q, N, 2000), N);
  assert_int_equal(raw_wait_count(&r, q_single, N, 2000), N);

  static consumer k;
  double acked_before = consumed(q, "ack");
  t0 = now_ms();
  consume_start(&k, amqp_url, &spec);
  assert_true(wait_seen(&k, N, 20000));
  int64_t consume_ms = now_ms() - t0;
  assert_int_equal(raw_wait_count(&r, q, 0, 2000), 0);
  int64_t stop_ms = consume_stop(&k);
  fprintf(stderr, "[ perf     ] consumed and acked %d in %lld ms; stop took %lld ms\n", N,
          (long long)consume_ms, (long long)stop_ms);
  assert_true(stop_ms < 1000);
  assert_int_equal(k.nseen, N);
  for (int i = 0; i < N; i++) {
    assert_string_equal(k.seen[i].body, bodies[i]);
    assert_string_equal(k.seen[i].message_id, ids[i]);
    assert_string_equal(k.seen[i].type, "batch.item");
    assert_string_equal(k.seen[i].routing_key, "batch.item");
    assert_int_equal(k.seen[i].attempts, 0);
  }
  assert_true(consumed(q, "ack") - acked_before == N);
  assert_int_equal(raw_count(&r, q), 0);
  raw_close(&r);
  mq_conn_free(c);
}

/* A queue that refuses overflow makes the broker nack: the batch reports only the
 * leading confirmed messages, so the outbox relay keeps the rest. */
static void batch_reports_only_the_leading_confirmed_messages(void **state) {
  (void)state;
  char q[128];
  name_of(q, sizeof q, "full");
  raw r = raw_open();
  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp nacked");
  assert_int_equal(mq_ensure(c), 0); /* declares the exchange */
  amqp_table_entry_t args[2] = {{.key = amqp_cstring_bytes("x-max-length")},
                                {.key = amqp_cstring_bytes("x-overflow")}};
  args[0].value.kind = AMQP_FIELD_KIND_I32;
  args[0].value.value.i32 = 2;
  args[1].value.kind = AMQP_FIELD_KIND_UTF8;
  args[1].value.value.bytes = amqp_cstring_bytes("reject-publish");
  amqp_table_t table = {.num_entries = 2, .entries = args};
  amqp_queue_declare(r.conn, 1, amqp_cstring_bytes(q), 0, 1, 0, 0, table);
  assert_int_equal(amqp_get_rpc_reply(r.conn).reply_type, AMQP_RESPONSE_NORMAL);
  amqp_queue_bind(r.conn, 1, amqp_cstring_bytes(q), amqp_cstring_bytes(exchange),
                  amqp_cstring_bytes("full.item"), amqp_empty_table);
  assert_int_equal(amqp_get_rpc_reply(r.conn).reply_type, AMQP_RESPONSE_NORMAL);

  mq_message_out msgs[5];
  for (int i = 0; i < 5; i++)
    msgs[i] = (mq_message_out){.routing_key = "full.item", .body = "x", .len = 1};
  assert_int_equal(mq_publish_batch(c, msgs, 5, TIMEOUT_MS), 2);
  assert_false(mq_is_connected(c));
  assert_int_equal(raw_count(&r, q), 2);
  raw_close(&r);
  mq_conn_free(c);
}

static void retry_is_delayed_then_dead_lettered_and_reject_is_dead_at_once(void **state) {
  (void)state;
  char q[128], retry[160], dlq[160];
  name_of(q, sizeof q, "verdicts");
  snprintf(retry, sizeof retry, "%s.retry", q);
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  const char *keys[] = {"verdict.#", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys, .retry_delay_ms = 300, .max_attempts = 3};

  static consumer k;
  consume_start(&k, amqp_url, &spec);
  raw r = raw_open();
  raw_wait_consuming(&r, q, 15000); /* its topology complete before publishing */

  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp verdicts");
  mq_props p_retry = {.message_id = "r-1", .type = "verdict.retry"};
  mq_props p_reject = {.message_id = "j-1", .type = "verdict.reject"};
  mq_props p_ack = {.message_id = "a-1", .type = "verdict.ack"};
  int64_t t0 = now_ms();
  assert_int_equal(mq_publish(c, NULL, "verdict.retry", "retry-me", 8, &p_retry, TIMEOUT_MS), 0);
  assert_int_equal(mq_publish(c, NULL, "verdict.reject", "reject-me", 9, &p_reject, TIMEOUT_MS), 0);
  assert_int_equal(mq_publish(c, NULL, "verdict.ack", "ack-me", 6, &p_ack, TIMEOUT_MS), 0);

  /* the reject is dead-lettered at once: first in Q.dlq, ahead of the retried message
   * that needs two trips through Q.retry (checked by the order below) */
  assert_int_equal(raw_wait_count(&r, dlq, 2, 5000), 2);
  assert_true(now_ms() - t0 >= 2 * 300);
  assert_true(wait_seen(&k, 5, 1000));
  sleep_ms(100);
  int64_t stop_ms = consume_stop(&k);
  assert_true(stop_ms < 1000);

  /* the handler saw: retry-me x3 (attempts 0,1,2, >= 300 ms apart), reject-me, ack-me */
  int retries = 0, last_attempt = -1;
  int64_t last_at = 0;
  for (int i = 0; i < k.nseen; i++) {
    const seen *s = &k.seen[i];
    if (strcmp(s->body, "retry-me") != 0) continue;
    assert_int_equal(s->attempts, last_attempt + 1);
    assert_string_equal(s->routing_key, "verdict.retry"); /* kept across Q.retry */
    assert_string_equal(s->message_id, "r-1");
    assert_string_equal(s->type, "verdict.retry");
    if (last_attempt >= 0) assert_true(s->at_ms - last_at >= 250);
    last_attempt = s->attempts;
    last_at = s->at_ms;
    retries++;
  }
  assert_int_equal(retries, 3);
  assert_int_equal(k.nseen, 5);

  assert_int_equal(raw_count(&r, q), 0);
  assert_int_equal(raw_count(&r, retry), 0);
  got g;
  assert_true(raw_get(&r, dlq, &g));
  assert_string_equal(g.body, "reject-me");
  assert_string_equal(g.error, "body is not JSON");
  assert_int_equal(g.attempts, 1);
  assert_string_equal(g.message_id, "j-1");
  assert_string_equal(g.type, "verdict.reject");
  assert_string_equal(g.origin_key, "verdict.reject");
  assert_int_equal(g.delivery_mode, 2);
  assert_true(raw_get(&r, dlq, &g));
  assert_string_equal(g.body, "retry-me");
  assert_string_equal(g.error, "database unavailable");
  assert_int_equal(g.attempts, 3);
  assert_string_equal(g.origin_key, "verdict.retry");
  assert_false(raw_get(&r, dlq, &g));

  assert_true(consumed(q, "ack") == 1);
  assert_true(consumed(q, "retry") == 2);
  assert_true(consumed(q, "dead") == 2);
  char *text = metrics_render();
  assert_non_null(strstr(text, "# TYPE events_consumed_total counter"));
  free(text);
  raw_close(&r);
  mq_conn_free(c);
}

/* If the retry copy cannot be placed (here: Q.retry deleted behind the consumer's
 * back, so the broker returns it), the original must not be acked: it comes back
 * redelivered once the consumer has reconnected and declared its queues again. */
static void failed_retry_publish_leaves_the_message_for_redelivery(void **state) {
  (void)state;
  char q[128], retry[160], dlq[160];
  name_of(q, sizeof q, "unplaced");
  snprintf(retry, sizeof retry, "%s.retry", q);
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  const char *keys[] = {"unplaced.item", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys, .retry_delay_ms = 100, .max_attempts = 2};
  static consumer k;
  consume_start(&k, amqp_url, &spec);
  raw r = raw_open();
  raw_wait_consuming(&r, q, 15000); /* set up, then its retry queue goes */
  amqp_queue_delete(r.conn, 1, amqp_cstring_bytes(retry), 0, 0);
  assert_int_equal(amqp_get_rpc_reply(r.conn).reply_type, AMQP_RESPONSE_NORMAL);

  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp unplaced");
  assert_int_equal(mq_publish(c, NULL, "unplaced.item", "retry-x", 7, NULL, TIMEOUT_MS), 0);
  assert_int_equal(raw_wait_count(&r, dlq, 1, 10000), 1);
  consume_stop(&k);

  assert_int_equal(k.nseen, 3);
  assert_int_equal(k.seen[0].attempts, 0);
  assert_false(k.seen[0].redelivered);
  assert_int_equal(k.seen[1].attempts, 0); /* the same delivery again, not a retry copy */
  assert_true(k.seen[1].redelivered);
  assert_int_equal(k.seen[2].attempts, 1);
  assert_true(k.seen[1].at_ms - k.seen[0].at_ms >= 80); /* after a backoff, no hot loop */
  assert_true(consumed(q, "retry") == 1);
  assert_true(consumed(q, "dead") == 1);
  assert_int_equal(raw_count(&r, q), 0);
  got g;
  assert_true(raw_get(&r, dlq, &g));
  assert_string_equal(g.body, "retry-x");
  assert_int_equal(g.attempts, 2);
  raw_close(&r);
  mq_conn_free(c);
}

static void consumer_and_publisher_come_back_after_the_broker_went_away(void **state) {
  (void)state;
  char q[128], url[512];
  name_of(q, sizeof q, "resume");
  const char *keys[] = {"resume.item", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys};
  int upstream;
  url_via(url, sizeof url, 0, &upstream);
  proxy px;
  proxy_start(&px, upstream);
  url_via(url, sizeof url, px.port, NULL);

  static consumer k;
  consume_start(&k, url, &spec);
  mq_conn *direct = mq_conn_new(amqp_url, exchange, "live_amqp resume direct");
  mq_conn *via = mq_conn_new(url, exchange, "live_amqp resume via proxy");
  raw r = raw_open();
  raw_wait_consuming(&r, q, 15000);

  assert_int_equal(mq_publish(via, NULL, "resume.item", "before", 6, NULL, TIMEOUT_MS), 0);
  assert_true(wait_seen(&k, 1, 3000));

  proxy_set_down(&px, true);
  sleep_ms(100);
  /* the cut is noticed by the idle publisher too; then it backs off */
  assert_int_equal(mq_ensure(via), -1);
  assert_int_equal(mq_publish(via, NULL, "resume.item", "lost", 4, NULL, 500), -1);
  assert_int_equal(mq_publish(direct, NULL, "resume.item", "during", 6, NULL, TIMEOUT_MS), 0);
  sleep_ms(700); /* a few failed attempts: backoff grows */
  assert_int_equal(seen_count(&k), 1);

  proxy_set_down(&px, false);
  int64_t t0 = now_ms();
  assert_true(wait_seen(&k, 2, 10000));
  int64_t resumed_ms = now_ms() - t0;
  fprintf(stderr, "[ info     ] consumer resumed %lld ms after the broker came back\n",
          (long long)resumed_ms);
  assert_string_equal(k.seen[1].body, "during");
  int64_t deadline = now_ms() + 5000;
  while (mq_ensure(via) != 0 && now_ms() < deadline) sleep_ms(10);
  assert_int_equal(mq_publish(via, NULL, "resume.item", "after", 5, NULL, TIMEOUT_MS), 0);
  assert_true(wait_seen(&k, 3, 3000));
  assert_string_equal(k.seen[2].body, "after");
  assert_true(consume_stop(&k) < 1000);

  raw_close(&r);
  mq_conn_free(via);
  mq_conn_free(direct);
  proxy_stop(&px);
}

/* AMQP_URL as a list of two "nodes" (two proxies to the one broker): when the node a
 * connection is on goes away, the publisher and the consumer move to the other one, and
 * back again when that one goes away in turn. */
static void list_of_nodes_fails_over_to_the_next_one(void **state) {
  (void)state;
  char q[128], a_url[512], b_url[512], list[1100];
  name_of(q, sizeof q, "failover");
  const char *keys[] = {"failover.item", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys};
  int upstream;
  url_via(a_url, sizeof a_url, 0, &upstream);
  static proxy a, b;
  proxy_start(&a, upstream);
  proxy_start(&b, upstream);
  url_via(a_url, sizeof a_url, a.port, NULL);
  url_via(b_url, sizeof b_url, b.port, NULL);
  snprintf(list, sizeof list, "%s, %s", a_url, b_url);

  static consumer k;
  consume_start(&k, list, &spec);
  mq_conn *pub = mq_conn_new(list, exchange, "live_amqp failover");
  raw r = raw_open();
  raw_wait_consuming(&r, q, 15000);
  assert_int_equal(mq_publish(pub, NULL, "failover.item", "m0", 2, NULL, TIMEOUT_MS), 0);
  assert_true(wait_seen(&k, 1, 3000));

  for (int round = 1; round <= 2; round++) {
    const mq_endpoint *ep = mq_current_endpoint(pub);
    assert_non_null(ep);
    proxy *gone = ep->port == a.port ? &a : &b;
    proxy *other = gone == &a ? &b : &a;
    proxy_set_down(other, false);
    proxy_set_down(gone, true);
    int64_t t0 = now_ms();
    char body[8];
    snprintf(body, sizeof body, "m%d", round);
    /* the first try may see the cut (and back off 100 ms); the next goes to the other node */
    while (mq_publish(pub, NULL, "failover.item", body, strlen(body), NULL, TIMEOUT_MS) != 0) {
      assert_true(now_ms() - t0 < 5000);
      sleep_ms(20);
    }
    assert_int_equal(mq_current_endpoint(pub)->port, other->port);
    assert_true(wait_seen(&k, round + 1, 5000));
    fprintf(stderr, "[ info     ] round %d: published and consumed on the other node after %lld ms\n",
            round, (long long)(now_ms() - t0));
  }
  assert_string_equal(k.seen[1].body, "m1");
  assert_string_equal(k.seen[2].body, "m2");
  assert_true(consume_stop(&k) < 1000);
  raw_close(&r);
  mq_conn_free(pub);
  proxy_stop(&a);
  proxy_stop(&b);
}

/* Declares name with the given string-valued arguments (plus bool x-single-active-consumer
 * when sac) on a fresh raw connection; returns the broker's reply code (0 when accepted,
 * 406 when the arguments differ from the existing queue's). */
static int raw_declare_with(const char *name, const char *const *kv, bool sac, int ttl) {
  raw r = raw_open();
  amqp_table_entry_t e[8];
  int n = 0;
  for (; kv[2 * n]; n++) {
    e[n].key = amqp_cstring_bytes(kv[2 * n]);
    e[n].value.kind = AMQP_FIELD_KIND_UTF8;
    e[n].value.value.bytes = amqp_cstring_bytes(kv[2 * n + 1]);
  }
  if (sac) {
    e[n].key = amqp_cstring_bytes("x-single-active-consumer");
    e[n].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e[n++].value.value.boolean = 1;
  }
  if (ttl) {
    e[n].key = amqp_cstring_bytes("x-message-ttl");
    e[n].value.kind = AMQP_FIELD_KIND_I32;
    e[n++].value.value.i32 = ttl;
  }
  amqp_table_t t = {.num_entries = n, .entries = e};
  amqp_queue_declare(r.conn, 1, amqp_cstring_bytes(name), 0, 1, 0, 0, t);
  amqp_rpc_reply_t rep = amqp_get_rpc_reply(r.conn);
  int code = 0;
  if (rep.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && rep.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
    code = ((amqp_channel_close_t *)rep.reply.decoded)->reply_code;
  else if (rep.reply_type != AMQP_RESPONSE_NORMAL)
    code = -1;
  if (code > 0) raw_reopen(&r);
  raw_close(&r);
  return code;
}

/* Every durable queue is a quorum queue, with at-least-once dead-lettering from Q.retry;
 * the broker refuses a declaration with other arguments (406), which is how we see them. */
static void queues_are_quorum_queues_and_single_active_is_an_option(void **state) {
  (void)state;
  char q[128], retry[160], dlq[160], sq[128];
  name_of(q, sizeof q, "quorum");
  name_of(sq, sizeof sq, "sac");
  snprintf(retry, sizeof retry, "%s.retry", q);
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  const char *keys[] = {"quorum.item", NULL};
  mq_queue_spec spec = {.queue = q, .keys = keys, .retry_delay_ms = 750};
  mq_conn *c = mq_conn_new(amqp_url, exchange, "live_amqp quorum");
  assert_int_equal(mq_declare_queue(c, &spec), 0);
  const char *quorum[] = {"x-queue-type", "quorum", NULL};
  const char *classic[] = {"x-queue-type", "classic", NULL};
  assert_int_equal(raw_declare_with(q, quorum, false, 0), 0);
  assert_int_equal(raw_declare_with(q, classic, false, 0), 406);
  assert_int_equal(raw_declare_with(q, quorum, true, 0), 406); /* no single-active here */
  assert_int_equal(raw_declare_with(dlq, quorum, false, 0), 0);
  assert_int_equal(raw_declare_with(unrouted, quorum, false, 0), 0);
  const char *retry_args[] = {"x-queue-type", "quorum", "x-dead-letter-exchange", "",
                              "x-dead-letter-routing-key", q,
                              "x-dead-letter-strategy", "at-least-once",
                              "x-overflow", "reject-publish", NULL};
  assert_int_equal(raw_declare_with(retry, retry_args, false, 750), 0);
  const char *at_most_once[] = {"x-queue-type", "quorum", "x-dead-letter-exchange", "",
                                "x-dead-letter-routing-key", q,
                                "x-dead-letter-strategy", "at-most-once",
                                "x-overflow", "reject-publish", NULL};
  assert_int_equal(raw_declare_with(retry, at_most_once, false, 750), 406);

  /* single_active: the broker hands Q's messages to one consumer at a time */
  const char *skeys[] = {"sac.item", NULL};
  mq_queue_spec single = {.queue = sq, .keys = skeys, .single_active = true};
  assert_int_equal(mq_declare_queue(c, &single), 0);
  assert_int_equal(raw_declare_with(sq, quorum, true, 0), 0);
  assert_int_equal(raw_declare_with(sq, quorum, false, 0), 406);

  static consumer k1, k2;
  consume_start(&k1, amqp_url, &single);
  raw r = raw_open();
  raw_wait_consuming(&r, sq, 15000);
  consume_start(&k2, amqp_url, &single);
  /* the broker counts only the active consumer of such a queue: give the standby time
   * to attach (a connect here takes well under a second) */
  sleep_ms(2000);
  enum { N = 40 };
  mq_message_out msgs[N];
  char bodies[N][8];
  for (int i = 0; i < N; i++) {
    snprintf(bodies[i], sizeof bodies[i], "s%d", i);
    msgs[i] = (mq_message_out){.routing_key = "sac.item", .body = bodies[i],
                               .len = strlen(bodies[i])};
  }
  assert_int_equal(mq_publish_batch(c, msgs, N, TIMEOUT_MS), N);
  int64_t deadline = now_ms() + 10000;
  while (seen_count(&k1) + seen_count(&k2) < N && now_ms() < deadline) sleep_ms(10);
  assert_int_equal(seen_count(&k1) + seen_count(&k2), N);
  consumer *active = seen_count(&k1) ? &k1 : &k2, *standby = active == &k1 ? &k2 : &k1;
  assert_int_equal(seen_count(standby), 0);
  for (int i = 0; i < N; i++) assert_string_equal(active->seen[i].body, bodies[i]); /* in order */

  /* the active one goes away: the standby takes over */
  consume_stop(active);
  assert_int_equal(mq_publish(c, NULL, "sac.item", "after", 5, NULL, TIMEOUT_MS), 0);
  assert_true(wait_seen(standby, 1, 10000));
  assert_string_equal(standby->seen[0].body, "after");
  raw_close(&r);
  mq_conn_free(c);
}

/* A "broker" that accepts and hangs up at once, counting connection attempts. */
typedef struct hangup {
  int fd;
  int port;
  volatile int attempts;
  volatile int quit;
  pthread_t thread;
} hangup;

static void *hangup_run(void *arg) {
  hangup *h = arg;
  while (!h->quit) {
    struct pollfd p = {.fd = h->fd, .events = POLLIN};
    if (poll(&p, 1, 20) == 1) {
      int fd = accept(h->fd, NULL, NULL);
      if (fd >= 0) {
        h->attempts++;
        close(fd);
      }
    }
  }
  return NULL;
}

static void ensure_fails_fast_and_respects_the_backoff(void **state) {
  (void)state;
  char url[512];
  /* a closed port: refused at once */
  int closed_port;
  close(listen_loopback(&closed_port));
  url_via(url, sizeof url, closed_port, NULL);
  mq_conn *c = mq_conn_new(url, exchange, "live_amqp closed");
  int64_t t0 = now_ms();
  assert_int_equal(mq_ensure(c), -1);
  assert_true(now_ms() - t0 < 500);
  t0 = now_ms();
  assert_int_equal(mq_ensure(c), -1);
  assert_true(now_ms() - t0 < 5);
  assert_int_equal(mq_publish(c, NULL, "k", "x", 1, NULL, TIMEOUT_MS), -1);
  assert_int_equal(mq_publish_batch(c, &(mq_message_out){.routing_key = "k"}, 1, TIMEOUT_MS), 0);
  mq_conn_free(c);

  /* a listener that hangs up: count the attempts over 1.5 s of calls every ms */
  hangup h = {.fd = listen_loopback(&h.port)};
  assert_int_equal(pthread_create(&h.thread, NULL, hangup_run, &h), 0);
  url_via(url, sizeof url, h.port, NULL);
  c = mq_conn_new(url, exchange, "live_amqp backoff");
  int calls = 0;
  int64_t slowest = 0;
  t0 = now_ms();
  while (now_ms() - t0 < 1500) {
    int64_t t = now_ms();
    assert_int_equal(mq_ensure(c), -1);
    if (now_ms() - t > slowest) slowest = now_ms() - t;
    calls++;
    sleep_ms(1);
  }
  sleep_ms(50);
  h.quit = 1;
  pthread_join(h.thread, NULL);
  close(h.fd);
  mq_conn_free(c);
  fprintf(stderr,
          "[ info     ] %d mq_ensure calls in 1.5 s -> %d connection attempts, slowest %lld ms\n",
          calls, h.attempts, (long long)slowest);
  /* windows 100, 200, 400, 800 ms (+-20%): attempts at ~0, 0.1, 0.3, 0.7, (1.5) s */
  assert_true(h.attempts <= 5);
  assert_true(h.attempts >= 3); /* 4 expected; a loaded machine may run the loop late */
  assert_true(calls > 500);
  assert_true(slowest < 200);
}

static void stop_ends_consume_promptly_while_the_broker_is_unreachable(void **state) {
  (void)state;
  char url[512];
  int closed_port;
  close(listen_loopback(&closed_port));
  url_via(url, sizeof url, closed_port, NULL);
  const char *keys[] = {"x", NULL};
  mq_queue_spec spec = {.queue = "unreachable", .keys = keys};
  static consumer k;
  consume_start(&k, url, &spec);
  sleep_ms(1200); /* deep enough into the backoff for a window longer than the poll */
  int64_t took = consume_stop(&k);
  assert_true(took < 400);

  /* bad arguments are refused, not looped on */
  volatile sig_atomic_t stop = 0;
  assert_int_equal(mq_consume("amqp://host/", exchange, &spec, by_body, NULL, &stop), -1);
}

/* ---- set-up: unique names; tear-down: delete what this run made ---- */

static int setup(void **state) {
  (void)state;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(prefix, sizeof prefix, "live-amqp.%ld.%ld", (long)getpid(), (long)ts.tv_sec);
  snprintf(exchange, sizeof exchange, "%s.events", prefix);
  snprintf(unrouted, sizeof unrouted, "%s.unrouted", exchange);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  static const char *const queues[] = {"topology", "routed", "batch", "single", "verdicts",
                                       "unplaced", "resume", "full", "failover", "quorum", "sac"};
  raw r = raw_open();
  for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++) {
    static const char *const suffix[] = {"", ".retry", ".dlq"};
    for (size_t j = 0; j < 3; j++) {
      char q[256];
      snprintf(q, sizeof q, "%s.%s%s", prefix, queues[i], suffix[j]);
      amqp_queue_delete(r.conn, 1, amqp_cstring_bytes(q), 0, 0);
    }
  }
  amqp_queue_delete(r.conn, 1, amqp_cstring_bytes(unrouted), 0, 0);
  amqp_exchange_delete(r.conn, 1, amqp_cstring_bytes(exchange), 0);
  amqp_exchange_delete(r.conn, 1, amqp_cstring_bytes(unrouted), 0);
  raw_close(&r);
  metrics_reset();
  return 0;
}

int main(void) {
  amqp_url = getenv("AMQP_URL");
  if (!amqp_url || !*amqp_url) {
    fprintf(stderr, "live_amqp: AMQP_URL is not set (run through tests/harness.py with-deps)\n");
    return 1;
  }
  const char *level = getenv("LOG_LEVEL");
  log_init("live_amqp", level ? level : "error");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(connect_declares_the_exchange_topology, stop_consumers),
      cmocka_unit_test_teardown(url_with_trailing_slash_is_refused, stop_consumers),
      cmocka_unit_test_teardown(publish_is_confirmed_and_routed, stop_consumers),
      cmocka_unit_test_teardown(unbound_key_is_parked_in_unrouted, stop_consumers),
      cmocka_unit_test_teardown(returned_or_refused_publish_fails_and_backs_off, stop_consumers),
      cmocka_unit_test_teardown(batch_of_500_is_confirmed_and_consumed_in_order, stop_consumers),
      cmocka_unit_test_teardown(batch_reports_only_the_leading_confirmed_messages, stop_consumers),
      cmocka_unit_test_teardown(retry_is_delayed_then_dead_lettered_and_reject_is_dead_at_once,
                                stop_consumers),
      cmocka_unit_test_teardown(failed_retry_publish_leaves_the_message_for_redelivery,
                                stop_consumers),
      cmocka_unit_test_teardown(consumer_and_publisher_come_back_after_the_broker_went_away,
                                stop_consumers),
      cmocka_unit_test_teardown(list_of_nodes_fails_over_to_the_next_one, stop_consumers),
      cmocka_unit_test_teardown(queues_are_quorum_queues_and_single_active_is_an_option,
                                stop_consumers),
      cmocka_unit_test_teardown(ensure_fails_fast_and_respects_the_backoff, stop_consumers),
      cmocka_unit_test_teardown(stop_ends_consume_promptly_while_the_broker_is_unreachable,
                                stop_consumers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
