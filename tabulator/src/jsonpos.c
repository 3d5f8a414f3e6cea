/* jsonpos.c — locate a value in valid JSON text by path (see jsonpos.h). */
#include "jsonpos.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct scan {
    const char *s;
    size_t len, pos;
} scan;

static void skip_ws(scan *sc)
{
    while (sc->pos < sc->len && (sc->s[sc->pos] == ' ' || sc->s[sc->pos] == '\t' ||
                                 sc->s[sc->pos] == '\n' || sc->s[sc->pos] == '\r'))
        sc->pos++;
}

/* At an opening quote: moves past the closing quote. */
static void skip_string(scan *sc)
{
    sc->pos++;
    while (sc->pos < sc->len && sc->s[sc->pos] != '"') {
        if (sc->s[sc->pos] == '\\')
            sc->pos++;
        sc->pos++;
    }
    if (sc->pos < sc->len)
        sc->pos++;
}

static void skip_value(scan *sc)
{
    size_t depth = 0;

    do {
        skip_ws(sc);
        if (sc->pos >= sc->len)
            return;
        switch (sc->s[sc->pos]) {
        case '"':
            skip_string(sc);
            break;
        case '{':
        case '[':
            depth++;
            sc->pos++;
            break;
        case '}':
        case ']':
            if (depth > 0)
                depth--;
            sc->pos++;
            break;
        case ',':
        case ':':
            sc->pos++;
            break;
        default: /* number or literal */
            while (sc->pos < sc->len && !strchr(",]} \t\r\n", sc->s[sc->pos]))
                sc->pos++;
        }
    } while (depth > 0 && sc->pos < sc->len);
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
    }
    return v;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At an opening quote: decodes the string, compares it with key, moves past it. */
static bool string_equals(scan *sc, const char *key)
{
    size_t start = sc->pos + 1, end, klen = strlen(key), o = 0;
    char *buf;
    bool eq;

    skip_string(sc);
    end = sc->pos > start ? sc->pos - 1 : start;
    if (!memchr(sc->s + start, '\\', end - start))
        return end - start == klen && memcmp(sc->s + start, key, klen) == 0;
    buf = malloc(end - start + 1);
    if (!buf)
        return false;
    for (size_t i = start; i < end; i++) {
        char c = sc->s[i];
        if (c != '\\' || i + 1 >= end) {
            buf[o++] = c;
            continue;
        }
        c = sc->s[++i];
        switch (c) {
        case 'b': buf[o++] = '\b'; break;
        case 'f': buf[o++] = '\f'; break;
        case 'n': buf[o++] = '\n'; break;
        case 'r': buf[o++] = '\r'; break;
        case 't': buf[o++] = '\t'; break;
        case 'u':
            if (i + 4 < end) {
                unsigned cp = hex4(sc->s + i + 1);
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < end && sc->s[i + 1] == '\\' &&
                    sc->s[i + 2] == 'u') {
                    unsigned lo = hex4(sc->s + i + 3);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                o += put_utf8(buf + o, cp);
            }
            break;
        default: buf[o++] = c;
        }
    }
    eq = o == klen && memcmp(buf, key, klen) == 0;
    free(buf);
    return eq;
}

/* From the start of a value, moves to the start of the member / element named by seg.
 * Returns false (position unchanged) when it does not exist. */
static bool descend(scan *sc, const jsonpos_seg *seg)
{
    size_t origin = sc->pos, i = 0;

    if (sc->pos >= sc->len || sc->s[sc->pos] != (seg->key ? '{' : '['))
        return false;
    sc->pos++;
    for (;;) {
        skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] == '}' || sc->s[sc->pos] == ']')
            break;
        if (seg->key) {
            bool match;
            if (sc->s[sc->pos] != '"')
                break;
            match = string_equals(sc, seg->key);
            skip_ws(sc);
            if (sc->pos < sc->len && sc->s[sc->pos] == ':')
                sc->pos++;
            skip_ws(sc);
            if (match)
                return true;
        } else if (i++ == seg->index) {
            return true;
        }
        skip_value(sc);
        skip_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == ',')
            sc->pos++;
        else
            break;
    }
    sc->pos = origin;
    return false;
}

void jsonpos_find(const char *text, size_t len, const jsonpos_seg *path, size_t depth,
                  long *line, long *column)
{
    scan sc = {text, len, 0};
    size_t line_start = 0;

    skip_ws(&sc);
    for (size_t d = 0; d < depth; d++)
        if (!descend(&sc, &path[d]))
            break;
    *line = 1;
    for (size_t i = 0; i < sc.pos && i < len; i++)
        if (text[i] == '\n') {
            (*line)++;
            line_start = i + 1;
        }
    *column = 1;
    for (size_t i = line_start; i < sc.pos && i < len; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80)
            (*column)++;
}

size_t jsonpos_value(const char *text, size_t len, const jsonpos_seg *path, size_t depth,
                     size_t *end)
{
    scan sc = {text, len, 0};

    skip_ws(&sc);
    for (size_t d = 0; d < depth; d++)
        if (!descend(&sc, &path[d]))
            break;
    *end = sc.pos;
    if (sc.pos < len && sc.s[sc.pos] != '{' && sc.s[sc.pos] != '[') {
        scan tok = sc;
        skip_value(&tok);
        *end = tok.pos;
    }
    return sc.pos;
}

void jsonpos_format(const jsonpos_seg *path, size_t depth, char *buf, size_t cap)
{
    size_t used = 0;

    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t d = 0; d < depth && used < cap; d++) {
        int n;
        if (path[d].key)
            n = snprintf(buf + used, cap - used, "%s%s", d ? "." : "", path[d].key);
        else
            n = snprintf(buf + used, cap - used, "[%zu]", path[d].index);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}
