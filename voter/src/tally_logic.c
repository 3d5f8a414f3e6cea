/* tally_logic — bucketing, count plans, results and winners; see tally_logic.h. */
#include "tally_logic.h"

#include <stdlib.h>
#include <string.h>

#include "voter/xalloc.h"

size_t tally_distinct_elections(const vote_in *v, size_t n, const char **out) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    size_t j = 0;
    while (j < k && strcmp(out[j], v[i].election) != 0) j++;
    if (j == k) out[k++] = v[i].election;
  }
  return k;
}

size_t tally_buckets(const vote_in *v, size_t n, tally_bucket *b) {
  size_t nb = 0;
  for (size_t i = 0; i < n; i++) {
    size_t k = 0;
    while (k < nb && (strcmp(b[k].election, v[i].election) != 0 ||
                      strcmp(b[k].candidate, v[i].candidate) != 0))
      k++;
    if (k == nb) b[nb++] = (tally_bucket){v[i].election, v[i].candidate, 0};
    b[k].n++;
  }
  return nb;
}

tally_chunk_plan tally_plan_chunk(bool fresh, bool counted, int64_t inserted) {
  if (fresh) return TALLY_CHUNK_COUNT;
  /* A marker can say "counted" for votes that never arrived (the reconciliation closes
   * markers a crash left "counting"); votes inserted now are then not in any tally. */
  return !counted || inserted > 0 ? TALLY_CHUNK_RECOUNT : TALLY_CHUNK_NOTHING;
}

bool tally_retry_recounts(bool tallied, bool deleted, int64_t created_ms, int64_t now_ms) {
  if (tallied || deleted) return false;
  return now_ms - created_ms >= TALLY_SETTLE_MS;
}

static int64_t votes_of(const json_t *row) {
  return json_integer_value(json_object_get(row, "votes"));
}

static const char *candidate_of(const json_t *row) {
  return json_string_value(json_object_get(row, "candidate"));
}

static int cmp_results(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  int64_t vx = votes_of(x), vy = votes_of(y);
  if (vx != vy) return vx > vy ? -1 : 1;
  return strcmp(candidate_of(x), candidate_of(y));
}

json_t *tally_results(json_t *rows) {
  size_t n = 0, i;
  json_t *row, **kept = xcalloc(json_array_size(rows) + 1, sizeof *kept);
  json_array_foreach(rows, i, row) if (candidate_of(row) && votes_of(row) > 0) kept[n++] = row;
  qsort(kept, n, sizeof *kept, cmp_results);
  json_t *results = json_array();
  for (i = 0; i < n; i++) json_array_append(results, kept[i]);
  free(kept);
  json_decref(rows);
  return results;
}

int64_t tally_total(const json_t *results) {
  int64_t total = 0;
  size_t i;
  json_t *row;
  json_array_foreach(results, i, row) total += votes_of(row);
  return total;
}

json_t *tally_winners(const json_t *results, int64_t *max) {
  json_t *w = json_array();
  *max = 0;
  size_t i;
  json_t *row;
  json_array_foreach(results, i, row) if (votes_of(row) > *max) *max = votes_of(row);
  json_array_foreach(results, i, row) if (*max > 0 && votes_of(row) == *max)
      json_array_append(w, row);
  return w;
}
