/* replica_event — what a replica accepts as an event; see replica_event.h. */
#include "voter/replica_event.h"

#include <string.h>

#include "voter/json.h"

#define SUBJECT_MAX 128

/* The source whose prefix the type starts with (followed by '.'), and the action after it. */
static const replica_source *find_source(const replica_source *sources, int nsources,
                                         const char *type, const char **action) {
  for (int i = 0; type && i < nsources; i++) {
    size_t n = strlen(sources[i].prefix);
    if (strncmp(type, sources[i].prefix, n) == 0 && type[n] == '.') {
      *action = type + n + 1;
      return &sources[i];
    }
  }
  return NULL;
}

static bool known_action(const char *action) {
  return strcmp(action, "created") == 0 || strcmp(action, "updated") == 0 ||
         strcmp(action, "deleted") == 0;
}

static bool has_required(const replica_source *src, const json_t *data) {
  for (const char *const *f = src->required; f && *f; f++)
    if (!json_is_string(json_object_get(data, *f))) return false;
  return true;
}

static bool safe_keys(const json_t *data) {
  json_t *errors = json_array();
  bool safe = jsonv_check_keys(data, "", errors) == 0;
  json_decref(errors);
  return safe;
}

/* The checks in order; the first that fails names the reason. */
static const char *validate(replica_event *ev, const char *action, const json_t *version,
                            const json_t *data) {
  if (!ev->source) return "unknown event type";
  if (!ev->id || !*ev->id || strlen(ev->id) > SUBJECT_MAX) return "missing subject";
  if (!json_is_integer(version) || json_integer_value(version) < 1)
    return "missing or invalid version";
  if (!known_action(action)) return "unknown event action";
  ev->deleted = strcmp(action, "deleted") == 0;
  if (!ev->deleted && !json_is_object(data)) return "missing data";
  if (data && !safe_keys(data)) return "unsafe keys in data";
  if (!ev->deleted && !has_required(ev->source, data)) return "data lacks required fields";
  ev->version = json_integer_value(version);
  ev->data = data;
  return NULL;
}

bool replica_event_parse(const replica_source *sources, int nsources, const char *body,
                         size_t len, replica_event *ev, const char **error) {
  memset(ev, 0, sizeof *ev);
  json_error_t jerr;
  ev->doc = json_loadb(body, len, 0, &jerr);
  if (!json_is_object(ev->doc)) {
    *error = "not a JSON object";
    return false;
  }
  const char *action = "";
  ev->source = find_source(sources, nsources, jsonv_str(ev->doc, "type"), &action);
  ev->id = jsonv_str(ev->doc, "subject");
  *error = validate(ev, action, json_object_get(ev->doc, "version"),
                    json_object_get(ev->doc, "data"));
  return *error == NULL;
}

void replica_event_free(replica_event *ev) {
  json_decref(ev->doc);
  ev->doc = NULL;
}

bool replica_event_skips_field(const char *key) {
  return strcmp(key, "id") == 0 || strcmp(key, "version") == 0 || strcmp(key, "deleted") == 0;
}
