/* Unit tests for batch_parse: NDJSON and JSON-array bodies (line numbers, blank lines,
 * CRLF, malformed, NUL and duplicate-key lines, the rejection cap), the shape of one vote
 * (unknown fields, "$"/"." keys, types, lengths) and work-queue chunks (malformed
 * messages refused, malformed votes skipped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch_parse.h"

typedef struct {
  json_t *votes, *rejections, *lines;
  char detail[300];
} parsed;

static parsed split(const char *body, bool ndjson) {
  parsed p = {.rejections = json_array(), .lines = json_array()};
  p.votes = batch_parse_body(body, strlen(body), ndjson, p.rejections, p.lines, p.detail,
                             sizeof p.detail);
  return p;
}

static void done(parsed *p) {
  json_decref(p->votes);
  json_decref(p->rejections);
  json_decref(p->lines);
}

static json_int_t line_at(const parsed *p, size_t i) {
  return json_integer_value(json_array_get(p->lines, i));
}

static void ndjson_lines_keep_their_numbers_past_blank_lines(void **state) {
  (void)state;
  parsed p = split("{\"candidate\":\"A\",\"election\":\"E\"}\r\n\n   \n"
                   "{\"candidate\":\"B\",\"election\":\"E\"} \t\r\n"
                   "{\"candidate\":\"C\",\"election\":\"E\"}", /* no final newline */
                   true);
  assert_non_null(p.votes);
  assert_int_equal(json_array_size(p.votes), 3);
  assert_int_equal(line_at(&p, 0), 1);
  assert_int_equal(line_at(&p, 1), 4);
  assert_int_equal(line_at(&p, 2), 5);
  assert_string_equal(json_string_value(json_object_get(json_array_get(p.votes, 2), "candidate")),
                      "C");
  assert_int_equal(json_array_size(p.rejections), 0);
  done(&p);
}

static void a_malformed_line_is_a_rejection_and_a_placeholder(void **state) {
  (void)state;
  parsed p = split("{\"candidate\":\"A\",\"election\":\"E\"}\n{\"candidate\":\n"
                   "{\"candidate\":\"A\",\"candidate\":\"B\",\"election\":\"E\"}\n",
                   true);
  assert_int_equal(json_array_size(p.votes), 3);
  assert_true(json_is_null(json_array_get(p.votes, 1)));
  assert_true(json_is_null(json_array_get(p.votes, 2))); /* duplicate keys: malformed */
  assert_int_equal(json_array_size(p.rejections), 2);
  json_t *r = json_array_get(p.rejections, 0);
  assert_int_equal(json_integer_value(json_object_get(r, "line")), 2);
  assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "malformed JSON at column"));
  assert_int_equal(json_integer_value(json_object_get(json_array_get(p.rejections, 1), "line")), 3);
  done(&p);
}

static void an_empty_ndjson_body_has_no_votes(void **state) {
  (void)state;
  parsed p = split("\n\r\n \n", true);
  assert_non_null(p.votes);
  assert_int_equal(json_array_size(p.votes), 0);
  done(&p);
}

static void rejections_are_listed_up_to_the_cap_and_all_counted(void **state) {
  (void)state;
  size_t n = BATCH_MAX_REJECTIONS + 5;
  char *body = malloc(n * 2 + 1);
  assert_non_null(body);
  for (size_t i = 0; i < n; i++) body[2 * i] = 'x', body[2 * i + 1] = '\n';
  body[2 * n] = '\0';
  parsed p = split(body, true);
  free(body);
  assert_int_equal(json_array_size(p.rejections), BATCH_MAX_REJECTIONS);
  assert_int_equal(json_array_size(p.votes), n); /* every one a placeholder, counted */
  assert_int_equal(line_at(&p, n - 1), (json_int_t)n);
  done(&p);
}

static void a_json_array_numbers_its_elements(void **state) {
  (void)state;
  parsed p = split("[{\"candidate\":\"A\",\"election\":\"E\"}, 7, null]", false);
  assert_int_equal(json_array_size(p.votes), 3);
  assert_int_equal(line_at(&p, 0), 1);
  assert_int_equal(line_at(&p, 2), 3);
  assert_int_equal(json_integer_value(json_array_get(p.votes, 1)), 7); /* judged per vote */
  done(&p);
}

static void a_json_body_must_be_one_well_formed_array(void **state) {
  (void)state;
  parsed p = split("{\"candidate\":\"A\",\"election\":\"E\"}", false);
  assert_null(p.votes);
  assert_string_equal(p.detail, "the body must be a JSON array of votes");
  done(&p);
  p = split("[{\"candidate\":\"A\",", false);
  assert_null(p.votes);
  assert_non_null(strstr(p.detail, "malformed JSON at line 1"));
  done(&p);
  p = split("[{\"election\":\"E\",\"election\":\"F\",\"candidate\":\"A\"}]", false);
  assert_null(p.votes); /* duplicate keys refuse the whole array */
  done(&p);
}

static const char *shape(const char *text, char *buf, size_t len) {
  json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
  assert_non_null(v);
  const char *problem = batch_parse_vote_shape(v, buf, len);
  static char copy[300];
  snprintf(copy, sizeof copy, "%s", problem ? problem : "");
  json_decref(v);
  return problem ? copy : NULL;
}

static void a_vote_is_exactly_candidate_and_election(void **state) {
  (void)state;
  char buf[200];
  assert_null(shape("{\"candidate\":\"A\",\"election\":\"E\"}", buf, sizeof buf));
  assert_string_equal(shape("{\"candidate\":\"A\",\"election\":\"E\",\"id\":\"x\"}", buf, sizeof buf),
                      "id is not a known field");
  assert_string_equal(shape("{\"candidate\":\"A\"}", buf, sizeof buf), "election is required");
  assert_string_equal(shape("{\"candidate\":\"A\",\"election\":null}", buf, sizeof buf),
                      "election is required");
  assert_string_equal(shape("{\"candidate\":1,\"election\":\"E\"}", buf, sizeof buf),
                      "candidate must be a string");
  assert_string_equal(shape("{\"candidate\":\"\",\"election\":\"E\"}", buf, sizeof buf),
                      "candidate must not be empty");
  assert_string_equal(shape("[1]", buf, sizeof buf), "must be a JSON object");
  assert_string_equal(shape("\"A\"", buf, sizeof buf), "must be a JSON object");
}

static void long_names_are_refused(void **state) {
  (void)state;
  char text[400], buf[200], name[258];
  memset(name, 'n', 257);
  name[257] = '\0';
  snprintf(text, sizeof text, "{\"candidate\":\"%s\",\"election\":\"E\"}", name);
  assert_string_equal(shape(text, buf, sizeof buf), "candidate must be at most 256 bytes");
  name[256] = '\0';
  snprintf(text, sizeof text, "{\"candidate\":\"%s\",\"election\":\"E\"}", name);
  assert_null(shape(text, buf, sizeof buf));
}

/* A NUL inside a string would cut it short in C and in BSON: such a line is malformed. */
static void a_nul_character_makes_a_line_malformed(void **state) {
  (void)state;
  parsed p = split("{\"candidate\":\"A\\u0000B\",\"election\":\"E\"}\n", true);
  assert_int_equal(json_array_size(p.votes), 1);
  assert_true(json_is_null(json_array_get(p.votes, 0)));
  assert_int_equal(json_array_size(p.rejections), 1);
  done(&p);
}

static void dollar_and_dotted_keys_are_named_first(void **state) {
  (void)state;
  char buf[200];
  assert_string_equal(shape("{\"candidate\":\"A\",\"election\":\"E\",\"$inc\":{\"votes\":1}}", buf,
                            sizeof buf),
                      "$inc field names must not start with '$' or contain '.'");
  assert_string_equal(shape("{\"candidate\":{\"$ne\":null},\"election\":\"E\"}", buf, sizeof buf),
                      "candidate.$ne field names must not start with '$' or contain '.'");
  assert_string_equal(shape("{\"a.b\":1,\"candidate\":\"A\",\"election\":\"E\"}", buf, sizeof buf),
                      "a.b field names must not start with '$' or contain '.'");
}

static void a_chunk_gives_back_its_well_formed_votes(void **state) {
  (void)state;
  const char *msg = "{\"batch\":\"65a1b2c3d4e5f60718293a4b\",\"seq\":3,\"votes\":["
                    "{\"id\":\"65a1b2c3d4e5f60718293a4c\",\"candidate\":\"A\",\"election\":\"E\"},"
                    "{\"id\":\"not-an-id\",\"candidate\":\"A\",\"election\":\"E\"},"
                    "{\"id\":\"65a1b2c3d4e5f60718293a4d\",\"candidate\":7,\"election\":\"E\"},"
                    "{\"id\":\"65a1b2c3d4e5f60718293a4e\",\"candidate\":\"B\",\"election\":\"F\","
                    "\"extra\":true}]}";
  batch_chunk c;
  assert_true(batch_parse_chunk(msg, strlen(msg), &c));
  assert_string_equal(c.batch, "65a1b2c3d4e5f60718293a4b");
  assert_int_equal(c.seq, 3);
  assert_string_equal(c.key, "65a1b2c3d4e5f60718293a4b:3");
  assert_int_equal(c.n, 2);
  assert_string_equal(c.votes[0].id, "65a1b2c3d4e5f60718293a4c");
  assert_string_equal(c.votes[1].candidate, "B");
  assert_string_equal(c.votes[1].election, "F");
  batch_parse_chunk_free(&c);
}

static void an_empty_chunk_is_still_a_chunk(void **state) {
  (void)state;
  const char *msg = "{\"batch\":\"b\",\"seq\":0,\"votes\":[]}";
  batch_chunk c;
  assert_true(batch_parse_chunk(msg, strlen(msg), &c));
  assert_int_equal(c.n, 0);
  batch_parse_chunk_free(&c);
}

static void messages_that_are_not_chunks_are_refused(void **state) {
  (void)state;
  const char *bad[] = {"", "not json", "[]", "{\"seq\":0,\"votes\":[]}",
                       "{\"batch\":\"b\",\"votes\":[]}", "{\"batch\":\"b\",\"seq\":\"0\",\"votes\":[]}",
                       "{\"batch\":\"b\",\"seq\":0}", "{\"batch\":\"b\",\"seq\":0,\"votes\":{}}",
                       "{\"batch\":5,\"seq\":0,\"votes\":[]}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    batch_chunk c;
    assert_false(batch_parse_chunk(bad[i], strlen(bad[i]), &c));
    batch_parse_chunk_free(&c);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ndjson_lines_keep_their_numbers_past_blank_lines),
      cmocka_unit_test(a_malformed_line_is_a_rejection_and_a_placeholder),
      cmocka_unit_test(an_empty_ndjson_body_has_no_votes),
      cmocka_unit_test(rejections_are_listed_up_to_the_cap_and_all_counted),
      cmocka_unit_test(a_json_array_numbers_its_elements),
      cmocka_unit_test(a_json_body_must_be_one_well_formed_array),
      cmocka_unit_test(a_vote_is_exactly_candidate_and_election),
      cmocka_unit_test(long_names_are_refused),
      cmocka_unit_test(a_nul_character_makes_a_line_malformed),
      cmocka_unit_test(dollar_and_dotted_keys_are_named_first),
      cmocka_unit_test(a_chunk_gives_back_its_well_formed_votes),
      cmocka_unit_test(an_empty_chunk_is_still_a_chunk),
      cmocka_unit_test(messages_that_are_not_chunks_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
