/* SPDX-License-Identifier: MIT */
/* fuzz_http_checks: the request head checks (src/http_checks.c) on arbitrary bytes.
 *
 * The input is split at newlines: the first line is a request target (it may hold NUL bytes),
 * every other line a header field "name:value" (the name is what comes before the first colon,
 * spaces included; a line without a colon is a name with an empty value). The whole input is
 * also checked as one Content-Length value and as one Transfer-Encoding value. Checked besides
 * memory errors: every verdict is a known status with a code and a message (or none of them when
 * acceptable); an accepted Content-Length is digits and parses to the same number; an accepted
 * coding list names chunked; an accepted framing has one way to find the body's end; an accepted
 * target has no NUL, space, control byte or %00 in its path and fits the limit; the head size
 * verdict follows the two limits. Uses: http_checks. */
#include "http_checks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http_checks: %s\n", what);
        abort();
    }
}

static void check_verdict(struct http_verdict v)
{
    if (v.status == 0) {
        check(v.code == NULL && v.message == NULL, "an accepted verdict with a code");
        return;
    }
    check(v.status == 400 || v.status == 413 || v.status == 414 || v.status == 431 ||
              v.status == 501,
          "an unknown status");
    check(v.code != NULL && v.code[0] != '\0', "a refusal without a code");
    check(v.message != NULL && v.message[0] != '\0', "a refusal without a message");
}

static int blank(char c) { return c == ' ' || c == '\t'; }

/* The reference for an accepted Content-Length: blanks, digits, blanks, and the same number. */
static void check_content_length(const char *s, size_t len)
{
    uint64_t n = 0;
    struct http_verdict v = http_check_content_length(s, len, &n);
    check_verdict(v);
    size_t a = 0, b = len;
    while (a < b && blank(s[a]))
        a++;
    while (b > a && blank(s[b - 1]))
        b--;
    int digits = b > a;
    uint64_t ref = 0;
    int overflow = 0;
    for (size_t i = a; i < b && digits; i++) {
        if (s[i] < '0' || s[i] > '9') {
            digits = 0;
            break;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (ref > (UINT64_MAX - d) / 10)
            overflow = 1;
        else
            ref = ref * 10 + d;
    }
    if (!digits)
        check(v.status == 400, "a Content-Length that is not digits was accepted");
    else if (overflow)
        check(v.status == 413, "a Content-Length over 64 bits was not 413");
    else
        check(v.status == 0 && n == ref, "a Content-Length of digits did not parse to its number");
}

static void check_target(const char *t, size_t len)
{
    struct http_verdict v = http_check_target(t, len);
    check_verdict(v);
    if (len > HTTP_MAX_TARGET) {
        check(v.status == 414, "a long target was not 414");
        return;
    }
    if (v.status != 0)
        return;
    check(len > 0, "an empty target was accepted");
    int in_path = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        check(c > 0x20 && c != 0x7f, "a target with a NUL, space or control byte was accepted");
        if (c == '?' || c == '#')
            in_path = 0;
        check(!(in_path && c == '%' && i + 2 < len && t[i + 1] == '0' && t[i + 2] == '0'),
              "a path with %00 was accepted");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;

    check_content_length(text, size);
    unsigned chunked = 0;
    struct http_verdict v = http_check_transfer_encoding(text, size, &chunked);
    check_verdict(v);
    if (v.status == 0)
        check(chunked >= 1, "an accepted coding list without chunked");

    const char *nl = memchr(text, '\n', size);
    size_t target_len = nl ? (size_t)(nl - text) : size;
    check_target(text, target_len);

    struct http_framing f;
    http_framing_init(&f);
    size_t fields = 0;
    size_t pos = nl ? target_len + 1 : size;
    while (pos < size) {
        const char *line = text + pos;
        const char *end = memchr(line, '\n', size - pos);
        size_t line_len = end ? (size_t)(end - line) : size - pos;
        const char *colon = memchr(line, ':', line_len);
        size_t name_len = colon ? (size_t)(colon - line) : line_len;
        const char *value = colon ? colon + 1 : line + line_len;
        size_t value_len = colon ? line_len - name_len - 1 : 0;
        http_framing_field(&f, line, name_len, value, value_len);
        fields++;
        pos += line_len + 1;
    }
    check(f.fields == fields, "a field was not counted");
    v = http_framing_verdict(&f);
    check_verdict(v);
    if (v.status == 0) {
        check(f.content_lengths <= 1, "two Content-Length fields were accepted");
        check(!(f.content_lengths && f.transfer_encodings), "Content-Length with Transfer-Encoding "
                                                            "was accepted");
        check(f.transfer_encodings == 0 || f.chunked == 1, "an accepted Transfer-Encoding is not "
                                                          "chunked once");
    }

    v = http_check_head_size(size, fields);
    check_verdict(v);
    check((v.status == 431) == (size > HTTP_MAX_HEAD || fields > HTTP_MAX_FIELDS),
          "the head size verdict does not follow the limits");
    return 0;
}
