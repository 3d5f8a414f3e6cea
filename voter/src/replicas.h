/* replicas — reads of the voter service's read-only replicas (candidates and elections,
 * fed by events through the shared replica module). Tombstones are never returned. */
#ifndef VOTER_REPLICAS_H
#define VOTER_REPLICAS_H

#include <jansson.h>
#include <stdint.h>

#include "voter/hal.h"
#include "voter/mongo.h"

extern const char *const replicas_candidate_required[];
extern const char *const replicas_election_required[];

/* Sortable properties of the candidate and election replicas. */
const char *replicas_candidate_sort(const char *property);
const char *replicas_election_sort(const char *property);

/* A page of a replica collection ("candidates" or "elections"); when field and value are
 * given, only documents whose field contains value (substring, literal). false on a
 * database error. */
bool replicas_list(mongo_db *db, const char *collection, const char *field, const char *value,
                   const hal_page *page, json_t **items, int64_t *total);

/* {fullName, politicalParty, election} of every live candidate (of one election when
 * election is not NULL), sorted by lastName then firstName. */
bool replicas_candidate_summary(mongo_db *db, const char *election, json_t **candidates);

/* Empties the candidate replica, tombstones included. */
bool replicas_clear(mongo_db *db, const char *collection);

#endif
