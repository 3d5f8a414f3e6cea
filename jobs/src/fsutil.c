/* fsutil — small file helpers; see fsutil.h. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner.h"
#include "voter/xalloc.h"

int fs_mkdirs(const char *path, mode_t mode) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if (mkdir(buf, mode) != 0 && errno != EEXIST) return -1;
      *p = c;
      if (!c) break;
    }
  }
  return 0;
}

int fs_write(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return close(fd);
}

/* Reads all of fd (at most max bytes; its size was st_size when opened). Closes fd. */
static int read_fd(int fd, size_t max, char **data, size_t *len);

int fs_read(const char *path, size_t max, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  return read_fd(fd, max, data, len);
}

/* A regular file name inside dir, neither followed if a link nor waited on if a FIFO;
 * the fd, or -1 (errno). */
static int open_in(const char *dir, const char *name) {
  if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
    errno = EINVAL;
    return -1;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return -1;
  int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  int e = errno;
  close(dfd);
  if (fd < 0) {
    errno = e;
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}

int fs_read_in(const char *dir, const char *name, size_t max, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open_in(dir, name);
  if (fd < 0) return -1;
  return read_fd(fd, max, data, len);
}

char *fs_tail_in(const char *dir, const char *name, size_t max) {
  int fd = open_in(dir, name);
  if (fd < 0) return NULL;
  struct stat st;
  char *out = NULL;
  if (fstat(fd, &st) == 0) {
    off_t from = st.st_size > (off_t)max ? st.st_size - (off_t)max : 0;
    size_t want = (size_t)(st.st_size - from);
    char *buf = xmalloc(want + 1);
    ssize_t n = buf ? pread(fd, buf, want, from) : -1;
    if (n >= 0) out = runner_tail(buf, (size_t)n, max);
    free(buf);
  }
  close(fd);
  return out;
}

static int read_fd(int fd, size_t max, char **data, size_t *len) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return -1;
  }
  if ((size_t)st.st_size > max) {
    close(fd);
    return -2;
  }
  /* one byte of room past the size, to see a file that grows while we read it */
  size_t cap = (size_t)st.st_size + 2, n = 0;
  char *buf = xmalloc(cap);
  while (buf) {
    if (n + 1 == cap) {
      if (n > max) { /* grew while we read */
        free(buf);
        close(fd);
        return -2;
      }
      buf = xrealloc(buf, cap * 2);
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r < 0) {
        free(buf);
        buf = NULL;
      }
      break;
    }
    n += (size_t)r;
  }
  close(fd);
  if (!buf) return -1;
  if (n > max) {
    free(buf);
    return -2;
  }
  buf[n] = 0;
  *data = buf;
  *len = n;
  return 0;
}

int fs_remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlink(path);
  DIR *d = opendir(path);
  if (!d) return -1;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char child[PATH_MAX];
    if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child) {
      rc = -1;
      continue;
    }
    if (fs_remove_tree(child) != 0) rc = -1;
  }
  closedir(d);
  if (rmdir(path) != 0) rc = -1;
  return rc;
}
