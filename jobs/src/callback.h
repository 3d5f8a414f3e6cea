/* callback — which webhook targets the service may call (prefix cb_); JOBS_CALLBACK_ALLOW.
 *
 * A callbackUrl makes the service send a POST wherever the client says, from inside the
 * deployment: to its own ports, the broker, the database, the Kubernetes API server, the
 * cloud metadata endpoint (169.254.169.254). The policy is a comma list of
 *
 *     public            any address that is not special-purpose (loopback, RFC 1918
 *                       private, link-local, CGNAT, multicast, documentation, reserved,
 *                       IPv6 ULA/link-local, and mapped/NAT64/6to4 forms of those)
 *     10.1.0.0/16       a CIDR block (IPv4 or IPv6); a bare address is a /32 or /128
 *     10.1.2.3:8080     an address with a port ([::1]:8080 for IPv6)
 *     hooks.example.org[:port], *.example.org[:port]
 *                       a DNS name (exact, or any subdomain), optionally one port; the
 *                       operator vouches for the name, so what it resolves to is not checked
 *     *                 anything (no check)
 *     none              no callbacks at all
 *
 * The default is "public". A URL is allowed when its host matches a name entry, or when
 * every address its host resolves to matches an address entry (so 127.1, 0x7f.1,
 * 2130706433, 0177.0.0.1, [::ffff:127.0.0.1] or a name pointing at 10.0.0.5 do not slip
 * through). The check runs at submission (422) and again at every delivery, and the
 * delivery connects to the very address that check saw: the pin is a CURLOPT_CONNECT_TO
 * entry "::ADDRESS:" matching any host spelling ("name." with its trailing dot included),
 * so libcurl resolves nothing itself and a name re-pointed between the check and the
 * connection (DNS rebinding) is not followed. Redirects are never followed (httpc). */
#ifndef JOBS_CALLBACK_H
#define JOBS_CALLBACK_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cb_policy cb_policy;

/* Parses a policy; NULL with a message in err when an entry is malformed. */
cb_policy *cb_policy_new(const char *spec, char *err, size_t errlen);
void cb_policy_free(cb_policy *p);

/* Checks url against the policy. 0 when allowed; then, when the connection must be pinned
 * (the host was judged by its address), pin holds a CURLOPT_CONNECT_TO entry "::ADDRESS:"
 * or "::[ADDRESS]:" (else "": a name or "*" entry vouches for the host). -1 when refused,
 * with the reason in why (client-facing). Resolves the host name (getaddrinfo): may block. */
int cb_check(const cb_policy *p, const char *url, char *pin, size_t pincap, char *why,
             size_t whycap);

/* true when addr (a numeric IPv4 or IPv6 address) is special-purpose, i.e. not "public". */
bool cb_address_special(const char *addr);

#endif
