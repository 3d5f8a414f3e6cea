/* error.c — filling and formatting tab_error records. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tab_error_clear(tab_error *e)
{
    memset(e, 0, sizeof(*e));
}

int tab_error_set(tab_error *e, int code, const char *file, long line, long column,
                  const char *fmt, ...)
{
    va_list ap;

    e->code = code;
    snprintf(e->file, sizeof(e->file), "%s", file ? file : "");
    e->line = line;
    e->column = column;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2, cp = s[0] & 0x1Fu;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, cp = s[0] & 0x0Fu;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

void tab_error_quote(char *dst, size_t cap, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t used = strlen(dst), i = 0;
    const size_t limit = 120; /* bytes of s shown at most */

    if (cap == 0 || used + 1 >= cap)
        return;
#define PUT(c)                                                                            \
    do {                                                                                  \
        if (used + 1 < cap)                                                               \
            dst[used++] = (char)(c);                                                      \
    } while (0)
    PUT('"');
    while (i < len && i < limit && used + 8 < cap) {
        size_t n = utf8_seq_len(u + i, len - i);
        if (n == 1 && u[i] >= 0x20 && u[i] != 0x7F && u[i] != '"' && u[i] != '\\') {
            PUT(u[i]);
            i++;
        } else if (n > 1) {
            for (size_t k = 0; k < n; k++)
                PUT(u[i + k]);
            i += n;
        } else {
            used += (size_t)snprintf(dst + used, cap - used, "\\x%02X", u[i]);
            i++;
        }
    }
    if (i < len) {
        PUT('.');
        PUT('.');
        PUT('.');
    }
    PUT('"');
#undef PUT
    dst[used < cap ? used : cap - 1] = '\0';
}
