/* Unit tests for replica_event: which events a replica applies and why it refuses the
 * others (type, subject, version, action, data, unsafe keys, required fields), and that
 * the events ev_build writes are accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "voter/events.h"
#include "voter/replica_event.h"

static const char *const candidate_required[] = {"fullName", "election", NULL};
static const char *const election_required[] = {"title", NULL};
static const replica_source sources[] = {
    {"candidate", "candidates", candidate_required},
    {"election", "elections", election_required},
};

/* Parses text; returns whether it applies and leaves the reason in *error. */
static bool parse(const char *text, replica_event *ev, const char **error) {
  *error = NULL;
  return replica_event_parse(sources, 2, text, strlen(text), ev, error);
}

/* Expects text to be refused with exactly reason. */
static void refused(const char *text, const char *reason) {
  replica_event ev;
  const char *error;
  assert_false(parse(text, &ev, &error));
  assert_non_null(error);
  assert_string_equal(error, reason);
  replica_event_free(&ev);
}

static void an_update_is_parsed_with_its_source_and_data(void **state) {
  (void)state;
  replica_event ev;
  const char *error;
  assert_true(parse("{\"type\":\"election.updated\",\"subject\":\"e1\",\"version\":3,"
                    "\"data\":{\"id\":\"e1\",\"title\":\"T\",\"version\":3}}",
                    &ev, &error));
  assert_null(error);
  assert_ptr_equal(ev.source, &sources[1]);
  assert_string_equal(ev.id, "e1");
  assert_int_equal(ev.version, 3);
  assert_false(ev.deleted);
  assert_string_equal(json_string_value(json_object_get(ev.data, "title")), "T");
  replica_event_free(&ev);
}

static void a_delete_needs_no_data_nor_required_fields(void **state) {
  (void)state;
  replica_event ev;
  const char *error;
  assert_true(parse("{\"type\":\"candidate.deleted\",\"subject\":\"c1\",\"version\":5}", &ev,
                    &error));
  assert_true(ev.deleted);
  assert_null(ev.data);
  assert_ptr_equal(ev.source, &sources[0]);
  replica_event_free(&ev);
  assert_true(parse("{\"type\":\"candidate.deleted\",\"subject\":\"c1\",\"version\":5,"
                    "\"data\":{\"id\":\"c1\",\"version\":5}}",
                    &ev, &error));
  assert_true(ev.deleted);
  replica_event_free(&ev);
}

static void unknown_members_are_ignored(void **state) {
  (void)state;
  replica_event ev;
  const char *error;
  assert_true(parse("{\"specversion\":\"1.0\",\"type\":\"election.created\",\"subject\":\"e\","
                    "\"version\":1,\"traceparent\":\"00-x\",\"someExtension\":[1,2],"
                    "\"data\":{\"title\":\"T\",\"colour\":\"blue\",\"nested\":{\"a\":1}}}",
                    &ev, &error));
  assert_string_equal(json_string_value(json_object_get(ev.data, "colour")), "blue");
  replica_event_free(&ev);
}

static void not_json_or_not_an_object_is_refused(void **state) {
  (void)state;
  refused("", "not a JSON object");
  refused("{\"type\":", "not a JSON object");
  refused("[1,2]", "not a JSON object");
  refused("\"election.created\"", "not a JSON object");
  refused("null", "not a JSON object");
}

static void the_type_must_name_a_known_source_and_action(void **state) {
  (void)state;
  refused("{\"subject\":\"e\",\"version\":1,\"data\":{\"title\":\"T\"}}", "unknown event type");
  refused("{\"type\":7,\"subject\":\"e\",\"version\":1,\"data\":{}}", "unknown event type");
  refused("{\"type\":\"vote.created\",\"subject\":\"e\",\"version\":1,\"data\":{}}",
          "unknown event type");
  /* a prefix must be followed by '.': "elections.created" is not the election source */
  refused("{\"type\":\"elections.created\",\"subject\":\"e\",\"version\":1,\"data\":{}}",
          "unknown event type");
  refused("{\"type\":\"election\",\"subject\":\"e\",\"version\":1,\"data\":{}}",
          "unknown event type");
  refused("{\"type\":\"election.renamed\",\"subject\":\"e\",\"version\":1,\"data\":{\"title\":\"T\"}}",
          "unknown event action");
  refused("{\"type\":\"election.\",\"subject\":\"e\",\"version\":1,\"data\":{\"title\":\"T\"}}",
          "unknown event action");
}

static void the_type_names_the_source_even_when_refused(void **state) {
  (void)state;
  replica_event ev;
  const char *error;
  assert_false(parse("{\"type\":\"candidate.created\",\"subject\":\"\",\"version\":1}", &ev,
                     &error));
  assert_ptr_equal(ev.source, &sources[0]); /* for the per-collection metric */
  replica_event_free(&ev);
}

static void the_subject_is_1_to_128_characters(void **state) {
  (void)state;
  char text[400], id[130];
  memset(id, 'a', 128);
  id[128] = '\0';
  snprintf(text, sizeof text, "{\"type\":\"election.deleted\",\"subject\":\"%s\",\"version\":2}", id);
  replica_event ev;
  const char *error;
  assert_true(parse(text, &ev, &error));
  replica_event_free(&ev);
  id[128] = 'a', id[129] = '\0';
  snprintf(text, sizeof text, "{\"type\":\"election.deleted\",\"subject\":\"%s\",\"version\":2}", id);
  refused(text, "missing subject");
  refused("{\"type\":\"election.deleted\",\"subject\":\"\",\"version\":2}", "missing subject");
  refused("{\"type\":\"election.deleted\",\"version\":2}", "missing subject");
  refused("{\"type\":\"election.deleted\",\"subject\":12,\"version\":2}", "missing subject");
}

static void the_version_is_an_integer_from_1(void **state) {
  (void)state;
  refused("{\"type\":\"election.deleted\",\"subject\":\"e\"}", "missing or invalid version");
  refused("{\"type\":\"election.deleted\",\"subject\":\"e\",\"version\":0}",
          "missing or invalid version");
  refused("{\"type\":\"election.deleted\",\"subject\":\"e\",\"version\":-3}",
          "missing or invalid version");
  refused("{\"type\":\"election.deleted\",\"subject\":\"e\",\"version\":1.5}",
          "missing or invalid version");
  refused("{\"type\":\"election.deleted\",\"subject\":\"e\",\"version\":\"2\"}",
          "missing or invalid version");
  replica_event ev;
  const char *error;
  assert_true(parse("{\"type\":\"election.deleted\",\"subject\":\"e\",\"version\":9007199254740993}",
                    &ev, &error));
  assert_int_equal(ev.version, 9007199254740993LL); /* beyond a double's precision: exact */
  replica_event_free(&ev);
}

static void created_and_updated_need_object_data_with_required_strings(void **state) {
  (void)state;
  refused("{\"type\":\"election.created\",\"subject\":\"e\",\"version\":1}", "missing data");
  refused("{\"type\":\"election.updated\",\"subject\":\"e\",\"version\":2,\"data\":[1]}",
          "missing data");
  refused("{\"type\":\"election.updated\",\"subject\":\"e\",\"version\":2,\"data\":null}",
          "missing data");
  refused("{\"type\":\"election.created\",\"subject\":\"e\",\"version\":1,\"data\":{}}",
          "data lacks required fields");
  refused("{\"type\":\"election.created\",\"subject\":\"e\",\"version\":1,\"data\":{\"title\":null}}",
          "data lacks required fields");
  refused("{\"type\":\"candidate.created\",\"subject\":\"c\",\"version\":1,"
          "\"data\":{\"fullName\":\"A B\",\"election\":3}}",
          "data lacks required fields");
  refused("{\"type\":\"candidate.created\",\"subject\":\"c\",\"version\":1,"
          "\"data\":{\"fullName\":\"A B\"}}",
          "data lacks required fields");
}

static void dollar_and_dotted_keys_are_refused_at_any_depth(void **state) {
  (void)state;
  refused("{\"type\":\"election.created\",\"subject\":\"e\",\"version\":1,"
          "\"data\":{\"title\":\"T\",\"$set\":{\"x\":1}}}",
          "unsafe keys in data");
  refused("{\"type\":\"election.created\",\"subject\":\"e\",\"version\":1,"
          "\"data\":{\"title\":\"T\",\"a\":{\"b\":{\"$where\":\"1\"}}}}",
          "unsafe keys in data");
  refused("{\"type\":\"election.created\",\"subject\":\"e\",\"version\":1,"
          "\"data\":{\"title\":\"T\",\"a.b\":1}}",
          "unsafe keys in data");
  /* a delete's data is checked too: it may be stored one day */
  refused("{\"type\":\"election.deleted\",\"subject\":\"e\",\"version\":2,\"data\":{\"$x\":1}}",
          "unsafe keys in data");
  /* a '$' inside a value is only text */
  replica_event ev;
  const char *error;
  assert_true(parse("{\"type\":\"election.created\",\"subject\":\"e\",\"version\":1,"
                    "\"data\":{\"title\":\"$5 budget. Really.\"}}",
                    &ev, &error));
  replica_event_free(&ev);
}

static void bookkeeping_members_of_data_are_not_stored(void **state) {
  (void)state;
  assert_true(replica_event_skips_field("id"));
  assert_true(replica_event_skips_field("version"));
  assert_true(replica_event_skips_field("deleted"));
  assert_false(replica_event_skips_field("title"));
  assert_false(replica_event_skips_field("appliedAt"));
  assert_false(replica_event_skips_field("Id"));
}

/* What the owners publish (ev_build) is what replicas accept. */
static void events_built_by_the_outbox_are_accepted(void **state) {
  (void)state;
  json_t *data = json_pack("{s:s, s:s, s:s, s:I}", "id", "65a1b2c3d4e5f60718293a4b", "fullName",
                           "Jill Stein", "election", "2016 Presidential", "version", (json_int_t)2);
  ev_event built;
  ev_build(&built, "candidate.updated", "/candidate", "65a1b2c3d4e5f60718293a4b", 2, data);
  replica_event ev;
  const char *error;
  assert_true(parse(built.body, &ev, &error));
  assert_ptr_equal(ev.source, &sources[0]);
  assert_string_equal(ev.id, "65a1b2c3d4e5f60718293a4b");
  assert_int_equal(ev.version, 2);
  assert_true(json_equal((json_t *)ev.data, data));
  replica_event_free(&ev);
  ev_free(&built);
  json_decref(data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_update_is_parsed_with_its_source_and_data),
      cmocka_unit_test(a_delete_needs_no_data_nor_required_fields),
      cmocka_unit_test(unknown_members_are_ignored),
      cmocka_unit_test(not_json_or_not_an_object_is_refused),
      cmocka_unit_test(the_type_must_name_a_known_source_and_action),
      cmocka_unit_test(the_type_names_the_source_even_when_refused),
      cmocka_unit_test(the_subject_is_1_to_128_characters),
      cmocka_unit_test(the_version_is_an_integer_from_1),
      cmocka_unit_test(created_and_updated_need_object_data_with_required_strings),
      cmocka_unit_test(dollar_and_dotted_keys_are_refused_at_any_depth),
      cmocka_unit_test(bookkeeping_members_of_data_are_not_stored),
      cmocka_unit_test(events_built_by_the_outbox_are_accepted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
