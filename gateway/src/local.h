/* local — bodies of the responses the gateway writes itself (prefix gw_local_):
 * problem+json errors and the landing page. */
#ifndef GW_LOCAL_H
#define GW_LOCAL_H

#include <stddef.h>

#include "conf.h"

/* RFC 9457 problem document; caller frees. */
char *gw_problem(int status, const char *title, const char *detail, const char *instance,
                 const char *request_id, size_t *len);

/* The short HTML page served at / (links to the docs and the routes); caller frees. */
char *gw_landing_page(const gw_conf *c, size_t *len);

#endif
