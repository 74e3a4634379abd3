/* SPDX-License-Identifier: MIT */
/* log: the host log on stderr (docs/operations.md#logs). Every event has a level, a UTC
 * timestamp, the request id and channel when it belongs to a request, and its message.
 * Two formats: text (one line per event; a message's own line breaks, such as a Lua traceback's,
 * continue on lines indented by four spaces, so no continuation line can pass for an event of its
 * own) and JSON (one object per line). Thread-safe (one write(2) per event). Uses: nothing. */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR };
enum log_format { LOG_TEXT, LOG_JSON };

void log_set_level(enum log_level level);
/* "debug", "info", "warning" (or "warn"), "error" -> 0; anything else -> -1. */
int log_parse_level(const char *name, enum log_level *out);
int log_enabled(enum log_level level);
void log_set_format(enum log_format format);
/* "text", "json" -> 0; anything else -> -1. */
int log_parse_format(const char *name, enum log_format *out);
/* The channel of the events this thread logs from now on (NULL: none); borrowed, so the caller
 * clears it before the name goes away. */
void log_set_channel(const char *channel);
/* request_id may be NULL for events that belong to no request; the channel is this thread's. */
void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the channel given (NULL: this thread's). */
void log_msg_in(enum log_level level, const char *request_id, const char *channel,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A capture of this thread's events (`switchboard test` checks what a case logged): while one is
 * set, every event of level info and above this thread logs is handed to fn as its line, as
 * written but without the newline, whatever log_set_level says; events at or above that level
 * still go to stderr too. fn NULL ends it. fn must not log. */
typedef void (*log_capture_fn)(void *ctx, const char *line, size_t len);
void log_set_capture(log_capture_fn fn, void *ctx);

#endif
