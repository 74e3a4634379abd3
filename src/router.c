/* SPDX-License-Identifier: MIT */
/* router: see router.h. */
#include "router.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOKS_PREFIX "/webhooks/"

int route_parse(const char *text, struct route *out)
{
    const char *spec = text;
    memset(out, 0, sizeof *out);
    while (isspace((unsigned char)*spec))
        spec++;
    size_t method_len = 0;
    while (spec[method_len] && !isspace((unsigned char)spec[method_len]))
        method_len++;
    if (method_len == 0 || method_len >= sizeof out->method)
        return -1;
    for (size_t i = 0; i < method_len; i++) {
        if (!isalpha((unsigned char)spec[i]))
            return -1;
        out->method[i] = (char)toupper((unsigned char)spec[i]);
    }
    const char *path = spec + method_len;
    while (isspace((unsigned char)*path))
        path++;
    size_t len = strlen(path);
    while (len > 0 && isspace((unsigned char)path[len - 1]))
        len--;
    if (len == 0 || path[0] != '/')
        return -1;
    while (len > 1 && path[len - 1] == '/')
        len--;
    out->path = strndup(path, len);
    out->spec = strdup(text);
    if (!out->path || !out->spec) {
        route_free(out);
        return -1;
    }
    return 0;
}

void route_free(struct route *r)
{
    free(r->path);
    r->path = NULL;
    free(r->spec);
    r->spec = NULL;
}

void route_table_free(struct route_table *t)
{
    for (size_t i = 0; i < t->count; i++) {
        struct route_channel *c = &t->channels[i];
        for (size_t j = 0; j < c->count; j++)
            route_free(&c->routes[j]);
        free(c->routes);
        c->routes = NULL;
        free(c->name);
        c->name = NULL;
    }
    free(t->channels);
    t->channels = NULL;
    t->count = 0;
}

/* Compare a path piece of length `len` with a NUL-terminated string. */
static int piece_equals(const char *piece, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(piece, s, len) == 0;
}

/* 1 when the comma-separated list `allow` already names `method`. */
static int allow_has(const char *allow, const char *method)
{
    size_t len = strlen(method);
    for (const char *p = allow; (p = strstr(p, method)) != NULL; p += len) {
        int starts = p == allow || p[-1] == ' ';
        int ends = p[len] == '\0' || p[len] == ',';
        if (starts && ends)
            return 1;
    }
    return 0;
}

static void allow_add(char *allow, size_t size, const char *method)
{
    if (allow_has(allow, method))
        return;
    size_t used = strlen(allow);
    if (used + strlen(method) + 3 >= size)
        return;
    if (used)
        strcat(allow, ", ");
    strcat(allow, method);
}

/* Match `sub` (below /webhooks/<name>, "/" for the channel root) against one channel. */
static void match_channel(const struct route_channel *c, int index, const char *method,
                          const char *sub, size_t sub_len, struct route_match *m)
{
    int is_root = sub_len == 1;
    int is_webhook = piece_equals(sub, sub_len, "/webhook");
    int path_known = is_root || is_webhook;
    m->channel = index;

    for (size_t i = 0; i < c->count; i++) {
        const struct route *r = &c->routes[i];
        if (!piece_equals(sub, sub_len, r->path))
            continue;
        path_known = 1;
        if (strcmp(r->method, method) == 0) {
            m->kind = ROUTE_CUSTOM;
            m->route = r;
            return;
        }
    }
    if (is_root && strcmp(method, "GET") == 0) {
        m->kind = ROUTE_HEALTH;
        return;
    }
    if (is_webhook && strcmp(method, "POST") == 0) {
        m->kind = ROUTE_WEBHOOK;
        return;
    }
    if (!path_known) {
        m->kind = ROUTE_NOT_FOUND;
        return;
    }
    m->kind = ROUTE_METHOD_NOT_ALLOWED;
    if (is_root)
        allow_add(m->allow, sizeof m->allow, "GET");
    if (is_webhook)
        allow_add(m->allow, sizeof m->allow, "POST");
    for (size_t i = 0; i < c->count; i++) {
        if (piece_equals(sub, sub_len, c->routes[i].path))
            allow_add(m->allow, sizeof m->allow, c->routes[i].method);
    }
    if (allow_has(m->allow, "GET"))
        allow_add(m->allow, sizeof m->allow, "HEAD");
}

void router_match(const struct route_table *t, const char *method, const char *path,
                  struct route_match *m)
{
    memset(m, 0, sizeof *m);
    m->channel = -1;
    m->kind = ROUTE_NOT_FOUND;
    if (strcmp(method, "HEAD") == 0)
        method = "GET";

    size_t len = strlen(path);
    if (len > 1 && path[len - 1] == '/')
        len--;

    if (len == 1 && path[0] == '/') {
        m->kind = strcmp(method, "GET") == 0 ? ROUTE_ROOT : ROUTE_METHOD_NOT_ALLOWED;
        strcpy(m->allow, "GET, HEAD");
        return;
    }
    if (piece_equals(path, len, "/status")) {
        m->kind = strcmp(method, "GET") == 0 ? ROUTE_STATUS : ROUTE_METHOD_NOT_ALLOWED;
        strcpy(m->allow, "GET, HEAD");
        return;
    }
    if (piece_equals(path, len, "/metrics")) {
        m->kind = strcmp(method, "GET") == 0 ? ROUTE_METRICS : ROUTE_METHOD_NOT_ALLOWED;
        strcpy(m->allow, "GET, HEAD");
        return;
    }
    size_t prefix_len = strlen(WEBHOOKS_PREFIX);
    if (len <= prefix_len || strncmp(path, WEBHOOKS_PREFIX, prefix_len) != 0)
        return;

    const char *name = path + prefix_len;
    const char *slash = memchr(name, '/', len - prefix_len);
    size_t name_len = slash ? (size_t)(slash - name) : len - prefix_len;
    const char *sub = slash ? slash : "/";
    size_t sub_len = slash ? len - (size_t)(slash - path) : 1;

    for (size_t i = 0; i < t->count; i++) {
        if (piece_equals(name, name_len, t->channels[i].name)) {
            match_channel(&t->channels[i], (int)i, method, sub, sub_len, m);
            return;
        }
    }
}
