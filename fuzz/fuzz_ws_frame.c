/* SPDX-License-Identifier: MIT */
/* fuzz_ws_frame: the WebSocket codec (src/ws_frame.c) on arbitrary bytes.
 *
 * The input's first byte picks the parser's message limit (a table of small and large ones), its
 * second seeds the chunk sizes; the rest is a stream of client frames. The stream is parsed in
 * one piece, a byte at a time and in chunks of random sizes: every way must give the same events.
 * Checked besides memory errors: every call consumes what it says, and all of it when it asks
 * for more; events are well-formed (a text MESSAGE is valid UTF-8 by a separate decoding
 * validator, a MESSAGE fits the limit, a control payload fits 125 bytes, a CLOSE carries a valid
 * code or 1005 and a UTF-8 reason, an ERROR carries 1002/1007/1009/1011 and a message); after
 * CLOSE or ERROR nothing more is accepted; the message buffer never grows past the limit + 1.
 * The stream is also: checked as UTF-8 whole and fed in pieces against the separate validator;
 * sent as a server frame, masked and parsed back; made a close reason; tried as a client key and
 * as a header's token list.
 * Uses: ws_frame, buffer. */
#include "ws_frame.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_ws_frame: %s\n", what);
        abort();
    }
}

/* UTF-8 by decoding each character: the lead byte's bit pattern gives the length, then
 * continuation bytes, then the code point must be in range for its length, not a surrogate and
 * not above U+10FFFF. A different method from ws_utf8_feed's ranges, so they check each other. */
static int ref_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i < n)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

static uint32_t rng_state;
static size_t next_chunk(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return 1 + (rng_state % 64 == 0 ? rng_state % 3000 : rng_state % 24);
}

struct rec {
    int kind, binary;
    unsigned code;
    size_t len, reason_len;
    unsigned char *data; /* a copy of data, or of the ERROR's message */
};

struct run {
    struct rec *ev;
    size_t n;
};

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ev[i].data);
    free(r->ev);
    r->ev = NULL;
    r->n = 0;
}

static void check_event(const struct ws_event *ev, size_t max)
{
    switch (ev->kind) {
    case WS_EV_MESSAGE:
        check(ev->data != NULL, "a message without data");
        check(ev->len <= max, "a message over the limit");
        check(ev->binary == 0 || ev->binary == 1, "binary is not 0 or 1");
        if (!ev->binary)
            check(ref_utf8(ev->data, ev->len), "a text message that is not UTF-8");
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        check(ev->data != NULL && ev->len <= WS_MAX_CONTROL, "a control payload over 125 bytes");
        break;
    case WS_EV_CLOSE:
        check(ev->data != NULL && ev->reason != NULL, "a close without data");
        if (ev->len == 0) {
            check(ev->code == 1005 && ev->reason_len == 0, "an empty close is not 1005");
        } else {
            check(ev->len >= 2 && ev->len <= WS_MAX_CONTROL, "a close payload of a wrong size");
            check(ws_close_code_valid(ev->code) && ev->code != 1005, "an invalid close code");
            check(ev->code == (unsigned)(ev->data[0] << 8 | ev->data[1]), "close code misread");
            check(ev->reason == (const char *)ev->data + 2 && ev->reason_len == ev->len - 2,
                  "a close reason that is not the rest of the payload");
            check(ref_utf8((const unsigned char *)ev->reason, ev->reason_len),
                  "a close reason that is not UTF-8");
        }
        break;
    case WS_EV_ERROR:
        check(ev->code == 1002 || ev->code == 1007 || ev->code == 1009 || ev->code == 1011,
              "an error with another code");
        check(ev->reason != NULL && ev->reason_len > 0 && strlen(ev->reason) == ev->reason_len,
              "an error without a message");
        break;
    default:
        check(0, "an unknown event kind");
    }
}

/* chunk 0: in one piece; 1: a byte at a time; 2: random sizes. */
static void parse_stream(const unsigned char *in, size_t len, size_t max, int chunk,
                         struct run *r)
{
    struct ws_parser p;
    ws_parser_init(&p, max);
    r->ev = calloc(len + 1, sizeof *r->ev); /* every event consumes at least one byte */
    r->n = 0;
    check(r->ev != NULL, "out of memory");
    int ended = 0;
    size_t pos = 0;
    while (pos < len && !ended) {
        size_t slice = chunk == 0 ? len - pos : chunk == 1 ? 1 : next_chunk();
        if (slice > len - pos)
            slice = len - pos;
        const unsigned char *buf = in + pos;
        size_t left = slice;
        while (left) {
            struct ws_event ev;
            size_t n = ws_parse(&p, buf, left, &ev);
            check(n <= left, "consumed more than given");
            check(p.msg.len <= max, "the message buffer holds more than the limit");
            check(max == (size_t)-1 || p.msg.cap <= max + 1, "the message buffer grew past the limit");
            buf += n;
            left -= n;
            if (ev.kind == WS_EV_NONE) {
                check(left == 0, "asked for more with bytes left");
                break;
            }
            check(n > 0, "an event without consuming a byte");
            check_event(&ev, max);
            check(r->n < len + 1, "more events than bytes");
            struct rec *e = &r->ev[r->n++];
            e->kind = (int)ev.kind;
            e->binary = ev.binary;
            e->code = ev.code;
            e->len = ev.kind == WS_EV_ERROR ? ev.reason_len : ev.len;
            e->reason_len = ev.reason_len;
            e->data = malloc(e->len + 1);
            check(e->data != NULL, "out of memory");
            memcpy(e->data, ev.kind == WS_EV_ERROR ? (const unsigned char *)ev.reason : ev.data,
                   e->len);
            if (ev.kind == WS_EV_CLOSE || ev.kind == WS_EV_ERROR) {
                ended = 1;
                struct ws_event after;
                check(ws_parse(&p, buf, left, &after) == 0 && after.kind == WS_EV_NONE,
                      "bytes accepted after the end");
                check(ws_parse(&p, (const unsigned char *)"\x81\x80\0\0\0\0", 6, &after) == 0 &&
                          after.kind == WS_EV_NONE,
                      "a frame accepted after the end");
                break;
            }
        }
        pos += slice;
    }
    ws_parser_free(&p);
}

static void same_runs(const struct run *a, const struct run *b)
{
    check(a->n == b->n, "chunking changed the number of events");
    for (size_t i = 0; i < a->n; i++) {
        const struct rec *x = &a->ev[i], *y = &b->ev[i];
        check(x->kind == y->kind && x->binary == y->binary && x->code == y->code &&
                  x->len == y->len && x->reason_len == y->reason_len &&
                  memcmp(x->data, y->data, x->len) == 0,
              "chunking changed an event");
    }
}

static void check_utf8(const unsigned char *s, size_t len)
{
    int ref = ref_utf8(s, len);
    check(ws_utf8_valid(s, len) == ref, "ws_utf8_valid disagrees with the decoder");
    struct ws_utf8 u = {0, 0, 0};
    int ok = 1;
    for (size_t pos = 0; pos < len && ok;) {
        size_t n = next_chunk();
        if (n > len - pos)
            n = len - pos;
        ok = ws_utf8_feed(&u, s + pos, n);
        pos += n;
    }
    check((ok && ws_utf8_complete(&u)) == ref, "ws_utf8_feed in pieces disagrees");
}

/* The stream as a server frame, masked the client's way, parsed back: the same payload. */
static void check_round_trip(const unsigned char *s, size_t len, uint32_t key32)
{
    int text = ref_utf8(s, len);
    struct buffer out = {0};
    check(ws_frame_append(&out, text ? WS_OP_TEXT : WS_OP_BINARY, s, len) == 0, "append failed");
    size_t h = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
    check(out.len == h + len, "a server frame of a wrong size");
    unsigned char *in = malloc(out.len + 4);
    check(in != NULL, "out of memory");
    unsigned char key[4] = {(unsigned char)key32, (unsigned char)(key32 >> 8),
                            (unsigned char)(key32 >> 16), (unsigned char)(key32 >> 24)};
    memcpy(in, out.data, h);
    in[1] |= 0x80;
    memcpy(in + h, key, 4);
    for (size_t i = 0; i < len; i++)
        in[h + 4 + i] = (unsigned char)out.data[h + i] ^ key[i & 3];
    struct ws_parser p;
    struct ws_event ev;
    ws_parser_init(&p, len);
    size_t n = ws_parse(&p, in, out.len + 4, &ev);
    check(n == out.len + 4 && ev.kind == WS_EV_MESSAGE && ev.binary == !text && ev.len == len &&
              memcmp(ev.data, s, len) == 0,
          "a server frame did not parse back");
    ws_parser_free(&p);
    free(in);
    buffer_free(&out);
}

static void check_close_payload(const unsigned char *s, size_t len, uint16_t code)
{
    char *reason = malloc(len + 1);
    check(reason != NULL, "out of memory");
    memcpy(reason, s, len);
    reason[len] = '\0';
    unsigned char out[WS_MAX_CONTROL];
    size_t n = ws_close_payload(out, code, reason);
    if (!ws_close_code_valid(code)) {
        check(n == 0, "a close payload for a code that may not be sent");
    } else {
        size_t whole = strlen(reason);
        check(n >= 2 && n <= WS_MAX_CONTROL, "a close payload of a wrong size");
        check(out[0] == code >> 8 && out[1] == (code & 0xFF), "a close payload's code");
        check(memcmp(out + 2, reason, n - 2) == 0, "a close reason that is not a prefix");
        check(ref_utf8(out + 2, n - 2), "a close reason that is not UTF-8");
        if (whole <= WS_MAX_CONTROL - 2 && ref_utf8(s, whole))
            check(n - 2 == whole, "a close reason that fits was cut");
    }
    free(reason);
}

static void check_accept_key(const unsigned char *s, size_t len)
{
    char key[25], out[29];
    size_t n = len < 24 ? len : 24;
    memcpy(key, s, n);
    key[n] = '\0';
    int ok = n == 24 && key[22] == '=' && key[23] == '=';
    for (size_t i = 0; i < 22 && ok; i++)
        ok = (key[i] >= 'A' && key[i] <= 'Z') || (key[i] >= 'a' && key[i] <= 'z') ||
             (key[i] >= '0' && key[i] <= '9') || key[i] == '+' || key[i] == '/';
    int r = ws_accept_key(key, out);
    check(r == (ok ? 0 : -1), "ws_accept_key's verdict on a key");
    check(r == 0 ? strlen(out) == 28 && out[27] == '=' : out[0] == '\0', "ws_accept_key's output");
}

/* ws_token_listed against splitting a lowercased copy at commas and trimming blanks. */
static void check_token_list(const unsigned char *s, size_t len)
{
    char *value = malloc(len + 1);
    check(value != NULL, "out of memory");
    memcpy(value, s, len);
    value[len] = '\0';
    size_t n = strlen(value); /* the value as a C string: up to its first NUL */
    const char *tokens[] = {"upgrade", "websocket", "keep-alive"};
    for (size_t t = 0; t < 3; t++) {
        int ref = 0;
        size_t start = 0;
        while (start <= n && !ref) {
            size_t end = start;
            while (end < n && value[end] != ',')
                end++;
            size_t a = start, b = end;
            while (a < b && (value[a] == ' ' || value[a] == '\t'))
                a++;
            while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t'))
                b--;
            if (b - a == strlen(tokens[t])) {
                ref = 1;
                for (size_t i = a; i < b && ref; i++) {
                    char c = value[i] >= 'A' && value[i] <= 'Z' ? (char)(value[i] + 32) : value[i];
                    ref = c == tokens[t][i - a];
                }
            }
            start = end + 1;
        }
        check(ws_token_listed(value, tokens[t]) == ref, "ws_token_listed disagrees");
    }
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {0, 1, 5, 16, 125, 126, 1000, 4096, 65536, (size_t)-1};
    if (size < 2)
        return 0;
    size_t max = limits[data[0] % (sizeof limits / sizeof *limits)];
    uint32_t seed = 0x9E3779B9u ^ (uint32_t)data[1] * 2654435761u;
    if (seed == 0)
        seed = 1; /* xorshift stays at 0 */
    const unsigned char *in = data + 2;
    size_t len = size - 2;

    struct run whole, bytes, pieces;
    parse_stream(in, len, max, 0, &whole);
    parse_stream(in, len, max, 1, &bytes);
    rng_state = seed;
    parse_stream(in, len, max, 2, &pieces);
    same_runs(&whole, &bytes);
    same_runs(&whole, &pieces);
    run_free(&whole);
    run_free(&bytes);
    run_free(&pieces);

    rng_state = seed;
    check_utf8(in, len);
    check_round_trip(in, len, seed);
    check_close_payload(in, len, (uint16_t)(data[0] << 8 | data[1]));
    check_accept_key(in, len);
    check_token_list(in, len);
    return 0;
}
