/* fileio.c — atomic file replacement (see fileio.h). */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fileio_write_atomic(const char *path, const char *data, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    int fd, saved;
    size_t off = 0;

    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto err;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto err_close;
        off += (size_t)n;
    }
    if (close(fd) < 0) {
        fd = -1;
        goto err_unlink;
    }
    if (rename(tmp, path) < 0)
        goto err_unlink;
    free(tmp);
    return 0;

err_close:
    saved = errno;
    close(fd);
    errno = saved;
err_unlink:
    saved = errno;
    unlink(tmp);
    errno = saved;
err:
    saved = errno;
    free(tmp);
    errno = saved;
    return -1;
}
