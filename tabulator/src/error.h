/* error.h — the one error record every tabulator module fills in.
 *
 * A failing function returns -1 and describes the fault here; main() turns the record
 * into the exit code and the JSON error of the output file. Keeping position (file,
 * line, column, field) next to the message is what lets an election official find the
 * bad cell in a file of a million rows. */
#ifndef TAB_ERROR_H
#define TAB_ERROR_H

#include <stddef.h>

/* Exit codes of TABULATION.md. */
enum tab_exit {
    TAB_EXIT_OK = 0,
    TAB_EXIT_INTERNAL = 1,   /* out of memory, I/O failure on our own files */
    TAB_EXIT_INPUT = 2,      /* ballots, rules or control file invalid */
    TAB_EXIT_UNFINISHED = 3, /* the count could not finish (a tie that needs a human) */
};

typedef struct tab_error {
    int code;          /* enum tab_exit */
    char file[512];    /* file at fault, "" if none */
    long line;         /* 1-based; 0 when no position applies */
    long column;       /* 1-based; CSV: field number, JSON: character in the line */
    char field[256];   /* CSV header name or JSON member path, "" if none */
    char message[768];
} tab_error;

void tab_error_clear(tab_error *e);

/* Fills the record (never NULL-safe on e). Always returns -1 so callers can write
 * `return tab_error_set(...)`. */
int tab_error_set(tab_error *e, int code, const char *file, long line, long column,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Appends a printable, quoted copy of s[0..len) to dst (capacity cap, always
 * NUL-terminated): control characters and invalid UTF-8 become \xNN and long text is
 * cut with "...", so messages stay valid UTF-8 for the JSON error. */
void tab_error_quote(char *dst, size_t cap, const char *s, size_t len);

#endif
