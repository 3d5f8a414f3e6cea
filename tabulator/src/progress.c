/* progress.c — rate-limited atomic progress file (see progress.h). */
#include "progress.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fileio.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void progress_init(progress *p, const char *path)
{
    p->path = path;
    p->last_ms = -1;
    p->warned = false;
}

void progress_report(progress *p, const char *phase, uint64_t done, uint64_t total,
                     bool force)
{
    char buf[160];
    int n;
    int64_t t;

    if (!p->path)
        return;
    t = now_ms();
    if (!force && p->last_ms >= 0 && t - p->last_ms < PROGRESS_INTERVAL_MS)
        return;
    p->last_ms = t;
    n = snprintf(buf, sizeof(buf),
                 "{\"phase\":\"%s\",\"done\":%" PRIu64 ",\"total\":%" PRIu64 "}\n", phase,
                 done, total);
    if (fileio_write_atomic(p->path, buf, (size_t)n) < 0 && !p->warned) {
        fprintf(stderr, "tabulate: warning: cannot write progress file %s: %s\n", p->path,
                strerror(errno));
        p->warned = true;
    }
}
