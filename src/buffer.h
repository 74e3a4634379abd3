/* SPDX-License-Identifier: MIT */
/* buffer: a growable byte buffer (request bodies, stream chunks, outbound answers, files read
 * whole, JSON being written). The bytes are always followed by a NUL once there are any, so a
 * text can be used as a C string. A zeroed struct is an empty buffer. Uses: nothing. */
#ifndef SB_BUFFER_H
#define SB_BUFFER_H

#include <stddef.h>

struct buffer {
    char *data; /* NULL until something is added */
    size_t len, cap;
};

/* Room for `extra` more bytes (and the NUL). Returns 0, or -1 when out of memory. */
int buffer_reserve(struct buffer *b, size_t extra);
/* Append len bytes. Returns 0, or -1 when out of memory (the buffer is unchanged). */
int buffer_append(struct buffer *b, const void *data, size_t len);
/* Give the memory back; the buffer is empty again. */
void buffer_free(struct buffer *b);
/* Append the whole file at path (read in a loop, so pipes and /dev/fd paths work). Returns 0,
 * or -1 with errno set. */
int buffer_read_file(struct buffer *b, const char *path);

#endif
