/* resource — the HTTP side of an entity (entity.h) that every service's routes share:
 * If-Match / If-None-Match, ETag, item replies with links and Location, body validation,
 * and one mapping from entity_status to problem+json (prefix resource_). */
#ifndef VOTER_RESOURCE_H
#define VOTER_RESOURCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "voter/entity.h"
#include "voter/http.h"

/* The wording of the problems of one kind of resource. */
typedef struct resource_messages {
  const char *not_found;    /* "no election with this id" */
  const char *duplicate;    /* "an election with this title already exists" */
  const char *precondition; /* "If-Match does not match the election's current version" */
} resource_messages;

/* Answers a non-success status: 404, 409, 412, 422 (with errors, borrowed) or 503. */
void resource_reply_status(http_response *res, entity_status st, json_t *errors,
                           const resource_messages *m);
void resource_reply_unavailable(http_response *res);

/* The version an If-Match asks for: -1 when absent or "*". "<v>", W/"<v>" and a bare number
 * are accepted; anything else can never match: 412 is answered and false returned. */
bool resource_if_match(const http_request *req, http_response *res, const resource_messages *m,
                       int64_t *version);

/* ETag of a representation: "<version>". */
void resource_etag(const json_t *item, char out[40]);

/* true (and 304 with the ETag answered) when If-None-Match names the item's version. */
bool resource_not_modified(const http_request *req, http_response *res, const json_t *item);

/* Parses the body and validates it as a full representation; NULL (response set) when bad. */
json_t *resource_valid_body(const http_request *req, http_response *res,
                            int (*validate)(const json_t *body, const char *path_id, json_t *errors),
                            const char *path_id);

/* Replies with one item (stolen): links under path, ETag, and Location when status is 201. */
void resource_reply_item(const http_request *req, http_response *res, int status, json_t *item,
                         const char *path, const char *singular);

#endif
