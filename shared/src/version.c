/* version — version comparison and write preconditions; see version.h. */
#include "voter/version.h"

version_order version_compare(int64_t stored, int64_t incoming) {
  if (incoming > stored) return VERSION_APPLY;
  return incoming == stored ? VERSION_DUPLICATE : VERSION_STALE;
}

static bool is_live(const version_state *cur) { return cur->exists && !cur->deleted; }

version_write version_check_write(const version_state *cur, int64_t if_match, bool create_ok,
                                  int64_t *next, bool *creates) {
  bool live = is_live(cur);
  if (!live && !create_ok) return VERSION_WRITE_NOT_FOUND;
  if (if_match >= 0 && (!live || cur->version != if_match)) return VERSION_WRITE_PRECONDITION;
  /* a tombstone's successor continues its sequence, so replicas holding it accept it */
  *next = cur->exists ? cur->version + 1 : 1;
  *creates = !live;
  return VERSION_WRITE_OK;
}

version_write version_check_delete(const version_state *cur, int64_t if_match, int64_t *next) {
  if (!is_live(cur)) return VERSION_WRITE_NOT_FOUND;
  if (if_match >= 0 && cur->version != if_match) return VERSION_WRITE_PRECONDITION;
  *next = cur->version + 1;
  return VERSION_WRITE_OK;
}
