/* jsonw.h — a small JSON text writer for documents whose numbers must be written exactly.
 *
 * jansson can only print numbers it holds as int64 or double; the multi-winner results
 * carry exact decimals of up to 50 digits (TABULATION-MULTI.md §2.4). This writer takes
 * numbers as text and lays the document out exactly as jansson's json_dumps with
 * JSON_INDENT(1) does (the single-winner results' format), so both kinds of results read
 * the same. Strings are escaped by jansson itself.
 *
 * Every value is written with the key it has in its object, or key NULL inside an array
 * (and for the top-level value). Errors (out of memory, nesting) stick: jsonw_finish then
 * returns NULL. */
#ifndef TAB_JSONW_H
#define TAB_JSONW_H

#include <stdbool.h>
#include <stddef.h>

#define JSONW_MAX_DEPTH 16

typedef struct jsonw {
    char *buf;
    size_t len, cap;
    int depth;
    bool empty[JSONW_MAX_DEPTH]; /* nothing written yet in the container at each depth */
    bool failed;
} jsonw;

void jsonw_init(jsonw *w);
void jsonw_begin(jsonw *w, const char *key, char open);  /* '{' or '[' */
void jsonw_end(jsonw *w, char close);                     /* '}' or ']' */
void jsonw_string(jsonw *w, const char *key, const char *value);
void jsonw_number(jsonw *w, const char *key, const char *text); /* written as is */
void jsonw_integer(jsonw *w, const char *key, long long value);

/* The text (caller frees), or NULL after a failure (the buffer is then freed). */
char *jsonw_finish(jsonw *w);

#endif
