/* xalloc — the one out-of-memory policy. Prefix x.
 *
 * A service that cannot allocate a few hundred bytes cannot answer, log or roll back
 * sensibly, so the policy (as Redis's zmalloc) is: report on stderr with the size and the
 * call site, then abort() so the supervisor restarts the process with its state intact in
 * the database and the broker. Every allocation in product code goes through these (or
 * through a library whose allocator xalloc_install() routed here); none is left unchecked.
 * Freeing stays plain free(). */
#ifndef VOTER_XALLOC_H
#define VOTER_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xalloc_malloc(size_t n, const char *where);
void *xalloc_calloc(size_t count, size_t size, const char *where);
void *xalloc_realloc(void *p, size_t n, const char *where);
char *xalloc_strdup(const char *s, const char *where);
char *xalloc_strndup(const char *s, size_t n, const char *where);
char *xalloc_asprintf(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Never returns. Logs "out of memory: <n> bytes at <where>" and aborts. */
_Noreturn void xalloc_oom(size_t n, const char *where);

/* Routes jansson's and libbson's allocators through the policy (call once at start). */
void xalloc_install(void);

#define XALLOC_STR2(x) #x
#define XALLOC_STR(x) XALLOC_STR2(x)
#define XALLOC_WHERE __FILE__ ":" XALLOC_STR(__LINE__)

#define xmalloc(n) xalloc_malloc((n), XALLOC_WHERE)
#define xcalloc(c, s) xalloc_calloc((c), (s), XALLOC_WHERE)
#define xrealloc(p, n) xalloc_realloc((p), (n), XALLOC_WHERE)
#define xstrdup(s) xalloc_strdup((s), XALLOC_WHERE)
#define xstrndup(s, n) xalloc_strndup((s), (n), XALLOC_WHERE)
#define xasprintf(...) xalloc_asprintf(XALLOC_WHERE, __VA_ARGS__)

#endif
