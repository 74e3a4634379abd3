/* SPDX-License-Identifier: MIT */
/* builtin_routes: the routes answered in C, with no script (see engine_internal.h): the root,
 * the status page, each channel's health check, 404 and 405. Webhooks and the routes channels
 * declare become jobs. */
#include "engine_internal.h"

#include "bot.h"
#include "json_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void respond_json(struct http_exchange *x, int status, const char *body, size_t len,
                         const struct http_header *headers, size_t header_count)
{
    struct http_response resp = {.status = status, .content_type = "application/json",
                                 .headers = headers, .header_count = header_count,
                                 .body = body, .body_len = len};
    http_respond(x, &resp);
}

static void respond_error(struct http_exchange *x, int status, const char *code,
                          const char *message, const struct http_header *headers,
                          size_t header_count)
{
    char body[1200];
    json_error_body(body, sizeof body, code, message);
    respond_json(x, status, body, strlen(body), headers, header_count);
}

/* GET /status (docs/reloading-and-guards.md): version, uptime, generations, the last reload
 * error, the bot, the channels and the answers by status class. */
static void respond_status(struct worker *w, struct http_exchange *x)
{
    struct engine *e = w->engine;
    const struct generation *gen = w->lua->gen;
    char bot[1024], last_error[sizeof e->last_reload_error];
    bot_describe(&gen->config->endpoints, e->opt.paths.data_dir, bot, sizeof bot);
    /* A reload on the main thread may write the error meanwhile: work on a copy. */
    pthread_mutex_lock(&e->reload_lock);
    unsigned newest = e->generation;
    memcpy(last_error, e->last_reload_error, sizeof last_error);
    pthread_mutex_unlock(&e->reload_lock);
    const char *error = last_error[0] ? last_error : NULL;

    struct json_writer j;
    json_writer_init(&j);
    json_object_begin(&j);
    json_key(&j, "version");
    json_string(&j, SB_VERSION);
    json_key(&j, "uptime");
    json_integer(&j, (long long)(time(NULL) - e->started));
    json_key(&j, "workers");
    json_integer(&j, e->worker_count);
    json_key(&j, "generation");
    json_integer(&j, gen->number);
    json_key(&j, "last_reload_error");
    json_string(&j, error);
    json_key(&j, "bot");
    json_string(&j, bot);
    json_key(&j, "channels");
    json_array_begin(&j);
    for (size_t i = 0; i < gen->channels.count; i++) {
        const struct channel_def *d = &gen->channels.defs[i];
        /* A rejected reload that names this channel (its script or its key) is its last reload
         * error. */
        char by_key[320];
        snprintf(by_key, sizeof by_key, "channel '%s'", d->key);
        int failed = error && newest == gen->number &&
                     (strstr(error, d->script) || strstr(error, by_key));
        json_object_begin(&j);
        json_key(&j, "name");
        json_string(&j, d->name ? d->name : "");
        json_key(&j, "key");
        json_string(&j, d->key);
        json_key(&j, "script");
        json_string(&j, d->script);
        json_key(&j, "generation");
        json_integer(&j, gen->number);
        json_key(&j, "last_reload_error");
        json_string(&j, failed ? error : NULL);
        json_object_end(&j);
    }
    json_array_end(&j);
    unsigned long answers[6] = {0};
    for (unsigned i = 0; i < e->worker_count; i++)
        http_server_answers(e->workers[i].http, answers);
    json_key(&j, "requests");
    json_object_begin(&j);
    for (int cls = 1; cls <= 5; cls++) {
        char name[4] = {(char)('0' + cls), 'x', 'x', '\0'};
        json_key(&j, name);
        json_integer(&j, (long long)answers[cls]);
    }
    json_object_end(&j);
    json_object_end(&j);

    size_t len;
    char *body = json_writer_finish(&j, &len);
    if (!body) {
        respond_error(x, 503, "overloaded", "out of memory", NULL, 0);
        return;
    }
    respond_json(x, 200, body, len, NULL, 0);
    free(body);
}

void builtin_routes_on_request(void *ctx, struct http_exchange *x, const struct http_request *r)
{
    struct worker *w = ctx;
    struct route_match m;
    router_match(&w->lua->gen->routes, r->method, r->path, &m);
    switch (m.kind) {
    case ROUTE_ROOT: {
        char text[64];
        snprintf(text, sizeof text, "Hello from Switchboard: %s", SB_VERSION);
        struct http_response resp = {.status = 200, .content_type = "text/plain; charset=utf-8",
                                     .body = text, .body_len = strlen(text)};
        http_respond(x, &resp);
        return;
    }
    case ROUTE_STATUS:
        respond_status(w, x);
        return;
    case ROUTE_HEALTH: {
        static const char ok[] = "{\"status\":\"ok\"}";
        respond_json(x, 200, ok, sizeof ok - 1, NULL, 0);
        return;
    }
    case ROUTE_WEBHOOK:
    case ROUTE_CUSTOM:
        job_start(w, x, r, &m);
        return;
    case ROUTE_METHOD_NOT_ALLOWED: {
        char message[512];
        snprintf(message, sizeof message, "%s is not allowed on %s; allowed: %s", r->method,
                 r->path, m.allow);
        struct http_header allow = {"Allow", m.allow};
        respond_error(x, 405, "method_not_allowed", message, &allow, 1);
        return;
    }
    case ROUTE_NOT_FOUND:
    default: {
        char message[600];
        snprintf(message, sizeof message,
                 "no route for %s %s; channels answer at /webhooks/<name>/webhook", r->method,
                 r->path);
        respond_error(x, 404, "not_found", message, NULL, 0);
        return;
    }
    }
}
