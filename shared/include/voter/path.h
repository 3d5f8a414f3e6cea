/* path — the one normal form of a request path, shared by the services' router
 * (shared/src/http.c) and the gateway, so that the gateway authorises exactly the path a
 * service will act on (prefix path_).
 *
 * The services split a path on '/', ignore empty segments and percent-decode each segment
 * on its own. path_normalize() writes the form that has the same meaning and only one
 * spelling:
 *   - it starts with '/', segments are joined by one '/', no empty segment, no trailing '/'
 *     ("/" alone for the root);
 *   - %XX of an unreserved character (ALPHA DIGIT - _ ~) is decoded ("%65vents" → "events");
 *     every other %XX is kept, in upper case ("%c3%a9" → "%C3%A9");
 *   - refused: a byte outside RFC 3986 pchar / "/" (controls, space, '"', '<', '>', '\\',
 *     '^', '`', '{', '|', '}', '#', '?', non-ASCII), a malformed or NUL escape, an encoded
 *     dot (%2E, which would make "." and ".." spellable), a dot segment ("." or "..");
 *   - with PATH_REFUSE_ENCODED_SLASH, also %2F. The gateway sets it (an encoded slash is a
 *     classic way past a proxy's prefix rules); the services accept %2F inside a segment,
 *     where it is data (an election titled "a/b"), not a separator.
 * The output is never longer than the input. */
#ifndef VOTER_PATH_H
#define VOTER_PATH_H

#include <stddef.h>

enum { PATH_REFUSE_ENCODED_SLASH = 1 };

typedef enum {
  PATH_OK = 0,
  PATH_NOT_ABSOLUTE,   /* does not start with '/' */
  PATH_BAD_CHAR,       /* a byte that may not appear in a path */
  PATH_BAD_ESCAPE,     /* '%' not followed by two hex digits, or %00 */
  PATH_ENCODED_DOT,    /* %2E */
  PATH_ENCODED_SLASH,  /* %2F (only with PATH_REFUSE_ENCODED_SLASH) */
  PATH_DOT_SEGMENT,    /* a "." or ".." segment */
  PATH_TOO_LONG,       /* out is too small */
} path_status;

/* Normalises raw[0..len) into out (NUL-terminated; cap >= len + 2 always suffices) and sets
 * *outlen. out is unspecified when the status is not PATH_OK. */
path_status path_normalize(const char *raw, size_t len, unsigned flags, char *out, size_t cap,
                           size_t *outlen);

/* A short English reason for a status ("encoded slash", ...), for problem details. */
const char *path_status_text(path_status status);

#endif
