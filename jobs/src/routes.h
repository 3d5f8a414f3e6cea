/* routes — the HTTP API of the job service under /jobs (prefix jobs_routes):
 *
 *   POST   /jobs/tabulations          submit (multipart or JSON) → 202 + Location
 *   GET    /jobs                      the caller's jobs (by X-API-Key), HAL, ?status=
 *   GET    /jobs/{id}                 202 pending/running, 303 succeeded, 200 failed or
 *                                     cancelled, 410 purged; ?wait=N, ?view=status
 *   DELETE /jobs/{id}                 cancel → 202; 409 when already finished
 *   GET    /jobs/{id}/result?expires=&sig=   the result (signed URL), 403/410
 *   GET    /jobs/{id}/logs            the program's output (tail)
 *
 * Handlers parse and render; decisions about jobs live in store.c, worker.c and submit.c. */
#ifndef JOBS_ROUTES_H
#define JOBS_ROUTES_H

#include "app.h"
#include "voter/http.h"

typedef struct routes_ctx routes_ctx;

/* http_threads: the server's thread count (long polls may hold all but two). */
routes_ctx *jobs_routes(http_server *srv, jobs_app *app, int http_threads);
void jobs_routes_free(routes_ctx *c);

#endif
