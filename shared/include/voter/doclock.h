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

/* Read/write variant: another 64 stripes, of pthread rwlocks, separate from the mutexes
 * above (a key may be held in both without one waiting on the other). Many threads may
 * hold a key shared at once; one that holds it exclusive holds it alone. Writers are
 * preferred (PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP): once a thread waits to take
 * a stripe exclusive, new shared takers of that stripe wait behind it, so a steady stream
 * of shared holders cannot starve it. The price of that preference: a thread must never
 * take a stripe it already holds (shared twice deadlocks behind a waiting writer), and
 * never turns shared into exclusive in place - it releases, then takes exclusive, and
 * whatever it read under the shared hold may have changed in between.
 * The set functions take each stripe once, in stripe order, like doclock_lock_set. */
void doclock_shared_set(const char *const *keys, unsigned n);
void doclock_exclusive_set(const char *const *keys, unsigned n);
void doclock_release_set(const char *const *keys, unsigned n);
static inline void doclock_shared(const char *key) { doclock_shared_set(&key, 1); }
static inline void doclock_exclusive(const char *key) { doclock_exclusive_set(&key, 1); }
static inline void doclock_release(const char *key) { doclock_release_set(&key, 1); }

#endif
