/* relay — the least work any proxy can do, as a reference for bench/gateway/run.
 *
 * A blind 1:1 TCP relay: every accepted client connection gets its own connection to the
 * upstream, made at accept time and kept, and bytes are copied both ways as they come
 * (one epoll loop, level-triggered, one recv and one send per piece). No HTTP parsing, no
 * added fields, no routing, no logging, no limits. A proxy that keeps one request at a time
 * on each upstream connection (as nginx, HAProxy and voter-gateway do) cannot do less
 * per request, so its throughput bounds theirs on the same machine; the benchmark reports
 * the others against it. Not product code: a measuring stick (CMake target gateway_relay).
 *
 *   relay LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct side {
  int fd; /* -1 once closed */
  struct side *peer;
  struct side *dead_next;
} side;

static side *dead; /* closed pairs, freed after the batch of events that may still name them */

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static void close_pair(side *s) {
  close(s->fd); /* closing removes them from the epoll set */
  close(s->peer->fd);
  s->fd = s->peer->fd = -1;
  s->dead_next = dead;
  dead = s;
}

/* all of it, waiting for room when the peer's buffer is full (rare with small messages) */
static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      poll(&pf, 1, 1000);
      continue;
    }
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: relay LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  struct sockaddr_in la = loopback(atoi(argv[1])), ua = loopback(atoi(argv[2]));
  int one = 1;
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&la, sizeof la) != 0 || listen(ls, 1024) != 0) {
    perror("relay: listen");
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[128];
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  static char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, evs, 128, -1);
    for (int i = 0; i < n; i++) {
      side *s = evs[i].data.ptr;
      if (!s) { /* a new client: pair it with a new upstream connection */
        int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) continue;
        int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (u < 0 || connect(u, (struct sockaddr *)&ua, sizeof ua) != 0) {
          perror("relay: connect");
          close(c);
          if (u >= 0) close(u);
          continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        side *cs = malloc(sizeof *cs), *us = malloc(sizeof *us);
        if (!cs || !us) abort();
        *cs = (side){c, us, NULL};
        *us = (side){u, cs, NULL};
        ev.data.ptr = cs;
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        ev.data.ptr = us;
        epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
        continue;
      }
      if (s->fd < 0) continue;
      ssize_t r = recv(s->fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0 || send_all(s->peer->fd, buf, (size_t)r) != 0) close_pair(s);
    }
    while (dead) {
      side *s = dead;
      dead = s->dead_next;
      free(s->peer);
      free(s);
    }
  }
}
