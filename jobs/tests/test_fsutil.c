/* Unit tests of the job-directory reads (fsutil.h: fs_read_in, fs_tail_in): what the
 * tabulator may leave there instead of a file (a symbolic link to a file of the service, a
 * FIFO, a directory, a huge file) is refused, never followed or waited on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"

static char dir[64], secret[96];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/voter-fsutil-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  snprintf(secret, sizeof secret, "%s-secret", dir);
  return fs_write(secret, "the service's secret\n", 21);
}

static int teardown(void **state) {
  (void)state;
  unlink(secret);
  return fs_remove_tree(dir);
}

static char *path_in(const char *name) {
  static char p[160];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

static void a_regular_file_is_read(void **state) {
  (void)state;
  assert_int_equal(fs_write(path_in("result.json"), "{\"ok\":1}", 8), 0);
  char *data;
  size_t len;
  assert_int_equal(fs_read_in(dir, "result.json", 100, &data, &len), 0);
  assert_int_equal(len, 8);
  assert_string_equal(data, "{\"ok\":1}");
  free(data);
  char *tail = fs_tail_in(dir, "result.json", 100);
  assert_non_null(tail);
  assert_non_null(strstr(tail, "{\"ok\":1}"));
  free(tail);
}

static void a_file_over_the_cap_is_refused(void **state) {
  (void)state;
  assert_int_equal(fs_write(path_in("big.json"), "0123456789", 10), 0);
  char *data;
  size_t len;
  assert_int_equal(fs_read_in(dir, "big.json", 9, &data, &len), -2);
  assert_null(data);
  assert_int_equal(fs_read_in(dir, "big.json", 10, &data, &len), 0);
  free(data);
}

static void a_symbolic_link_is_not_followed(void **state) {
  (void)state;
  assert_int_equal(symlink(secret, path_in("output.log")), 0);
  assert_int_equal(symlink(secret, path_in("result.json.link")), 0);
  char *data;
  size_t len;
  errno = 0;
  assert_int_equal(fs_read_in(dir, "result.json.link", 1000, &data, &len), -1);
  assert_int_equal(errno, ELOOP);
  assert_null(data);
  assert_null(fs_tail_in(dir, "output.log", 1000));
  /* nor a link standing for the directory */
  char linkdir[160];
  snprintf(linkdir, sizeof linkdir, "%s-link", dir);
  assert_int_equal(symlink(dir, linkdir), 0);
  assert_int_equal(fs_write(path_in("progress.json"), "{}", 2), 0);
  assert_int_equal(fs_read_in(linkdir, "progress.json", 100, &data, &len), -1);
  unlink(linkdir);
}

static void fifos_directories_and_paths_are_refused(void **state) {
  (void)state;
  char *data;
  size_t len;
  unlink(path_in("progress.json"));
  assert_int_equal(mkfifo(path_in("progress.json"), 0600), 0);
  /* no writer: a blocking open would never return */
  assert_int_equal(fs_read_in(dir, "progress.json", 100, &data, &len), -1);
  assert_int_equal(errno, EPERM);
  assert_null(fs_tail_in(dir, "progress.json", 100));
  assert_int_equal(mkdir(path_in("sub"), 0700), 0);
  assert_int_equal(fs_read_in(dir, "sub", 100, &data, &len), -1);
  assert_int_equal(fs_write(path_in("sub/x"), "x", 1), 0);
  assert_int_equal(fs_read_in(dir, "sub/x", 100, &data, &len), -1);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(fs_read_in(dir, "..", 100, &data, &len), -1);
  assert_int_equal(fs_read_in(dir, "", 100, &data, &len), -1);
  assert_int_equal(fs_read_in(dir, "missing.json", 100, &data, &len), -1);
  assert_int_equal(errno, ENOENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_regular_file_is_read),
      cmocka_unit_test(a_file_over_the_cap_is_refused),
      cmocka_unit_test(a_symbolic_link_is_not_followed),
      cmocka_unit_test(fifos_directories_and_paths_are_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
