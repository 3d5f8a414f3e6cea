/* Tests for service_run's command line (no servers: --help and a bad argument return
 * before anything is opened) and for the one sort allow-list lookup (hal_sort_field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "voter/hal.h"
#include "voter/service.h"

static int opened;
static int open_hook(service *svc) {
  (void)svc;
  opened++;
  return 1;
}

static const char *const outbox[] = {"things", NULL};
static const service_spec spec = {.name = "thing", .about = "A test service.\n",
                                  .options = "  THING_OWN            its own option\n",
                                  .port = 8099, .threads = 3, .max_body = 4096,
                                  .outbox = outbox, .open = open_hook};

/* Runs service_run with argv and returns its status; its stdout lands in out. */
static int run(char *arg, char *out, size_t cap) {
  char *argv[] = {"voter-thing", arg, NULL};
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), STDOUT_FILENO);
  int rc = service_run(2, argv, &spec);
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  rewind(tmp);
  size_t n = fread(out, 1, cap - 1, tmp);
  out[n] = 0;
  fclose(tmp);
  return rc;
}

static void help_prints_the_common_and_the_own_options_with_the_defaults(void **state) {
  (void)state;
  char out[8192];
  assert_int_equal(run("--help", out, sizeof out), 0);
  assert_int_equal(opened, 0);
  assert_non_null(strstr(out, "usage: voter-thing [--help]"));
  assert_non_null(strstr(out, "A test service."));
  assert_non_null(strstr(out, "listen port (default 8099)"));
  assert_non_null(strstr(out, "worker threads (default 3)"));
  assert_non_null(strstr(out, "request body limit in bytes (default 4096)"));
  assert_non_null(strstr(out, "database name (default thing)"));
  assert_non_null(strstr(out, "CloudEvents source (default /thing)"));
  assert_non_null(strstr(out, "OUTBOX_RELAY_PAUSED"));
  assert_non_null(strstr(out, "AMQP_URL"));
  assert_non_null(strstr(out, "THING_OWN"));
}

static void an_unknown_argument_is_status_2_and_opens_nothing(void **state) {
  (void)state;
  char out[8192];
  assert_int_equal(run("--bogus", out, sizeof out), 2);
  assert_int_equal(opened, 0);
}

static void sort_fields_come_from_the_allow_list_and_id_is_the_document_id(void **state) {
  (void)state;
  static const char *const allowed[] = {"title", "date", NULL};
  assert_string_equal(hal_sort_field(allowed, "id"), "_id");
  assert_string_equal(hal_sort_field(allowed, "date"), "date");
  assert_null(hal_sort_field(allowed, "_id"));
  assert_null(hal_sort_field(allowed, "Title"));
  assert_null(hal_sort_field(allowed, "$where"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(help_prints_the_common_and_the_own_options_with_the_defaults),
      cmocka_unit_test(an_unknown_argument_is_status_2_and_opens_nothing),
      cmocka_unit_test(sort_fields_come_from_the_allow_list_and_id_is_the_document_id),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
