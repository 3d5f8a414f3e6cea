/* proxy — the gateway's data path: loop threads, client side and upstream side
 * (prefix gw_proxy_).
 *
 * Each loop thread owns everything it touches on the hot path: a libmicrohttpd daemon in
 * external-epoll mode on its own SO_REUSEPORT listening socket (the kernel spreads
 * connections across loops), one epoll loop that watches that daemon and the loop's
 * upstream sockets, keep-alive upstream connection pools, round-robin counters, an
 * access-log buffer and metrics. Nothing is shared between loops except the immutable
 * configuration, instance health atomics and the sharded rate-limit table.
 *
 * A request is an "exchange". Client bytes arrive through libmicrohttpd's access handler;
 * upstream bytes through non-blocking sockets. Both directions stream through a bounded
 * buffer: when it is full the producing side is paused (libmicrohttpd connection suspended,
 * or EPOLLIN dropped on the upstream socket) and resumed when the consumer has drained it,
 * so neither a large upload nor a large download is ever held whole in memory. */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include "conf.h"

/* Binds the listening sockets and starts the loops with configuration c (a reference is
 * taken). 0 on success. */
int gw_proxy_start(gw_conf *c);

/* The port actually bound (useful with port 0). */
int gw_proxy_port(void);

/* Installs a new configuration (reference taken); requests already running keep the one
 * they started with. */
void gw_proxy_set_conf(gw_conf *c);

/* The current configuration, referenced: release with gw_conf_unref. */
gw_conf *gw_proxy_conf(void);

/* Stops accepting, lets running requests finish (at most drain_timeout_s), then stops the
 * loops. Responses given while draining carry Connection: close. */
void gw_proxy_stop(void);

#endif
