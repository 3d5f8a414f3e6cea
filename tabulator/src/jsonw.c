/* jsonw.c — JSON text writer in jansson's JSON_INDENT(1) layout (see jsonw.h). */
#include "jsonw.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonw_init(jsonw *w)
{
    memset(w, 0, sizeof(*w));
}

static void put(jsonw *w, const char *s, size_t n)
{
    if (w->failed)
        return;
    if (w->len + n + 1 > w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 4096;
        char *nb;
        while (ncap < w->len + n + 1)
            ncap *= 2;
        nb = realloc(w->buf, ncap);
        if (!nb) {
            w->failed = true;
            return;
        }
        w->buf = nb;
        w->cap = ncap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(jsonw *w, const char *s)
{
    put(w, s, strlen(s));
}

static void indent(jsonw *w, int depth)
{
    put(w, "\n", 1);
    for (int i = 0; i < depth; i++)
        put(w, " ", 1);
}

static void quoted(jsonw *w, const char *s)
{
    json_t *str = json_string(s);
    char *text = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;

    if (!text)
        w->failed = true;
    else
        puts_(w, text);
    free(text);
    json_decref(str);
}

/* Separator, new line and indentation before a value, then its key if any. */
static void start_value(jsonw *w, const char *key)
{
    if (w->depth > 0) {
        if (!w->empty[w->depth])
            put(w, ",", 1);
        w->empty[w->depth] = false;
        indent(w, w->depth);
    }
    if (key) {
        quoted(w, key);
        put(w, ": ", 2);
    }
}

void jsonw_begin(jsonw *w, const char *key, char open)
{
    start_value(w, key);
    put(w, &open, 1);
    if (w->depth + 1 >= JSONW_MAX_DEPTH) {
        w->failed = true;
        return;
    }
    w->empty[++w->depth] = true;
}

void jsonw_end(jsonw *w, char close)
{
    if (w->depth <= 0) {
        w->failed = true;
        return;
    }
    if (!w->empty[w->depth])
        indent(w, w->depth - 1);
    w->depth--;
    put(w, &close, 1);
}

void jsonw_string(jsonw *w, const char *key, const char *value)
{
    start_value(w, key);
    quoted(w, value);
}

void jsonw_number(jsonw *w, const char *key, const char *text)
{
    start_value(w, key);
    puts_(w, text);
}

void jsonw_integer(jsonw *w, const char *key, long long value)
{
    char text[32];
    snprintf(text, sizeof(text), "%lld", value);
    jsonw_number(w, key, text);
}

char *jsonw_finish(jsonw *w)
{
    char *text = w->buf;
    if (w->failed || w->depth != 0 || !text) {
        free(w->buf);
        text = NULL;
    }
    memset(w, 0, sizeof(*w));
    return text;
}
