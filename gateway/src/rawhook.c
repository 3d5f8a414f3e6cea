/* rawhook — the recv() interposer behind rawcheck (see rawcheck.h).
 *
 * libmicrohttpd 0.9.75 reads every client byte with recv(fd, buf, n, 0), through the PLT of
 * libmicrohttpd.so. This file defines recv in the gateway executable, so the dynamic linker
 * binds libmicrohttpd's calls here (an executable's definitions come first in symbol lookup;
 * under AddressSanitizer this one replaces its interceptor, which is weak). The bytes come
 * from the kernel through syscall(SYS_recvfrom) exactly as glibc's recv gets them; when the
 * descriptor belongs to a client connection, they are fed to its gw_rawcheck before
 * libmicrohttpd sees them. Every other recv in the process (none today) passes through
 * unchanged.
 *
 * The registry maps a descriptor to its connection's checker. Each connection lives on one
 * loop thread (its daemon's), which attaches at STARTED, feeds in recv and detaches at
 * CLOSED, before libmicrohttpd closes the descriptor; the slot is atomic only because another
 * loop may accept a recycled descriptor number. Detach clears the slot only if it is still
 * its own (compare-and-swap).
 *
 * Fail closed: proxy.c refuses a request whose connection's checker has seen no byte (a
 * libmicrohttpd linked in another way, whose reads bypass this hook). */
#define _GNU_SOURCE
#include "rawhook.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rawcheck.h"
#include "voter/xalloc.h"

#define REGISTRY_MAX (1u << 20) /* descriptors beyond it are not checked (and so refused) */

static _Atomic(gw_rawcheck *) *registry;
static size_t registry_len;

void gw_rawhook_install(void) {
  if (registry) return;
  struct rlimit rl;
  size_t n = 65536;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) n = (size_t)rl.rlim_cur;
  if (n > REGISTRY_MAX) n = REGISTRY_MAX;
  registry = xcalloc(n, sizeof *registry); /* zero pages: only touched slots cost memory */
  registry_len = n;
}

static int conn_fd(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  return ci ? ci->connect_fd : -1;
}

void gw_rawhook_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code) {
  (void)cls;
  int fd = conn_fd(conn);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    gw_rawcheck *r = xmalloc(sizeof *r);
    gw_rawcheck_init(r);
    *socket_context = r;
    if (registry && fd >= 0 && (size_t)fd < registry_len)
      atomic_store_explicit(&registry[fd], r, memory_order_release);
    return;
  }
  gw_rawcheck *r = *socket_context;
  if (!r) return;
  if (registry && fd >= 0 && (size_t)fd < registry_len) {
    gw_rawcheck *expected = r;
    atomic_compare_exchange_strong(&registry[fd], &expected, NULL);
  }
  *socket_context = NULL;
  free(r);
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  ssize_t got = syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL);
  if (got > 0 && !(flags & MSG_PEEK) && registry && fd >= 0 && (size_t)fd < registry_len) {
    gw_rawcheck *r = atomic_load_explicit(&registry[fd], memory_order_acquire);
    if (r) gw_rawcheck_feed(r, buf, (size_t)got);
  }
  return got;
}
