/* SPDX-License-Identifier: MIT */
/* test_router: route_parse on the "METHOD /path" keys of channel.routes, and router_match on the
 * built-in routes (docs/contract.md §2), declared extra routes and overrides (§3.6), 404 and 405
 * with Allow; {name} parameters, their precedence and decoding; the proactive messages route. */
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

/* route_parse_why refuses `spec` with a reason containing `reason`. */
static void refused_because(const char *spec, const char *reason)
{
    struct route r;
    char why[200] = "untouched";

    CHECK(route_parse_why(spec, &r, why, sizeof why) == -1);
    CHECK(r.path == NULL && r.spec == NULL);
    if (!strstr(why, reason)) {
        fprintf(stderr, "route_parse_why(\"%s\"): \"%s\" does not say \"%s\"\n", spec, why,
                reason);
        CHECK(0);
    }
}

static void test_parse_params(void)
{
    struct route r;

    CHECK(route_parse("POST /conversations/{id}/activities", &r) == 0);
    CHECK_STR(r.path, "/conversations/{id}/activities");
    CHECK(r.param_count == 1);
    route_free(&r);
    CHECK(route_parse("GET /{a}/{b_2}/{_c}/", &r) == 0);
    CHECK_STR(r.path, "/{a}/{b_2}/{_c}");
    CHECK(r.param_count == 3);
    route_free(&r);
    CHECK(route_parse("GET /plain", &r) == 0);
    CHECK(r.param_count == 0);
    route_free(&r);

    refused_because("POST /a/{}/b", "parameter '{}' has no name");
    refused_because("POST /a/{id", "segment '{id' opens a parameter and does not close it");
    refused_because("POST /a/id}", "segment 'id}': a parameter must be a whole segment");
    refused_because("POST /a/x{id}", "segment 'x{id}': a parameter must be a whole segment");
    refused_because("POST /a/{id}x", "a parameter must be a whole segment");
    refused_because("POST /a/{{id}}", "a parameter must be a whole segment");
    refused_because("POST /{id}/x/{id}", "parameter 'id' appears twice");
    refused_because("POST /{1st}", "parameter name '1st' must be letters, digits and '_'");
    refused_because("POST /{a-b}", "parameter name 'a-b'");
    refused_because("GET /{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", "more than 8 parameters");
    refused_because("GET x", "it must look like \"METHOD /path\"");
    refused_because("G3T /x", "the method is letters");
    CHECK(route_parse_why("GET /x", &r, NULL, 0) == 0); /* no room for a reason is fine */
    route_free(&r);
}

static void test_decode(void)
{
    char out[64];
    size_t n;

    n = route_decode("a%2Fb%20c+d", 11, out);
    CHECK(n == 7 && memcmp(out, "a/b c+d", 7) == 0);
    n = route_decode("100%", 4, out);                 /* an incomplete escape stays */
    CHECK(n == 4 && memcmp(out, "100%", 4) == 0);
    n = route_decode("%4", 2, out);
    CHECK(n == 2 && memcmp(out, "%4", 2) == 0);
    n = route_decode("%zz%41", 6, out);
    CHECK(n == 4 && memcmp(out, "%zzA", 4) == 0);
    n = route_decode("whatsapp%3A%2B1415", 18, out);
    CHECK(n == 14 && memcmp(out, "whatsapp:+1415", 14) == 0);
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
    c->mount = NULL;
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

/* The parameter `name` of the last match, decoded. */
static const char *param(const char *name)
{
    static char value[256];

    for (size_t i = 0; i < m.param_count; i++) {
        if (strlen(name) == m.params[i].name_len &&
            memcmp(m.params[i].name, name, m.params[i].name_len) == 0) {
            size_t n = route_decode(m.params[i].value, m.params[i].value_len, value);
            value[n] = '\0';
            return value;
        }
    }
    return NULL;
}

static void test_params(void)
{
    static const char *const routes[] = {
        "POST /conversations/{id}/activities", /* 0 */
        "GET /users/{id}",                     /* 1 */
        "GET /users/me",                       /* 2: literal beats the parameter */
        "POST /users/{id}",                    /* 3 */
        "GET /a/{x}/c",                        /* 4 */
        "GET /{y}/b/c",                        /* 5: /a/b/c goes to 4, first difference wins */
        "POST /{any}",                         /* 6: never takes the built-in /webhook */
        "GET /t/{b}",                          /* 7: the same shape as 8 */
        "GET /t/{a}",                          /* 8: sorts first, so it wins */
        "DELETE /v/{one}/{two}",               /* 9 */
        NULL};
    struct route_table t = {0};
    const struct route *r;

    add_channel(&t, "bf", routes);
    r = t.channels[0].routes;

    CHECK(match(&t, "POST", "/webhooks/bf/conversations/c1/activities") == ROUTE_CUSTOM);
    CHECK(m.route == &r[0] && m.channel == 0 && m.param_count == 1);
    CHECK_STR(param("id"), "c1");
    /* decoded: an encoded slash stays in its segment; '+' is not a space in a path */
    CHECK(match(&t, "POST", "/webhooks/bf/conversations/a%2Fb%20c+d/activities/") == ROUTE_CUSTOM);
    CHECK(m.route == &r[0]);
    CHECK_STR(param("id"), "a/b c+d");
    CHECK(match(&t, "POST", "/webhooks/bf/conversations/a/b/activities") == ROUTE_NOT_FOUND);
    /* a parameter matches one non-empty segment */
    CHECK(match(&t, "POST", "/webhooks/bf/conversations//activities") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/webhooks/bf/conversations/activities") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/webhooks/bf/conversations") == ROUTE_CUSTOM);
    CHECK(m.route == &r[6] && m.param_count == 1);     /* one segment: POST /{any} */
    CHECK_STR(param("any"), "conversations");
    CHECK(match(&t, "GET", "/webhooks/bf/conversations/c1/activities") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "POST");

    /* literal beats parameter, whatever the order of declaration */
    CHECK(match(&t, "GET", "/webhooks/bf/users/me") == ROUTE_CUSTOM);
    CHECK(m.route == &r[2] && m.param_count == 0);
    CHECK(match(&t, "GET", "/webhooks/bf/users/m%65") == ROUTE_CUSTOM); /* decoded first */
    CHECK(m.route == &r[2]);
    CHECK(match(&t, "GET", "/webhooks/bf/users/42") == ROUTE_CUSTOM);
    CHECK(m.route == &r[1]);
    CHECK_STR(param("id"), "42");
    CHECK(param("me") == NULL);
    /* the method filters first: POST /users/me is POST /users/{id} */
    CHECK(match(&t, "POST", "/webhooks/bf/users/me") == ROUTE_CUSTOM);
    CHECK(m.route == &r[3]);
    CHECK_STR(param("id"), "me");
    CHECK(match(&t, "HEAD", "/webhooks/bf/users/7") == ROUTE_CUSTOM);
    CHECK(m.route == &r[1]);
    CHECK(match(&t, "PUT", "/webhooks/bf/users/me") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "GET, POST, HEAD");

    /* the first segment where they differ decides */
    CHECK(match(&t, "GET", "/webhooks/bf/a/b/c") == ROUTE_CUSTOM);
    CHECK(m.route == &r[4]);
    CHECK_STR(param("x"), "b");
    CHECK(match(&t, "GET", "/webhooks/bf/z/b/c") == ROUTE_CUSTOM);
    CHECK(m.route == &r[5]);
    CHECK_STR(param("y"), "z");

    /* the built-in webhook and health are literal routes */
    CHECK(match(&t, "POST", "/webhooks/bf/webhook") == ROUTE_WEBHOOK);
    CHECK(match(&t, "POST", "/webhooks/bf/webhook2") == ROUTE_CUSTOM);
    CHECK(m.route == &r[6]);
    CHECK(match(&t, "GET", "/webhooks/bf") == ROUTE_HEALTH);

    /* the same shape: the key that sorts first */
    CHECK(match(&t, "GET", "/webhooks/bf/t/1") == ROUTE_CUSTOM);
    CHECK(m.route == &r[8]);
    CHECK_STR(param("a"), "1");

    /* two parameters */
    CHECK(match(&t, "DELETE", "/webhooks/bf/v/x%41/y") == ROUTE_CUSTOM);
    CHECK(m.route == &r[9] && m.param_count == 2);
    CHECK_STR(param("one"), "xA");
    CHECK_STR(param("two"), "y");
    route_table_free(&t);
}

/* A route with a parameter that looks like a built-in's path, and a literal route matched by an
 * encoded request. */
static void test_params_and_overrides(void)
{
    static const char *const routes[] = {"GET /{x}", "POST /webhook", NULL};
    struct route_table t = {0};

    add_channel(&t, "own", routes);
    CHECK(match(&t, "POST", "/webhooks/own/webhook") == ROUTE_CUSTOM); /* exact: replaces it */
    CHECK(m.route == &t.channels[0].routes[1]);
    CHECK(match(&t, "POST", "/webhooks/own/w%65bhook") == ROUTE_CUSTOM);
    CHECK(match(&t, "GET", "/webhooks/own/webhook") == ROUTE_CUSTOM); /* GET /{x} */
    CHECK(m.route == &t.channels[0].routes[0]);
    CHECK_STR(param("x"), "webhook");
    CHECK(match(&t, "GET", "/webhooks/own") == ROUTE_HEALTH);          /* {x} needs a segment */
    CHECK(match(&t, "GET", "/webhooks/o%77n/") == ROUTE_HEALTH);       /* the name decoded */
    CHECK(match(&t, "GET", "/webhooks/own%2Fx") == ROUTE_NOT_FOUND);   /* no channel "own/x" */
    route_table_free(&t);
}

static void test_proactive(void)
{
    struct route_table t = {0};

    add_channel(&t, "conversations", NULL);
    CHECK(match(&t, "POST", "/conversations/U123/messages") == ROUTE_PROACTIVE);
    CHECK(m.channel == -1 && m.route == NULL && m.param_count == 1);
    CHECK_STR(param("sender_id"), "U123");
    CHECK(match(&t, "POST", "/conversations/whatsapp%3A%2B1415/messages/") == ROUTE_PROACTIVE);
    CHECK_STR(param("sender_id"), "whatsapp:+1415");
    CHECK(match(&t, "POST", "/conversations/a%2Fb/messages") == ROUTE_PROACTIVE);
    CHECK_STR(param("sender_id"), "a/b");
    CHECK(match(&t, "GET", "/conversations/U1/messages") == ROUTE_METHOD_NOT_ALLOWED);
    CHECK_STR(m.allow, "POST");
    CHECK(match(&t, "POST", "/conversations//messages") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/conversations/a/b/messages") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/conversations/U1") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/conversations/U1/message") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/webhooks/conversations/webhook") == ROUTE_WEBHOOK);
    route_table_free(&t);
}

/* channel.mount: the channel's routes below an absolute path; its webhook stays below
 * /webhooks/<name>; a request below the mount that no route takes falls through. */
static void test_mounted_routes(void)
{
    struct route_table t = {0};
    static const char *const sio[] = {"GET /", "POST /", "GET /x/{id}", NULL};
    add_channel(&t, "rest", NULL);
    add_channel(&t, "socketio", sio);
    t.channels[1].mount = strdup("/socket.io");
    CHECK(match(&t, "GET", "/socket.io/") == ROUTE_CUSTOM && m.channel == 1 &&
          strcmp(m.route->spec, "GET /") == 0);
    CHECK(match(&t, "GET", "/socket.io") == ROUTE_CUSTOM && m.channel == 1);
    CHECK(match(&t, "POST", "/socket.io/") == ROUTE_CUSTOM &&
          strcmp(m.route->spec, "POST /") == 0);
    CHECK(match(&t, "GET", "/socket.io/x/42") == ROUTE_CUSTOM && m.param_count == 1);
    CHECK(match(&t, "DELETE", "/socket.io/") == ROUTE_METHOD_NOT_ALLOWED &&
          strcmp(m.allow, "GET, POST, HEAD") == 0);
    CHECK(match(&t, "GET", "/socket.io/nothing") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "GET", "/socket.iox/") == ROUTE_NOT_FOUND);
    CHECK(match(&t, "POST", "/webhooks/socketio/webhook") == ROUTE_WEBHOOK && m.channel == 1);
    CHECK(match(&t, "POST", "/webhooks/rest/webhook") == ROUTE_WEBHOOK && m.channel == 0);
    CHECK(match(&t, "GET", "/status") == ROUTE_STATUS);
    route_table_free(&t);
}

int main(void)
{
    test_parse();
    test_parse_params();
    test_decode();
    test_params();
    test_params_and_overrides();
    test_proactive();
    test_builtin();
    test_custom();
    test_overrides();
    test_two_channels();
    test_mounted_routes();
    return CHECK_DONE();
}
