/* SPDX-License-Identifier: MIT */
/* buffer: see buffer.h. */
#include "buffer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int buffer_reserve(struct buffer *b, size_t extra)
{
    if (extra > (size_t)-1 / 2 - b->len - 1) {
        errno = ENOMEM;
        return -1;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

int buffer_append(struct buffer *b, const void *data, size_t len)
{
    if (buffer_reserve(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

void buffer_free(struct buffer *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int buffer_read_file(struct buffer *b, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    errno = 0;
    for (;;) {
        if (buffer_reserve(b, 4096) != 0) {
            fclose(f);
            errno = ENOMEM;
            return -1;
        }
        size_t got = fread(b->data + b->len, 1, b->cap - b->len - 1, f);
        b->len += got;
        b->data[b->len] = '\0';
        if (got == 0)
            break;
    }
    int failed = ferror(f), error = errno ? errno : EIO;
    fclose(f);
    if (failed) {
        errno = error; /* what fread saw: EISDIR for a folder, say */
        return -1;
    }
    return 0;
}
