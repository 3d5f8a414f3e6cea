/* fileio.h — replacing a file atomically.
 *
 * Readers of the results and progress files (the job service, polling) must never see a
 * half-written file: content goes to PATH.tmp beside it, then rename() swaps it in. */
#ifndef TAB_FILEIO_H
#define TAB_FILEIO_H

#include <stddef.h>

/* Returns 0, or -1 with errno set (the temporary file is removed). */
int fileio_write_atomic(const char *path, const char *data, size_t len);

#endif
