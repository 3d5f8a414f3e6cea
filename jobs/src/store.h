/* store — job records and their data in MongoDB (prefix store_).
 *
 * Collections of the service's database:
 *   jobs      one document per job: state, lease, progress, outcome, webhook state and the
 *             outbox of its job.* events (ev_outbox_*: an event is written in the same
 *             update as the status change it announces);
 *   job_data  inputs, results and logs as binary documents {_id: "<id>.<kind>", job, data}
 *             (GridFS is not available on FerretDB; everything is <= 16 MB);
 *   job_keys  Idempotency-Key records {_id: idem_scope_hash(owner, key), job, _idem: body hash}.
 *
 * Every state change is ONE conditional update, so two replicas (or a replica and a late
 * copy of itself) can never both win a transition:
 *   - client- and sweeper-driven transitions are conditioned on the version read before;
 *   - a worker's writes (lease renewal, final status) on {status: running, worker, attempts},
 *     so a worker that lost its lease - to a replica that took the job over, or to a cancel -
 *     can no longer touch the job;
 *   - taking over an expired lease is additionally conditioned on leaseUntil < now.
 * FerretDB evaluates an update's filter and writes in separate steps, so each of these
 * conditional updates is written as the job document's next revision (revclaim.h: a unique
 * insert of the claim first, so of two replicas only one applies a transition), and within
 * one process also holds doclock_lock(id) (doclock.h). docs/design.md, "Several replicas". */
#ifndef JOBS_STORE_H
#define JOBS_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/events.h"
#include "voter/mongo.h"

typedef enum {
  JS_OK = 0,
  JS_NOT_FOUND,   /* no such job (or id malformed) */
  JS_CONFLICT,    /* the condition did not hold: someone else changed the job */
  JS_MISMATCH,    /* Idempotency-Key reused with a different body */
  JS_UNAVAILABLE, /* database error */
} js_status;

typedef struct job_info {
  char id[25];
  char status[16];  /* pending running succeeded failed cancelled purged */
  char outcome[16]; /* purged: the final status it had */
  int64_t version;
  int64_t created_ms, started_ms, finished_ms, queued_ms, not_before_ms, lease_until_ms;
  int attempts;
  char worker[64];
  bool dispatched;
  int64_t progress_done, progress_total;
  char progress_phase[24];
  char reason[512];
  bool has_exit_code;
  int exit_code;
  char result_key[64];
  char callback_url[1024];
  char base_url[256];
  char owner[65];
  char contest[256];
  int64_t ballots;
  int64_t input_bytes;
  bool hook_pending;
  int hook_attempts;
  int64_t hook_next_ms, hook_delivered_ms;
  char hook_error[256];
} job_info;

typedef struct job_store job_store;

job_store *store_open(mongo_db *db, ev_relay *relay, const char *source);
void store_close(job_store *s);
/* Indexes; false while the database is unreachable. */
bool store_init(job_store *s);

/* ---- submission ---- */

typedef struct job_new {
  const char *rules;
  size_t rules_len;
  const char *ballots;
  size_t ballots_len;
  const char *callback_url; /* NULL: none */
  const char *base_url;     /* scheme://host the client used, for webhook links */
  const char *owner;        /* sha256 hex of the API key, NULL: anonymous */
  const char *idem_key;     /* Idempotency-Key header, NULL: none */
  const char *body_hash;    /* sha256 hex of the normalized inputs */
  const char *contest;
  int64_t ballots_count;
} job_new;

/* Stores the inputs and a pending job. With an idempotency key already used for the same
 * inputs, returns that job (existing = true); for other inputs JS_MISMATCH. */
js_status store_create(job_store *s, const job_new *in, job_info *out, bool *existing);
/* Records that a work message for the pending job was confirmed by the broker. */
void store_set_dispatched(job_store *s, const char *id, bool dispatched);

/* ---- reads ---- */

js_status store_get(job_store *s, const char *id, job_info *out);
/* Data document "<id>.<kind>" (rules, ballots, result.<n>, logs); caller frees *data. */
js_status store_get_data(job_store *s, const char *key, char **data, size_t *len);

typedef struct job_list_query {
  const char *owner;  /* NULL: jobs without an owner */
  const char *status; /* NULL: any */
  int64_t page, size;
  const char *sort_fields[4];
  int sort_dirs[4];
  int nsort;
} job_list_query;
js_status store_list(job_store *s, const job_list_query *q, job_info **items, size_t *n,
                     int64_t *total);

/* ---- transitions ---- */

/* pending → running, or running with an expired lease → running (a takeover), by worker.
 * Conditioned on the version in *job (as read) and, for a takeover, on the lease having
 * expired. On success *job holds the new state (attempts incremented). */
js_status store_claim(job_store *s, job_info *job, const char *worker, long lease_s);

/* The worker's heartbeat: extends the lease and records progress. JS_CONFLICT when the
 * job is no longer this worker's attempt (cancelled, taken over, purged). */
js_status store_renew(job_store *s, const char *id, const char *worker, int attempt,
                      long lease_s, const char *phase, int64_t done, int64_t total);

typedef struct job_outcome {
  const char *status;     /* succeeded | failed */
  const char *reason;     /* failed: why (NULL for succeeded) */
  bool has_exit_code;
  int exit_code;
  const char *result_key; /* succeeded: data key of the result */
  double run_seconds;
} job_outcome;
/* running → final, only for the worker's own attempt. */
js_status store_finish(job_store *s, const char *id, const char *worker, int attempt,
                       const job_outcome *o);

/* running → pending again (runner error or shutdown): dispatched = false and not before
 * not_before_ms; attempts reduced by uncount (1 when the attempt should not count). */
js_status store_requeue_own(job_store *s, const char *id, const char *worker, int attempt,
                            int64_t not_before_ms, int uncount, const char *why);

/* The sweeper's transitions of a job whose lease expired (conditioned on the version read
 * and on the lease still being expired): back to pending, or failed when the attempt
 * budget is spent. */
js_status store_requeue_expired(job_store *s, const job_info *job);
js_status store_fail_expired(job_store *s, const job_info *job, const char *reason);

/* pending|running → cancelled (client request), conditioned on the version read. */
js_status store_cancel(job_store *s, const job_info *job, const char *reason);
/* The exit code of a cancelled run, recorded by the worker that stopped it. */
void store_note_exit(job_store *s, const char *id, int attempt, int exit_code);

/* final → purged: deletes inputs, results, logs and the idempotency record. */
js_status store_purge(job_store *s, const job_info *job);

/* ---- data ---- */

/* Writes attempt's result as "<job>.result.<attempt>" (key receives it), after deleting
 * the results earlier attempts left unrecorded. */
js_status store_put_result(job_store *s, const char *job_id, int attempt, const char *data,
                           size_t len, char key[64]);
js_status store_put_data(job_store *s, const char *key, const char *job_id, const char *data,
                         size_t len);
void store_delete_data(job_store *s, const char *key);

/* ---- scans for the sweeper and the webhook sender (ids, at most max) ---- */

/* running with leaseUntil < now */
int store_scan_expired(job_store *s, int64_t now_ms, char (*ids)[25], int max);
/* pending, not dispatched and notBefore <= now; or dispatched before stale_ms */
int store_scan_undispatched(job_store *s, int64_t now_ms, int64_t stale_ms, char (*ids)[25],
                            int max);
/* final with finishedAt < before_ms */
int store_scan_retention(job_store *s, int64_t before_ms, char (*ids)[25], int max);
/* webhook pending with its next attempt due */
int store_scan_webhooks(job_store *s, int64_t now_ms, char (*ids)[25], int max);

/* Webhook bookkeeping, conditioned on the attempt count read (a concurrent sender that
 * already recorded this attempt wins). next_ms < 0: give up. */
js_status store_hook_claim(job_store *s, const char *id, int attempts_seen, int64_t retry_at_ms);
void store_hook_result(job_store *s, const char *id, bool delivered, int64_t next_ms,
                       const char *error);

#endif
