/* SPDX-License-Identifier: MIT */
/* log: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_TEXT;
static _Thread_local const char *thread_channel;
static _Thread_local log_capture_fn capture_fn; /* NULL but in `switchboard test` */
static _Thread_local void *capture_ctx;
static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
static const char *const json_level_names[] = {"debug", "info", "warning", "error"};

/* Continuation lines of a multi-line message (text format) start with this. */
#define CONTINUATION "    "

void log_set_level(enum log_level level) { min_level = level; }

/* A captured thread (`switchboard test`) sees info and above whatever is printed. */
#define CAPTURE_LEVEL LOG_INFO

int log_enabled(enum log_level level)
{
    return level >= min_level || (capture_fn && level >= CAPTURE_LEVEL);
}

void log_set_format(enum log_format f) { format = f; }

void log_set_channel(const char *channel) { thread_channel = channel; }

void log_set_capture(log_capture_fn fn, void *ctx)
{
    capture_fn = fn;
    capture_ctx = ctx;
}

int log_parse_level(const char *name, enum log_level *out)
{
    static const struct { const char *name; enum log_level level; } names[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO},   {"warning", LOG_WARNING},
        {"warn", LOG_WARNING}, {"error", LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -1;
}

int log_parse_format(const char *name, enum log_format *out)
{
    if (strcmp(name, "text") == 0)
        *out = LOG_TEXT;
    else if (strcmp(name, "json") == 0)
        *out = LOG_JSON;
    else
        return -1;
    return 0;
}

/* The line being built; appends stop (and the event is cut) when it is full. */
struct line {
    char text[20000];
    size_t used;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->used + n + 4 > sizeof l->text) /* room for a closing quote, brace and newline */
        return;
    memcpy(l->text + l->used, s, n);
    l->used += n;
}

static void puts_(struct line *l, const char *s) { put(l, s, strlen(s)); }

/* Text format: a line break continues on an indented line; tabs and carriage returns become
 * spaces, other control bytes '?'. Trailing line breaks are dropped. */
static void put_text_message(struct line *l, const char *m)
{
    size_t len = strlen(m);
    while (len && (m[len - 1] == '\n' || m[len - 1] == '\r'))
        len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c == '\n')
            puts_(l, "\n" CONTINUATION);
        else if (c == '\r' || c == '\t')
            put(l, " ", 1);
        else if (c < 0x20 || c == 0x7f)
            put(l, "?", 1);
        else
            put(l, (const char *)&c, 1);
    }
}

/* The length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string: quotes, backslashes and control bytes escaped, bytes that are not UTF-8 as
 * U+FFFD, so every line parses whatever a client sent. */
static void put_json_string(struct line *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put(l, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(l, esc, 2);
        } else if (c == '\n') {
            puts_(l, "\\n");
        } else if (c == '\t') {
            puts_(l, "\\t");
        } else if (c == '\r') {
            puts_(l, "\\r");
        } else if (c < 0x20 || c == 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(l, esc, 6);
        } else {
            size_t n = utf8_sequence(p);
            if (n == 0) {
                puts_(l, "\\ufffd");
                p++;
                continue;
            }
            put(l, (const char *)p, n);
            p += n;
            continue;
        }
        p++;
    }
    l->text[l->used++] = '"'; /* put keeps room for it */
}

static void put_time(struct line *l, const char *suffix)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char stamp[64];
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ%s", now.tv_nsec / 1000000, suffix);
    puts_(l, stamp);
}

static void emit(enum log_level level, const char *request_id, const char *channel,
                 const char *message)
{
    static _Thread_local struct line l; /* 20 KB: kept off the stack */
    l.used = 0;
    if (format == LOG_JSON) {
        puts_(&l, "{\"time\":\"");
        put_time(&l, "\"");
        puts_(&l, ",\"level\":\"");
        puts_(&l, json_level_names[level]);
        puts_(&l, "\"");
        if (request_id) {
            puts_(&l, ",\"request_id\":");
            put_json_string(&l, request_id);
        }
        if (channel) {
            puts_(&l, ",\"channel\":");
            put_json_string(&l, channel);
        }
        puts_(&l, ",\"message\":");
        put_json_string(&l, message);
        l.text[l.used++] = '}';
    } else {
        put_time(&l, " ");
        char lvl[16];
        snprintf(lvl, sizeof lvl, "%-7s ", level_names[level]);
        puts_(&l, lvl);
        if (request_id) {
            puts_(&l, "[");
            puts_(&l, request_id);
            puts_(&l, "] ");
        }
        put_text_message(&l, message);
    }
    if (capture_fn)
        capture_fn(capture_ctx, l.text, l.used);
    if (level < min_level)
        return; /* captured only */
    l.text[l.used++] = '\n';
    /* One write per event keeps events from concurrent workers whole. */
    ssize_t ignored = write(STDERR_FILENO, l.text, l.used);
    (void)ignored;
}

static void vlog(enum log_level level, const char *request_id, const char *channel,
                 const char *fmt, va_list ap)
{
    char message[8192];
    vsnprintf(message, sizeof message, fmt, ap);
    emit(level, request_id, channel ? channel : thread_channel, message);
}

void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, request_id, NULL, fmt, ap);
    va_end(ap);
}

void log_msg_in(enum log_level level, const char *request_id, const char *channel,
                const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, request_id, channel, fmt, ap);
    va_end(ap);
}
