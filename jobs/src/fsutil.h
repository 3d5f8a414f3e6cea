/* fsutil — the few file operations the worker and the runners need (prefix fs_). */
#ifndef JOBS_FSUTIL_H
#define JOBS_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p with mode for the directories it creates; 0 or -1 (errno). */
int fs_mkdirs(const char *path, mode_t mode);
/* Writes len bytes to path (created/truncated, mode 0644); 0 or -1 (errno). */
int fs_write(const char *path, const void *data, size_t len);
/* Reads a whole file of at most max bytes: 0, -1 (errno), or -2 when larger than max.
 * *data is NUL-terminated; caller frees. */
int fs_read(const char *path, size_t max, char **data, size_t *len);
/* Reads the last max bytes of a file (NULL when it cannot be read). */
char *fs_tail(const char *path, size_t max);
/* rm -rf, without following symbolic links; 0 or -1. */
int fs_remove_tree(const char *path);

#endif
