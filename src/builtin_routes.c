/* SPDX-License-Identifier: MIT */
/* builtin_routes: the routes answered in C, with no script (see engine_internal.h): the root,
 * the status page, the metrics, each channel's health check, 404 and 405. Webhooks and the
 * routes channels declare become jobs. The admin routes (/status, /metrics) answer loopback
 * clients only, or with server.admin_token set, only requests that carry it
 * (docs/operations.md#admin-access). The proactive messages route (POST
 * /conversations/<sender>/messages, docs/contract.md §2) exists only with server.push_token: its
 * token, channel and content type are checked here, the rest is a job (pipeline.lua's "push"). */
#include "engine_internal.h"

#include "bot.h"
#include "buffer.h"
#include "json_writer.h"
#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

/* ---- admin access ----------------------------------------------------------------------------- */

/* 127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6. The peer address of the socket: no header
 * (X-Forwarded-For) can make a client loopback. */
static int is_loopback(const char *addr)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, addr, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &v6) != 1)
        return 0;
    if (IN6_IS_ADDR_LOOPBACK(&v6))
        return 1;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

/* Equal strings, in a time that depends on the expected token's length only. */
static int token_equals(const char *expected, const char *given, size_t given_len)
{
    size_t len = strlen(expected);
    unsigned char diff = (unsigned char)(len != given_len);
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(expected[i] ^ (given_len ? given[i % given_len] : 0));
    return diff == 0;
}

/* 1 when the request carries `Authorization: Bearer <token>`; else it was answered 401 with a
 * challenge. `key` names the setting in the message. */
static int bearer_allowed(struct http_exchange *x, const char *token, const char *key)
{
    const char *auth = http_header_value(x, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *given = auth + 7;
        while (*given == ' ')
            given++;
        size_t len = strlen(given);
        while (len && given[len - 1] == ' ')
            len--;
        if (token_equals(token, given, len))
            return 1;
    }
    char message[160];
    snprintf(message, sizeof message,
             "this route needs a bearer token (Authorization: Bearer <%s>)", key);
    struct http_header challenge = {"WWW-Authenticate", "Bearer"};
    respond_error(x, 401, "unauthorized", auth ? "the bearer token is not valid" : message,
                  &challenge, 1);
    return 0;
}

/* 1 when the request may see an admin route; else it was answered 401 or 403. */
static int admin_allowed(struct worker *w, struct http_exchange *x, const struct http_request *r)
{
    const char *token = w->engine->admin_token;
    if (!token[0]) {
        if (is_loopback(r->remote_addr))
            return 1;
        respond_error(x, 403, "forbidden",
                      "this route answers local clients only; set server.admin_token in "
                      "endpoints.yml to allow others with a bearer token", NULL, 0);
        return 0;
    }
    return bearer_allowed(x, token, "server.admin_token");
}

/* ---- paths without the machine's folders ---------------------------------------------------- */

/* Copy text into out with the folders in dirs (absolute, no trailing slash) replaced by what
 * stands for them ("./" for the project folder), so the status page shows no absolute path of
 * these folders. Longer folders are tried first, so one inside another is found. */
static void relativize(const char *text, const char *const *dirs, const char *const *names,
                       size_t count, char *out, size_t size)
{
    size_t used = 0;
    const char *p = text;
    while (*p && used + 1 < size) {
        size_t best = count, best_len = 0;
        int at_start = p == text || p[-1] == ' ' || p[-1] == '(' || p[-1] == '\'' ||
                       p[-1] == '"' || p[-1] == '\n';
        for (size_t i = 0; at_start && i < count; i++) {
            size_t len = dirs[i] ? strlen(dirs[i]) : 0;
            if (len > 1 && len > best_len && strncmp(p, dirs[i], len) == 0 && p[len] == '/') {
                best = i;
                best_len = len;
            }
        }
        if (best < count) {
            used += (size_t)snprintf(out + used, size - used, "%s", names[best]);
            if (used >= size)
                used = size - 1;
            p += best_len + 1;
            continue;
        }
        out[used++] = *p++;
    }
    out[used] = '\0';
}

/* The scheme, host and path of a URL: no user name, password, query or fragment. */
static void redact_url(const char *url, char *out, size_t size)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    size_t authority = strcspn(host, "/?#");
    const char *at = memchr(host, '@', authority);
    if (at)
        authority -= (size_t)(at + 1 - host), host = at + 1;
    size_t path = strcspn(host + authority, "?#");
    snprintf(out, size, "%.*s%.*s%.*s", scheme_end ? (int)(scheme_end + 3 - url) : 0, url,
             (int)authority, host, (int)path, host + authority);
}

/* The status page's text for a path or a message with paths in it. */
struct path_names {
    const char *dirs[3];
    const char *names[3];
    char endpoints_name[64];
};

static void path_names_init(struct path_names *pn, const struct engine *e,
                            const struct generation *gen)
{
    const char *project = script_config_project_dir(gen->config);
    pn->dirs[0] = project;
    pn->names[0] = "./";
    pn->dirs[1] = e->opt.paths.data_dir;
    pn->names[1] = "$SWITCHBOARD_HOME/";
    pn->dirs[2] = gen->config->endpoints.dir; /* the bot's folder when endpoints.yml is elsewhere */
    pn->names[2] = "./";
    if (pn->dirs[2] && project && strcmp(pn->dirs[2], project) != 0)
        pn->names[2] = "<endpoints.yml's folder>/";
}

static void json_time(struct json_writer *j, time_t t)
{
    char text[32];
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_string(j, text);
}

/* "store": the backend of sb.store; for Redis its state (docs/multi-host.md). */
static void write_store_status(struct json_writer *j, struct engine *e)
{
    json_key(j, "store");
    json_object_begin(j);
    json_key(j, "backend");
    json_string(j, e->redis ? "redis" : "embedded");
    if (e->redis) {
        struct store_redis_status st;
        store_redis_host_status(e->redis, &st);
        json_key(j, "url");
        json_string(j, st.url);
        json_key(j, "prefix");
        json_string(j, st.prefix);
        json_key(j, "state");
        json_string(j, st.connected ? "connected" : "reconnecting");
        json_key(j, "since");
        json_time(j, st.since);
        json_key(j, "workers_connected");
        json_integer(j, st.up);
        json_key(j, "reconnects");
        json_integer(j, (long long)st.reconnects);
        json_key(j, "last_error");
        json_string(j, st.last_error[0] ? st.last_error : NULL);
        json_key(j, "last_error_at");
        if (st.last_error[0])
            json_time(j, st.last_error_at);
        else
            json_null(j);
    }
    json_object_end(j);
}

/* GET /status (docs/reloading-and-guards.md): version, uptime, generations, the last reload
 * error, the bot, the channels and the answers by status class. No absolute path and no secret:
 * the page may be read by whoever holds the admin token. */
static void respond_status(struct worker *w, struct http_exchange *x)
{
    struct engine *e = w->engine;
    const struct generation *gen = w->lua->gen;
    const struct endpoints *ep = &gen->config->endpoints;
    struct path_names pn;
    path_names_init(&pn, e, gen);
    char raw_bot[1024], bot[1024], last_error[sizeof e->last_reload_error];
    if (ep->bot.kind == BOT_HTTP && ep->bot.url) {
        char url[900];
        redact_url(ep->bot.url, url, sizeof url);
        snprintf(raw_bot, sizeof raw_bot, "HTTP bot %s", url);
    } else {
        bot_describe(ep, e->opt.paths.data_dir, raw_bot, sizeof raw_bot);
    }
    relativize(raw_bot, pn.dirs, pn.names, 3, bot, sizeof bot);
    /* A reload on the main thread may write the error meanwhile: work on a copy. */
    pthread_mutex_lock(&e->reload_lock);
    unsigned newest = e->generation;
    memcpy(last_error, e->last_reload_error, sizeof last_error);
    pthread_mutex_unlock(&e->reload_lock);
    const char *error = last_error[0] ? last_error : NULL;
    static _Thread_local char shown_error[sizeof e->last_reload_error + 256];
    if (error)
        relativize(error, pn.dirs, pn.names, 3, shown_error, sizeof shown_error);

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
    json_string(&j, error ? shown_error : NULL);
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
        char script[4096];
        relativize(d->script, pn.dirs, pn.names, 3, script, sizeof script);
        json_key(&j, "script");
        json_string(&j, script);
        json_key(&j, "generation");
        json_integer(&j, gen->number);
        json_key(&j, "last_reload_error");
        json_string(&j, failed ? shown_error : NULL);
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
    write_store_status(&j, e);
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

/* GET /metrics: the Prometheus text format (docs/operations.md#metrics). */
static void respond_metrics(struct worker *w, struct http_exchange *x)
{
    struct buffer text = {0};
    struct store_stats stats;
    store_stats(w->engine->store, &stats);
    struct metrics_store store = {stats.keys, stats.bytes, stats.max_bytes, stats.evictions,
                                  stats.expirations};
    struct store_redis_status redis;
    if (w->engine->redis)
        store_redis_host_status(w->engine->redis, &redis);
    if (metrics_write(&text) != 0 || metrics_write_store(&text, &store) != 0 ||
        (w->engine->redis &&
         metrics_write_store_redis(&text, redis.connected, redis.reconnects) != 0)) {
        buffer_free(&text);
        respond_error(x, 503, "overloaded", "out of memory", NULL, 0);
        return;
    }
    struct http_response resp = {.status = 200,
                                 .content_type = "text/plain; version=0.0.4; charset=utf-8",
                                 .body = text.data ? text.data : "", .body_len = text.len};
    http_respond(x, &resp);
    buffer_free(&text);
}

/* ---- proactive messages --------------------------------------------------------------------- */

struct first_arg {
    const char *name;
    const char *value;
};

static void find_first_arg(void *ctx, const char *name, const char *value)
{
    struct first_arg *a = ctx;
    if (!a->value && strcmp(name, a->name) == 0)
        a->value = value;
}

/* "rest, slack, myio (key mypackage.myio)": the channels a request may name. */
static void channel_list(const struct generation *gen, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < gen->channels.count && used + 1 < size; i++) {
        const struct channel_def *d = &gen->channels.defs[i];
        const char *name = d->name ? d->name : d->key;
        int same = strcmp(name, d->key) == 0;
        int n = snprintf(out + used, size - used, "%s%s%s%s%s", i ? ", " : "", name,
                         same ? "" : " (key ", same ? "" : d->key, same ? "" : ")");
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* JSON or no Content-Type at all: application/json, or any type ending in +json. */
static int json_content_type(const char *value)
{
    if (!value)
        return 1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strcspn(value, ";");
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    return (len == 16 && strncasecmp(value, "application/json", 16) == 0) ||
           (len > 5 && strncasecmp(value + len - 5, "+json", 5) == 0);
}

/* POST /conversations/<sender>/messages?channel=<key or name> with the push token: the checks
 * that need no script, then a job (pipeline.lua checks the body and that the channel pushes,
 * answers 202 and sends the messages in the sender's turn). */
static void proactive(struct worker *w, struct http_exchange *x, const struct http_request *r,
                      struct route_match *m)
{
    const struct generation *gen = w->lua->gen;
    if (!bearer_allowed(x, w->engine->push_token, "server.push_token"))
        return;
    struct first_arg arg = {"channel", NULL};
    if (r->query)
        for (size_t i = 0; i < r->query_count; i++)
            find_first_arg(&arg, r->query[i].name, r->query[i].value);
    else
        http_each_query_arg(x, find_first_arg, &arg);
    char channels[1024], message[1400];
    channel_list(gen, channels, sizeof channels);
    if (!arg.value || !arg.value[0]) {
        snprintf(message, sizeof message, "name the channel that sends the messages: "
                 "?channel=<key or name>; the channels are: %s", channels);
        respond_error(x, 400, "missing_channel", message, NULL, 0);
        return;
    }
    int found = -1;
    for (size_t i = 0; i < gen->channels.count && found < 0; i++)
        if (strcmp(gen->channels.defs[i].key, arg.value) == 0)
            found = (int)i;
    for (size_t i = 0; i < gen->channels.count && found < 0; i++)
        if (gen->channels.defs[i].name && strcmp(gen->channels.defs[i].name, arg.value) == 0)
            found = (int)i;
    if (found < 0 || (size_t)found >= gen->routes.count) {
        snprintf(message, sizeof message, "no channel '%.200s'; the channels are: %s", arg.value,
                 channels);
        respond_error(x, 404, "unknown_channel", message, NULL, 0);
        return;
    }
    const char *channel = gen->routes.channels[found].name;
    http_set_channel(x, channel);
    log_set_channel(channel);
    const char *type = http_header_value(x, "Content-Type");
    if (!json_content_type(type)) {
        snprintf(message, sizeof message, "the body must be JSON (Content-Type: "
                 "application/json), not %.200s", type);
        respond_error(x, 415, "unsupported_media_type", message, NULL, 0);
        return;
    }
    m->channel = found;
    job_start(w, x, r, m);
}

/* The 405 of the proactive messages route's path (the router leaves its existence to us). */
static int proactive_path(const struct route_match *m)
{
    return m->kind == ROUTE_METHOD_NOT_ALLOWED && m->channel < 0 && m->param_count == 1;
}

/* ---- dispatch --------------------------------------------------------------------------------- */

static void answer(struct worker *w, struct http_exchange *x, const struct http_request *r,
                   const struct route_match *m);

/* The path as sent (percent-encoded), so that the router decodes each segment itself and an
 * encoded '/' stays inside its parameter. A target that is not a path (absolute form) falls back
 * to the decoded path. */
static const char *raw_path(const struct http_request *r, char *buf, size_t size)
{
    const char *raw = r->raw_uri;
    if (!raw || raw[0] != '/')
        return r->path;
    size_t len = strcspn(raw, "?#");
    if (len >= size)
        return r->path;
    memcpy(buf, raw, len);
    buf[len] = '\0';
    return buf;
}

void builtin_routes_on_request(void *ctx, struct http_exchange *x, const struct http_request *r)
{
    struct worker *w = ctx;
    struct route_match m;
    const struct route_table *routes = &w->lua->gen->routes;
    char path[8200]; /* a request target is at most 8192 bytes (http_checks) */
    router_match(routes, r->method, raw_path(r, path, sizeof path), &m);
    if ((m.kind == ROUTE_PROACTIVE || proactive_path(&m)) && !w->engine->push_token[0])
        m.kind = ROUTE_NOT_FOUND; /* no push token: the route does not exist */
    /* The channel labels the request's metrics and log lines (a job keeps its own copy). */
    const char *channel = m.channel >= 0 ? routes->channels[m.channel].name : NULL;
    http_set_channel(x, channel);
    log_set_channel(channel);
    answer(w, x, r, &m);
    log_set_channel(NULL);
}

static void answer(struct worker *w, struct http_exchange *x, const struct http_request *r,
                   const struct route_match *mp)
{
    struct route_match m = *mp;
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
        if (admin_allowed(w, x, r))
            respond_status(w, x);
        return;
    case ROUTE_METRICS:
        if (admin_allowed(w, x, r))
            respond_metrics(w, x);
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
    case ROUTE_PROACTIVE:
        proactive(w, x, r, &m);
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
