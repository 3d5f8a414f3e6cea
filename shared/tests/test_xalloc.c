/* Unit tests for xalloc: allocations succeed, overflow and exhaustion end in abort. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "voter/xalloc.h"

static void copies_and_formats(void **state) {
  (void)state;
  char *a = xstrdup("ballot");
  assert_string_equal(a, "ballot");
  char *b = xstrndup("ballots", 3);
  assert_string_equal(b, "bal");
  char *c = xasprintf("%s-%d", "round", 7);
  assert_string_equal(c, "round-7");
  int *z = xcalloc(4, sizeof *z);
  for (int i = 0; i < 4; i++) assert_int_equal(z[i], 0);
  z = xrealloc(z, 1000 * sizeof *z);
  z[999] = 1;
  free(a), free(b), free(c), free(z);
}

/* Runs f in a child and reports whether it ended abnormally (the policy aborts; under
 * AddressSanitizer an impossible malloc is reported and ends the process first). */
static int dies_aborting(void (*f)(void)) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open("/dev/null", 1);
    if (fd >= 0) dup2(fd, 2);
    f();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ||
         (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

static void overflow(void) { (void)xcalloc(SIZE_MAX / 2, 4); }
static void exhaustion(void) { (void)xmalloc(SIZE_MAX - 16); }

static void failure_aborts(void **state) {
  (void)state;
  assert_true(dies_aborting(overflow));
  /* overflow is caught before the allocator: always SIGABRT */
  assert_true(dies_aborting(exhaustion));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(copies_and_formats),
      cmocka_unit_test(failure_aborts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
