/* SPDX-License-Identifier: MIT */
/* json_writer: see json_writer.h. */
#include "json_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_writer_init(struct json_writer *w) { memset(w, 0, sizeof *w); }

static void put(struct json_writer *w, const char *s, size_t n)
{
    if (!w->failed && buffer_append(&w->text, s, n) != 0)
        w->failed = 1;
}

/* A value or key follows: a comma first unless it opens a container or follows a key. */
static void separate(struct json_writer *w)
{
    if (w->text.len == 0 || w->failed)
        return;
    char last = w->text.data[w->text.len - 1];
    if (last != '{' && last != '[' && last != ':')
        put(w, ",", 1);
}

void json_object_begin(struct json_writer *w)
{
    separate(w);
    put(w, "{", 1);
}

void json_object_end(struct json_writer *w) { put(w, "}", 1); }

void json_array_begin(struct json_writer *w)
{
    separate(w);
    put(w, "[", 1);
}

void json_array_end(struct json_writer *w) { put(w, "]", 1); }

/* The escaped form of byte c inside a JSON string into out (at least 7 bytes); its length. */
static size_t escape_byte(unsigned char c, char *out)
{
    static const char hex[] = "0123456789abcdef";
    switch (c) {
    case '"': return (size_t)snprintf(out, 7, "\\\"");
    case '\\': return (size_t)snprintf(out, 7, "\\\\");
    case '\n': return (size_t)snprintf(out, 7, "\\n");
    case '\r': return (size_t)snprintf(out, 7, "\\r");
    case '\t': return (size_t)snprintf(out, 7, "\\t");
    default:
        if (c >= 0x20) {
            out[0] = (char)c;
            return 1;
        }
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
}

static void put_quoted(struct json_writer *w, const char *s)
{
    put(w, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, run, (size_t)(s - run));
        char escaped[8];
        put(w, escaped, escape_byte(c, escaped));
        run = s + 1;
    }
    put(w, run, (size_t)(s - run));
    put(w, "\"", 1);
}

void json_key(struct json_writer *w, const char *key)
{
    separate(w);
    put_quoted(w, key);
    put(w, ":", 1);
}

void json_string(struct json_writer *w, const char *s)
{
    separate(w);
    if (s)
        put_quoted(w, s);
    else
        put(w, "null", 4);
}

void json_integer(struct json_writer *w, long long v)
{
    char text[32];
    separate(w);
    put(w, text, (size_t)snprintf(text, sizeof text, "%lld", v));
}

void json_null(struct json_writer *w)
{
    separate(w);
    put(w, "null", 4);
}

void json_boolean(struct json_writer *w, int v)
{
    separate(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void json_number_text(struct json_writer *w, const char *text)
{
    separate(w);
    put(w, text, strlen(text));
}

char *json_writer_finish(struct json_writer *w, size_t *len)
{
    if (w->failed || !w->text.data) {
        buffer_free(&w->text);
        return NULL;
    }
    if (len)
        *len = w->text.len;
    char *text = w->text.data;
    w->text = (struct buffer){0};
    return text;
}

/* Append the escaped s to out[*n..size) while the rest still fits (`reserve` bytes are kept for
 * what follows); never cuts an escape or a UTF-8 sequence in two. */
static void append_escaped(char *out, size_t size, size_t *n, const char *s, size_t reserve)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        size_t seq = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        char escaped[8];
        size_t len = c < 0x80 ? escape_byte(c, escaped) : seq;
        if (*n + len + reserve >= size)
            return;
        if (c < 0x80) {
            memcpy(out + *n, escaped, len);
        } else {
            size_t have = strnlen(s, seq);
            memcpy(out + *n, s, have);
            len = have;
            s += have - 1;
        }
        *n += len;
    }
}

void json_error_body(char *out, size_t size, const char *code, const char *message)
{
    static const char head[] = "{\"error\":\"", middle[] = "\",\"message\":\"", tail[] = "\"}";
    size_t n = 0;
    if (size < sizeof head + sizeof middle + sizeof tail) {
        if (size)
            out[0] = '\0';
        return;
    }
    memcpy(out, head, sizeof head - 1);
    n = sizeof head - 1;
    append_escaped(out, size, &n, code, sizeof middle + sizeof tail);
    memcpy(out + n, middle, sizeof middle - 1);
    n += sizeof middle - 1;
    append_escaped(out, size, &n, message, sizeof tail);
    memcpy(out + n, tail, sizeof tail);
}
