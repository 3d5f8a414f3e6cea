/* jsonpos.h — finds where a value sits in JSON text, for error messages.
 *
 * jansson reports positions only for syntax errors; a rules file that parses but says
 * `"tiebreak": "coin"` must still be reported with its line and column. This module
 * re-scans the (already valid) text along a path of member names and array indexes. */
#ifndef TAB_JSONPOS_H
#define TAB_JSONPOS_H

#include <stddef.h>

typedef struct jsonpos_seg {
    const char *key; /* member name, or NULL for an array element */
    size_t index;    /* array index when key is NULL */
} jsonpos_seg;

/* Line and column (1-based, column in characters) of the value at path, or of the
 * deepest enclosing value that exists (so a missing member points at its object).
 * The text must be valid JSON. */
void jsonpos_find(const char *text, size_t len, const jsonpos_seg *path, size_t depth,
                  long *line, long *column);

/* Byte offsets [start, *end) of the scalar value at path (a number's exact text, for
 * reading it without going through a double). Same conditions as jsonpos_find. */
size_t jsonpos_value(const char *text, size_t len, const jsonpos_seg *path, size_t depth,
                     size_t *end);

/* Writes the path as "candidates[2].name" into buf (capacity cap). */
void jsonpos_format(const jsonpos_seg *path, size_t depth, char *buf, size_t cap);

#endif
