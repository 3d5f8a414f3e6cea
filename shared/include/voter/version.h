/* version — the decisions that version numbers make (prefix version_), kept apart from the
 * database calls that act on them so they can be tested alone.
 *
 * Every entity carries a version, 1 on creation and +1 on every change, a delete included:
 * a delete leaves a tombstone (deleted: true) at the next version, so a later re-creation
 * of the same id continues the sequence. Two places decide with it:
 *   - an owner's write (entity.h): may this change happen, given what is stored and the
 *     client's If-Match, and at which version will it be stored;
 *   - a replica's apply (replica.h): is an incoming state newer than the stored one, the
 *     same one again (a redelivery), or older (out of order, or after a tombstone). */
#ifndef VOTER_VERSION_H
#define VOTER_VERSION_H

#include <stdbool.h>
#include <stdint.h>

/* What is stored under an id. */
typedef struct version_state {
  bool exists;     /* a document, live or tombstone */
  bool deleted;    /* it is a tombstone */
  int64_t version; /* its version (meaningless when !exists) */
} version_state;

typedef enum {
  VERSION_APPLY = 0, /* newer than the stored state (or nothing stored): write it */
  VERSION_DUPLICATE, /* exactly the stored version again */
  VERSION_STALE      /* older than the stored version: never overwrite */
} version_order;

/* How an incoming state at version incoming relates to the stored version; stored < 0
 * means nothing is stored. Deletion does not change the answer: a tombstone at v refuses
 * every state up to v and accepts v+1 (a re-creation). */
version_order version_compare(int64_t stored, int64_t incoming);

typedef enum {
  VERSION_WRITE_OK = 0,
  VERSION_WRITE_NOT_FOUND,    /* nothing live to change (and creating is not allowed) */
  VERSION_WRITE_PRECONDITION  /* If-Match names another version */
} version_write;

/* Whether a full write (create, replace, patch) may proceed. if_match < 0 means none was
 * given; a given one must equal the live version (a tombstone matches nothing).
 * create_ok: the write may create the id when absent or deleted (PUT). On OK, *next is the
 * version to store and *creates tells whether it is a creation (event "created") rather
 * than a change ("updated"). */
version_write version_check_write(const version_state *cur, int64_t if_match, bool create_ok,
                                  int64_t *next, bool *creates);

/* Whether a delete may proceed: only a live document, and If-Match as for writes. On OK,
 * *next is the tombstone's version. */
version_write version_check_delete(const version_state *cur, int64_t if_match, int64_t *next);

#endif
