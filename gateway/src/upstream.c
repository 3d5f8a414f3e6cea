/* upstream — instance registry, ejection and active health checks; see upstream.h. */
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "voter/log.h"
#include "voter/metrics.h"
#include "voter/xalloc.h"

#define MAX_REPLICAS 4096

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static gw_instance *registry[MAX_REPLICAS];
static atomic_int nregistry;

int64_t gw_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t gw_now_ms(void) { return gw_now_ns() / 1000000; }

int gw_instance_count(void) { return atomic_load(&nregistry); }

gw_instance *gw_instance_get(const char *hostport, const char *health_path, char *err,
                           size_t errlen) {
  pthread_mutex_lock(&reg_lock);
  int n = atomic_load(&nregistry);
  for (int i = 0; i < n; i++)
    if (strcmp(registry[i]->name, hostport) == 0 &&
        strcmp(registry[i]->health_path, health_path) == 0) {
      pthread_mutex_unlock(&reg_lock);
      return registry[i];
    }
  gw_instance *r = NULL;
  if (n >= MAX_REPLICAS) {
    snprintf(err, errlen, "too many upstream instances");
    goto out;
  }
  const char *colon = strrchr(hostport, ':');
  char host[256];
  if (!colon || (size_t)(colon - hostport) >= sizeof host) {
    snprintf(err, errlen, "%s: not host:port", hostport);
    goto out;
  }
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = 0;
  if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:80 */
    memmove(host, host + 1, strlen(host));
    host[strlen(host) - 1] = 0;
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *res = NULL;
  bool numeric = getaddrinfo(host, colon + 1, &hints, &res) == 0 && res;
  if (!numeric) {
    if (res) freeaddrinfo(res);
    res = NULL;
    hints.ai_flags = 0;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res) {
      snprintf(err, errlen, "%s: %s", hostport, gai_strerror(rc));
      goto out;
    }
  }
  r = xcalloc(1, sizeof *r);
  memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
  r->addrlen = res->ai_addrlen;
  freeaddrinfo(res);
  pthread_mutex_init(&r->addr_lock, NULL);
  r->numeric = numeric;
  r->host = xstrdup(host);
  r->port = xstrdup(colon + 1);
  r->resolved_ms = gw_now_ms();
  r->name = xstrdup(hostport);
  r->health_path = xstrdup(health_path);
  atomic_init(&r->health_ok, true);
  r->id = n;
  registry[n] = r;
  atomic_store(&nregistry, n + 1);
out:
  pthread_mutex_unlock(&reg_lock);
  return r;
}

void gw_instance_addr(gw_instance *r, struct sockaddr_storage *addr, socklen_t *len, unsigned *gen) {
  pthread_mutex_lock(&r->addr_lock);
  memcpy(addr, &r->addr, sizeof *addr);
  *len = r->addrlen;
  if (gen) *gen = atomic_load(&r->addr_gen);
  pthread_mutex_unlock(&r->addr_lock);
}

/* Health thread: resolves a host name again; a new address replaces the old one for new
 * connections, and pooled connections to the old one are dropped by the loops. A failed
 * lookup keeps the last good address. */
static void re_resolve(gw_instance *r) {
  r->resolved_ms = gw_now_ms();
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(r->host, r->port, &hints, &res);
  if (rc != 0 || !res) {
    log_fields(LOG_WARN, "upstream name not resolved, keeping the last address",
               json_pack("{s:s, s:s}", "upstream", r->name, "error", gai_strerror(rc)));
    return;
  }
  /* keep the current address while the name still resolves to it (several A records) */
  bool same = false;
  pthread_mutex_lock(&r->addr_lock);
  for (struct addrinfo *a = res; a && !same; a = a->ai_next)
    same = a->ai_addrlen == r->addrlen && memcmp(a->ai_addr, &r->addr, r->addrlen) == 0;
  char shown[INET6_ADDRSTRLEN] = "";
  if (!same) {
    memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
    r->addrlen = res->ai_addrlen;
    atomic_fetch_add(&r->addr_gen, 1);
    getnameinfo(res->ai_addr, res->ai_addrlen, shown, sizeof shown, NULL, 0, NI_NUMERICHOST);
  }
  pthread_mutex_unlock(&r->addr_lock);
  freeaddrinfo(res);
  if (!same)
    log_fields(LOG_INFO, "upstream address changed",
               json_pack("{s:s, s:s}", "upstream", r->name, "address", shown));
}

bool gw_instance_available(const gw_instance *r, int64_t now_ms) {
  int64_t until = atomic_load_explicit(&r->ejected_until_ms, memory_order_relaxed);
  return until == 0 || until <= now_ms;
}

void gw_instance_success(gw_instance *r) {
  /* read first: the common case writes nothing, so loops do not bounce the cache line */
  if (atomic_load_explicit(&r->failures, memory_order_relaxed))
    atomic_store_explicit(&r->failures, 0, memory_order_relaxed);
  if (atomic_load_explicit(&r->ejections, memory_order_relaxed))
    atomic_store_explicit(&r->ejections, 0, memory_order_relaxed);
  if (atomic_load_explicit(&r->ejected_until_ms, memory_order_relaxed))
    atomic_store_explicit(&r->ejected_until_ms, 0, memory_order_relaxed);
}

static void eject(gw_instance *r, const gw_conf *c, const char *why) {
  int k = atomic_fetch_add(&r->ejections, 1);
  int64_t ms = c->eject_base_ms;
  for (int i = 0; i < k && ms < c->eject_max_ms; i++) ms *= 2;
  if (ms > c->eject_max_ms) ms = c->eject_max_ms;
  atomic_store(&r->ejected_until_ms, gw_now_ms() + ms);
  atomic_store(&r->failures, 0);
  char labels[300];
  snprintf(labels, sizeof labels, "upstream=\"%s\"", r->name);
  metrics_counter_inc("gateway_upstream_ejections_total", labels);
  log_fields(LOG_WARN, "upstream ejected",
             json_pack("{s:s, s:I, s:i, s:s}", "upstream", r->name, "ejected_ms", (json_int_t)ms,
                       "ejections", k + 1, "reason", why));
}

void gw_instance_failure(gw_instance *r, const gw_conf *c, const char *why) {
  int f = atomic_fetch_add(&r->failures, 1) + 1;
  int64_t now = gw_now_ms();
  int64_t until = atomic_load(&r->ejected_until_ms);
  if (until > now) return; /* already out */
  if (f >= c->eject_failures || atomic_load(&r->ejections) > 0) eject(r, c, why);
}

/* ------------------------------------------------------------------ active checks */

static pthread_t health_thread;
static bool health_running;
static int health_pipe[2] = {-1, -1};
static gw_conf *(*health_conf)(void);

/* One blocking GET with a deadline; true on a 2xx status line. */
static bool check_once(gw_instance *r, int timeout_ms) {
  struct sockaddr_storage addr;
  socklen_t addrlen;
  gw_instance_addr(r, &addr, &addrlen, NULL);
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = false;
  int64_t deadline = gw_now_ms() + timeout_ms;
  struct pollfd pfd = {.fd = fd};
  if (connect(fd, (const struct sockaddr *)&addr, addrlen) != 0 && errno != EINPROGRESS)
    goto out;
  pfd.events = POLLOUT;
  if (poll(&pfd, 1, (int)(deadline - gw_now_ms())) != 1) goto out;
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) goto out;
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: voter-gateway-health\r\n"
                   "Connection: close\r\n\r\n",
                   r->health_path, r->name);
  if (n <= 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) goto out;
  char buf[64];
  size_t got = 0;
  pfd.events = POLLIN;
  while (got < 12) {
    int left = (int)(deadline - gw_now_ms());
    if (left <= 0 || poll(&pfd, 1, left) != 1) goto out;
    ssize_t k = read(fd, buf + got, sizeof buf - 1 - got);
    if (k <= 0) goto out;
    got += (size_t)k;
  }
  buf[got] = 0;
  ok = strncmp(buf, "HTTP/1.", 7) == 0 && buf[9] == '2';
out:
  close(fd);
  return ok;
}

static void *health_main(void *arg) {
  (void)arg;
  for (;;) {
    gw_conf *c = health_conf();
    int interval = c->health_interval_ms;
    if (interval > 0 || c->dns_refresh_ms > 0) {
      int n = gw_instance_count();
      for (int i = 0; i < n; i++) {
        gw_instance *r = registry[i];
        bool used = false; /* only instances the current configuration routes to */
        for (int k = 0; k < c->nroutes && !used; k++)
          for (int u = 0; u < c->routes[k].nupstreams && !used; u++)
            used = c->routes[k].instances[u] == r;
        if (!used) continue;
        if (!r->numeric && c->dns_refresh_ms > 0 && gw_now_ms() - r->resolved_ms >= c->dns_refresh_ms)
          re_resolve(r);
        if (interval <= 0) continue;
        bool ok = check_once(r, c->health_timeout_ms);
        atomic_store(&r->health_ok, ok);
        int64_t until = atomic_load(&r->ejected_until_ms);
        if (ok && until) {
          atomic_store(&r->ejected_until_ms, 0);
          atomic_store(&r->failures, 0);
          log_fields(LOG_INFO, "upstream re-admitted",
                     json_pack("{s:s, s:s}", "upstream", r->name, "by", "health check"));
        } else if (!ok && until <= gw_now_ms()) {
          gw_instance_failure(r, c, "health check");
        }
      }
    }
    int wait = interval > 0 ? interval : 1000;
    if (c->dns_refresh_ms > 0 && c->dns_refresh_ms < wait) wait = c->dns_refresh_ms;
    gw_conf_unref(c);
    struct pollfd pfd = {.fd = health_pipe[0], .events = POLLIN};
    if (poll(&pfd, 1, wait) != 0) break; /* stop requested */
  }
  return NULL;
}

int gw_health_start(gw_conf *(*get_conf)(void)) {
  health_conf = get_conf;
  if (pipe(health_pipe) != 0) return -1;
  if (pthread_create(&health_thread, NULL, health_main, NULL) != 0) return -1;
  health_running = true;
  return 0;
}

void gw_health_stop(void) {
  if (!health_running) return;
  ssize_t w = write(health_pipe[1], "x", 1);
  (void)w;
  pthread_join(health_thread, NULL);
  close(health_pipe[0]);
  close(health_pipe[1]);
  health_running = false;
}

void gw_instance_publish_metrics(void) {
  int n = gw_instance_count();
  int64_t now = gw_now_ms();
  for (int i = 0; i < n; i++) {
    gw_instance *r = registry[i];
    char labels[300];
    snprintf(labels, sizeof labels, "upstream=\"%s\"", r->name);
    metrics_gauge_set("gateway_upstream_up", labels, gw_instance_available(r, now) ? 1 : 0);
    metrics_gauge_set("gateway_upstream_health_check_ok", labels, atomic_load(&r->health_ok) ? 1 : 0);
  }
}

void gw_instance_free_all(void) {
  int n = gw_instance_count();
  for (int i = 0; i < n; i++) {
    free(registry[i]->name);
    free(registry[i]->health_path);
    free(registry[i]->host);
    free(registry[i]->port);
    pthread_mutex_destroy(&registry[i]->addr_lock);
    free(registry[i]);
    registry[i] = NULL;
  }
  atomic_store(&nregistry, 0);
}
