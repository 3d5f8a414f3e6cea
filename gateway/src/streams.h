/* streams — the gateway's limit on long-lived event streams per client (prefix
 * gw_streams_).
 *
 * A GET asking for text/event-stream holds an upstream connection and a client
 * connection for as long as the viewer keeps the page open, which the request-rate limits
 * do not see. Each client address may hold at most GATEWAY_MAX_STREAMS_PER_CLIENT
 * (default 6) open at once; one more is answered 429 by the gateway, and the upstream is
 * never contacted. Shared by every loop (one mutex; taken once when a stream opens and
 * once when it ends, never per byte). Counted in the metrics:
 * gateway_streams_open (gauge) and gateway_streams_total{result="opened|refused"}. */
#ifndef GW_STREAMS_H
#define GW_STREAMS_H

#include <stdbool.h>

/* Reads GATEWAY_MAX_STREAMS_PER_CLIENT; call once before the loops start. */
void gw_streams_init(void);
/* true when a request with this Accept field asks for an event stream. */
bool gw_streams_is_stream(const char *accept);
/* Takes one of client_ip's stream slots; false (and counted as refused) when all are taken. */
bool gw_streams_acquire(const char *client_ip);
void gw_streams_release(const char *client_ip);
int gw_streams_limit(void);

#endif
