/* replica_event — parsing and validating the events a replica applies (prefix
 * replica_event_), apart from the database write so the rules can be tested alone.
 *
 * An event is a CloudEvents JSON object "<prefix>.created|updated|deleted" with subject
 * (the entity's id, 1..128 characters), the extension version (an integer >= 1) and data
 * (an object; optional for deletes). Members other than these are ignored, so a producer
 * may add CloudEvents attributes. Data keys must be safe to store (no "$" prefix, no ".",
 * see jsonv_check_keys), and created/updated data must carry the source's required fields
 * as strings. Anything else is not an event this replica can apply: dead-letter. */
#ifndef VOTER_REPLICA_EVENT_H
#define VOTER_REPLICA_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "voter/replica.h"

typedef struct replica_event {
  json_t *doc;                  /* the parsed event (owned; replica_event_free) */
  const replica_source *source; /* the source its type names */
  const char *id;               /* subject */
  int64_t version;
  bool deleted;                 /* a "<prefix>.deleted" event */
  const json_t *data;           /* NULL for a delete without data */
} replica_event;

/* Parses body into ev. true when the event can be applied; false with a static reason in
 * *error (ev->source still set when the type named one, for the metrics). Either way
 * replica_event_free(ev) afterwards. */
bool replica_event_parse(const replica_source *sources, int nsources, const char *body,
                         size_t len, replica_event *ev, const char **error);
void replica_event_free(replica_event *ev);

/* Whether a data member is bookkeeping the replica keeps itself (id, version, deleted) and
 * not stored from the event. */
bool replica_event_skips_field(const char *key);

#endif
