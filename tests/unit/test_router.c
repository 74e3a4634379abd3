/* SPDX-License-Identifier: MIT */
/* test_router: route_parse on the "METHOD /path" keys of channel.routes, and router_match on the
 * built-in routes (docs/contract.md §2), declared extra routes and overrides (§3.6), 404 and 405
 * with Allow. */
#include "../../src/router.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

/* ---- route_parse ---------------------------------------------------------------------------- */

/* Parses `spec`, which must succeed, and checks the method and path it gives. */
static void parses_as(const char *spec, const char *method, const char *path)
{
    struct route r;

    CHECK(route_parse(spec, &r) == 0);
    CHECK_STR(r.method, method);
    CHECK_STR(r.path, path);
    CHECK_STR(r.spec, spec);                          /* the key as written, for the pipeline */
    route_free(&r);
}

static int refused(const char *spec)
{
    struct route r;
    int rc = route_parse(spec, &r);

    if (rc == 0) {
        fprintf(stderr, "route_parse accepted \"%s\"\n", spec);
        route_free(&r);
        return 0;
    }
    return r.path == NULL && r.spec == NULL; /* nothing left to free on failure */
}

static void test_parse(void)
{
    parses_as("GET /set_webhook", "GET", "/set_webhook");
    parses_as("POST /webhook", "POST", "/webhook");
    parses_as("GET /", "GET", "/");
    parses_as("get /x", "GET", "/x");                  /* the method is upper-cased */
    parses_as("Delete /a/b", "DELETE", "/a/b");
    parses_as("GET /x/", "GET", "/x");                 /* a trailing slash is dropped */
    parses_as("GET /a/b/", "GET", "/a/b");
    parses_as("GET /a//", "GET", "/a");                /* every trailing slash (found by fuzzing) */
    parses_as("GET //", "GET", "/");
    parses_as("  PUT \t  /x  ", "PUT", "/x");         /* any amount of space */
    parses_as("OPTIONS /", "OPTIONS", "/");

    CHECK(refused("GET x"));           /* missing slash */
    CHECK(refused("GET set_webhook/"));
    CHECK(refused("GET"));             /* no path */
    CHECK(refused("GET   "));
    CHECK(refused("/webhook"));        /* no method: "/webhook" is not letters */
    CHECK(refused(""));
    CHECK(refused("   "));
    CHECK(refused("G3T /x"));          /* the method is letters only */
    CHECK(refused("GET-X /x"));
    CHECK(refused("VERYLONGMETHODNAME /x"));
}

/* ---- router_match --------------------------------------------------------------------------- */

/* Appends a channel named `name` with the routes in `specs` (NULL-terminated) to t. */
static void add_channel(struct route_table *t, const char *name, const char *const *specs)
{
    struct route_channel *c;
    size_t n = 0;

    while (specs && specs[n])
        n++;
    t->channels = realloc(t->channels, (t->count + 1) * sizeof *t->channels);
    if (!t->channels)
        abort();
    c = &t->channels[t->count++];
    c->name = strdup(name);
    c->count = 0;
    c->routes = n ? calloc(n, sizeof *c->routes) : NULL;
    if (!c->name || (n && !c->routes))
        abort();
    for (; c->count < n; c->count++) {
        int rc = route_parse(specs[c->count], &c->routes[c->count]);

        CHECK(rc == 0);
        if (rc != 0)
            abort();
    }
}

static struct route_match m;

static enum route_kind match(const struct route_table *t, const char *method, const char *path)
{
    memset(&m, 0x5a, sizeof m); /* router_match must set every field */
    router_match(t, method, path, &m);
    return m.kind;
}

static void test_builtin(void)
{
    struct route_table t = {0};

    add_channel(&t, "rest", NULL);

    CHECK(match(&t, "GET", "/") == ROUTE_ROOT);
    CHECK(m.channel == -1 && m.route == NULL);
    CHECK(match(&t, "HEAD", "/") == ROUTE_ROOT);
    CHECK(match(&t, "POST", "/") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "GET, HEAD");
    CHECK(match(&t, "GET", "/status") == ROUTE_STATUS);
    CHECK(match(&t, "GET", "/status/") == ROUTE_STATUS);
    CHECK(match(&t, "HEAD", "/status") == ROUTE_STATUS);
    CHECK(match(&t, "DELETE", "/status") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK(match(&t, "GET", "/metrics") == ROUTE_METRICS);
    CHECK(match(&t, "HEAD", "/metrics/") == ROUTE_METRICS);
    CHECK(match(&t, "POST", "/metrics") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "GET, HEAD");
    CHECK(match(&t, "GET", "/metricsx") == ROUTE_NOT_FOUND);

    /* health, with and without the trailing slash */
    CHECK(match(&t, "GET", "/webhooks/rest") == ROUTE_HEALTH);
    CHECK(m.channel == 0 && m.route == NULL);
    CHECK(match(&t, "GET", "/webhooks/rest/") == ROUTE_HEALTH);
    CHECK(m.channel == 0);
    CHECK(match(&t, "HEAD", "/webhooks/rest/") == ROUTE_HEALTH);
    CHECK(match(&t, "POST", "/webhooks/rest/") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "GET, HEAD");

    /* the webhook */
    CHECK(match(&t, "POST", "/webhooks/rest/webhook") == ROUTE_WEBHOOK);
    CHECK(m.channel == 0 && m.route == NULL);
    CHECK(match(&t, "POST", "/webhooks/rest/webhook/") == ROUTE_WEBHOOK);
    CHECK(match(&t, "GET", "/webhooks/rest/webhook") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "POST");
    CHECK(m.channel == 0);
    CHECK(match(&t, "HEAD", "/webhooks/rest/webhook") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "POST");

    /* not found */
    CHECK(match(&t, "POST", "/webhooks/slack/webhook") == ROUTE_NOT_FOUND); /* unknown channel */
    CHECK(m.channel == -1);
    CHECK(match(&t, "GET", "/webhooks/slack") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooks/rest/nope") == ROUTE_NOT_FOUND);    /* unknown subpath */
    CHECK(match(&t, "POST", "/webhooks/rest/webhook/x") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/webhooks/rest/webhookx") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooks/restx") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooks/res") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooksx") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooksx/rest") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooks") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooks/") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/webhooks//webhook") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/statusx") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/nope") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "") == ROUTE_NOT_FOUND);
    CHECK(m.channel == -1 && m.route == NULL);

    route_table_free(&t);
    CHECK(t.count == 0 && t.channels == NULL);
}

static void test_custom(void)
{
    static const char *const routes[] = {"GET /set_webhook", "post /a/b/", NULL};
    struct route_table t = {0};

    add_channel(&t, "telegram", routes);
    CHECK(match(&t, "GET", "/webhooks/telegram/set_webhook") == ROUTE_CUSTOM);
    CHECK(m.channel == 0 && m.route == &t.channels[0].routes[0]);
    CHECK(match(&t, "GET", "/webhooks/telegram/set_webhook/") == ROUTE_CUSTOM);
    CHECK(m.route == &t.channels[0].routes[0]);
    CHECK(match(&t, "HEAD", "/webhooks/telegram/set_webhook") == ROUTE_CUSTOM);
    CHECK(match(&t, "POST", "/webhooks/telegram/set_webhook") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "GET, HEAD");
    CHECK(match(&t, "POST", "/webhooks/telegram/a/b") == ROUTE_CUSTOM);
    CHECK(m.route == &t.channels[0].routes[1]);
    CHECK(match(&t, "GET", "/webhooks/telegram/a/b") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "POST");
    CHECK(match(&t, "POST", "/webhooks/telegram/a") == ROUTE_NOT_FOUND);
    /* the built-ins are still there */
    CHECK(match(&t, "GET", "/webhooks/telegram") == ROUTE_HEALTH);
    CHECK(match(&t, "POST", "/webhooks/telegram/webhook") == ROUTE_WEBHOOK);
    CHECK(match(&t, "GET", "/set_webhook") == ROUTE_NOT_FOUND); /* only under the channel */
    route_table_free(&t);
}

static void test_overrides(void)
{
    static const char *const overrides[] = {"GET /", "POST /webhook", NULL};
    static const char *const verify[] = {"GET /webhook", NULL};
    struct route_table t = {0};

    /* custom GET / and POST /webhook win over the built-ins */
    add_channel(&t, "own", overrides);
    CHECK(match(&t, "GET", "/webhooks/own") == ROUTE_CUSTOM);
    CHECK(m.channel == 0 && m.route == &t.channels[0].routes[0]);
    CHECK(match(&t, "GET", "/webhooks/own/") == ROUTE_CUSTOM);
    CHECK(m.route == &t.channels[0].routes[0]);
    CHECK(match(&t, "POST", "/webhooks/own/webhook") == ROUTE_CUSTOM);
    CHECK(m.route == &t.channels[0].routes[1]);
    CHECK(match(&t, "POST", "/webhooks/own") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "GET, HEAD"); /* GET once, not once per source */
    CHECK(match(&t, "GET", "/webhooks/own/webhook") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "POST");

    /* Messenger: a custom GET /webhook next to the built-in POST */
    add_channel(&t, "facebook", verify);
    CHECK(match(&t, "GET", "/webhooks/facebook/webhook") == ROUTE_CUSTOM);
    CHECK(m.channel == 1 && m.route == &t.channels[1].routes[0]);
    CHECK(match(&t, "POST", "/webhooks/facebook/webhook") == ROUTE_WEBHOOK);
    CHECK(m.channel == 1 && m.route == NULL);
    CHECK(match(&t, "PUT", "/webhooks/facebook/webhook") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK(strstr(m.allow, "POST") != NULL);
    CHECK(strstr(m.allow, "GET") != NULL);
    CHECK(strstr(m.allow, "HEAD") != NULL);
    CHECK(strstr(m.allow, "PUT") == NULL);
    CHECK_STR(m.allow, "POST, GET, HEAD");
    route_table_free(&t);
}

static void test_two_channels(void)
{
    static const char *const slack_routes[] = {"GET /oauth", NULL};
    struct route_table t = {0};

    add_channel(&t, "rest", NULL);
    add_channel(&t, "slack", slack_routes);
    CHECK(match(&t, "POST", "/webhooks/rest/webhook") == ROUTE_WEBHOOK);
    CHECK(m.channel == 0);
    CHECK(match(&t, "POST", "/webhooks/slack/webhook") == ROUTE_WEBHOOK);
    CHECK(m.channel == 1);
    CHECK(match(&t, "GET", "/webhooks/slack/") == ROUTE_HEALTH);
    CHECK(m.channel == 1);
    CHECK(match(&t, "GET", "/webhooks/rest/") == ROUTE_HEALTH);
    CHECK(m.channel == 0);
    CHECK(match(&t, "GET", "/webhooks/slack/oauth") == ROUTE_CUSTOM);
    CHECK(m.channel == 1 && m.route == &t.channels[1].routes[0]);
    CHECK(match(&t, "GET", "/webhooks/rest/oauth") == ROUTE_NOT_FOUND); /* slack's, not rest's */
    CHECK(match(&t, "GET", "/webhooks/telegram/") == ROUTE_NOT_FOUND);
    CHECK(m.channel == -1);
    route_table_free(&t);
    route_table_free(&t); /* twice is harmless */
}

int main(void)
{
    test_parse();
    test_builtin();
    test_custom();
    test_overrides();
    test_two_channels();
    return CHECK_DONE();
}
