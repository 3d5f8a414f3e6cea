/* xalloc — the one out-of-memory policy; see xalloc.h. */
#include "voter/xalloc.h"

#include <bson/bson.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn void xalloc_oom(size_t n, const char *where) {
  /* No stdio buffering and no allocation here: write(2) a fixed-size line. */
  char line[256];
  int len = snprintf(line, sizeof line, "out of memory: %zu bytes at %s\n", n,
                     where ? where : "?");
  if (len > 0) {
    ssize_t w = write(STDERR_FILENO, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    (void)w;
  }
  abort();
}

void *xalloc_malloc(size_t n, const char *where) {
  void *p = malloc(n ? n : 1);
  if (!p) xalloc_oom(n, where);
  return p;
}

void *xalloc_calloc(size_t count, size_t size, const char *where) {
  if (size && count > SIZE_MAX / size) xalloc_oom(SIZE_MAX, where);
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) xalloc_oom(count * size, where);
  return p;
}

void *xalloc_realloc(void *p, size_t n, const char *where) {
  void *q = realloc(p, n ? n : 1);
  if (!q) xalloc_oom(n, where);
  return q;
}

char *xalloc_strdup(const char *s, const char *where) {
  size_t n = strlen(s) + 1;
  char *p = xalloc_malloc(n, where);
  memcpy(p, s, n);
  return p;
}

char *xalloc_strndup(const char *s, size_t n, const char *where) {
  size_t len = strnlen(s, n);
  char *p = xalloc_malloc(len + 1, where);
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

char *xalloc_asprintf(const char *where, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (len < 0) {
    va_end(ap2);
    xalloc_oom(0, where);
  }
  char *p = xalloc_malloc((size_t)len + 1, where);
  vsnprintf(p, (size_t)len + 1, fmt, ap2);
  va_end(ap2);
  return p;
}

static void *lib_malloc(size_t n) { return xalloc_malloc(n, "library"); }
static void *lib_calloc(size_t c, size_t s) { return xalloc_calloc(c, s, "library"); }
static void *lib_realloc(void *p, size_t n) { return xalloc_realloc(p, n, "library"); }
static void lib_free(void *p) { free(p); }
/* libbson allocates bson_t (128-byte aligned) through this one: without it a vtable falls
 * back to plain malloc, and a heap bson_t is misaligned. C11 aligned_alloc wants the size
 * a multiple of the alignment. */
static void *lib_aligned_alloc(size_t alignment, size_t n) {
  size_t size = (n + alignment - 1) / alignment * alignment;
  void *p = aligned_alloc(alignment, size ? size : alignment);
  if (!p) xalloc_oom(n, "library");
  return p;
}

void xalloc_install(void) {
  json_set_alloc_funcs(lib_malloc, lib_free);
  static bson_mem_vtable_t vt = {
      .malloc = lib_malloc, .calloc = lib_calloc, .realloc = lib_realloc, .free = lib_free,
      .aligned_alloc = lib_aligned_alloc};
  bson_mem_set_vtable(&vt);
}
