/* multipart — a multipart/form-data parser over a body in memory (prefix mp_, RFC 7578).
 * Parts point into the body (no copies): a 10 MB ballots file is not duplicated. */
#ifndef JOBS_MULTIPART_H
#define JOBS_MULTIPART_H

#include <stddef.h>

#define MP_MAX_PARTS 8

typedef struct mp_part {
  char name[64];         /* form field name ("" when absent) */
  char filename[256];    /* "" when not a file */
  char content_type[128];
  const char *data;      /* into the body */
  size_t len;
} mp_part;

/* The boundary parameter of a multipart/form-data Content-Type; -1 when the type is not
 * multipart/form-data or has no usable boundary. */
int mp_boundary(const char *content_type, char *out, size_t cap);

/* Splits body into at most max parts. 0, or -1 with *error describing the fault. */
int mp_parse(const char *body, size_t len, const char *boundary, mp_part *parts, int max,
             int *n, const char **error);

#endif
