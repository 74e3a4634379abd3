/* SPDX-License-Identifier: MIT */
/* log: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

void log_set_level(enum log_level level) { min_level = level; }

int log_enabled(enum log_level level) { return level >= min_level; }

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

/* Append `text` to line[*used..size), escaping newlines, tabs and other control bytes. */
static void append_escaped(char *line, size_t size, size_t *used, const char *text)
{
    for (const char *p = text; *p && *used + 4 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n') {
            line[(*used)++] = '\\';
            line[(*used)++] = 'n';
        } else if (c == '\r' || c == '\t') {
            line[(*used)++] = ' ';
        } else if (c < 0x20) {
            line[(*used)++] = '?';
        } else {
            line[(*used)++] = (char)c;
        }
    }
}

void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char message[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);

    char line[4600];
    size_t used = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    used += (size_t)snprintf(line + used, sizeof line - used, ".%03ldZ %-7s ",
                             now.tv_nsec / 1000000, level_names[level]);
    if (request_id)
        used += (size_t)snprintf(line + used, sizeof line - used, "[%s] ", request_id);
    append_escaped(line, sizeof line, &used, message);
    line[used++] = '\n';
    /* One write per line keeps lines from concurrent workers whole. */
    ssize_t ignored = write(STDERR_FILENO, line, used);
    (void)ignored;
}
