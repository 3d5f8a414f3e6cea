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
 * *data is NUL-terminated; caller frees. For files the service itself owns (its
 * configuration, the service-account token); files in a job directory: fs_read_in. */
int fs_read(const char *path, size_t max, char **data, size_t *len);

/* What a job leaves in its directory (result.json, progress.json, output.log) is written
 * by the tabulator, a container that can also plant a symbolic link there (to a file of
 * the service), a FIFO (an open that never returns) or a huge file. These open the file
 * name (one component) inside dir with openat and O_NOFOLLOW (and the directory itself
 * with O_NOFOLLOW), without blocking, and read it only when it is a regular file.
 * fs_read_in: the whole file, at most max bytes: 0, -1 (errno: ELOOP for a link, EINVAL
 * for a name that is not one component, EPERM for anything but a regular file), or -2
 * when larger than max. fs_tail_in: the last max bytes, NULL when it cannot be read. */
int fs_read_in(const char *dir, const char *name, size_t max, char **data, size_t *len);
char *fs_tail_in(const char *dir, const char *name, size_t max);
/* rm -rf, without following symbolic links; 0 or -1. */
int fs_remove_tree(const char *path);

#endif
