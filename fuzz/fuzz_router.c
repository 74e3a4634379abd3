/* SPDX-License-Identifier: MIT */
/* fuzz_router: route_parse and router_match (src/router.c) on arbitrary text.
 *
 * The input is split at newlines: every line but the last two is a route a channel "c" declares
 * ("POST /x"), the last two are the method and the path of a request. Checked besides memory
 * errors: a parsed route has an upper-case method of letters and a path that starts with '/';
 * every declared route is matched by its own method and path (unless an earlier route of the
 * same method and path takes it, or it is HEAD, matched as GET); the request's match is
 * consistent (a channel index when it names one, an Allow value only with 405). Uses: router. */
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
    switch (m.kind) {
    case ROUTE_CUSTOM:
        check(m.route != NULL && m.channel >= 0, "a custom route without its route");
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

/* Is route i the first declared with its method and path (so the one router_match returns)? */
static int first_of_its_kind(const struct route_channel *c, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(c->routes[j].method, c->routes[i].method) == 0 &&
            strcmp(c->routes[j].path, c->routes[i].path) == 0)
            return 0;
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
        if (route_parse(lines[i], &r) != 0) {
            check(r.path == NULL, "a refused route with a path");
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
        if (!first_of_its_kind(c, i) || strcmp(r->method, "HEAD") == 0)
            continue; /* HEAD is matched as GET */
        char full[4200];
        snprintf(full, sizeof full, "/webhooks/c%s", strcmp(r->path, "/") == 0 ? "" : r->path);
        struct route_match m;
        router_match(&t, r->method, full, &m);
        check(m.kind == ROUTE_CUSTOM && m.route == r, "a declared route does not match itself");
    }

    if (n >= 2)
        check_match(&t, lines[n - 2], lines[n - 1]);
    else
        check_match(&t, "GET", lines[0]);
    route_table_free(&t);
    free(text);
    return 0;
}
