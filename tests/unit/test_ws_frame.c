/* SPDX-License-Identifier: MIT */
/* Unit tests of the WebSocket codec (ws_frame.c): the accept key, the examples of RFC 6455
 * (1.3, 5.7), each rule the parser enforces with its close code, UTF-8 edge cases (Autobahn's
 * kinds), the server's frame heads and close payloads, the memory bound. Every input is parsed
 * in one piece, a byte at a time and in other chunkings, which must all give the same events. */
#include "check.h"
#include "ws_frame.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- building client frames ----------------------------------------------------------------- */

static const unsigned char KEY[4] = {0x37, 0xfa, 0x21, 0x3d}; /* the key of 5.7's examples */

/* A masked client frame: first head byte b0 (FIN, RSV, opcode), the payload, the length in
 * the given form (0: the shortest; 2 or 8: forced into that many extended bytes). */
static void frame_form(struct buffer *in, unsigned b0, const void *payload, size_t len, int form,
                       uint64_t announced)
{
    unsigned char head[14];
    size_t h = 0;
    head[h++] = (unsigned char)b0;
    if (form == 0)
        form = announced < 126 ? 0 : announced <= 0xFFFF ? 2 : 8;
    if (form == 0) {
        head[h++] = (unsigned char)(0x80 | announced);
    } else if (form == 2) {
        head[h++] = 0x80 | 126;
        head[h++] = (unsigned char)(announced >> 8);
        head[h++] = (unsigned char)announced;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            head[h++] = (unsigned char)(announced >> (56 - 8 * i));
    }
    memcpy(head + h, KEY, 4);
    h += 4;
    CHECK(buffer_append(in, head, h) == 0);
    CHECK(buffer_reserve(in, len) == 0);
    const unsigned char *s = payload;
    for (size_t i = 0; i < len; i++)
        in->data[in->len + i] = (char)(s[i] ^ KEY[i & 3]);
    in->len += len;
}

static void frame(struct buffer *in, unsigned b0, const void *payload, size_t len)
{
    frame_form(in, b0, payload, len, 0, len);
}

static void frame_str(struct buffer *in, unsigned b0, const char *s)
{
    frame(in, b0, s, strlen(s));
}

/* ---- parsing in every chunking ---------------------------------------------------------------- */

struct rec {
    int kind, binary;
    unsigned char *data;
    size_t len;
    unsigned code;
    char reason[128];
    size_t reason_len;
};

#define MAX_EVENTS 64

struct run {
    struct rec ev[MAX_EVENTS];
    int n;
    size_t consumed; /* bytes consumed in all */
    size_t cap_seen; /* the largest capacity the message buffer had */
};

static void run_clear(struct run *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->ev[i].data);
        r->ev[i].data = NULL;
    }
    memset(r, 0, sizeof *r);
}

static uint32_t rng_state;
static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* Feeds in, chunk bytes at a time (0: in one piece; (size_t)-1: random sizes 1..300), the way
 * the connection layer does, and records the events. Checks the parser's contract on the way. */
static void run_parser(const unsigned char *in, size_t len, size_t max, size_t chunk,
                       struct run *r)
{
    struct ws_parser p;
    ws_parser_init(&p, max);
    run_clear(r);
    int ended = 0;
    size_t pos = 0;
    while (pos < len && !ended) {
        size_t slice = chunk == 0 ? len - pos : chunk == (size_t)-1 ? 1 + rng() % 300 : chunk;
        if (slice > len - pos)
            slice = len - pos;
        const unsigned char *buf = in + pos;
        size_t left = slice;
        while (left) {
            struct ws_event ev;
            size_t n = ws_parse(&p, buf, left, &ev);
            CHECK(n <= left);
            buf += n;
            left -= n;
            r->consumed += n;
            if (p.msg.cap > r->cap_seen)
                r->cap_seen = p.msg.cap;
            if (ev.kind == WS_EV_NONE) {
                CHECK_EQ(left, 0); /* NONE means the bytes ran out */
                break;
            }
            if (r->n == MAX_EVENTS) {
                CHECK(!"too many events");
                break;
            }
            struct rec *e = &r->ev[r->n++];
            e->kind = (int)ev.kind;
            e->binary = ev.binary;
            e->code = ev.code;
            if (ev.kind == WS_EV_MESSAGE || ev.kind == WS_EV_PING || ev.kind == WS_EV_PONG ||
                ev.kind == WS_EV_CLOSE) {
                CHECK(ev.data != NULL);
                e->data = malloc(ev.len + 1);
                memcpy(e->data, ev.data, ev.len);
                e->len = ev.len;
            }
            if (ev.kind == WS_EV_CLOSE || ev.kind == WS_EV_ERROR) {
                CHECK(ev.reason != NULL && ev.reason_len < sizeof e->reason);
                memcpy(e->reason, ev.reason, ev.reason_len);
                e->reason_len = ev.reason_len;
                ended = 1;
                /* Nothing more is accepted. */
                struct ws_event after;
                CHECK_EQ(ws_parse(&p, (const unsigned char *)"\x81\x80" "abcd", 6, &after), 0);
                CHECK_EQ(after.kind, WS_EV_NONE);
                break;
            }
        }
        pos += slice;
    }
    ws_parser_free(&p);
}

static int same_runs(const struct run *a, const struct run *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const struct rec *x = &a->ev[i], *y = &b->ev[i];
        if (x->kind != y->kind || x->binary != y->binary || x->code != y->code ||
            x->len != y->len || x->reason_len != y->reason_len ||
            memcmp(x->reason, y->reason, x->reason_len) != 0 ||
            (x->len && memcmp(x->data, y->data, x->len) != 0))
            return 0;
    }
    return 1;
}

static struct run result, other;

/* Parses in in one piece, then a byte at a time, in chunks of 2, 3 and 7 bytes and in random
 * chunks: every way gives the same events. Returns the one-piece events (valid until the next
 * call), with cap_seen the largest capacity over all the ways. */
static struct run *parse_max(const struct buffer *in, size_t max)
{
    const unsigned char *s = (const unsigned char *)in->data;
    const size_t chunks[] = {1, 2, 3, 7, (size_t)-1};
    run_parser(s, in->len, max, 0, &result);
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        rng_state = (uint32_t)(in->len * 31 + i);
        run_parser(s, in->len, max, chunks[i], &other);
        CHECK(same_runs(&other, &result));
        if (other.cap_seen > result.cap_seen)
            result.cap_seen = other.cap_seen;
    }
    run_clear(&other);
    return &result;
}

static struct run *parse(const struct buffer *in) { return parse_max(in, 1 << 20); }

/* The input ends in an error event with this code (and no event before it unless events > 1). */
static void check_error(const struct buffer *in, size_t max, unsigned code, int events)
{
    struct run *r = parse_max(in, max);
    CHECK_EQ(r->n, events);
    if (r->n == events && events > 0) {
        CHECK_EQ(r->ev[events - 1].kind, WS_EV_ERROR);
        CHECK_EQ(r->ev[events - 1].code, code);
        CHECK(r->ev[events - 1].reason_len > 0);
    }
}

static int is_message(const struct rec *e, int binary, const void *data, size_t len)
{
    return e->kind == WS_EV_MESSAGE && e->binary == binary && e->len == len &&
           (len == 0 || memcmp(e->data, data, len) == 0);
}

static void reset(struct buffer *in) { in->len = 0; }

static void append_bytes(struct buffer *in, const char *bytes, size_t n)
{
    CHECK(buffer_append(in, bytes, n) == 0);
}

/* ---- the handshake -------------------------------------------------------------------------- */

static void test_accept_key(void)
{
    char out[29];
    /* RFC 6455 1.3. */
    CHECK_EQ(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK_EQ(strlen(out), 28);
    /* Another 16-byte key (RFC 6455 4.1's example, base64 of 1..16). */
    CHECK_EQ(ws_accept_key("AQIDBAUGBwgJCgsMDQ4PEA==", out), 0);
    CHECK_EQ(strlen(out), 28);
    const char *bad[] = {"", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===",
                         " dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ== ",
                         "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQAA",
                         "dGhlIHNhbXBsZSBub25jZ===", "dGhlIHNhbXBsZSBub2-jZQ==",
                         "dGhlIHNhbXBsZSBub25j\nQ==", "dGhlIHNhbXBsZSBub25jZQ=A",
                         "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ=="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcpy(out, "x");
        CHECK_EQ(ws_accept_key(bad[i], out), -1);
        CHECK_STR(out, "");
    }
    CHECK_EQ(ws_accept_key(NULL, out), -1);
}

static void test_token_listed(void)
{
    CHECK(ws_token_listed("Upgrade", "upgrade"));
    CHECK(ws_token_listed("keep-alive, Upgrade", "upgrade"));
    CHECK(ws_token_listed(" keep-alive ,\tUPGRADE\t", "upgrade"));
    CHECK(ws_token_listed("websocket", "websocket"));
    CHECK(ws_token_listed("WebSocket", "websocket"));
    CHECK(!ws_token_listed("keep-alive", "upgrade"));
    CHECK(!ws_token_listed("upgraded", "upgrade"));
    CHECK(!ws_token_listed("up grade", "upgrade"));
    CHECK(!ws_token_listed("", "upgrade"));
    CHECK(!ws_token_listed(",,", "upgrade"));
    CHECK(!ws_token_listed(NULL, "upgrade"));
}

/* ---- RFC 6455 5.7 --------------------------------------------------------------------------- */

static void test_rfc_examples(void)
{
    struct buffer in = {0};
    struct run *r;

    /* A single-frame unmasked text message: a server must refuse it. */
    append_bytes(&in, "\x81\x05Hello", 7);
    check_error(&in, 1000, 1002, 1);
    CHECK(strstr(result.ev[0].reason, "unmasked") != NULL);

    /* A single-frame masked text message: the RFC's bytes. */
    reset(&in);
    append_bytes(&in, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    r = parse(&in);
    CHECK_EQ(r->n, 1);
    CHECK(is_message(&r->ev[0], 0, "Hello", 5));
    CHECK_EQ(r->consumed, 11);

    /* A fragmented text message: unmasked as in the RFC (refused), then masked. */
    reset(&in);
    append_bytes(&in, "\x01\x03Hel\x80\x02lo", 9);
    check_error(&in, 1000, 1002, 1);
    reset(&in);
    frame_str(&in, 0x01, "Hel");
    frame_str(&in, 0x80, "lo");
    r = parse(&in);
    CHECK_EQ(r->n, 1);
    CHECK(is_message(&r->ev[0], 0, "Hello", 5));

    /* Unmasked ping (refused), masked ping, then the RFC's masked pong. */
    reset(&in);
    append_bytes(&in, "\x89\x05Hello", 7);
    check_error(&in, 1000, 1002, 1);
    reset(&in);
    frame_str(&in, 0x89, "Hello");
    append_bytes(&in, "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    r = parse(&in);
    CHECK_EQ(r->n, 2);
    CHECK(r->ev[0].kind == WS_EV_PING && r->ev[0].len == 5 && !memcmp(r->ev[0].data, "Hello", 5));
    CHECK(r->ev[1].kind == WS_EV_PONG && r->ev[1].len == 5 && !memcmp(r->ev[1].data, "Hello", 5));

    /* 256 bytes of binary: a 16-bit length. */
    unsigned char *big = malloc(65536);
    for (size_t i = 0; i < 65536; i++)
        big[i] = (unsigned char)(i * 7 + i / 256);
    reset(&in);
    frame(&in, 0x82, big, 256);
    CHECK(!memcmp(in.data, "\x82\xFE\x01\x00\x37\xfa\x21\x3d", 8));
    r = parse(&in);
    CHECK_EQ(r->n, 1);
    CHECK(is_message(&r->ev[0], 1, big, 256));

    /* 64 KiB of binary: a 64-bit length. */
    reset(&in);
    frame(&in, 0x82, big, 65536);
    CHECK(!memcmp(in.data, "\x82\xFF\x00\x00\x00\x00\x00\x01\x00\x00\x37\xfa\x21\x3d", 14));
    r = parse(&in);
    CHECK_EQ(r->n, 1);
    CHECK(is_message(&r->ev[0], 1, big, 65536));

    /* What the server sends for the same messages: the RFC's unmasked bytes. */
    struct buffer out = {0};
    CHECK_EQ(ws_frame_append(&out, WS_OP_TEXT, "Hello", 5), 0);
    CHECK(out.len == 7 && !memcmp(out.data, "\x81\x05Hello", 7));
    out.len = 0;
    CHECK_EQ(ws_frame_append(&out, WS_OP_PING, "Hello", 5), 0);
    CHECK(out.len == 7 && !memcmp(out.data, "\x89\x05Hello", 7));
    out.len = 0;
    CHECK_EQ(ws_frame_append(&out, WS_OP_PONG, "Hello", 5), 0);
    CHECK(out.len == 7 && !memcmp(out.data, "\x8a\x05Hello", 7));
    out.len = 0;
    CHECK_EQ(ws_frame_append(&out, WS_OP_BINARY, big, 256), 0);
    CHECK(out.len == 260 && !memcmp(out.data, "\x82\x7E\x01\x00", 4));
    CHECK(!memcmp(out.data + 4, big, 256));
    out.len = 0;
    CHECK_EQ(ws_frame_append(&out, WS_OP_BINARY, big, 65536), 0);
    CHECK(out.len == 65546 && !memcmp(out.data, "\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10));
    CHECK(!memcmp(out.data + 10, big, 65536));
    buffer_free(&out);
    free(big);
    big = NULL;
    buffer_free(&in);
}

/* ---- streams of frames ---------------------------------------------------------------------- */

static void test_sequences(void)
{
    struct buffer in = {0};
    struct run *r;

    /* Several messages in one read, each its own event, in order. */
    frame_str(&in, 0x81, "one");
    frame(&in, 0x82, "\x00\x01\x02", 3);
    frame_str(&in, 0x81, "");  /* an empty text message */
    frame(&in, 0x82, "", 0);   /* an empty binary message */
    frame_str(&in, 0x8A, "");  /* an empty pong */
    frame_str(&in, 0x81, "three");
    r = parse(&in);
    CHECK_EQ(r->n, 6);
    CHECK(is_message(&r->ev[0], 0, "one", 3));
    CHECK(is_message(&r->ev[1], 1, "\x00\x01\x02", 3));
    CHECK(is_message(&r->ev[2], 0, "", 0));
    CHECK(is_message(&r->ev[3], 1, "", 0));
    CHECK(r->ev[4].kind == WS_EV_PONG && r->ev[4].len == 0);
    CHECK(is_message(&r->ev[5], 0, "three", 5));

    /* Control frames between fragments (5.4): delivered at once, the message after. */
    reset(&in);
    frame_str(&in, 0x01, "frag");
    frame_str(&in, 0x89, "ping!");
    frame_str(&in, 0x00, "men");
    frame_str(&in, 0x8A, "pong");
    frame_str(&in, 0x00, "");     /* an empty fragment */
    frame_str(&in, 0x80, "ted");
    frame(&in, 0x02, "\xff", 1);  /* then a fragmented binary message */
    frame(&in, 0x80, "\xfe", 1);
    r = parse(&in);
    CHECK_EQ(r->n, 4);
    CHECK(r->ev[0].kind == WS_EV_PING && r->ev[0].len == 5 && !memcmp(r->ev[0].data, "ping!", 5));
    CHECK(r->ev[1].kind == WS_EV_PONG && r->ev[1].len == 4);
    CHECK(is_message(&r->ev[2], 0, "fragmented", 10));
    CHECK(is_message(&r->ev[3], 1, "\xff\xfe", 2));

    /* A close between fragments ends everything; what follows is not looked at. */
    reset(&in);
    frame_str(&in, 0x01, "part");
    frame(&in, 0x88, "\x03\xe8" "bye", 5);
    frame_str(&in, 0x80, "never");
    r = parse(&in);
    CHECK_EQ(r->n, 1);
    CHECK(r->ev[0].kind == WS_EV_CLOSE && r->ev[0].code == 1000);
    CHECK(r->ev[0].reason_len == 3 && !memcmp(r->ev[0].reason, "bye", 3));
    CHECK(r->ev[0].len == 5 && !memcmp(r->ev[0].data, "\x03\xe8" "bye", 5));
    CHECK_EQ(r->consumed, in.len - (2 + 4 + 5));

    /* An empty input gives nothing; a half head waits for more. */
    struct ws_parser p;
    struct ws_event ev;
    ws_parser_init(&p, 100);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)"", 0, &ev), 0);
    CHECK_EQ(ev.kind, WS_EV_NONE);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)"\x81\x85\x00", 3, &ev), 3);
    CHECK_EQ(ev.kind, WS_EV_NONE);
    CHECK_EQ(ws_parse(&p, NULL, 0, &ev), 0);
    CHECK_EQ(ev.kind, WS_EV_NONE);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)"\x00\x00\x00", 3, &ev), 3);
    CHECK_EQ(ws_parse(&p, NULL, 0, &ev), 0); /* in the payload now */
    CHECK_EQ(ev.kind, WS_EV_NONE);
    /* The message's data stays put until the next ws_parse. */
    CHECK_EQ(ws_parse(&p, (const unsigned char *)"hello", 5, &ev), 5);
    CHECK(ev.kind == WS_EV_MESSAGE && ev.len == 5 && !memcmp(ev.data, "hello", 5));
    ws_parser_free(&p);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)"\x81\x80\0\0\0\0", 6, &ev), 0);
    CHECK_EQ(ev.kind, WS_EV_NONE);
    buffer_free(&in);
}

/* ---- each rule with its code ---------------------------------------------------------------- */

static void test_frame_rules(void)
{
    struct buffer in = {0};
    struct run *r;

    /* Unmasked: data and control frames, found on the second byte. */
    const char *unmasked[] = {"\x81\x00", "\x82\x01x", "\x88\x00", "\x89\x00", "\x8a\x00",
                              "\x01\x00"};
    for (size_t i = 0; i < sizeof unmasked / sizeof *unmasked; i++) {
        reset(&in);
        append_bytes(&in, unmasked[i], 2);
        check_error(&in, 100, 1002, 1);
        CHECK_STR(result.ev[0].reason, "unmasked frame");
        CHECK_EQ(result.consumed, 2);
    }

    /* RSV1, RSV2, RSV3, on any opcode: found on the first byte. */
    const unsigned rsv[] = {0x40, 0x20, 0x10, 0x70};
    for (size_t i = 0; i < 4; i++) {
        reset(&in);
        frame_str(&in, 0x81 | rsv[i], "x");
        check_error(&in, 100, 1002, 1);
        CHECK_EQ(result.consumed, 1);
        reset(&in);
        frame_str(&in, 0x89 | rsv[i], "");
        check_error(&in, 100, 1002, 1);
    }

    /* Reserved opcodes 3-7 and 11-15, with FIN or without. */
    for (unsigned op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 10))
            continue;
        reset(&in);
        frame_str(&in, 0x80 | op, "");
        check_error(&in, 100, 1002, 1);
        CHECK_STR(result.ev[0].reason, "unknown opcode");
        reset(&in);
        frame_str(&in, op, "");
        check_error(&in, 100, 1002, 1);
    }

    /* Control frames without FIN. */
    for (unsigned op = 8; op <= 10; op++) {
        reset(&in);
        frame(&in, op, "\x03\xe8", op == 8 ? 2 : 0);
        check_error(&in, 100, 1002, 1);
        CHECK_STR(result.ev[0].reason, "fragmented control frame");
    }

    /* Control frames: 125 bytes are fine, 126 are not (found on the second byte). */
    char ctrl[200];
    memset(ctrl, 'c', sizeof ctrl);
    reset(&in);
    frame(&in, 0x89, ctrl, 125);
    r = parse_max(&in, 10); /* the message limit does not apply to control frames */
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_PING && r->ev[0].len == 125);
    for (unsigned op = 8; op <= 10; op++) {
        reset(&in);
        frame(&in, 0x80 | op, ctrl, 126);
        check_error(&in, 1000, 1002, 1);
        CHECK_STR(result.ev[0].reason, "control frame over 125 bytes");
        CHECK_EQ(result.consumed, 2);
        reset(&in);
        frame_form(&in, 0x80 | op, "", 0, 8, 0);
        check_error(&in, 1000, 1002, 1);
    }

    /* A continuation with no message started, first or after a whole message. */
    reset(&in);
    frame_str(&in, 0x80, "x");
    check_error(&in, 100, 1002, 1);
    CHECK_STR(result.ev[0].reason, "continuation frame without a message");
    reset(&in);
    frame_str(&in, 0x00, "x");
    check_error(&in, 100, 1002, 1);
    reset(&in);
    frame_str(&in, 0x81, "done");
    frame_str(&in, 0x80, "x");
    check_error(&in, 100, 1002, 2);
    CHECK(is_message(&result.ev[0], 0, "done", 4));

    /* A new text or binary frame inside a fragmented message, even with FIN, even after a
     * control frame. */
    const unsigned second[] = {0x81, 0x01, 0x82, 0x02};
    for (size_t i = 0; i < 4; i++) {
        reset(&in);
        frame_str(&in, i < 2 ? 0x01 : 0x02, "start");
        frame_str(&in, 0x89, "");
        frame_str(&in, second[i], "again");
        check_error(&in, 100, 1002, 2);
        CHECK(result.ev[0].kind == WS_EV_PING);
        CHECK_STR(result.ev[1].reason, "new message before the fragmented one ended");
    }

    /* The 64-bit length's top bit. */
    reset(&in);
    frame_form(&in, 0x82, "", 0, 8, 0x8000000000000000ull);
    check_error(&in, (size_t)-1, 1002, 1);
    CHECK_STR(result.ev[0].reason, "64-bit length with its top bit set");
    CHECK_EQ(result.consumed, 10);
    reset(&in);
    frame_form(&in, 0x82, "", 0, 8, UINT64_MAX);
    check_error(&in, (size_t)-1, 1002, 1);

    /* Lengths in the shortest form only (5.2 "MUST"): 0-125 in 7 bits, up to 65535 in 16. */
    const struct { int form; uint64_t n; } longer[] = {{2, 0}, {2, 5}, {2, 125}, {8, 0}, {8, 125},
                                                       {8, 126}, {8, 65535}};
    for (size_t i = 0; i < sizeof longer / sizeof *longer; i++) {
        char *payload = calloc(1, 65536);
        reset(&in);
        frame_form(&in, 0x82, payload, (size_t)longer[i].n, longer[i].form, longer[i].n);
        check_error(&in, 1 << 20, 1002, 1);
        CHECK_STR(result.ev[0].reason, "length not in its shortest form");
        CHECK_EQ(result.consumed, (size_t)(2 + longer[i].form));
        free(payload);
    }
    /* ... and the shortest forms at their edges are accepted. */
    const uint64_t edges[] = {125, 126, 65535, 65536};
    for (size_t i = 0; i < 4; i++) {
        char *payload = calloc(1, 65536);
        reset(&in);
        frame(&in, 0x82, payload, (size_t)edges[i]);
        r = parse(&in);
        CHECK(r->n == 1 && r->ev[0].kind == WS_EV_MESSAGE && r->ev[0].len == edges[i]);
        free(payload);
    }
    buffer_free(&in);
}

static void test_size_limit(void)
{
    struct buffer in = {0};
    struct run *r;
    char payload[300];
    memset(payload, 'a', sizeof payload);

    /* Exactly the limit is fine, one byte more is 1009 on the head, before any payload. */
    frame(&in, 0x81, payload, 100);
    r = parse_max(&in, 100);
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_MESSAGE && r->ev[0].len == 100);
    reset(&in);
    frame(&in, 0x81, payload, 101);
    in.len = 2; /* only the head's first two bytes: the length is known */
    check_error(&in, 100, 1009, 1);
    CHECK_STR(result.ev[0].reason, "message over the size limit");
    CHECK_EQ(result.consumed, 2);
    reset(&in);
    frame(&in, 0x82, payload, 200);
    in.len = 4; /* a 16-bit length */
    check_error(&in, 100, 1009, 1);
    reset(&in);
    frame_form(&in, 0x82, "", 0, 8, 1ull << 62); /* a 64-bit length: no payload ever comes */
    check_error(&in, 1 << 20, 1009, 1);
    CHECK_EQ(result.consumed, 10);
    /* With max 0, only empty messages pass. */
    reset(&in);
    frame(&in, 0x82, "", 0);
    r = parse_max(&in, 0);
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_MESSAGE && r->ev[0].len == 0);
    reset(&in);
    frame(&in, 0x82, "x", 1);
    check_error(&in, 0, 1009, 1);

    /* The sum of the fragments counts: 60 + 40 fit 100, 60 + 41 do not, found on the head of the
     * fragment that goes over. */
    reset(&in);
    frame(&in, 0x01, payload, 60);
    frame(&in, 0x80, payload, 40);
    r = parse_max(&in, 100);
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_MESSAGE && r->ev[0].len == 100);
    reset(&in);
    frame(&in, 0x01, payload, 60);
    frame(&in, 0x00, payload, 30);
    frame(&in, 0x80, payload, 11);
    check_error(&in, 100, 1009, 1);
    CHECK_EQ(result.consumed, in.len - (6 + 11) + 2); /* up to the last fragment's length */

    /* Control frames never count, not even in the middle of a full message. */
    reset(&in);
    frame(&in, 0x01, payload, 10);
    frame(&in, 0x89, payload, 125);
    frame(&in, 0x8A, payload, 125);
    frame(&in, 0x80, payload, 0);
    r = parse_max(&in, 10);
    CHECK_EQ(r->n, 3);
    CHECK(r->n == 3 && r->ev[2].kind == WS_EV_MESSAGE && r->ev[2].len == 10);
    reset(&in);
    frame(&in, 0x88, "\x03\xe8" "0123456789", 12);
    r = parse_max(&in, 1);
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_CLOSE && r->ev[0].reason_len == 10);

    /* A new message starts from zero after the last one was delivered. */
    reset(&in);
    for (int i = 0; i < 5; i++)
        frame(&in, 0x82, payload, 100);
    r = parse_max(&in, 100);
    CHECK_EQ(r->n, 5);
    buffer_free(&in);
}

/* The message buffer's capacity stays within max_message + 1, however the frames are cut and
 * fed; after a big message it is given back. */
static void test_memory_bound(void)
{
    struct buffer in = {0};
    size_t max = 100000;
    unsigned char *payload = malloc(max);
    for (size_t i = 0; i < max; i++)
        payload[i] = (unsigned char)i;
    /* One frame of exactly max bytes. */
    frame(&in, 0x82, payload, max);
    struct run *r = parse_max(&in, max);
    CHECK(r->n == 1 && r->ev[0].len == max && !memcmp(r->ev[0].data, payload, max));
    CHECK(r->cap_seen >= max && r->cap_seen <= max + 1);
    /* 1000 fragments of 100 bytes. */
    reset(&in);
    for (size_t i = 0; i < 1000; i++)
        frame(&in, i == 0 ? 0x02 : i == 999 ? 0x80 : 0x00, payload + i * 100, 100);
    r = parse_max(&in, max);
    CHECK(r->n == 1 && r->ev[0].len == max && !memcmp(r->ev[0].data, payload, max));
    CHECK(r->cap_seen <= max + 1);
    /* Fragments of odd sizes that sum to max - 1 with a small limit. */
    reset(&in);
    size_t total = 0, sizes[] = {1, 250, 3, 513, 2, 230};
    for (size_t i = 0; i < 6; i++) {
        frame(&in, i == 0 ? 0x02 : i == 5 ? 0x80 : 0x00, payload + total, sizes[i]);
        total += sizes[i];
    }
    r = parse_max(&in, 1000);
    CHECK(r->n == 1 && r->ev[0].len == total && !memcmp(r->ev[0].data, payload, total));
    CHECK(r->cap_seen <= 1001);

    /* A big message's buffer is given back at the next ws_parse; a small one's is kept. */
    struct ws_parser p;
    struct ws_event ev;
    ws_parser_init(&p, max);
    reset(&in);
    frame(&in, 0x82, payload, max);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)in.data, in.len, &ev), in.len);
    CHECK(ev.kind == WS_EV_MESSAGE && p.msg.cap > 65536);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)"\x82", 1, &ev), 1);
    CHECK(ev.kind == WS_EV_NONE && p.msg.cap == 0 && p.msg.data == NULL);
    ws_parser_free(&p);
    ws_parser_init(&p, max);
    reset(&in);
    frame(&in, 0x82, payload, 1000);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)in.data, in.len, &ev), in.len);
    size_t cap = p.msg.cap;
    CHECK(ev.kind == WS_EV_MESSAGE && cap >= 1000 && cap <= 1001);
    CHECK_EQ(ws_parse(&p, (const unsigned char *)"\x82", 1, &ev), 1);
    CHECK(p.msg.cap == cap && p.msg.len == 0);
    ws_parser_free(&p);
    free(payload);
    payload = NULL;
    buffer_free(&in);
}

/* ---- close frames --------------------------------------------------------------------------- */

static void close_frame(struct buffer *in, unsigned code, const char *reason, size_t reason_len)
{
    unsigned char payload[200];
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, reason_len);
    frame(in, 0x88, payload, 2 + reason_len);
}

static void test_close_frames(void)
{
    struct buffer in = {0};
    struct run *r;

    /* No payload: 1005. */
    frame(&in, 0x88, "", 0);
    r = parse(&in);
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_CLOSE && r->ev[0].code == 1005);
    CHECK(r->ev[0].reason_len == 0 && r->ev[0].len == 0);

    /* One byte: 1002. */
    reset(&in);
    frame(&in, 0x88, "\x03", 1);
    check_error(&in, 100, 1002, 1);
    CHECK_STR(result.ev[0].reason, "close frame with a 1-byte payload");

    /* The codes a close frame may carry, with or without a reason. */
    const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
                              4000, 4999};
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        reset(&in);
        close_frame(&in, valid[i], "", 0);
        r = parse(&in);
        CHECK(r->n == 1 && r->ev[0].kind == WS_EV_CLOSE && r->ev[0].code == valid[i]);
        reset(&in);
        close_frame(&in, valid[i], "going \xe2\x86\x92 away", 12);
        r = parse(&in);
        CHECK(r->n == 1 && r->ev[0].kind == WS_EV_CLOSE && r->ev[0].code == valid[i]);
        CHECK(r->ev[0].reason_len == 12 && !memcmp(r->ev[0].reason, "going \xe2\x86\x92 away", 12));
        CHECK(ws_close_code_valid((uint16_t)valid[i]));
    }
    /* The others: 1002 (1004-1006 and 1015 are reserved, 1012-1014 unassigned by RFC 6455). */
    const unsigned invalid[] = {0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100,
                                2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        reset(&in);
        close_frame(&in, invalid[i], "", 0);
        check_error(&in, 100, 1002, 1);
        CHECK_STR(result.ev[0].reason, "invalid close code");
        CHECK(!ws_close_code_valid((uint16_t)invalid[i]));
    }

    /* A reason that is not UTF-8: 1007. */
    const char *bad_reasons[] = {"\xff", "ab\xc0\x80", "\xed\xa0\x80", "cut \xe2\x82"};
    for (size_t i = 0; i < sizeof bad_reasons / sizeof *bad_reasons; i++) {
        reset(&in);
        close_frame(&in, 1000, bad_reasons[i], strlen(bad_reasons[i]));
        check_error(&in, 100, 1007, 1);
        CHECK_STR(result.ev[0].reason, "close reason is not UTF-8");
    }
    /* A reason of 123 bytes, the most there is room for. */
    char reason[124];
    memset(reason, 'r', 123);
    reset(&in);
    close_frame(&in, 4000, reason, 123);
    r = parse(&in);
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_CLOSE && r->ev[0].reason_len == 123);
    buffer_free(&in);
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

struct sample {
    const char *s;
    size_t len;
};
#define S(lit) {lit, sizeof lit - 1}

static const struct sample VALID[] = {
    S(""), S("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"),
    S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), /* κόσμε */
    S("\x00"), S("\x7f"),
    S("\xc2\x80"), S("\xdf\xbf"),                     /* U+0080, U+07FF */
    S("\xe0\xa0\x80"), S("\xef\xbf\xbf"),             /* U+0800, U+FFFF */
    S("\xed\x9f\xbf"), S("\xee\x80\x80"),             /* U+D7FF, U+E000: around the surrogates */
    S("\xef\xbf\xbe"), S("\xef\xb7\x90"),             /* noncharacters are valid */
    S("\xf0\x90\x80\x80"), S("\xf4\x8f\xbf\xbf"),     /* U+10000, U+10FFFF */
    S("\xf0\x9f\x98\x80 \xf3\xbf\xbf\xbf"),
};

static const struct sample INVALID[] = {
    S("\x80"), S("\xbf"), S("\x80\xbf"), S("a\x80" "b"),    /* lone continuation bytes */
    S("\xc0\x80"), S("\xc1\xbf"), S("\xc0\xaf"),           /* 2-byte overlongs */
    S("\xe0\x80\x80"), S("\xe0\x9f\xbf"),                  /* 3-byte overlongs */
    S("\xf0\x80\x80\x80"), S("\xf0\x8f\xbf\xbf"),          /* 4-byte overlongs */
    S("\xed\xa0\x80"), S("\xed\xad\xbf"), S("\xed\xae\x80"), S("\xed\xaf\xbf"),
    S("\xed\xb0\x80"), S("\xed\xbe\x80"), S("\xed\xbf\xbf"), /* surrogates D800-DFFF */
    S("\xed\xa0\x80\xed\xb0\x80"),                           /* a surrogate pair */
    S("\xf4\x90\x80\x80"), S("\xf5\x80\x80\x80"), S("\xf7\xbf\xbf\xbf"), /* > U+10FFFF */
    S("\xf5"), S("\xf8\x88\x80\x80\x80"), S("\xfc\x84\x80\x80\x80\x80"), S("\xfe"), S("\xff"),
    S("\xc2"), S("\xe2\x82"), S("\xf0\x9f\x98"), S("ok \xce"), /* cut at the end */
    S("\xe2\x41\x82"), S("\xc2 "), S("\xf0\x9f\x98\x20"),      /* ASCII inside a character */
    S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"),
};

static void test_utf8(void)
{
    for (size_t i = 0; i < sizeof VALID / sizeof *VALID; i++)
        CHECK(ws_utf8_valid((const unsigned char *)VALID[i].s, VALID[i].len));
    for (size_t i = 0; i < sizeof INVALID / sizeof *INVALID; i++)
        CHECK(!ws_utf8_valid((const unsigned char *)INVALID[i].s, INVALID[i].len));
    /* Every code point, encoded by hand: valid unless a surrogate; every overlong refused. */
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        unsigned char b[4];
        size_t n;
        if (cp < 0x80) {
            b[0] = (unsigned char)cp, n = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xC0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 63));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xE0 | cp >> 12);
            b[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
            b[2] = (unsigned char)(0x80 | (cp & 63));
            n = 3;
        } else {
            b[0] = (unsigned char)(0xF0 | cp >> 18);
            b[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
            b[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
            b[3] = (unsigned char)(0x80 | (cp & 63));
            n = 4;
        }
        int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (ws_utf8_valid(b, n) == surrogate) {
            CHECK(!"code point misjudged");
            fprintf(stderr, "  U+%04X\n", (unsigned)cp);
        }
        if (n < 4) { /* the same code point one byte longer: overlong */
            unsigned char o[4];
            uint32_t v = cp;
            if (n == 1) {
                o[0] = (unsigned char)(0xC0 | v >> 6), o[1] = (unsigned char)(0x80 | (v & 63));
            } else if (n == 2) {
                o[0] = 0xE0, o[1] = (unsigned char)(0x80 | v >> 6), o[2] = (unsigned char)(0x80 | (v & 63));
            } else {
                o[0] = 0xF0, o[1] = (unsigned char)(0x80 | v >> 12);
                o[2] = (unsigned char)(0x80 | ((v >> 6) & 63)), o[3] = (unsigned char)(0x80 | (v & 63));
            }
            if (ws_utf8_valid(o, n + 1)) {
                CHECK(!"overlong accepted");
                fprintf(stderr, "  U+%04X\n", (unsigned)cp);
            }
        }
    }

    /* In text messages: valid ones pass whole and split at every byte across two fragments
     * (a character split across fragments is fine); invalid ones are 1007 either way. Binary
     * messages are not checked. */
    struct buffer in = {0};
    for (size_t i = 0; i < sizeof VALID / sizeof *VALID; i++) {
        const struct sample *v = &VALID[i];
        reset(&in);
        frame(&in, 0x81, v->s, v->len);
        struct run *r = parse(&in);
        CHECK(r->n == 1 && is_message(&r->ev[0], 0, v->s, v->len));
        for (size_t cut = 0; cut <= v->len; cut++) {
            reset(&in);
            frame(&in, 0x01, v->s, cut);
            frame(&in, 0x89, "", 0);
            frame(&in, 0x80, v->s + cut, v->len - cut);
            r = parse(&in);
            CHECK(r->n == 2 && is_message(&r->ev[1], 0, v->s, v->len));
        }
    }
    for (size_t i = 0; i < sizeof INVALID / sizeof *INVALID; i++) {
        const struct sample *v = &INVALID[i];
        reset(&in);
        frame(&in, 0x81, v->s, v->len);
        check_error(&in, 1000, 1007, 1);
        for (size_t cut = 0; cut <= v->len; cut++) {
            reset(&in);
            frame(&in, 0x01, v->s, cut);
            frame(&in, 0x80, v->s + cut, v->len - cut);
            check_error(&in, 1000, 1007, 1);
        }
        reset(&in);
        frame(&in, 0x82, v->s, v->len);
        struct run *r = parse(&in);
        CHECK(r->n == 1 && is_message(&r->ev[0], 1, v->s, v->len));
    }

    /* Fail fast (Autobahn 6.4): the error comes as soon as the bad byte arrives, before the rest
     * of the frame and before the message's last fragment. */
    reset(&in);
    frame_str(&in, 0x81, "abc\xed\xa0\x80 and much more to come");
    in.len = 6 + 4; /* the head and "abc\xed" */
    struct run *r = parse(&in);
    CHECK_EQ(r->n, 0);
    in.len = 6 + 5; /* and "\xa0": a surrogate */
    check_error(&in, 1000, 1007, 1);
    CHECK_STR(result.ev[0].reason, "invalid UTF-8 in a text message");
    reset(&in);
    frame(&in, 0x01, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80", 15);
    check_error(&in, 1000, 1007, 1); /* no continuation was ever sent */
    /* A message that ends inside a character: 1007 at its end. */
    reset(&in);
    frame(&in, 0x01, "ok \xf0\x9f", 5);
    r = parse(&in);
    CHECK_EQ(r->n, 0);
    frame(&in, 0x80, "\x98", 1);
    check_error(&in, 1000, 1007, 1);
    CHECK_STR(result.ev[0].reason, "text message ends inside a character");
    reset(&in);
    frame(&in, 0x01, "\xe2\x82", 2);
    frame(&in, 0x80, "", 0);
    check_error(&in, 1000, 1007, 1);
    buffer_free(&in);

    /* The incremental form, one byte at a time. */
    struct ws_utf8 u = {0, 0, 0};
    CHECK(ws_utf8_feed(&u, (const unsigned char *)"\xf0", 1) && !ws_utf8_complete(&u));
    CHECK(ws_utf8_feed(&u, (const unsigned char *)"\x9f\x98", 2) && !ws_utf8_complete(&u));
    CHECK(ws_utf8_feed(&u, (const unsigned char *)"\x80", 1) && ws_utf8_complete(&u));
    CHECK(!ws_utf8_feed(&u, (const unsigned char *)"\xc0", 1));
    CHECK(!ws_utf8_feed(&u, (const unsigned char *)"a", 1)); /* stays refused */
    CHECK(!ws_utf8_complete(&u));
}

/* ---- what the server sends ------------------------------------------------------------------ */

/* A server frame made a client frame (mask bit and key inserted, payload masked), to parse. */
static void masked_copy(struct buffer *in, const struct buffer *out)
{
    const unsigned char *s = (const unsigned char *)out->data;
    size_t h = (s[1] & 0x7f) == 126 ? 4 : (s[1] & 0x7f) == 127 ? 10 : 2;
    append_bytes(in, out->data, 1);
    unsigned char b1 = s[1] | 0x80;
    append_bytes(in, (const char *)&b1, 1);
    append_bytes(in, out->data + 2, h - 2);
    append_bytes(in, (const char *)KEY, 4);
    for (size_t i = h; i < out->len; i++) {
        char c = (char)(s[i] ^ KEY[(i - h) & 3]);
        append_bytes(in, &c, 1);
    }
}

static void test_frame_append(void)
{
    struct buffer out = {0};
    unsigned char *payload = calloc(1, 65536);
    payload[0] = 'A';
    payload[65535] = 'Z';
    const struct {
        size_t len;
        const char *head;
        size_t head_len;
    } forms[] = {
        {0, "\x82\x00", 2},
        {125, "\x82\x7d", 2},
        {126, "\x82\x7e\x00\x7e", 4},
        {65535, "\x82\x7e\xff\xff", 4},
        {65536, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10},
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        out.len = 0;
        CHECK_EQ(ws_frame_append(&out, WS_OP_BINARY, payload, forms[i].len), 0);
        CHECK_EQ(out.len, forms[i].head_len + forms[i].len);
        CHECK(!memcmp(out.data, forms[i].head, forms[i].head_len));
        CHECK(!memcmp(out.data + forms[i].head_len, payload, forms[i].len));
        /* Masked, the client's way, the parser reads it back. */
        struct buffer in = {0};
        masked_copy(&in, &out);
        struct run *r = parse(&in);
        CHECK(r->n == 1 && is_message(&r->ev[0], 1, payload, forms[i].len));
        buffer_free(&in);
    }
    /* Appends to what is there; NULL data with length 0. */
    out.len = 0;
    CHECK_EQ(ws_frame_append(&out, WS_OP_TEXT, "hi", 2), 0);
    CHECK_EQ(ws_frame_append(&out, WS_OP_CLOSE, NULL, 0), 0);
    CHECK_EQ(ws_frame_append(&out, WS_OP_PONG, "p", 1), 0);
    CHECK(out.len == 9 && !memcmp(out.data, "\x81\x02hi\x88\x00\x8a\x01p", 9));
    /* Refused, out unchanged: other opcodes, a control payload over 125 bytes. */
    const int bad_ops[] = {0, 3, 7, 11, 15, -1, 16, 0x81};
    for (size_t i = 0; i < sizeof bad_ops / sizeof *bad_ops; i++) {
        errno = 0;
        CHECK_EQ(ws_frame_append(&out, bad_ops[i], "x", 1), -1);
        CHECK_EQ(errno, EINVAL);
    }
    CHECK_EQ(ws_frame_append(&out, WS_OP_PING, payload, 125), 0);
    size_t before = out.len;
    for (int op = WS_OP_CLOSE; op <= WS_OP_PONG; op++) {
        errno = 0;
        CHECK_EQ(ws_frame_append(&out, op, payload, 126), -1);
        CHECK_EQ(errno, EINVAL);
    }
    CHECK_EQ(out.len, before);
    buffer_free(&out);
    free(payload);
    payload = NULL;
}

static void test_close_payload(void)
{
    unsigned char out[WS_MAX_CONTROL];
    CHECK_EQ(ws_close_payload(out, 1000, NULL), 2);
    CHECK(!memcmp(out, "\x03\xe8", 2));
    CHECK_EQ(ws_close_payload(out, 4999, ""), 2);
    CHECK(!memcmp(out, "\x13\x87", 2));
    CHECK_EQ(ws_close_payload(out, 1001, "going away"), 12);
    CHECK(!memcmp(out, "\x03\xe9going away", 12));
    /* Codes that may not be sent: an empty payload. */
    const uint16_t unsendable[] = {0, 999, 1005, 1006, 1015, 2999, 5000};
    for (size_t i = 0; i < sizeof unsendable / sizeof *unsendable; i++)
        CHECK_EQ(ws_close_payload(out, unsendable[i], "reason"), 0);

    char reason[300];
    /* 123 ASCII bytes fit; 124 are cut to 123. */
    memset(reason, 'x', sizeof reason);
    reason[123] = '\0';
    CHECK_EQ(ws_close_payload(out, 1000, reason), 125);
    reason[123] = 'y';
    reason[124] = '\0';
    CHECK_EQ(ws_close_payload(out, 1000, reason), 125);
    CHECK(out[124] == 'x');
    /* A character across the 123-byte edge is left out whole: 2, 3 and 4-byte ones, at each
     * offset. */
    const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t c = 0; c < 3; c++) {
        size_t w = strlen(chars[c]);
        for (size_t start = 123 - w - 1; start <= 123; start++) {
            memset(reason, 'x', sizeof reason);
            memcpy(reason + start, chars[c], w);
            reason[start + w] = '\0';
            size_t expect = start + w <= 123 ? start + w : start;
            CHECK_EQ(ws_close_payload(out, 1000, reason), 2 + expect);
            CHECK(ws_utf8_valid(out + 2, expect));
        }
    }
    /* Bytes that are not UTF-8 end the reason. */
    CHECK_EQ(ws_close_payload(out, 1000, "ok\xff then"), 4);
    CHECK_EQ(ws_close_payload(out, 1000, "ok\xed\xa0\x80"), 4);
    CHECK_EQ(ws_close_payload(out, 1000, "ok\xe2\x82"), 4);

    /* What it makes, sent by a client, reads back as the same close. */
    memset(reason, 'x', sizeof reason);
    memcpy(reason + 121, "\xe2\x82\xac", 4); /* cut: the euro sign does not fit */
    size_t n = ws_close_payload(out, 3000, reason);
    CHECK_EQ(n, 123);
    struct buffer in = {0};
    frame(&in, 0x88, out, n);
    struct run *r = parse(&in);
    CHECK(r->n == 1 && r->ev[0].kind == WS_EV_CLOSE && r->ev[0].code == 3000);
    CHECK(r->n == 1 && r->ev[0].reason_len == 121 && !memcmp(r->ev[0].reason, reason, 121));
    buffer_free(&in);
}

int main(void)
{
    test_accept_key();
    test_token_listed();
    test_rfc_examples();
    test_sequences();
    test_frame_rules();
    test_size_limit();
    test_memory_bound();
    test_close_frames();
    test_utf8();
    test_frame_append();
    test_close_payload();
    run_clear(&result);
    run_clear(&other);
    return CHECK_DONE();
}
