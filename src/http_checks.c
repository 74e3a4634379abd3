/* SPDX-License-Identifier: MIT */
/* http_checks: see http_checks.h. Rules from RFC 9110 (tokens, lists) and RFC 9112 (message
 * framing, request target). */
#include "http_checks.h"

#include <string.h>

static const struct http_verdict OK = {0, NULL, NULL};

static struct http_verdict verdict(int status, const char *code, const char *message)
{
    struct http_verdict v = {status, code, message};
    return v;
}

static struct http_verdict bad_request(const char *message)
{
    return verdict(400, "bad_request", message);
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* tchar of RFC 9110 5.6.2. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

static int equals_nocase(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != lit[i])
            return 0;
    return 1;
}

/* Trim blanks on both sides of [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_blank((*s)[*len - 1]))
        (*len)--;
}

struct http_verdict http_check_content_length(const char *value, size_t len, uint64_t *length)
{
    trim(&value, &len);
    if (len == 0)
        return bad_request("the Content-Length header is empty");
    uint64_t n = 0;
    int overflow = 0;
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        if (c < '0' || c > '9')
            return bad_request("the Content-Length header is not a number of bytes (digits only, "
                               "one value)");
        unsigned d = (unsigned)(c - '0');
        if (n > (UINT64_MAX - d) / 10)
            overflow = 1;
        else
            n = n * 10 + d;
    }
    if (overflow)
        return verdict(413, "payload_too_large", "the Content-Length header is too large");
    *length = n;
    return OK;
}

struct http_verdict http_check_transfer_encoding(const char *value, size_t len, unsigned *chunked)
{
    unsigned codings = 0, unknown = 0;
    size_t i = 0;
    while (i <= len) {
        /* One list element: up to the next comma (quoted strings cannot occur in a coding we
         * accept; one in an unknown coding's parameters only makes that element unknown). */
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        const char *el = value + start;
        size_t el_len = i - start;
        i++; /* past the comma, or past the end */
        trim(&el, &el_len);
        if (el_len == 0)
            continue; /* empty list elements are allowed and ignored (RFC 9110 5.6.1) */
        size_t name_len = 0;
        while (name_len < el_len && is_tchar((unsigned char)el[name_len]))
            name_len++;
        if (name_len == 0)
            return bad_request("the Transfer-Encoding header does not parse");
        size_t rest = name_len;
        while (rest < el_len && is_blank(el[rest]))
            rest++;
        int has_params = rest < el_len;
        if (has_params && el[rest] != ';')
            return bad_request("the Transfer-Encoding header does not parse");
        codings++;
        if (equals_nocase(el, name_len, "chunked")) {
            if (has_params)
                return bad_request("the chunked transfer coding takes no parameters");
            (*chunked)++;
        } else {
            unknown++;
        }
    }
    if (codings == 0)
        return bad_request("the Transfer-Encoding header names no transfer coding");
    if (unknown)
        return verdict(501, "not_implemented",
                       "the Transfer-Encoding header names a transfer coding other than chunked");
    return OK;
}

void http_framing_init(struct http_framing *f) { memset(f, 0, sizeof *f); }

void http_framing_field(struct http_framing *f, const char *name, size_t name_len,
                        const char *value, size_t value_len)
{
    f->fields++;
    int token = name_len > 0;
    for (size_t i = 0; i < name_len && token; i++)
        token = is_tchar((unsigned char)name[i]);
    if (!token) {
        if (!f->bad_name.status)
            f->bad_name = bad_request("a header field name has a space or a character that is "
                                      "not allowed (no space may come before the colon)");
        return;
    }
    if (equals_nocase(name, name_len, "content-length")) {
        f->content_lengths++;
        uint64_t n = 0;
        struct http_verdict v = http_check_content_length(value, value_len, &n);
        if (v.status && !f->bad_length.status)
            f->bad_length = v;
        else if (!v.status)
            f->content_length = n;
    } else if (equals_nocase(name, name_len, "transfer-encoding")) {
        f->transfer_encodings++;
        struct http_verdict v = http_check_transfer_encoding(value, value_len, &f->chunked);
        /* A 400 of a later field wins over a 501 of an earlier one. */
        if (v.status && (!f->bad_coding.status || (v.status == 400 && f->bad_coding.status != 400)))
            f->bad_coding = v;
    }
}

struct http_verdict http_framing_verdict(const struct http_framing *f)
{
    /* Everything that lets two parties disagree on where the body ends is 400 (RFC 9112 6.3:
     * request smuggling), before anything that is merely not understood. */
    if (f->bad_name.status)
        return f->bad_name;
    if (f->content_lengths > 1)
        return bad_request("the Content-Length header is sent more than once");
    if (f->content_lengths && f->transfer_encodings)
        return bad_request("the request has both Content-Length and Transfer-Encoding headers");
    if (f->bad_length.status)
        return f->bad_length;
    if (f->bad_coding.status == 400)
        return f->bad_coding;
    if (f->chunked > 1)
        return bad_request("the Transfer-Encoding header names chunked more than once");
    if (f->bad_coding.status)
        return f->bad_coding;
    return OK;
}

struct http_verdict http_check_target(const char *target, size_t len)
{
    if (len > HTTP_MAX_TARGET)
        return verdict(414, "uri_too_long", "the request target is longer than 8192 bytes");
    if (len == 0)
        return bad_request("the request target is empty");
    int in_path = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c == 0)
            return bad_request("the request target contains a NUL byte");
        if (c <= 0x20 || c == 0x7f)
            return bad_request("the request target contains a space or a control character");
        if (c == '?' || c == '#')
            in_path = 0;
        if (in_path && c == '%' && i + 2 < len && target[i + 1] == '0' && target[i + 2] == '0')
            return bad_request("the request path contains %00 (an encoded NUL byte)");
    }
    return OK;
}

struct http_verdict http_check_head_size(size_t head_bytes, size_t fields)
{
    if (head_bytes > HTTP_MAX_HEAD)
        return verdict(431, "headers_too_large",
                       "the request line and headers are larger than 8192 bytes");
    if (fields > HTTP_MAX_FIELDS)
        return verdict(431, "headers_too_large",
                       "the request has more than 128 header fields, query arguments and cookies");
    return OK;
}

int http_request_id_acceptable(const char *id, size_t max_len)
{
    size_t len = strlen(id);
    if (len == 0 || len > max_len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}
