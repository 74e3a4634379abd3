/* SPDX-License-Identifier: MIT */
/* Unit tests of the request head checks (http_checks.c): Content-Length syntax, transfer
 * codings, the framing of a whole head, the request target, the size of the head. */
#include "check.h"
#include "http_checks.h"

#include <stdint.h>
#include <stdlib.h>

static int length_status(const char *value, uint64_t *n)
{
    *n = 12345;
    return http_check_content_length(value, strlen(value), n).status;
}

static void test_content_length(void)
{
    uint64_t n;
    CHECK(length_status("30", &n) == 0 && n == 30);
    CHECK(length_status("0", &n) == 0 && n == 0);
    CHECK(length_status(" 30\t", &n) == 0 && n == 30);
    CHECK(length_status("007", &n) == 0 && n == 7);
    CHECK(length_status("18446744073709551615", &n) == 0 && n == UINT64_MAX);
    /* Refused as 400, and *length left alone. */
    const char *bad[] = {"-1", "+30", "0x1e", "30, 30", "30,30", "30 30", "3O", "", "  ", "1e3",
                         "30;", "\xd9\xa3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct http_verdict v = http_check_content_length(bad[i], strlen(bad[i]), &n);
        CHECK(v.status == 400);
        CHECK_STR(v.code, "bad_request");
        CHECK(v.message && strstr(v.message, "Content-Length"));
    }
    CHECK(length_status("-1", &n) == 400 && n == 12345);
    /* Too large for 64 bits: 413, like a body over the limit. */
    struct http_verdict v = http_check_content_length("18446744073709551616", 20, &n);
    CHECK(v.status == 413);
    CHECK_STR(v.code, "payload_too_large");
    CHECK(length_status("99999999999999999999999", &n) == 413);
    /* Only len bytes are read: the rest of the buffer does not count. */
    CHECK(http_check_content_length("12junk", 2, &n).status == 0 && n == 12);
}

static int coding_status(const char *value, unsigned *chunked)
{
    *chunked = 0;
    return http_check_transfer_encoding(value, strlen(value), chunked).status;
}

static void test_transfer_encoding(void)
{
    unsigned chunked;
    CHECK(coding_status("chunked", &chunked) == 0 && chunked == 1);
    CHECK(coding_status("Chunked", &chunked) == 0 && chunked == 1);
    CHECK(coding_status(" chunked ", &chunked) == 0 && chunked == 1);
    CHECK(coding_status(", chunked,", &chunked) == 0 && chunked == 1); /* empty elements */
    CHECK(coding_status("chunked, chunked", &chunked) == 0 && chunked == 2);
    /* Codings we do not implement: 501. */
    const char *unknown[] = {"gzip, chunked", "xchunked", "chunked, gzip", "identity", "gzip",
                             "chunkedx", "gzip;q=1, chunked"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        struct http_verdict v = http_check_transfer_encoding(unknown[i], strlen(unknown[i]),
                                                             &chunked);
        CHECK(v.status == 501);
        CHECK_STR(v.code, "not_implemented");
        CHECK(v.message && strstr(v.message, "Transfer-Encoding"));
    }
    /* What does not parse: 400. */
    const char *bad[] = {"", " ", ",", "chunked chunked", "chunked;x=1", "\"chunked\"",
                         "chunked\x01", "chu nked", "@"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(coding_status(bad[i], &chunked) == 400);
}

struct field {
    const char *name, *value;
};

static struct http_verdict framing(const struct field *fields, size_t n, struct http_framing *f)
{
    http_framing_init(f);
    for (size_t i = 0; i < n; i++)
        http_framing_field(f, fields[i].name, strlen(fields[i].name), fields[i].value,
                           strlen(fields[i].value));
    return http_framing_verdict(f);
}

#define FRAMING(f, ...)                                                                    \
    framing((const struct field[]){__VA_ARGS__},                                           \
            sizeof((const struct field[]){__VA_ARGS__}) / sizeof(struct field), f)

static void test_framing(void)
{
    struct http_framing f;
    struct http_verdict v;

    v = FRAMING(&f, {"Host", "x"}, {"Content-Length", "12"});
    CHECK(v.status == 0 && f.content_lengths == 1 && f.content_length == 12 && !f.chunked);
    CHECK(f.fields == 2);
    v = FRAMING(&f, {"transfer-encoding", "chunked"}, {"Accept", "*/*"});
    CHECK(v.status == 0 && f.chunked == 1 && f.content_lengths == 0);
    v = FRAMING(&f, {"Host", "x"});
    CHECK(v.status == 0 && f.content_lengths == 0 && f.content_length == 0 && !f.chunked);

    /* Request smuggling: two lengths (equal or not), a length with chunked, chunked twice. */
    v = FRAMING(&f, {"Content-Length", "5"}, {"Content-Length", "40"});
    CHECK(v.status == 400);
    CHECK(strstr(v.message, "more than once") != NULL);
    CHECK(FRAMING(&f, {"Content-Length", "5"}, {"content-length", "5"}).status == 400);
    v = FRAMING(&f, {"Content-Length", "5"}, {"Transfer-Encoding", "chunked"});
    CHECK(v.status == 400 && strstr(v.message, "both"));
    CHECK(FRAMING(&f, {"Transfer-Encoding", "chunked"}, {"Content-Length", "abc"}).status == 400);
    CHECK(FRAMING(&f, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}).status
          == 400);
    CHECK(FRAMING(&f, {"Transfer-Encoding", "chunked, chunked"}).status == 400);

    /* A name that is not a token: "Transfer-Encoding " (space before the colon), a tab, empty. */
    v = FRAMING(&f, {"Transfer-Encoding ", "chunked"});
    CHECK(v.status == 400 && strstr(v.message, "header field name"));
    CHECK(FRAMING(&f, {"Content-Length\t", "5"}).status == 400);
    CHECK(FRAMING(&f, {"", "x"}).status == 400);
    CHECK(FRAMING(&f, {"X Y", "x"}).status == 400);
    CHECK(FRAMING(&f, {"X-Ok_1.2~", "x"}).status == 0);
    /* The bad name wins over what follows it. */
    v = FRAMING(&f, {"Host ", "x"}, {"Transfer-Encoding", "gzip"});
    CHECK(v.status == 400);

    /* Values: the Content-Length verdicts, the coding verdicts. */
    CHECK(FRAMING(&f, {"Content-Length", "-1"}).status == 400);
    CHECK(FRAMING(&f, {"Content-Length", "99999999999999999999999"}).status == 413);
    CHECK(FRAMING(&f, {"Transfer-Encoding", "gzip, chunked"}).status == 501);
    CHECK(FRAMING(&f, {"Transfer-Encoding", "xchunked"}).status == 501);
    /* A 400 of one Transfer-Encoding line wins over a 501 of another, whatever the order. */
    CHECK(FRAMING(&f, {"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", ""}).status == 400);
    CHECK(FRAMING(&f, {"Transfer-Encoding", ""}, {"Transfer-Encoding", "gzip"}).status == 400);
    /* A smuggling shape wins over a coding we do not know. */
    CHECK(FRAMING(&f, {"Transfer-Encoding", "gzip"}, {"Content-Length", "3"}).status == 400);
}

static void test_target(void)
{
    CHECK(http_check_target("/status", 7).status == 0);
    CHECK(http_check_target("/webhooks/rest/webhook?x=%00", 28).status == 0); /* query: allowed */
    CHECK(http_check_target("/a%20b/%C3%A9?q=1#f", 19).status == 0);
    CHECK(http_check_target("/caf\xc3\xa9", 6).status == 0); /* raw UTF-8 is let through */
    CHECK(http_check_target("*", 1).status == 0);

    /* A NUL byte among the bytes received: len goes past the C string. */
    struct http_verdict v = http_check_target("/status", 8);
    CHECK(v.status == 400 && strstr(v.message, "NUL"));
    CHECK(http_check_target("/status\0junk", 12).status == 400);
    /* %00 in the path, in any case and place. */
    const char *bad[] = {"/webhooks/rest/webhook%00junk", "/webhooks/rest/webhook%00",
                         "/webhooks/rest%00/webhook", "%00", "/a%00?b", "/a/%00#f"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = http_check_target(bad[i], strlen(bad[i]));
        CHECK(v.status == 400);
        CHECK_STR(v.code, "bad_request");
        CHECK(strstr(v.message, "%00") != NULL);
    }
    CHECK(http_check_target("/a%0", 4).status == 0);
    CHECK(http_check_target("/a%000", 6).status == 400);
    CHECK(http_check_target("/a%001", 6).status == 400);
    /* Spaces and control bytes. */
    CHECK(http_check_target("/a b", 4).status == 400);
    CHECK(http_check_target("/a\tb", 4).status == 400);
    CHECK(http_check_target("/a\x7f", 3).status == 400);
    CHECK(http_check_target("/a\r", 3).status == 400);
    CHECK(http_check_target("", 0).status == 400);

    /* Length: HTTP_MAX_TARGET bytes pass, one more is 414 (before any other check). */
    char *long_target = malloc(HTTP_MAX_TARGET + 2);
    CHECK(long_target != NULL);
    if (long_target) {
        memset(long_target, 'x', HTTP_MAX_TARGET + 1);
        long_target[0] = '/';
        long_target[HTTP_MAX_TARGET + 1] = '\0';
        CHECK(http_check_target(long_target, HTTP_MAX_TARGET).status == 0);
        v = http_check_target(long_target, HTTP_MAX_TARGET + 1);
        CHECK(v.status == 414);
        CHECK_STR(v.code, "uri_too_long");
        long_target[5] = ' ';
        CHECK(http_check_target(long_target, HTTP_MAX_TARGET + 1).status == 414);
        free(long_target);
        long_target = NULL;
    }
}

static void test_head_size(void)
{
    CHECK(http_check_head_size(0, 0).status == 0);
    CHECK(http_check_head_size(HTTP_MAX_HEAD, HTTP_MAX_FIELDS).status == 0);
    struct http_verdict v = http_check_head_size(HTTP_MAX_HEAD + 1, 3);
    CHECK(v.status == 431);
    CHECK_STR(v.code, "headers_too_large");
    CHECK(strstr(v.message, "8192") != NULL);
    v = http_check_head_size(100, HTTP_MAX_FIELDS + 1);
    CHECK(v.status == 431);
    CHECK(strstr(v.message, "128") != NULL);
}

int main(void)
{
    test_content_length();
    test_transfer_encoding();
    test_framing();
    test_target();
    test_head_size();
    return CHECK_DONE();
}
