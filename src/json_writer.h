/* SPDX-License-Identifier: MIT */
/* json_writer: JSON text built in a growing buffer, for the answers the host writes in C (the
 * status page, error bodies). Commas and escaping are the writer's job, so callers only say
 * what comes next. Every function is a no-op once an allocation failed; json_writer_finish
 * then returns NULL. Uses: buffer. */
#ifndef SB_JSON_WRITER_H
#define SB_JSON_WRITER_H

#include <stddef.h>

#include "buffer.h"

struct json_writer {
    struct buffer text;
    int failed;
};

void json_writer_init(struct json_writer *w);
void json_object_begin(struct json_writer *w);
void json_object_end(struct json_writer *w);
void json_array_begin(struct json_writer *w);
void json_array_end(struct json_writer *w);
/* The key of the next member of an object. */
void json_key(struct json_writer *w, const char *key);
/* A string (any bytes but NUL; escaped as JSON needs), or null when s is NULL. */
void json_string(struct json_writer *w, const char *s);
void json_integer(struct json_writer *w, long long v);
void json_null(struct json_writer *w);
void json_boolean(struct json_writer *w, int v);
/* A number already written as JSON text (e.g. "%.17g" of a double). */
void json_number_text(struct json_writer *w, const char *text);
/* The text, NUL-terminated, owned by the caller (free it); NULL when out of memory. */
char *json_writer_finish(struct json_writer *w, size_t *len);

/* {"error": code, "message": message} in out (truncated to fit, always NUL-terminated): the
 * body of every error answer. */
void json_error_body(char *out, size_t size, const char *code, const char *message);

#endif
