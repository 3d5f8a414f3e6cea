/* election — the election entity: its fields, representation and validation, plus the
 * queries only elections have. Storage, versions, tombstones and events come from the
 * shared entity module (entity.h); this layer knows nothing about HTTP.
 *
 * Stored: {title, titleKey, date: Date, electionType, description} + entity bookkeeping.
 * titleKey is the unique key: the title for live elections, a per-id marker for
 * tombstones, so a deleted election's title is free again. */
#ifndef ELECTION_ELECTION_H
#define ELECTION_ELECTION_H

#include <jansson.h>
#include <stdint.h>

#include "voter/entity.h"

extern const entity_kind election_kind;

/* Maps an API sort property (title, date, electionType, description, version, id) to the
 * document field; NULL when not sortable. */
const char *election_sort_field(const char *property);

/* Validates a full representation (POST/PUT, and a merged PATCH). */
int election_validate(const json_t *body, const char *path_id, json_t *errors);

/* A page of live elections; type_contains (literal substring of electionType) may be NULL. */
entity_status election_list(entity_store *s, const mongo_page *page, const char *type_contains,
                            json_t **items, int64_t *total);

/* Titles of every live election, sorted. */
entity_status election_titles(entity_store *s, json_t **titles);

#endif
