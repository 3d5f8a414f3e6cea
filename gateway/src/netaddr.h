/* netaddr — client addresses: CIDR lists and X-Forwarded-For (prefix gw_net_).
 *
 * The gateway keys rate limits by client address, so the address must not be whatever a
 * client writes into X-Forwarded-For: the header is honoured only when the connection comes
 * from a configured trusted proxy, and then read right to left, skipping further trusted
 * hops, so a client cannot prepend a fake address. */
#ifndef GW_NETADDR_H
#define GW_NETADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

#define GW_IP_MAX 46 /* INET6_ADDRSTRLEN */

struct sockaddr;

/* The address of sa as text (IPv4 dotted, IPv6 as inet_ntop writes it), "" for another
 * family. out gets GW_IP_MAX. IPv4 is formatted here: inet_ntop goes through sprintf, which
 * cost more per request than the rest of the client-address handling. */
void gw_ip_text(const struct sockaddr *sa, char *out);

/* Parses "10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8". 0 on success. */
int gw_cidr_parse(const char *text, gw_cidr *out);

/* true when the textual address ip lies inside one of the n ranges. */
bool gw_cidr_match(const gw_cidr *list, int n, const char *ip);

/* The client address for rate limiting and logs: peer unless peer is trusted, in which
 * case the right-most X-Forwarded-For entry that is not itself trusted (or the left-most
 * entry when all are trusted; an unparsable entry stops the walk). out gets GW_IP_MAX. */
void gw_client_ip(const gw_cidr *trusted, int ntrusted, const char *peer, const char *xff,
                  char *out);

#endif
