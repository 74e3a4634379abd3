/* SPDX-License-Identifier: MIT */
/* log: the host log. One line per event on stderr, with a level, a UTC timestamp and, for
 * everything that belongs to a request, the request id. Newlines inside a message are escaped so
 * an event never spans two lines. Thread-safe (one write(2) per line). Uses: nothing. */
#ifndef SB_LOG_H
#define SB_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR };

void log_set_level(enum log_level level);
/* "debug", "info", "warning" (or "warn"), "error" -> 0; anything else -> -1. */
int log_parse_level(const char *name, enum log_level *out);
int log_enabled(enum log_level level);
/* request_id may be NULL for events that belong to no request. */
void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
