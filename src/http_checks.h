/* SPDX-License-Identifier: MIT */
/* http_checks: the verdicts on a request head that libmicrohttpd does not give (or gives badly),
 * as pure functions: plain strings in, a verdict out (docs/configuration.md#malformed-http).
 *
 * Provides: the syntax of a Content-Length value; the transfer codings a Transfer-Encoding value
 * names; the framing a head's fields announce taken together (Content-Length twice, with
 * Transfer-Encoding, a field name that is not a token, such as "Transfer-Encoding " with a space
 * before the colon); the request target (length, NUL bytes, %00 in the path, spaces and control
 * bytes); the size of the head and its number of fields; a client's own request id.
 * Uses: nothing (no libmicrohttpd), so it can be unit-tested and fuzzed. */
#ifndef SB_HTTP_CHECKS_H
#define SB_HTTP_CHECKS_H

#include <stddef.h>
#include <stdint.h>

/* Our limits on a request head. They sit below libmicrohttpd's own (its connection memory is
 * larger), so that a head over them gets our JSON answer, not libmicrohttpd's HTML page. */
#define HTTP_MAX_TARGET 8192u  /* bytes of the request target: over it, 414 */
#define HTTP_MAX_HEAD 8192u    /* bytes of the request line and header lines: over it, 431 (as
                                * Rasa's web server, Sanic, allows) */
#define HTTP_MAX_FIELDS 128u   /* header fields, query arguments and cookies: over it, 431 */

/* What to answer. status 0 means acceptable; code and message are static strings then NULL. */
struct http_verdict {
    int status;          /* 400, 413, 414, 431 or 501 */
    const char *code;    /* the "error" of the JSON body: bad_request, payload_too_large, ... */
    const char *message; /* the "message" */
};

/* A Content-Length value as received (len bytes, optional blanks around): one or more digits.
 * Sets *length when acceptable. A sign, a list ("30, 30"), hex or anything else is 400; a
 * number over 2^64-1 is 413. */
struct http_verdict http_check_content_length(const char *value, size_t len, uint64_t *length);

/* A Transfer-Encoding value (a comma-separated list of codings, len bytes). Counts the
 * "chunked" codings into *chunked. A coding other than chunked is 501 (we implement no other);
 * an empty list, or a list that does not parse, is 400. */
struct http_verdict http_check_transfer_encoding(const char *value, size_t len, unsigned *chunked);

/* The framing a request head announces, fed one header field at a time. */
struct http_framing {
    unsigned fields;
    unsigned content_lengths;    /* Content-Length field lines */
    unsigned transfer_encodings; /* Transfer-Encoding field lines */
    unsigned chunked;            /* "chunked" codings over all of them */
    uint64_t content_length;     /* the last valid Content-Length value */
    struct http_verdict bad_name;   /* the first field name that is not a token */
    struct http_verdict bad_length; /* the first Content-Length value that is refused */
    struct http_verdict bad_coding; /* the first Transfer-Encoding value that is refused */
};

/* A request id a client may choose (X-Request-Id): 1 to max_len bytes of letters, digits and
 * - _ . : (anything else could forge log lines). */
int http_request_id_acceptable(const char *id, size_t max_len);

void http_framing_init(struct http_framing *f);
/* One header field: its name exactly as received (before the colon) and its value. */
void http_framing_field(struct http_framing *f, const char *name, size_t name_len,
                        const char *value, size_t value_len);
/* The verdict on the whole head: a bad field name, Content-Length twice, Content-Length with
 * Transfer-Encoding and "chunked" more than once are 400; then the first problem of a value.
 * With status 0, the body is chunked when f->chunked, else f->content_length bytes (0 when
 * f->content_lengths is 0). */
struct http_verdict http_framing_verdict(const struct http_framing *f);

/* The request target as received: len bytes (a NUL byte among them is refused). Longer than
 * HTTP_MAX_TARGET is 414; a NUL byte, a space or a control byte, or %00 in the path (before any
 * '?' or '#') is 400. Bytes of 0x80 and above are let through. */
struct http_verdict http_check_target(const char *target, size_t len);

/* The head as a whole: head_bytes from the start of the request line to the end of the empty line
 * that closes it, and its fields (header fields, query arguments, cookies). Over HTTP_MAX_HEAD
 * bytes or HTTP_MAX_FIELDS fields is 431. */
struct http_verdict http_check_head_size(size_t head_bytes, size_t fields);

#endif
