/* candidate — the candidate entity: its fields, representation and validation, the check
 * that its election is known, and the queries only candidates have. Storage, versions,
 * tombstones and events come from the shared entity module (entity.h); this layer knows
 * nothing about HTTP.
 *
 * Stored: {firstName, lastName, fullName (derived), politicalParty, election, homeState,
 * politcalExperience (sic, the original's wire name), nameKey} + entity bookkeeping.
 * nameKey ("<election>\x1f<fullName>") is the unique key: a full name is unique within an
 * election, because votes name candidates by exactly (full name, election). */
#ifndef CANDIDATE_CANDIDATE_H
#define CANDIDATE_CANDIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "elections.h"
#include "voter/entity.h"

/* The entity; its check needs the election replica as the store's check context. */
extern const entity_kind candidate_kind;

/* Indexes beyond the entity's own (election and lastName lookups). */
bool candidate_indexes(mongo_db *db);

/* Maps an API sort property (firstName, lastName, fullName, politicalParty, election,
 * homeState, politcalExperience, version, id) to the document field; NULL otherwise. */
const char *candidate_sort_field(const char *property);

/* Validates a full representation (POST/PUT, and a merged PATCH): types, required and
 * unknown fields, one experience spelling, a fullName that agrees, the id. */
int candidate_validate(const json_t *body, const char *path_id, json_t *errors);

/* A merge patch that also accepts the politicalExperience alias. */
entity_status candidate_patch(entity_store *s, const char *id, const json_t *patch,
                              int64_t if_match, json_t **item, json_t *errors);

/* A page of live candidates; election_contains (literal substring) may be NULL. */
entity_status candidate_list(entity_store *s, const mongo_page *page,
                             const char *election_contains, json_t **items, int64_t *total);

/* [{fullName, politicalParty, election}] of every live candidate, or of those of exactly
 * one election, sorted by lastName (then firstName). */
entity_status candidate_summary(entity_store *s, const char *election, json_t **list);

#endif
