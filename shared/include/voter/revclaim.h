/* revclaim — one writer per revision of a document, across processes (prefix rev_).
 *
 * FerretDB 1.24 applies an update as read, compute, replace-by-_id: the filter of a
 * "conditional" update is evaluated on a read, and the whole document is written back
 * afterwards. Two processes updating one document can therefore both match the same
 * version and the later write replaces the earlier (a lost update; tests/test_replicas.py
 * saw 22 of 60 concurrent PUTs of one election acknowledged with a version another had).
 * doclock.h only serialises the threads of one process.
 *
 * What FerretDB does guarantee is a unique _id on insert. So every write of a document
 * that more than one process may write is numbered: the document carries _rev (absent =
 * 0) and _revBy, and the writer that read revision r first INSERTS a claim {_id: "<id>:<r+1>",
 * update, createdAt} into the collection's companion "<collection>_revs", then applies
 * the update with _rev: r+1 added, filtered on _rev: r. Only the one process whose insert
 * succeeded writes revision r+1; any other writer that read r loses the insert and reads
 * again. A writer of r+2 must have read r+1, which exists only once r+1's write is done:
 * no two writes of one document overlap.
 *
 * A claim whose writer died before applying it would block the document forever, so the
 * claim carries its update: a writer that finds a claim older than REV_STALE_MS on a
 * document still at the claim's base applies the claim's update itself (roll forward; the
 * same update from the same base, so several helpers write the same document). The one
 * residual window: a writer that stalls for more than REV_STALE_MS between reading its
 * filter and writing (not a crash: a pause) could still write over a later revision;
 * the next write that reads the document rolls the later claims forward again.
 *
 * Each claim carries a nonce the write records in _revBy, so a writer whose update did not
 * match can tell "a helper applied my claim" from "nothing of mine was written". Claims are
 * pruned as revisions go by (the last 16 of each document are kept).
 *
 * Creation stays a plain insert (the document's own _id is the unique key). */
#ifndef VOTER_REVCLAIM_H
#define VOTER_REVCLAIM_H

#include <mongoc/mongoc.h>
#include <stdint.h>

/* A claim older than this whose document never reached it is rolled forward. */
#define REV_STALE_MS 10000

typedef enum {
  REV_APPLIED = 0, /* revision rev+1 is written (by this call, or rolled forward by a helper) */
  REV_BUSY,        /* another writer holds revision rev+1 (or wrote it): read again */
  REV_UNMATCHED,   /* the extra filter did not hold at revision rev: nothing written */
  REV_DUPLICATE,   /* the update violates a unique index: nothing written, claim withdrawn */
  REV_ERROR        /* database failure: error set */
} rev_result;

/* The revision of a stored document (0 when it has none). */
int64_t rev_of(const bson_t *doc);

/* The name of the claims collection of a collection: "<collection>_revs". */
void rev_collection_name(const char *collection, char *out, size_t len);

/* Writes update (any of $set, $push, $inc ...) as revision rev+1 of the document
 * {_id: id} of coll, rev being the revision the caller read; claims live in revs. extra
 * (NULL: none) is added to the filter, for writers that also guard on a field other
 * writers change (the outbox relay's _outboxSeq) or for conditional transitions (a job's
 * status): evaluated while this writer holds the revision, so no other claimed write can
 * change the document between the check and the write. When it does not match, nothing
 * is written, the claim is withdrawn and the result is REV_UNMATCHED. */
rev_result rev_update(mongoc_collection_t *coll, mongoc_collection_t *revs, const bson_value_t *id,
                      int64_t rev, const bson_t *extra, const bson_t *update, bson_error_t *error);

#endif
