/* replicas — what the voter service replicates: the candidate and election replicas'
 * required event fields and sortable properties. Applying events is shared/replica.h,
 * reading the replicas shared/replica_read.h (tombstones are never returned). */
#ifndef VOTER_REPLICAS_H
#define VOTER_REPLICAS_H

extern const char *const replicas_candidate_required[];
extern const char *const replicas_election_required[];

/* Sortable properties of the candidate and election replicas. */
const char *replicas_candidate_sort(const char *property);
const char *replicas_election_sort(const char *property);

#endif
