/* Unit tests for the amqp module's broker list (AMQP_URL): one URL or a comma-separated
 * list, parsed without a broker. The connection side (failover between the nodes) is in
 * live_amqp.c and tests/test_broker_cluster.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "voter/amqp.h"
#include "voter/log.h"

static void single_url_parses_as_before(void **state) {
  (void)state;
  mq_endpoints e;
  char err[256];
  assert_int_equal(mq_endpoints_parse("amqp://guest:secret@127.0.0.1:5672/%2F", &e, err, sizeof err),
                   0);
  assert_int_equal(e.n, 1);
  assert_string_equal(e.v[0].host, "127.0.0.1");
  assert_int_equal(e.v[0].port, 5672);
  assert_string_equal(e.v[0].user, "guest");
  assert_string_equal(e.v[0].password, "secret");
  assert_string_equal(e.v[0].vhost, "/");
  mq_endpoints_free(&e);

  /* no path: the default vhost; no port: 5672; no credentials: guest */
  assert_int_equal(mq_endpoints_parse("amqp://broker", &e, err, sizeof err), 0);
  assert_int_equal(e.n, 1);
  assert_string_equal(e.v[0].host, "broker");
  assert_int_equal(e.v[0].port, 5672);
  assert_string_equal(e.v[0].user, "guest");
  assert_string_equal(e.v[0].vhost, "/");
  mq_endpoints_free(&e);
}

/* The contract the Kubernetes manifests and scripts/stack write. */
static void comma_separated_list_keeps_order_and_each_address(void **state) {
  (void)state;
  mq_endpoints e;
  char err[256];
  const char *list = "amqp://u:p@h1:5672/voter,amqp://u:p@h2:5673/voter,"
                     "amqp://other:pw@h3.example:5674/%2F";
  assert_int_equal(mq_endpoints_parse(list, &e, err, sizeof err), 0);
  assert_int_equal(e.n, 3);
  assert_string_equal(e.v[0].host, "h1");
  assert_int_equal(e.v[0].port, 5672);
  assert_string_equal(e.v[1].host, "h2");
  assert_int_equal(e.v[1].port, 5673);
  assert_string_equal(e.v[1].vhost, "voter");
  assert_string_equal(e.v[2].host, "h3.example");
  assert_int_equal(e.v[2].port, 5674);
  assert_string_equal(e.v[2].user, "other");
  assert_string_equal(e.v[2].password, "pw");
  assert_string_equal(e.v[2].vhost, "/");
  mq_endpoints_free(&e);
  assert_null(e.v);
  assert_int_equal(e.n, 0);
}

/* The form k8s/overlays/prod/services.yaml writes: the operator's nodes by DNS name. */
static void kubernetes_node_names_parse(void **state) {
  (void)state;
  mq_endpoints e;
  char err[256];
  const char *list =
      "amqp://voter:s3cr3t@rabbitmq-server-0.rabbitmq-nodes.voter.svc:5672/%2F,"
      "amqp://voter:s3cr3t@rabbitmq-server-1.rabbitmq-nodes.voter.svc:5672/%2F,"
      "amqp://voter:s3cr3t@rabbitmq-server-2.rabbitmq-nodes.voter.svc:5672/%2F";
  assert_int_equal(mq_endpoints_parse(list, &e, err, sizeof err), 0);
  assert_int_equal(e.n, 3);
  for (size_t i = 0; i < 3; i++) {
    char host[64];
    snprintf(host, sizeof host, "rabbitmq-server-%zu.rabbitmq-nodes.voter.svc", i);
    assert_string_equal(e.v[i].host, host);
    assert_int_equal(e.v[i].port, 5672);
    assert_string_equal(e.v[i].user, "voter");
    assert_string_equal(e.v[i].password, "s3cr3t");
    assert_string_equal(e.v[i].vhost, "/");
  }
  mq_endpoints_free(&e);
}

static void blanks_around_entries_are_ignored(void **state) {
  (void)state;
  mq_endpoints e;
  char err[256];
  assert_int_equal(
      mq_endpoints_parse("  amqp://h1:1 ,\tamqp://h2:2\n", &e, err, sizeof err), 0);
  assert_int_equal(e.n, 2);
  assert_string_equal(e.v[0].host, "h1");
  assert_int_equal(e.v[0].port, 1);
  assert_string_equal(e.v[1].host, "h2");
  assert_int_equal(e.v[1].port, 2);
  mq_endpoints_free(&e);
}

/* A comma inside a password is percent-encoded, so it does not split the list. */
static void percent_encoded_comma_stays_in_the_password(void **state) {
  (void)state;
  mq_endpoints e;
  char err[256];
  assert_int_equal(mq_endpoints_parse("amqp://u:a%2Cb@h1:5672,amqp://u:a%2Cb@h2:5672", &e, err,
                                      sizeof err),
                   0);
  assert_int_equal(e.n, 2);
  assert_string_equal(e.v[0].password, "a,b");
  assert_string_equal(e.v[1].password, "a,b");
  mq_endpoints_free(&e);
}

static void refuse(const char *urls, const char *expect_in_error) {
  mq_endpoints e = {.n = 99};
  char err[256];
  assert_int_equal(mq_endpoints_parse(urls, &e, err, sizeof err), -1);
  assert_int_equal(e.n, 0);
  assert_null(e.v);
  if (!strstr(err, expect_in_error)) fail_msg("error for '%s' was '%s'", urls, err);
}

static void bad_entries_are_refused_with_their_position(void **state) {
  (void)state;
  refuse("", "empty");
  refuse("amqp://h1,", "entry 2 of 2 is empty");
  refuse(",amqp://h1", "entry 1 of 2 is empty");
  refuse("amqp://h1,,amqp://h2", "entry 2 of 3 is empty");
  refuse("amqp://h1, ,amqp://h2", "entry 2 of 3 is empty");
  refuse("http://h1", "not a valid URL");
  refuse("amqp://h1,http://h2", "entry 2 of 2 not a valid URL");
  refuse("amqps://h1:5671", "amqps");
  refuse("amqp://h1:5672/", "empty vhost");
  refuse("amqp://h1,amqp://h2:5672/", "entry 2 of 2 names the empty vhost");
  refuse("amqp://h1:notaport", "not a valid URL");
  refuse(NULL, "missing");
}

/* The message names the entry, never its text: URLs carry passwords into logs. */
static void errors_never_echo_a_password(void **state) {
  (void)state;
  mq_endpoints e;
  char err[256];
  assert_int_equal(mq_endpoints_parse("amqp://u:topsecret@h1:5672,amqp://u:topsecret@h2:5672/",
                                      &e, err, sizeof err),
                   -1);
  assert_null(strstr(err, "topsecret"));
}

static void too_many_entries_are_refused(void **state) {
  (void)state;
  char list[2048] = "";
  for (int i = 0; i <= MQ_MAX_ENDPOINTS; i++) {
    char one[32];
    snprintf(one, sizeof one, "%samqp://h%d", i ? "," : "", i);
    strcat(list, one);
  }
  refuse(list, "at most");
  /* exactly the maximum is fine */
  *strrchr(list, ',') = '\0';
  mq_endpoints e;
  char err[256];
  assert_int_equal(mq_endpoints_parse(list, &e, err, sizeof err), 0);
  assert_int_equal(e.n, MQ_MAX_ENDPOINTS);
  mq_endpoints_free(&e);
}

/* mq_conn_new takes the same lists (and refuses the same mistakes) without connecting. */
static void connection_accepts_a_list_and_starts_disconnected(void **state) {
  (void)state;
  mq_conn *c = mq_conn_new("amqp://127.0.0.1:1,amqp://127.0.0.1:2", "x.events", "unit");
  assert_non_null(c);
  assert_false(mq_is_connected(c));
  assert_null(mq_current_endpoint(c));
  mq_conn_free(c);
  assert_null(mq_conn_new("amqp://127.0.0.1:1,", "x.events", "unit"));
  assert_null(mq_conn_new("amqp://127.0.0.1:1/", "x.events", "unit"));
}

int main(void) {
  log_init("test_amqp_urls", "fatal");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(single_url_parses_as_before),
      cmocka_unit_test(comma_separated_list_keeps_order_and_each_address),
      cmocka_unit_test(kubernetes_node_names_parse),
      cmocka_unit_test(blanks_around_entries_are_ignored),
      cmocka_unit_test(percent_encoded_comma_stays_in_the_password),
      cmocka_unit_test(bad_entries_are_refused_with_their_position),
      cmocka_unit_test(errors_never_echo_a_password),
      cmocka_unit_test(too_many_entries_are_refused),
      cmocka_unit_test(connection_accepts_a_list_and_starts_disconnected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
