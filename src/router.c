/* SPDX-License-Identifier: MIT */
/* router: see router.h. Paths are compared segment by segment; a request's segments are
 * percent-decoded on the fly, without a copy. */
#include "router.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ---------------------------------------------------------------------------------- */

static int fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int is_name_start(int c)
{
    return isalpha(c) || c == '_';
}

static int is_name_char(int c)
{
    return isalnum(c) || c == '_';
}

/* Check the segments of a parsed path ("/a/{id}"): every '{' or '}' belongs to a whole-segment
 * parameter with a name of its own. Returns the number of parameters, or -1 with `why`. */
static int check_params(const char *path, char *why, size_t why_len)
{
    const char *names[ROUTE_MAX_PARAMS];
    size_t lens[ROUTE_MAX_PARAMS];
    int count = 0;
    const char *p = path + 1;
    size_t segments = 0;
    while (*p) {
        if (++segments > ROUTE_MAX_SEGMENTS)
            return fail(why, why_len, "more than %d segments", ROUTE_MAX_SEGMENTS);
        size_t len = strcspn(p, "/");
        const char *open = memchr(p, '{', len), *close = memchr(p, '}', len);
        if (open || close) {
            int whole = len >= 2 && p[0] == '{' && p[len - 1] == '}' &&
                        !memchr(p + 1, '{', len - 2) && !memchr(p + 1, '}', len - 2);
            if (!whole) {
                if (open && !close && p[0] == '{')
                    return fail(why, why_len, "segment '%.*s' opens a parameter and does not "
                                "close it (write '{name}')", (int)len, p);
                return fail(why, why_len, "segment '%.*s': a parameter must be a whole segment, "
                            "'{name}'", (int)len, p);
            }
            const char *name = p + 1;
            size_t name_len = len - 2;
            if (name_len == 0)
                return fail(why, why_len, "parameter '{}' has no name");
            int ok = is_name_start((unsigned char)name[0]);
            for (size_t i = 1; ok && i < name_len; i++)
                ok = is_name_char((unsigned char)name[i]);
            if (!ok)
                return fail(why, why_len, "parameter name '%.*s' must be letters, digits and "
                            "'_', not starting with a digit", (int)name_len, name);
            for (int i = 0; i < count; i++)
                if (lens[i] == name_len && memcmp(names[i], name, name_len) == 0)
                    return fail(why, why_len, "parameter '%.*s' appears twice", (int)name_len,
                                name);
            if (count == ROUTE_MAX_PARAMS)
                return fail(why, why_len, "more than %d parameters", ROUTE_MAX_PARAMS);
            names[count] = name;
            lens[count] = name_len;
            count++;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    return count;
}

int route_parse_why(const char *text, struct route *out, char *why, size_t why_len)
{
    const char *spec = text;
    memset(out, 0, sizeof *out);
    if (why && why_len)
        why[0] = '\0';
    while (isspace((unsigned char)*spec))
        spec++;
    size_t method_len = 0;
    while (spec[method_len] && !isspace((unsigned char)spec[method_len]))
        method_len++;
    if (method_len == 0 || method_len >= sizeof out->method)
        return fail(why, why_len, "it must look like \"METHOD /path\"");
    for (size_t i = 0; i < method_len; i++) {
        if (!isalpha((unsigned char)spec[i])) {
            memset(out->method, 0, sizeof out->method);
            return fail(why, why_len, "it must look like \"METHOD /path\" (the method is letters)");
        }
        out->method[i] = (char)toupper((unsigned char)spec[i]);
    }
    const char *path = spec + method_len;
    while (isspace((unsigned char)*path))
        path++;
    size_t len = strlen(path);
    while (len > 0 && isspace((unsigned char)path[len - 1]))
        len--;
    if (len == 0 || path[0] != '/') {
        memset(out->method, 0, sizeof out->method);
        return fail(why, why_len, "it must look like \"METHOD /path\"");
    }
    while (len > 1 && path[len - 1] == '/')
        len--;
    out->path = strndup(path, len);
    out->spec = strdup(text);
    if (!out->path || !out->spec) {
        route_free(out);
        return fail(why, why_len, "out of memory");
    }
    int params = check_params(out->path, why, why_len);
    if (params < 0) {
        route_free(out);
        memset(out, 0, sizeof *out);
        return -1;
    }
    out->param_count = (unsigned)params;
    return 0;
}

int route_parse(const char *text, struct route *out)
{
    return route_parse_why(text, out, NULL, 0);
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
        free(c->mount);
        c->mount = NULL;
    }
    free(t->channels);
    t->channels = NULL;
    t->count = 0;
}

/* ---- decoding --------------------------------------------------------------------------------- */

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The decoded byte at raw[*i] (len bytes in all); advances *i past it. */
static unsigned char next_decoded(const char *raw, size_t len, size_t *i)
{
    if (raw[*i] == '%' && *i + 2 < len) {
        int hi = hex_value((unsigned char)raw[*i + 1]), lo = hex_value((unsigned char)raw[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi * 16 + lo);
        }
    }
    return (unsigned char)raw[(*i)++];
}

size_t route_decode(const char *in, size_t len, char *out)
{
    size_t i = 0, n = 0;
    while (i < len)
        out[n++] = (char)next_decoded(in, len, &i);
    return n;
}

/* ---- segments --------------------------------------------------------------------------------- */

/* A path's segments: "/a/b" is "a", "b"; "/" has none. A request has two more than a declared
 * route ("webhooks", the channel's name). */
struct segments {
    size_t count;
    const char *at[ROUTE_MAX_SEGMENTS + 2];
    size_t len[ROUTE_MAX_SEGMENTS + 2];
    int truncated;            /* more than ROUTE_MAX_SEGMENTS: matches nothing */
};

static void split(const char *path, size_t len, struct segments *s)
{
    s->count = 0;
    s->truncated = 0;
    if (len <= 1)
        return;
    const char *p = path + 1, *end = path + len;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        if (s->count == sizeof s->at / sizeof s->at[0]) {
            s->truncated = 1;
            return;
        }
        s->at[s->count] = p;
        s->len[s->count] = (size_t)(stop - p);
        s->count++;
        if (!slash)
            return;
        p = slash + 1;
    }
}

/* Does the raw segment decode to exactly `text` (text_len bytes)? */
static int decodes_to(const char *raw, size_t raw_len, const char *text, size_t text_len)
{
    size_t i = 0, n = 0;
    while (i < raw_len) {
        if (n == text_len || next_decoded(raw, raw_len, &i) != (unsigned char)text[n])
            return 0;
        n++;
    }
    return n == text_len;
}

static int decodes_to_str(const char *raw, size_t raw_len, const char *text)
{
    return decodes_to(raw, raw_len, text, strlen(text));
}

static int is_param(const char *seg, size_t len)
{
    return len >= 2 && seg[0] == '{';
}

/* Does declared route r match the request's segments req[from..]? With m, its parameters are
 * recorded there. */
static int route_matches(const struct route *r, const struct segments *req, size_t from,
                         struct route_match *m)
{
    struct segments pat;
    split(r->path, strlen(r->path), &pat);
    if (pat.truncated || req->truncated || pat.count != req->count - from)
        return 0;
    size_t params = 0;
    for (size_t i = 0; i < pat.count; i++) {
        const char *raw = req->at[from + i];
        size_t raw_len = req->len[from + i];
        if (is_param(pat.at[i], pat.len[i])) {
            if (raw_len == 0)
                return 0;
            if (m && params < ROUTE_MAX_PARAMS) {
                m->params[params] = (struct route_param){pat.at[i] + 1, pat.len[i] - 2, raw,
                                                         raw_len};
            }
            params++;
        } else if (!decodes_to(raw, raw_len, pat.at[i], pat.len[i])) {
            return 0;
        }
    }
    if (m)
        m->param_count = params < ROUTE_MAX_PARAMS ? params : ROUTE_MAX_PARAMS;
    return 1;
}

/* Is route a more specific than route b (both match the same segments)? */
static int more_specific(const struct route *a, const struct route *b)
{
    struct segments sa, sb;
    split(a->path, strlen(a->path), &sa);
    split(b->path, strlen(b->path), &sb);
    for (size_t i = 0; i < sa.count && i < sb.count; i++) {
        int pa = is_param(sa.at[i], sa.len[i]), pb = is_param(sb.at[i], sb.len[i]);
        if (pa != pb)
            return pb;
    }
    return strcmp(a->spec, b->spec) < 0;
}

/* ---- matching --------------------------------------------------------------------------------- */

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

/* Match the segments below /webhooks/<name> (req[2..]) against one channel. */
static void match_channel(const struct route_channel *c, int index, const char *method,
                          const struct segments *req, struct route_match *m)
{
    size_t below = req->count - 2;
    int is_root = below == 0;
    int is_webhook = below == 1 && decodes_to_str(req->at[2], req->len[2], "webhook");
    int path_known = is_root || is_webhook;
    const struct route *best = NULL;
    m->channel = index;

    for (size_t i = 0; i < c->count; i++) {
        const struct route *r = &c->routes[i];
        if (!route_matches(r, req, 2, NULL))
            continue;
        path_known = 1;
        if (strcmp(r->method, method) == 0 && (!best || more_specific(r, best)))
            best = r;
    }
    /* A declared route replaces the built-in one of exactly its path; one with parameters does
     * not take the built-in's path. */
    int builtin = (is_root && strcmp(method, "GET") == 0) ||
                  (is_webhook && strcmp(method, "POST") == 0);
    if (best && (best->param_count == 0 || !builtin)) {
        m->kind = ROUTE_CUSTOM;
        m->route = best;
        route_matches(best, req, 2, m);
        return;
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
        if (route_matches(&c->routes[i], req, 2, NULL))
            allow_add(m->allow, sizeof m->allow, c->routes[i].method);
    }
    if (allow_has(m->allow, "GET"))
        allow_add(m->allow, sizeof m->allow, "HEAD");
}

/* A channel with channel.mount: does the request lie below its mount? Then its routes are
 * matched against the rest (no health or webhook route there). Returns 1 when it decided. */
static int match_mounted(const struct route_channel *c, int index, const char *method,
                         const struct segments *req, struct route_match *m)
{
    struct segments mount;
    split(c->mount, strlen(c->mount), &mount);
    if (mount.truncated || mount.count > req->count)
        return 0;
    for (size_t i = 0; i < mount.count; i++)
        if (!decodes_to(req->at[i], req->len[i], mount.at[i], mount.len[i]))
            return 0;
    const struct route *best = NULL;
    int path_known = 0;
    for (size_t i = 0; i < c->count; i++) {
        const struct route *r = &c->routes[i];
        if (!route_matches(r, req, mount.count, NULL))
            continue;
        path_known = 1;
        if (strcmp(r->method, method) == 0 && (!best || more_specific(r, best)))
            best = r;
    }
    if (!path_known)
        return 0;
    m->channel = index;
    if (best) {
        m->kind = ROUTE_CUSTOM;
        m->route = best;
        route_matches(best, req, mount.count, m);
        return 1;
    }
    m->kind = ROUTE_METHOD_NOT_ALLOWED;
    for (size_t i = 0; i < c->count; i++)
        if (route_matches(&c->routes[i], req, mount.count, NULL))
            allow_add(m->allow, sizeof m->allow, c->routes[i].method);
    if (allow_has(m->allow, "GET"))
        allow_add(m->allow, sizeof m->allow, "HEAD");
    return 1;
}

/* A route of the host's own, answered for GET (and HEAD) only. */
static void get_only(struct route_match *m, const char *method, enum route_kind kind)
{
    m->kind = strcmp(method, "GET") == 0 ? kind : ROUTE_METHOD_NOT_ALLOWED;
    strcpy(m->allow, "GET, HEAD");
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
    if (len == 0 || path[0] != '/')
        return;
    if (len > 1 && path[len - 1] == '/')
        len--;
    struct segments req;
    split(path, len, &req);
    if (req.truncated)
        return;

    if (req.count == 0) {
        get_only(m, method, ROUTE_ROOT);
        return;
    }
    if (req.count == 1 && decodes_to_str(req.at[0], req.len[0], "status")) {
        get_only(m, method, ROUTE_STATUS);
        return;
    }
    if (req.count == 1 && decodes_to_str(req.at[0], req.len[0], "metrics")) {
        get_only(m, method, ROUTE_METRICS);
        return;
    }
    if (req.count == 3 && req.len[1] > 0 &&
        decodes_to_str(req.at[0], req.len[0], "conversations") &&
        decodes_to_str(req.at[2], req.len[2], "messages")) {
        m->kind = strcmp(method, "POST") == 0 ? ROUTE_PROACTIVE : ROUTE_METHOD_NOT_ALLOWED;
        strcpy(m->allow, "POST");
        m->param_count = 1;
        m->params[0] = (struct route_param){"sender_id", 9, req.at[1], req.len[1]};
        return;
    }
    for (size_t i = 0; i < t->count; i++)
        if (t->channels[i].mount && match_mounted(&t->channels[i], (int)i, method, &req, m))
            return;
    if (req.count < 2 || !decodes_to_str(req.at[0], req.len[0], "webhooks"))
        return;
    for (size_t i = 0; i < t->count; i++) {
        if (decodes_to_str(req.at[1], req.len[1], t->channels[i].name)) {
            match_channel(&t->channels[i], (int)i, method, &req, m);
            return;
        }
    }
}
