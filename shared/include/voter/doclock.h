/* doclock — per-key mutexes that serialise writers WITHIN ONE PROCESS (prefix doclock_).
 *
 * What it is: 64 striped pthread mutexes keyed by a string (a document id, or a
 * "tally\x1f<election>"-style name). Two threads of this process that lock the same key
 * never run their critical sections at once.
 *
 * What it is NOT: a lock between processes. Another replica of the service, or a restarted
 * copy of this one that overlaps with it, does not see these mutexes. FerretDB 1.24
 * evaluates an update's filter and writes the resulting document in separate steps (its
 * "conditional update" is read, compute, replace by _id), so two writers of one document in
 * two processes can both pass the same filter and the later write replaces the earlier.
 * Correctness across processes must therefore rest on what the database or the broker
 * guarantee - a unique _id on insert, deterministic ids, documents with one writer, a
 * queue with a single active consumer - never on this module (docs/design.md, "Several
 * replicas: what each write rests on"). Here it only keeps one process from racing
 * itself, which makes a single replica exact and narrows the windows the cross-process
 * designs close. */
#ifndef VOTER_DOCLOCK_H
#define VOTER_DOCLOCK_H

void doclock_lock(const char *key);
void doclock_unlock(const char *key);

/* Locks every key of a set without deadlocking: the stripes are
 * taken once each, in stripe order, whatever the order or repetition of the keys (two
 * keys may share a stripe, and another thread may lock the same set listed otherwise). */
void doclock_lock_set(const char *const *keys, unsigned n);
void doclock_unlock_set(const char *const *keys, unsigned n);

#endif
