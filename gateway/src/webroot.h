/* webroot — the web client's files (the repo's web/ folder), served by the gateway itself
 * (prefix gw_web_).
 *
 * The files are read once at start-up into memory (a few hundred KB at most; a folder
 * holding more than WEB_MAX_BYTES is refused) and never change while the gateway runs:
 * restart it to publish new files. Served: GET/HEAD "/" (index.html) and "/web/<path>"
 * for files with a known type (html, js, css, json, csv, svg, png, ico, txt); nothing
 * else, no directory listings, no dotfiles. Every answer carries a strong ETag (SHA-256
 * of the content) with Cache-Control: no-cache, so browsers revalidate and get 304, and a
 * strict Content-Security-Policy: scripts, styles, images and fetches from this origin
 * only, no inline script or style, no frames. */
#ifndef GW_WEBROOT_H
#define GW_WEBROOT_H

#include <stdbool.h>
#include <stddef.h>

/* Loads dir (NULL or missing: nothing is served and "/" keeps the landing page). 0 on
 * success or when there is nothing to load; -1 when dir exists but cannot be read whole. */
int gw_web_load(const char *dir);
void gw_web_free(void);

typedef struct gw_web_reply {
  int status;              /* 200 or 304 */
  const char *content_type;
  char *body;              /* malloc'd copy for the caller (NULL for 304) */
  size_t len;
  const char *const *headers; /* NULL-terminated name, value pairs; static */
} gw_web_reply;

/* Cheap first check, before any header is looked at: "/" or "/web/..." while files are
 * loaded. */
bool gw_web_wants(const char *path, size_t n);

/* true when path (n bytes, no query) is one of the files; fills out. if_none_match may be
 * NULL. */
bool gw_web_lookup(const char *path, size_t n, const char *if_none_match, gw_web_reply *out);

#endif
