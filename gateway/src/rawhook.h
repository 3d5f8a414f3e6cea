/* rawhook — the recv() interposer that shows rawcheck the bytes libmicrohttpd reads
 * (prefix gw_rawhook). See rawcheck.h for why, rawhook.c for how. */
#ifndef GW_RAWHOOK_H
#define GW_RAWHOOK_H

#include <microhttpd.h>

/* Sizes the registry from RLIMIT_NOFILE (call once, before any daemon starts). */
void gw_rawhook_install(void);

/* MHD_OPTION_NOTIFY_CONNECTION: STARTED attaches a fresh gw_rawcheck to the connection's
 * socket (its socket context), CLOSED detaches and frees it. */
void gw_rawhook_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);

#endif
