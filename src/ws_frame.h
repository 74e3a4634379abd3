/* SPDX-License-Identifier: MIT */
/* ws_frame: the WebSocket protocol of RFC 6455, server side, as pure functions (no sockets, no
 * libmicrohttpd), so it can be unit-tested and fuzzed.
 *
 * Provides: the handshake's accept key and a check of its header token lists; an incremental
 * parser of client frames (masking, fragmentation, control frames between fragments, UTF-8 of
 * text messages checked as the bytes arrive, a size limit checked on each frame header, close
 * payloads); the frames a server sends and the payload of its close frame; a UTF-8 validator.
 * Uses: libcrypto (SHA-1, base64), buffer. */
#ifndef SB_WS_FRAME_H
#define SB_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

#define WS_MAX_CONTROL 125 /* bytes of a control frame's payload */

/* Opcodes (RFC 6455 5.2). */
#define WS_OP_CONTINUATION 0
#define WS_OP_TEXT 1
#define WS_OP_BINARY 2
#define WS_OP_CLOSE 8
#define WS_OP_PING 9
#define WS_OP_PONG 10

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key + the RFC's GUID)).
 * The key must be the base64 of 16 bytes: exactly 24 characters, 22 of the standard alphabet
 * then "==" (no blanks: pass the field value trimmed, as libmicrohttpd gives it), else -1.
 * out gets 28 characters and a NUL. Returns 0, or -1 (out is then an empty string). */
int ws_accept_key(const char *client_key, char out[29]);

/* 1 when the comma-separated header value lists token, compared without case: for
 * "Connection: keep-alive, Upgrade" (Firefox) and "Upgrade: websocket". value may be NULL (0). */
int ws_token_listed(const char *value, const char *token);

enum ws_event_kind { WS_EV_NONE, WS_EV_MESSAGE, WS_EV_PING, WS_EV_PONG, WS_EV_CLOSE, WS_EV_ERROR };

struct ws_event {
    enum ws_event_kind kind;
    int binary;                 /* MESSAGE: 1 for a binary message, 0 for text (valid UTF-8) */
    const unsigned char *data;  /* MESSAGE, PING, PONG: the payload (unmasked, whole message);
                                 * CLOSE: the whole close payload (code and reason), to echo it.
                                 * Never NULL for these kinds (len may be 0). Valid until the
                                 * next ws_parse or ws_parser_free. */
    size_t len;
    uint16_t code;              /* CLOSE: the code received (1005 when the frame had none);
                                 * ERROR: the code to close with: 1002 (protocol error), 1007
                                 * (invalid UTF-8), 1009 (message too big) or 1011 (out of memory) */
    const char *reason;         /* CLOSE: the reason (UTF-8, not NUL-terminated), reason_len bytes;
                                 * ERROR: a static message for the log, e.g. "unmasked frame"
                                 * (NUL-terminated; reason_len is its length) */
    size_t reason_len;
};

/* The state of a UTF-8 validation that may stop inside a character. */
struct ws_utf8 {
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* the range of the next continuation byte (it depends on the lead byte) */
};

/* A zeroed or ws_parser_init'ed struct; the caller owns it (embed it in the connection). */
struct ws_parser {
    size_t max_message;       /* bytes of one whole message (the sum of its fragments) */
    int state;                /* reading a frame head, its payload, or done */
    /* The frame being read. */
    unsigned char head[14];   /* the head so far: 2 bytes, 0/2/8 of length, 4 of mask key */
    unsigned head_len, head_need;
    int fin, opcode;
    unsigned char mask[4];
    uint64_t frame_len, frame_pos; /* payload bytes announced, and unmasked so far */
    /* The message being assembled: opcode 1 or 2 once its first frame is read, else 0. */
    int msg_opcode;
    struct buffer msg;        /* its unmasked payload; never more than max_message bytes */
    int delivered;            /* msg was handed out: emptied at the next ws_parse */
    struct ws_utf8 utf8;      /* the text message's validation, across fragments */
    unsigned char ctrl[WS_MAX_CONTROL]; /* a control frame's unmasked payload */
};

void ws_parser_init(struct ws_parser *p, size_t max_message);
/* Give the memory back; the parser then accepts nothing (ws_parser_init makes it new again). */
void ws_parser_free(struct ws_parser *p);

/* Consume bytes from buf until one event is complete or the bytes run out. Returns how many
 * bytes were consumed; ev->kind is WS_EV_NONE when more bytes are needed (then all len bytes
 * were consumed). After WS_EV_ERROR or WS_EV_CLOSE the parser accepts nothing more (returns 0
 * with WS_EV_NONE); the bytes after the event are not looked at. The caller loops:
 *   while (len) { n = ws_parse(p, buf, len, &ev); buf += n; len -= n; handle(ev); if none, break }
 * The rules (RFC 6455 5, server side), each an ERROR with its code:
 *   1002: a frame that is not masked; RSV1-3 set (no extension is negotiated); opcodes 3-7 and
 *         11-15; a control frame (close, ping, pong) without FIN or over 125 bytes; a
 *         continuation with no message started; a text or binary frame while a fragmented message
 *         is unfinished; a 64-bit length with its top bit set; a length not in its shortest form
 *         (126 bytes or more in 7 bits, 65536 or more in 16: 5.2 says MUST, every client does);
 *         a close payload of 1 byte; a close code other than 1000-1003, 1007-1011, 3000-4999.
 *   1007: a text message that is not UTF-8 (found at the first bad byte, across fragments, and
 *         at its end when it stops inside a character); a close reason that is not UTF-8.
 *   1009: a message (the sum of its fragments) over max_message, found on the frame head that
 *         announces it, before its payload. Control frames never count against max_message.
 *   1011: no memory for the message (it never takes more than max_message + 1 bytes).
 * Control frames between the fragments of a message are delivered at once. Errors are found as
 * early as the bytes allow, and feeding the same bytes in any chunks gives the same events. */
size_t ws_parse(struct ws_parser *p, const unsigned char *buf, size_t len, struct ws_event *ev);

/* A server frame (FIN set, never masked) appended to out: opcode 1 text, 2 binary, 8 close,
 * 9 ping, 10 pong. Returns 0, or -1 when out of memory (ENOMEM) or for another opcode or a
 * control payload over WS_MAX_CONTROL bytes (EINVAL); out is unchanged then. */
int ws_frame_append(struct buffer *out, int opcode, const void *data, size_t len);

/* A close frame's payload: the code (big-endian) and the reason (may be NULL) cut to fit 125
 * bytes: the longest prefix that is valid UTF-8 and fits 123 bytes (so it is never cut inside a
 * character, and bytes that are not UTF-8 end it). A code that may not be sent
 * (ws_close_code_valid is 0: 1005, 1006, 1015, ...) gives an empty payload: a close without a code.
 * Returns its length. */
size_t ws_close_payload(unsigned char out[WS_MAX_CONTROL], uint16_t code, const char *reason);

/* 1 for a code a close frame may carry: 1000-1003, 1007-1011, 3000-4999. */
int ws_close_code_valid(uint16_t code);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
int ws_utf8_valid(const unsigned char *s, size_t len);

/* The incremental form: a zeroed struct ws_utf8 starts; ws_utf8_feed returns 0 as soon as the
 * bytes so far cannot begin valid UTF-8; ws_utf8_complete is 1 when they end on a character
 * boundary. */
int ws_utf8_feed(struct ws_utf8 *u, const unsigned char *s, size_t len);
int ws_utf8_complete(const struct ws_utf8 *u);

#endif
