/* SPDX-License-Identifier: MIT */
/* ws_frame: see ws_frame.h. Section numbers are RFC 6455's. */
#include "ws_frame.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* 1.3: the GUID a server appends to the client's key. */
static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* A delivered message's buffer is kept for the next one up to this capacity, so a connection
 * that once received a big message does not hold its memory while idle. */
#define WS_KEEP_CAPACITY 65536u

enum { ST_HEAD, ST_PAYLOAD, ST_DONE };

static const unsigned char EMPTY[1];

/* ---- handshake ------------------------------------------------------------------------------ */

static int is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

int ws_accept_key(const char *client_key, char out[29])
{
    out[0] = '\0';
    if (!client_key || strnlen(client_key, 25) != 24)
        return -1;
    for (int i = 0; i < 22; i++)
        if (!is_base64_char(client_key[i]))
            return -1;
    if (client_key[22] != '=' || client_key[23] != '=')
        return -1;
    unsigned char text[24 + sizeof WS_GUID - 1];
    memcpy(text, client_key, 24);
    memcpy(text + 24, WS_GUID, sizeof WS_GUID - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (!EVP_Digest(text, sizeof text, md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters and a NUL */
    return 0;
}

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

int ws_token_listed(const char *value, const char *token)
{
    if (!value || !token)
        return 0;
    size_t token_len = strlen(token);
    const char *s = value;
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n == token_len) {
            size_t i = 0;
            while (i < n && lower(s[i]) == lower(token[i]))
                i++;
            if (i == n)
                return 1;
        }
        if (!end)
            return 0;
        s = end + 1;
    }
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

/* The state after invalid bytes: nothing can follow. */
#define UTF8_BROKEN 0xFF

int ws_utf8_feed(struct ws_utf8 *u, const unsigned char *s, size_t len)
{
    size_t i = 0;
    if (u->need == UTF8_BROKEN)
        return 0;
    while (i < len) {
        if (u->need == 0) {
            /* Runs of ASCII, eight bytes at a time: most text is mostly ASCII. */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == len)
                break;
            unsigned char c = s[i++];
            if (c < 0x80)
                continue;
            /* The lead byte fixes how many continuation bytes follow and the range of the
             * first, which excludes overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4). */
            u->lo = 0x80;
            u->hi = 0xBF;
            if (c >= 0xC2 && c <= 0xDF) {
                u->need = 1;
            } else if (c >= 0xE0 && c <= 0xEF) {
                u->need = 2;
                if (c == 0xE0)
                    u->lo = 0xA0;
                else if (c == 0xED)
                    u->hi = 0x9F;
            } else if (c >= 0xF0 && c <= 0xF4) {
                u->need = 3;
                if (c == 0xF0)
                    u->lo = 0x90;
                else if (c == 0xF4)
                    u->hi = 0x8F;
            } else {
                goto broken; /* a continuation byte, C0, C1 (overlong) or F5-FF */
            }
        } else {
            unsigned char c = s[i++];
            if (c < u->lo || c > u->hi)
                goto broken;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
        }
    }
    return 1;
broken:
    u->need = UTF8_BROKEN;
    return 0;
}

int ws_utf8_complete(const struct ws_utf8 *u) { return u->need == 0; }

int ws_utf8_valid(const unsigned char *s, size_t len)
{
    struct ws_utf8 u = {0, 0, 0};
    return ws_utf8_feed(&u, s, len) && ws_utf8_complete(&u);
}

/* ---- close payloads ------------------------------------------------------------------------- */

int ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

size_t ws_close_payload(unsigned char out[WS_MAX_CONTROL], uint16_t code, const char *reason)
{
    if (!ws_close_code_valid(code))
        return 0;
    out[0] = (unsigned char)(code >> 8);
    out[1] = (unsigned char)(code & 0xFF);
    size_t good = 0;
    if (reason) {
        struct ws_utf8 u = {0, 0, 0};
        for (size_t i = 0; i < WS_MAX_CONTROL - 2 && reason[i]; i++) {
            if (!ws_utf8_feed(&u, (const unsigned char *)reason + i, 1))
                break;
            if (ws_utf8_complete(&u))
                good = i + 1;
        }
        memcpy(out + 2, reason, good);
    }
    return 2 + good;
}

/* ---- server frames -------------------------------------------------------------------------- */

int ws_frame_append(struct buffer *out, int opcode, const void *data, size_t len)
{
    if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY && opcode != WS_OP_CLOSE &&
        opcode != WS_OP_PING && opcode != WS_OP_PONG) {
        errno = EINVAL;
        return -1;
    }
    if (opcode >= WS_OP_CLOSE && len > WS_MAX_CONTROL) {
        errno = EINVAL;
        return -1;
    }
    unsigned char head[10];
    size_t head_len;
    head[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        head[1] = (unsigned char)len;
        head_len = 2;
    } else if (len <= 0xFFFF) {
        head[1] = 126;
        head[2] = (unsigned char)(len >> 8);
        head[3] = (unsigned char)len;
        head_len = 4;
    } else {
        head[1] = 127;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        head_len = 10;
    }
    if (len > (size_t)-1 - head_len || buffer_reserve(out, head_len + len) != 0) {
        errno = ENOMEM;
        return -1;
    }
    /* Both fit now: neither append can fail. */
    buffer_append(out, head, head_len);
    buffer_append(out, data, len);
    return 0;
}

/* ---- the parser ----------------------------------------------------------------------------- */

void ws_parser_init(struct ws_parser *p, size_t max_message)
{
    memset(p, 0, sizeof *p);
    p->max_message = max_message;
    p->state = ST_HEAD;
    p->head_need = 2;
}

void ws_parser_free(struct ws_parser *p)
{
    buffer_free(&p->msg);
    p->state = ST_DONE;
}

static size_t fail(struct ws_parser *p, struct ws_event *ev, size_t used, uint16_t code,
                   const char *why)
{
    p->state = ST_DONE;
    buffer_free(&p->msg); /* nothing refers to it any more */
    ev->kind = WS_EV_ERROR;
    ev->code = code;
    ev->reason = why;
    ev->reason_len = strlen(why);
    return used;
}

static int is_control(int opcode) { return opcode >= WS_OP_CLOSE; }

/* The first head byte (5.2, 5.4, 5.5): NULL, or why the frame is refused (1002). */
static const char *first_byte(struct ws_parser *p, unsigned char b)
{
    p->fin = (b & 0x80) != 0;
    p->opcode = b & 0x0F;
    if (b & 0x70)
        return "reserved bits set (no extension was negotiated)";
    if ((p->opcode >= 3 && p->opcode <= 7) || p->opcode >= 11)
        return "unknown opcode";
    if (is_control(p->opcode) && !p->fin)
        return "fragmented control frame";
    if (p->opcode == WS_OP_CONTINUATION && !p->msg_opcode)
        return "continuation frame without a message";
    if ((p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY) && p->msg_opcode)
        return "new message before the fragmented one ended";
    return NULL;
}

/* Whether the frame's length, now known, fits (5.2; the limit is ours). 0, or an error's code. */
static uint16_t check_length(struct ws_parser *p, const char **why)
{
    if (is_control(p->opcode))
        return 0; /* at most 125, checked on the second byte; never counts against the limit */
    if (p->frame_len > p->max_message - p->msg.len) {
        *why = "message over the size limit";
        return 1009;
    }
    return 0;
}

/* Room in msg for n more bytes (and the NUL) of a frame that still has left bytes to come.
 * Grows by doubling, but never past what the frame needs, so the capacity stays within
 * max_message + 1 however the frame is cut. */
static int msg_reserve(struct ws_parser *p, size_t n, uint64_t left)
{
    struct buffer *b = &p->msg;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t most = left >= (uint64_t)((size_t)-1 - b->len - 1) ? (size_t)-1
                                                               : b->len + (size_t)left + 1;
    size_t want = !b->cap ? 256 : b->cap > (size_t)-1 / 2 ? (size_t)-1 : b->cap * 2;
    if (want < need)
        want = need;
    if (want > most)
        want = most;
    char *data = realloc(b->data, want);
    if (!data)
        return -1;
    b->data = data;
    b->cap = want;
    return 0;
}

/* 5.3: octet i of the payload is XORed with octet i mod 4 of the key. */
static void unmask(unsigned char *dst, const unsigned char *src, size_t n,
                   const unsigned char key[4], uint64_t pos)
{
    unsigned char k[8];
    for (int i = 0; i < 8; i++)
        k[i] = key[(pos + (uint64_t)i) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 7];
}

/* A close frame's payload (5.5.1, 7.4): fills ev, or fails. */
static size_t close_frame(struct ws_parser *p, struct ws_event *ev, size_t used)
{
    size_t len = (size_t)p->frame_len;
    if (len == 1)
        return fail(p, ev, used, 1002, "close frame with a 1-byte payload");
    uint16_t code = 1005;
    if (len >= 2) {
        code = (uint16_t)(p->ctrl[0] << 8 | p->ctrl[1]);
        if (!ws_close_code_valid(code))
            return fail(p, ev, used, 1002, "invalid close code");
        if (!ws_utf8_valid(p->ctrl + 2, len - 2))
            return fail(p, ev, used, 1007, "close reason is not UTF-8");
    }
    p->state = ST_DONE;
    buffer_free(&p->msg);
    ev->kind = WS_EV_CLOSE;
    ev->data = p->ctrl;
    ev->len = len;
    ev->code = code;
    ev->reason = len >= 2 ? (const char *)p->ctrl + 2 : (const char *)EMPTY;
    ev->reason_len = len >= 2 ? len - 2 : 0;
    return used;
}

size_t ws_parse(struct ws_parser *p, const unsigned char *buf, size_t len, struct ws_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->kind = WS_EV_NONE;
    if (p->state == ST_DONE)
        return 0;
    if (p->delivered) {
        p->delivered = 0;
        if (p->msg.cap > WS_KEEP_CAPACITY) {
            buffer_free(&p->msg);
        } else {
            p->msg.len = 0;
            if (p->msg.data)
                p->msg.data[0] = '\0';
        }
    }
    size_t used = 0;
    for (;;) {
        if (p->state == ST_HEAD) {
            if (used == len)
                return used;
            unsigned char b = buf[used++];
            p->head[p->head_len++] = b;
            const char *why = NULL;
            uint16_t code = 0;
            if (p->head_len == 1) {
                if ((why = first_byte(p, b)) != NULL)
                    return fail(p, ev, used, 1002, why);
                continue;
            }
            if (p->head_len == 2) {
                if (!(b & 0x80)) /* 5.1: a server closes on an unmasked frame */
                    return fail(p, ev, used, 1002, "unmasked frame");
                unsigned len7 = b & 0x7F;
                if (is_control(p->opcode) && len7 > WS_MAX_CONTROL)
                    return fail(p, ev, used, 1002, "control frame over 125 bytes");
                unsigned ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
                p->head_need = 2 + ext + 4;
                if (ext == 0) {
                    p->frame_len = len7;
                    if ((code = check_length(p, &why)) != 0)
                        return fail(p, ev, used, code, why);
                }
                continue;
            }
            if ((p->head_len == 4 && p->head_need == 8) || (p->head_len == 10 && p->head_need == 14)) {
                uint64_t n = 0;
                for (unsigned i = 2; i < p->head_len; i++)
                    n = n << 8 | p->head[i];
                if (n >> 63)
                    return fail(p, ev, used, 1002, "64-bit length with its top bit set");
                /* 5.2: "the minimal number of bytes MUST be used to encode the length". */
                if ((p->head_len == 4 && n < 126) || (p->head_len == 10 && n <= 0xFFFF))
                    return fail(p, ev, used, 1002, "length not in its shortest form");
                p->frame_len = n;
                if ((code = check_length(p, &why)) != 0)
                    return fail(p, ev, used, code, why);
                continue;
            }
            if (p->head_len < p->head_need)
                continue;
            memcpy(p->mask, p->head + p->head_need - 4, 4);
            p->frame_pos = 0;
            if (p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY) {
                p->msg_opcode = p->opcode;
                memset(&p->utf8, 0, sizeof p->utf8);
            }
            p->state = ST_PAYLOAD;
            /* On to the payload, even with no bytes left: it may be empty. */
        }

        uint64_t left = p->frame_len - p->frame_pos;
        size_t n = left < (uint64_t)(len - used) ? (size_t)left : len - used;
        if (n > 0 && is_control(p->opcode)) {
            unmask(p->ctrl + p->frame_pos, buf + used, n, p->mask, p->frame_pos);
        } else if (n > 0) {
            if (msg_reserve(p, n, left) != 0)
                return fail(p, ev, used, 1011, "out of memory");
            unsigned char *dst = (unsigned char *)p->msg.data + p->msg.len;
            unmask(dst, buf + used, n, p->mask, p->frame_pos);
            p->msg.len += n;
            p->msg.data[p->msg.len] = '\0';
            if (p->msg_opcode == WS_OP_TEXT && !ws_utf8_feed(&p->utf8, dst, n))
                return fail(p, ev, used + n, 1007, "invalid UTF-8 in a text message");
        }
        used += n;
        p->frame_pos += n;
        if (p->frame_pos < p->frame_len)
            return used;

        /* The frame is complete. */
        p->state = ST_HEAD;
        p->head_len = 0;
        p->head_need = 2;
        switch (p->opcode) {
        case WS_OP_PING:
        case WS_OP_PONG:
            ev->kind = p->opcode == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
            ev->data = p->ctrl;
            ev->len = (size_t)p->frame_len;
            return used;
        case WS_OP_CLOSE:
            return close_frame(p, ev, used);
        default:
            if (!p->fin)
                continue; /* more fragments to come */
            if (p->msg_opcode == WS_OP_TEXT && !ws_utf8_complete(&p->utf8))
                return fail(p, ev, used, 1007, "text message ends inside a character");
            ev->kind = WS_EV_MESSAGE;
            ev->binary = p->msg_opcode == WS_OP_BINARY;
            ev->data = p->msg.data ? (const unsigned char *)p->msg.data : EMPTY;
            ev->len = p->msg.len;
            p->msg_opcode = 0;
            p->delivered = 1;
            return used;
        }
    }
}
