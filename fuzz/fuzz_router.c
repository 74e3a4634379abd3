/* SPDX-License-Identifier: MIT */
/* fuzz_router: route_parse and router_match (src/router.c) on arbitrary text.
 *
 * The input is split at newlines: every line but the last two is a route a channel "c" declares
 * ("POST /x", "GET /a/{id}"), the last two are the method and the path of a request. Checked
 * besides memory errors: a parsed route has an upper-case method of letters and a path that
 * starts with '/'; a refused one gives a reason; every declared route without '%' is matched by
 * its own method and path, taken as a request (unless a route of the same method and shape whose
 * key sorts first takes it, or it is HEAD, matched as GET), each parameter then being its own
 * "{name}"; the request's match is consistent (a channel index when it names one, an Allow value
 * with 405, parameters inside the path, the sender of the proactive route). Uses: router. */
#include "router.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 32

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_router: %s\n", what);
        abort();
    }
}

static void check_parsed(const struct route *r)
{
    size_t n = strlen(r->method);
    check(n > 0 && n < sizeof r->method, "a method of bad length");
    for (size_t i = 0; i < n; i++)
        check(isupper((unsigned char)r->method[i]), "a method that is not upper-case letters");
    check(r->path && r->path[0] == '/', "a path that does not start with '/'");
}

static void check_match(const struct route_table *t, const char *method, const char *path)
{
    struct route_match m;
    router_match(t, method, path, &m);
    check(m.channel >= -1 && m.channel < (int)t->count, "a channel index out of range");
    check(memchr(m.allow, '\0', sizeof m.allow) != NULL, "an Allow value not terminated");
    check(m.param_count <= ROUTE_MAX_PARAMS, "too many parameters");
    size_t len = strlen(path);
    for (size_t i = 0; i < m.param_count; i++) {
        const struct route_param *p = &m.params[i];
        check(p->value_len > 0 && p->value >= path && p->value + p->value_len <= path + len,
              "a parameter outside the path");
        char decoded[8192];
        check(route_decode(p->value, p->value_len, decoded) <= p->value_len,
              "decoding made a value longer");
    }
    switch (m.kind) {
    case ROUTE_CUSTOM:
        check(m.route != NULL && m.channel >= 0, "a custom route without its route");
        check(m.param_count == m.route->param_count, "a custom route with the wrong parameters");
        break;
    case ROUTE_PROACTIVE:
        check(m.channel == -1 && m.param_count == 1, "the proactive route without its sender");
        break;
    case ROUTE_HEALTH:
    case ROUTE_WEBHOOK:
        check(m.channel >= 0, "a channel route without a channel");
        break;
    case ROUTE_METHOD_NOT_ALLOWED:
        check(m.allow[0] != '\0', "405 without Allow");
        break;
    default:
        break;
    }
}

/* The same segments, a parameter standing for any parameter. */
static int same_shape(const char *a, const char *b)
{
    while (*a && *b) {
        size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
        int pa = la >= 2 && a[0] == '{', pb = lb >= 2 && b[0] == '{';
        if (pa != pb || (!pa && (la != lb || memcmp(a, b, la) != 0)))
            return 0;
        a += la;
        b += lb;
        if (*a != *b)
            return 0;
        if (*a)
            a++, b++;
    }
    return *a == *b;
}

/* Is route i, among the routes of its method and shape, the one whose key sorts first (so the
 * one router_match returns for its own path)? Of equal keys (only here: a Lua table's keys
 * differ) the first. */
static int first_of_its_kind(const struct route_channel *c, size_t i)
{
    for (size_t j = 0; j < c->count; j++) {
        int order = strcmp(c->routes[j].spec, c->routes[i].spec);
        if (j != i && strcmp(c->routes[j].method, c->routes[i].method) == 0 &&
            same_shape(c->routes[j].path, c->routes[i].path) && (order < 0 || (order == 0 && j < i)))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    check(text != NULL, "out of memory");
    memcpy(text, data, size);
    text[size] = '\0';

    char *lines[MAX_ROUTES + 2];
    size_t n = 0;
    for (char *p = text, *nl; n < MAX_ROUTES + 2; p = nl + 1) {
        lines[n++] = p;
        if (!(nl = strchr(p, '\n')))
            break;
        *nl = '\0';
    }

    /* route_table_free frees everything the table points to, so all of it is malloc'ed. */
    struct route routes[MAX_ROUTES];
    struct route_channel *channels = calloc(2, sizeof *channels);
    check(channels != NULL, "out of memory");
    channels[0].name = strdup("c");
    channels[1].name = strdup("other");
    struct route_table t = {.count = 2, .channels = channels};
    size_t declared = n > 2 ? n - 2 : 0;
    for (size_t i = 0; i < declared; i++) {
        struct route r;
        char why[200];
        if (route_parse_why(lines[i], &r, why, sizeof why) != 0) {
            check(r.path == NULL, "a refused route with a path");
            check(why[0] != '\0', "a refused route without a reason");
            continue;
        }
        check_parsed(&r);
        routes[channels[0].count++] = r;
    }
    channels[0].routes = malloc((channels[0].count + 1) * sizeof *routes);
    check(channels[0].routes != NULL, "out of memory");
    memcpy(channels[0].routes, routes, channels[0].count * sizeof *routes);

    const struct route_channel *c = &channels[0];
    for (size_t i = 0; i < c->count; i++) {
        const struct route *r = &c->routes[i];
        if (!first_of_its_kind(c, i) || strcmp(r->method, "HEAD") == 0 || strchr(r->path, '%') ||
            strlen(r->path) > 4000)
            continue; /* HEAD is matched as GET; an escape in a literal is decoded first */
        char full[4200];
        snprintf(full, sizeof full, "/webhooks/c%s", strcmp(r->path, "/") == 0 ? "" : r->path);
        struct route_match m;
        router_match(&t, r->method, full, &m);
        check(m.kind == ROUTE_CUSTOM && m.route == r, "a declared route does not match itself");
        for (size_t k = 0; k < m.param_count; k++)
            check(m.params[k].value_len == m.params[k].name_len + 2 &&
                  memcmp(m.params[k].value + 1, m.params[k].name, m.params[k].name_len) == 0,
                  "a parameter is not its own {name}");
    }

    if (n >= 2)
        check_match(&t, lines[n - 2], lines[n - 1]);
    else
        check_match(&t, "GET", lines[0]);
    route_table_free(&t);
    free(text);
    return 0;
}
