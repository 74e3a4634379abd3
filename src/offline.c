/* SPDX-License-Identifier: MIT */
/* offline: see offline.h. One case file is one Lua state loaded like a worker's (every channel of
 * the case's `credentials:`, the case bot, the pipeline), with a host table of its own: no
 * sender gate, no deadline, answers kept in a table. The Lua side (switchboard.cases) reads the
 * case, calls request() below for each one, and compares. */
#include "offline.h"

#include "config.h"
#include "engine.h"
#include "http_checks.h"
#include "json_writer.h"
#include "log.h"
#include "lua_json.h"
#include "lua_request.h"
#include "lua_sb.h"
#include "router.h"
#include "scripts.h"
#include "store.h"

#include <dirent.h>
#include <math.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_WAITS 10000 /* waits one request may make: sb.sleep returns at once offline */
#define MAX_FIELDS 64   /* headers, query arguments */

enum pending { PENDING_NONE, PENDING_SLEEP, PENDING_HTTP };

/* The request being run (one at a time: the command is single-threaded). */
struct run {
    struct lua_task task;
    enum pending pending;
    int result_ref;   /* the table request() returns; the host functions fill it */
    int platform_ref; /* the case's platform(call) -> answer function */
    int answer_ref;   /* the last platform answer, kept until pushed to the script */
};

static struct run *current;

/* ---- the host table of an offline run ------------------------------------------------------- */

static void result_set(lua_State *L, const char *field, int value_idx)
{
    value_idx = lua_absindex(L, value_idx);
    lua_rawgeti(L, LUA_REGISTRYINDEX, current->result_ref);
    lua_pushvalue(L, value_idx);
    lua_setfield(L, -2, field);
    lua_pop(L, 1);
}

/* host.message_begin(sender), host.message_end(): no gate and no deadline offline; each message
 * still gets a CPU budget of its own.  [-0,+0,-] */
static int l_message_begin(lua_State *L)
{
    (void)L;
    return 0;
}

static int l_message_end(lua_State *L)
{
    lua_state_budget_end(L);
    lua_state_budget_begin(L);
    return 0;
}

/* host.stream_start(status, content_type)  [-0,+0,e] */
static int l_stream_start(lua_State *L)
{
    luaL_checkinteger(L, 1);
    luaL_checkstring(L, 2);
    result_set(L, "status", 1);
    result_set(L, "content_type", 2);
    lua_newtable(L);
    result_set(L, "lines", -1);
    return 0;
}

/* host.stream_write(text): one line per call  [-0,+0,e] */
static int l_stream_write(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, current->result_ref);
    if (lua_getfield(L, -1, "lines") == LUA_TTABLE) {
        lua_pushvalue(L, 1);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    return 0;
}

/* The answer (status, content type, body, headers) at L[base..]. */
static void keep_answer(lua_State *L, int base)
{
    result_set(L, "status", base);
    result_set(L, "content_type", base + 1);
    result_set(L, "body", base + 2);
    result_set(L, "headers", base + 3);
}

/* host.answer(status, content_type, body, headers)  [-0,+0,e] */
static int l_answer(lua_State *L)
{
    const char *problem = job_answer_problem(L, 1, lua_gettop(L));
    if (problem)
        return luaL_error(L, "host.answer: %s", problem);
    lua_settop(L, 4);
    keep_answer(L, 1);
    return 0;
}

static void push_offline_host(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"message_begin", l_message_begin}, {"message_end", l_message_end},
        {"stream_start", l_stream_start},   {"stream_write", l_stream_write},
        {"answer", l_answer},               {NULL, NULL},
    };
    luaL_newlib(L, functions);
}

/* The lines logged while the request runs, each ending in '\0', for the case's `expect: log:`.
 * Static, so that a memory error while they are handed to Lua leaks nothing; freed after each
 * file. */
static struct {
    char *text;
    size_t len, cap;
} captured;

/* A line that does not fit in memory is dropped. */
static void capture_line(void *ctx, const char *line, size_t len)
{
    (void)ctx;
    if (captured.len + len + 1 > captured.cap) {
        size_t cap = captured.cap ? captured.cap * 2 : 4096;
        while (cap < captured.len + len + 1)
            cap *= 2;
        char *grown = realloc(captured.text, cap);
        if (!grown)
            return;
        captured.text = grown;
        captured.cap = cap;
    }
    memcpy(captured.text + captured.len, line, len);
    captured.len += len;
    captured.text[captured.len++] = '\0';
}

static void captured_free(void)
{
    free(captured.text);
    captured.text = NULL;
    captured.len = captured.cap = 0;
}

/* result.log: the captured lines, in order.  [-0,+0,m] */
static void keep_log(lua_State *L, int result)
{
    lua_newtable(L);
    lua_Integer n = 0;
    for (size_t at = 0; at < captured.len; at += strlen(captured.text + at) + 1) {
        lua_pushstring(L, captured.text + at);
        lua_rawseti(L, -2, ++n);
    }
    lua_setfield(L, result, "log");
}

/* ---- waits ---------------------------------------------------------------------------------- */

static void offline_sleep(struct lua_task *t, double seconds)
{
    (void)t;
    (void)seconds;
    current->pending = PENDING_SLEEP;
}

/* The call goes to the case's platform(call) function, inside the script's own coroutine (the
 * script then waits as it would for the network). */
static int offline_http(struct lua_task *t, const struct outbound_request *req, char *err,
                        size_t errlen)
{
    lua_State *L = t->co;
    lua_rawgeti(L, LUA_REGISTRYINDEX, current->platform_ref);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, req->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, req->url);
    lua_setfield(L, -2, "url");
    lua_pushlstring(L, req->body ? req->body : "", req->body ? req->body_len : 0);
    lua_setfield(L, -2, "body");
    lua_createtable(L, 0, (int)req->header_count);
    for (size_t i = 0; i < req->header_count; i++) {
        lua_pushstring(L, req->headers[i].value);
        lua_setfield(L, -2, req->headers[i].name);
    }
    lua_setfield(L, -2, "headers");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "platform failed");
        lua_pop(L, 1);
        return -1;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, current->answer_ref);
    current->answer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    current->pending = PENDING_HTTP;
    return 0;
}

/* sb.store offline: one store per case file (made on first use, dropped after the file), so
 * the cases of a file share what they store, in order, as the requests of a host would. A pop
 * does not wait: offline, time does not pass. */
static struct store *file_store;

static struct store *offline_store(struct lua_task *t)
{
    (void)t;
    if (!file_store)
        file_store = store_create(&(struct store_limits){0});
    return file_store;
}

static void offline_next_turn(struct lua_task *t)
{
    (void)t;
    current->pending = PENDING_SLEEP;
}

/* Between the passes of a case file with `repeat:` (cases.lua): the next pass starts with an
 * empty store, as the first did, so the ids a channel remembered (util.first_delivery) are not
 * taken for redeliveries. Nothing waits on the store between cases.  [-0,+0,-] */
static int l_store_reset(lua_State *L)
{
    (void)L;
    store_destroy(file_store);
    file_store = NULL;
    return 0;
}

static int offline_store_wait(struct lua_task *t, const char *key, double seconds, char *err,
                              size_t errlen)
{
    (void)t;
    (void)key;
    (void)seconds;
    (void)err;
    (void)errlen;
    current->pending = PENDING_SLEEP; /* resumed with nothing: the pop answers nil */
    return 0;
}

static const struct lua_task_ops offline_ops = {
    .sleep = offline_sleep,
    .http = offline_http,
    .store = offline_store,
    .next_turn = offline_next_turn,
    .store_wait = offline_store_wait,
};

/* What sb.http.request returns for the platform's answer: {status, headers, body} as an
 * outbound result, or nil and a message when the answer is a string (no answer came).  */
static int push_platform_answer(lua_State *L, lua_State *co)
{
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, current->answer_ref);
    struct outbound_result r = {0};
    struct outbound_header headers[MAX_FIELDS];
    if (lua_type(L, -1) == LUA_TSTRING) {
        r.error = lua_tostring(L, -1);
    } else if (lua_istable(L, -1)) {
        int answer = lua_gettop(L);
        r.ok = 1;
        lua_getfield(L, answer, "status");
        r.status = lua_isinteger(L, -1) ? (long)lua_tointeger(L, -1) : 200;
        lua_getfield(L, answer, "body");
        r.body = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &r.body_len) : "";
        if (lua_getfield(L, answer, "headers") == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2) && r.header_count < MAX_FIELDS) {
                if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
                    headers[r.header_count++] =
                        (struct outbound_header){lua_tostring(L, -2), lua_tostring(L, -1)};
                lua_pop(L, 1);
            }
        }
        r.headers = headers;
    } else {
        r.error = "the case gave no answer for this call";
    }
    int n = sb_push_http_result(co, &r);
    lua_settop(L, top);
    return n;
}

/* ---- one request ---------------------------------------------------------------------------- */

/* Fill `out` (at most MAX_FIELDS) with the string pairs of the table at idx; the strings stay
 * owned by the table. */
static size_t read_pairs(lua_State *L, int idx, struct http_header *out)
{
    size_t n = 0;
    if (!lua_istable(L, idx))
        return 0;
    lua_pushnil(L);
    while (lua_next(L, idx) && n < MAX_FIELDS) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
            out[n].name = lua_tostring(L, -2);
            out[n].value = lua_tostring(L, -1);
            n++;
        }
        lua_pop(L, 1);
    }
    return n;
}

/* request{channel=, method=, path=, query=, query_text=, headers= (names in lower case), body=,
 * platform=function(call) -> answer} -> {status=, content_type=, headers=, body=, lines=, error=,
 * log= (the lines logged meanwhile)}: one request through the channel, in this state (the
 * upvalue).  [-0,+1,e] */
static int l_request(lua_State *L)
{
    struct script_state *st = lua_touserdata(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: strings kept alive for the request */
    /* Without a channel name, the case file's only channel. */
    const char *only = st->gen->channels.count == 1 ? st->gen->channels.defs[0].name : "";
    const char *channel = (lua_getfield(L, 1, "channel"), luaL_optstring(L, -1, only));
    const char *method = (lua_getfield(L, 1, "method"), luaL_optstring(L, -1, "POST"));
    const char *path = (lua_getfield(L, 1, "path"), luaL_optstring(L, -1, "/webhook"));
    size_t body_len = 0;
    const char *body = (lua_getfield(L, 1, "body"), luaL_optlstring(L, -1, "", &body_len));
    lua_getfield(L, 1, "headers");    /* 7 */
    lua_getfield(L, 1, "query");      /* 8 */
    lua_getfield(L, 1, "query_text"); /* 9: the query as it would be sent, for req.url */
    const char *full = lua_pushfstring(L, "/webhooks/%s%s", channel, path); /* 10 */
    const char *raw = lua_isstring(L, 9) ? lua_pushfstring(L, "%s?%s", full, lua_tostring(L, 9))
                                         : lua_pushstring(L, full); /* 11 */

    struct http_header headers[MAX_FIELDS], query[MAX_FIELDS];
    struct http_request r = {.id = "offline", .method = method, .path = full, .raw_uri = raw,
                             .scheme = "https", .host = "localhost", .remote_addr = "127.0.0.1",
                             .body = body, .body_len = body_len, .headers = headers,
                             .query = query};
    r.header_count = read_pairs(L, 7, headers);
    r.query_count = read_pairs(L, 8, query);
    for (size_t i = 0; i < r.header_count; i++) {
        if (strcmp(headers[i].name, "host") == 0)
            r.host = headers[i].value;
        /* As the live host does: a recorded request replays with the id it had. */
        if (strcmp(headers[i].name, "x-request-id") == 0 &&
            http_request_id_acceptable(headers[i].value, 64))
            r.id = headers[i].value;
    }

    struct route_match m;
    router_match(&st->gen->routes, method, full, &m);
    lua_newtable(L);
    int result = lua_gettop(L);
    if (m.kind != ROUTE_WEBHOOK && m.kind != ROUTE_CUSTOM) {
        lua_pushinteger(L, m.kind == ROUTE_HEALTH ? 200 : m.kind == ROUTE_METHOD_NOT_ALLOWED ? 405
                                                                                             : 404);
        lua_setfield(L, result, "status");
        if (m.kind == ROUTE_HEALTH) { /* the channel's health check answers as it does live */
            lua_pushliteral(L, "application/json");
            lua_setfield(L, result, "content_type");
            lua_pushliteral(L, "{\"status\":\"ok\"}");
            lua_setfield(L, result, "body");
        }
        return 1;
    }

    struct run run = {.task = {.request_id = r.id, .ops = &offline_ops},
                      .answer_ref = LUA_NOREF};
    lua_pushvalue(L, result);
    run.result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, 1, "platform");
    run.platform_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct run *outer = current;
    current = &run;

    lua_State *co = lua_newthread(L);
    int co_idx = lua_gettop(L);
    run.task.co = co;
    lua_task_bind(co, &run.task);
    lua_rawgeti(co, LUA_REGISTRYINDEX, st->run_ref);
    lua_pushstring(co, m.kind == ROUTE_WEBHOOK ? "webhook" : "route");
    lua_rawgeti(co, LUA_REGISTRYINDEX, st->channel_refs[m.channel]);
    struct lua_request *req = lua_request_push(co, NULL, &r);
    if (m.kind == ROUTE_CUSTOM)
        lua_request_set_params(co, -1, &m);
    if (m.route)
        lua_pushstring(co, m.route->spec);
    else
        lua_pushnil(co);

    int nargs = 4, rc, nres = 0;
    captured.len = 0;
    log_set_capture(capture_line, NULL);
    for (int waits = 0;; waits++) {
        run.pending = PENDING_NONE;
        lua_state_budget_begin(co);
        rc = lua_resume(co, L, nargs, &nres);
        lua_state_budget_end(co);
        if (rc != LUA_YIELD)
            break;
        lua_pop(co, nres);
        if (run.pending == PENDING_NONE || waits == MAX_WAITS) {
            lua_pushstring(co, run.pending == PENDING_NONE ? "a script yielded outside a coroutine "
                                                             "of its own"
                                                           : "the request waited too many times");
            rc = LUA_ERRRUN;
            break;
        }
        nargs = run.pending == PENDING_HTTP ? push_platform_answer(L, co) : 0;
    }
    if (rc == LUA_OK) {
        int base = lua_gettop(co) - nres + 1;
        if (nres == 0 || lua_isnil(co, base)) {
            /* answered already: streamed, or host.answer before the bot (async) */
        } else if (!job_answer_problem(co, base, nres)) {
            lua_settop(co, base + 3);
            keep_answer(co, base);
        } else {
            lua_pushstring(co, job_answer_problem(co, base, nres));
            result_set(co, "error", -1);
        }
    } else {
        lua_pushvalue(co, -1);
        lua_xmove(co, L, 1);
        lua_setfield(L, result, "error");
        lua_pushinteger(L, 500);
        lua_setfield(L, result, "status");
    }
    lua_request_invalidate(req);
    lua_task_bind(co, NULL);
    log_set_capture(NULL, NULL);
    current = outer;
    luaL_unref(L, LUA_REGISTRYINDEX, run.result_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, run.platform_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, run.answer_ref);
    lua_remove(L, co_idx);
    lua_pushvalue(L, result);
    keep_log(L, result);
    return 1;
}

/* ---- case files ----------------------------------------------------------------------------- */

/* Endpoints whose bot is the case bot (lua/switchboard/case_bot.lua); its parameters are set
 * by the caller (ep->root, ep->bot.params). */
static void case_bot_endpoints(struct endpoints *ep, const char *data_dir)
{
    endpoints_defaults(ep);
    ep->bot.kind = BOT_SCRIPT;
    size_t len = strlen(data_dir) + 64;
    ep->bot.script = malloc(len);
    if (ep->bot.script)
        snprintf(ep->bot.script, len, "%s/lua/switchboard/case_bot.lua", data_dir);
}

/* Take the value under `key` out of the map (it becomes empty there), or NULL. */
static cfg_value *detach(cfg_value *map, const char *key)
{
    size_t i;
    if (!map || map->type != CFG_MAP || !cfg_map_find(map, key, &i))
        return NULL;
    cfg_value *v = malloc(sizeof *v);
    if (!v)
        return NULL;
    *v = map->items[i];
    memset(&map->items[i], 0, sizeof map->items[i]);
    map->items[i].type = CFG_NULL;
    return v;
}

/* One state with the channels and the bot (both taken over), set up for offline runs. */
static struct script_state *load_state(struct credentials *cred, struct endpoints *ep,
                                       const struct lua_paths *paths,
                                       const struct lua_limits *limits, char *err, size_t errlen)
{
    struct script_config *config = script_config_new(cred, ep, err, errlen);
    if (!config)
        return NULL;
    struct script_options so = {.paths = *paths, .limits = *limits, .push_host = push_offline_host};
    struct script_state *st = NULL;
    struct generation *gen = generation_load(config, &so, 1, &st, 1, 0, err, errlen);
    script_config_unref(config);
    return gen ? st : NULL;
}

/* A case file's data as the JSON it stands for: YAML null is sb.json.null (a case can expect
 * `text: null`) and a sequence is a marked array (`[]` stays an array).  [-0,+1,m] */
static void push_case_data(lua_State *L, const cfg_value *v)
{
    luaL_checkstack(L, 4, "case file nested too deeply");
    if (v && v->type == CFG_NULL) {
        lua_pushlightuserdata(L, NULL);
    } else if (v && v->type == CFG_MAP) {
        lua_createtable(L, 0, (int)v->count);
        for (size_t i = 0; i < v->count; i++) {
            push_case_data(L, &v->items[i]);
            lua_setfield(L, -2, v->keys[i]);
        }
    } else if (v && v->type == CFG_SEQ) {
        lua_createtable(L, (int)v->count, 0);
        for (size_t i = 0; i < v->count; i++) {
            push_case_data(L, &v->items[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        sb_json_mark_array(L, -1);
    } else {
        lua_push_cfg(L, v);
    }
}

/* channels: name -> {key =, params =}, for the signing helpers.  [-0,+1,m] */
static void push_channels(lua_State *L, const struct channel_set *set)
{
    lua_createtable(L, 0, (int)set->count);
    for (size_t i = 0; i < set->count; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, set->defs[i].key);
        lua_setfield(L, -2, "key");
        lua_push_cfg(L, set->defs[i].params);
        lua_setfield(L, -2, "params");
        lua_setfield(L, -2, set->defs[i].name);
    }
}

/* Load the case's channels and the case bot into one state. */
static struct script_state *load_case(cfg_value *root, const char *file,
                                      const struct lua_paths *paths,
                                      const struct lua_limits *limits, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    char *abs = realpath(dir, NULL);
    if (!abs) {
        snprintf(err, errlen, "%s: cannot resolve its folder", file);
        return NULL;
    }
    struct credentials cred;
    cfg_value *channels = detach(root, "credentials");
    if (!channels) {
        free(abs);
        snprintf(err, errlen, "%s: needs `credentials:`, the channels as in credentials.yml", file);
        return NULL;
    }
    if (credentials_from_tree(channels, file, abs, &cred, err, errlen) != 0) {
        free(abs);
        return NULL;
    }
    struct endpoints ep;
    case_bot_endpoints(&ep, paths->data_dir);
    ep.root = detach(root, "bot");
    ep.bot.params = ep.root;
    /* bot: {lua: FILE}: a Lua bot of the project, relative to the case file's folder. */
    size_t i;
    if (ep.root && ep.root->type == CFG_MAP && cfg_map_find(ep.root, "lua", &i) &&
        ep.root->items[i].type == CFG_STRING && ep.root->items[i].text[0] != '/') {
        size_t n = strlen(abs) + strlen(ep.root->items[i].text) + 2;
        char *full = malloc(n);
        if (full) {
            snprintf(full, n, "%s/%s", abs, ep.root->items[i].text);
            free(ep.root->items[i].text);
            ep.root->items[i].text = full;
        }
    }
    ep.dir = abs;
    return load_state(&cred, &ep, paths, limits, err, errlen);
}

/* 1 when the file looks like a case file: a map with `cases:`. */
static int is_case_file(const char *path)
{
    size_t n = strlen(path);
    if (!((n > 4 && strcmp(path + n - 4, ".yml") == 0) ||
          (n > 5 && strcmp(path + n - 5, ".yaml") == 0) ||
          (n > 5 && strcmp(path + n - 5, ".json") == 0)))
        return 0;
    cfg_value *root = NULL;
    char err[256];
    int yes = cfg_parse_file(path, &root, err, sizeof err) == 0 && cfg_map_get(root, "cases");
    cfg_free(root);
    return yes;
}

struct totals {
    long passed, failed, broken;
    int quiet;              /* no output (a reload's self-test) */
    char first_failure[2048]; /* the first failing case or broken file, one line */
};

static void broken(struct totals *t, const char *fmt, const char *a, const char *b)
{
    char line[8448]; /* a path and an error of up to 4 KiB each, and the format's own text */
    snprintf(line, sizeof line, fmt, a, b);
    if (!t->quiet)
        printf("ERROR %s\n", line);
    if (!t->first_failure[0]) {
        size_t n = strnlen(line, sizeof t->first_failure - 1);
        memcpy(t->first_failure, line, n);
        t->first_failure[n] = '\0';
    }
    t->broken++;
}

static void run_file(const char *path, const struct lua_paths *paths,
                     const struct lua_limits *limits, struct totals *t)
{
    char err[4096];
    cfg_value *root = NULL;
    if (cfg_parse_file(path, &root, err, sizeof err) != 0) {
        broken(t, "%s%s", err, "");
        return;
    }
    struct script_state *st = load_case(root, path, paths, limits, err, sizeof err);
    if (!st) {
        cfg_free(root);
        lua_error_first_line(err);
        broken(t, "%s%s", err, "");
        return;
    }
    lua_State *L = st->L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "switchboard.cases");
    if (lua_state_pcall(L, 1, 1, err, sizeof err) != 0) {
        broken(t, "%s: %s", path, err);
    } else {
        lua_getfield(L, -1, "run_file");
        push_case_data(L, root);
        lua_pushstring(L, path);
        lua_pushlightuserdata(L, st);
        lua_pushcclosure(L, l_request, 1);
        push_channels(L, &st->gen->channels);
        lua_pushboolean(L, t->quiet);
        lua_pushcfunction(L, l_store_reset);
        if (lua_state_pcall(L, 6, 3, err, sizeof err) != 0) {
            broken(t, "%s: %s", path, err);
        } else {
            t->passed += (long)lua_tointeger(L, -3);
            t->failed += (long)lua_tointeger(L, -2);
            if (lua_isstring(L, -1) && !t->first_failure[0])
                snprintf(t->first_failure, sizeof t->first_failure, "%s: %s", path,
                         lua_tostring(L, -1));
        }
    }
    fflush(stdout);
    script_state_close(st);
    captured_free();
    store_destroy(file_store);
    file_store = NULL;
    cfg_free(root);
}

static void run_path(const char *path, const struct lua_paths *paths,
                     const struct lua_limits *limits, struct totals *t, int named)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        broken(t, "%s: %s", path, "no such file or folder");
        return;
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (named || is_case_file(path))
            run_file(path, paths, limits, t);
        return;
    }
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.' && strcmp(names[i]->d_name, "node_modules") != 0) {
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, names[i]->d_name);
            run_path(child, paths, limits, t, 0);
        }
        free(names[i]);
    }
    free(names);
}

/* A channel's case files: its `cases:` parameter (relative to the credentials file's folder),
 * else X.cases beside its script X.lua. Returns 1 when named by the parameter, 0 when found
 * beside the script (the folder may not exist), -1 with err for a `cases:` that is not text. */
static int cases_folder(const struct channel_set *set, const struct channel_def *d, char *out,
                        size_t size, char *err, size_t errlen)
{
    size_t i;
    if (d->params && d->params->type == CFG_MAP && cfg_map_find(d->params, "cases", &i)) {
        const cfg_value *v = &d->params->items[i];
        if (v->type != CFG_STRING || !v->text[0]) {
            snprintf(err, errlen, "channel '%s': cases: must name a folder of case files",
                     d->key);
            return -1;
        }
        const char *slash = strrchr(set->source, '/');
        if (v->text[0] == '/' || !slash)
            snprintf(out, size, "%s", v->text);
        else
            snprintf(out, size, "%.*s/%s", (int)(slash - set->source), set->source, v->text);
        return 1;
    }
    size_t len = strlen(d->script);
    if (len >= 4 && strcmp(d->script + len - 4, ".lua") == 0)
        snprintf(out, size, "%.*s.cases", (int)(len - 4), d->script);
    else
        snprintf(out, size, "%s.cases", d->script);
    return 0;
}

int offline_self_test(const struct channel_set *set, const struct lua_paths *paths,
                      const struct lua_limits *limits, char *err, size_t errlen)
{
    for (size_t i = 0; i < set->count; i++) {
        char folder[4200];
        int named = cases_folder(set, &set->defs[i], folder, sizeof folder, err, errlen);
        if (named < 0)
            return -1;
        struct stat sb;
        if (stat(folder, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            if (!named)
                continue;
            snprintf(err, errlen, "channel '%s': cases: %s is not a folder", set->defs[i].key,
                     folder);
            return -1;
        }
        struct totals t = {.quiet = 1};
        run_path(folder, paths, limits, &t, 0);
        if (t.failed || t.broken) {
            snprintf(err, errlen, "channel '%s': its cases failed (%ld of %ld): %s",
                     set->defs[i].key, t.failed + t.broken, t.passed + t.failed + t.broken,
                     t.first_failure);
            return -1;
        }
    }
    return 0;
}

int offline_test(const char *const *paths, int count, const struct lua_paths *lua_paths,
                 const struct lua_limits *limits)
{
    struct totals t = {0};
    const char *here = ".";
    if (count == 0) {
        paths = &here;
        count = 1;
    }
    for (int i = 0; i < count; i++)
        run_path(paths[i], lua_paths, limits, &t, 1);
    printf("%ld passed, %ld failed\n", t.passed, t.failed + t.broken);
    return t.broken ? 2 : t.failed ? 1 : 0;
}

/* ---- switchboard try ------------------------------------------------------------------------ */

/* The case bot's parameters for `try`, as JSON: echo, or the project's bot run inside the case
 * bot (its file, and its scalar parameters for its init). */
static char *try_bot_config(const char *endpoints_path, int echo, const char *data_dir, char *err,
                            size_t errlen)
{
    struct endpoints e;
    endpoints_defaults(&e);
    if (!echo && endpoints_path && endpoints_load(endpoints_path, &e, err, errlen) != 0)
        return NULL;
    struct json_writer j;
    json_writer_init(&j);
    json_object_begin(&j);
    char path[4200];
    if (!echo) {
        if (e.bot.kind == BOT_SCRIPT)
            snprintf(path, sizeof path, "%s", e.bot.script);
        else
            snprintf(path, sizeof path, "%s/lua/switchboard/%s", data_dir,
                     e.bot.kind == BOT_HTTP ? "http_bot.lua" : "demo_bot.lua");
        json_key(&j, "lua");
        json_string(&j, path);
        const cfg_value *bot = e.bot.params;
        for (size_t i = 0; bot && bot->type == CFG_MAP && i < bot->count; i++) {
            const cfg_value *v = &bot->items[i];
            if (strcmp(bot->keys[i], "script") == 0 || strcmp(bot->keys[i], "lua") == 0)
                continue;
            if (v->type == CFG_STRING) {
                json_key(&j, bot->keys[i]);
                json_string(&j, v->text);
            } else if (v->type == CFG_BOOL) {
                json_key(&j, bot->keys[i]);
                json_boolean(&j, v->boolean);
            } else if (v->type == CFG_INT) {
                json_key(&j, bot->keys[i]);
                json_integer(&j, v->integer);
            } else if (v->type == CFG_FLOAT && isfinite(v->number)) {
                char number[64];
                snprintf(number, sizeof number, "%.17g", v->number);
                json_key(&j, bot->keys[i]);
                json_number_text(&j, number);
            }
        }
    }
    json_object_end(&j);
    endpoints_free(&e);
    char *text = json_writer_finish(&j, NULL);
    if (!text)
        snprintf(err, errlen, "out of memory");
    return text;
}

int offline_try(const struct offline_request *t, const struct lua_paths *paths,
                const struct lua_limits *limits)
{
    char err[4096] = ""; /* printed at the end only when something filled it */
    if (!t->credentials) {
        fprintf(stderr, "switchboard: try needs a credentials.yml (here, or --credentials FILE)\n");
        return 2;
    }
    cfg_value *root = NULL;
    if (cfg_parse_file(t->credentials, &root, err, sizeof err) != 0) {
        fprintf(stderr, "switchboard: %s\n", err);
        return 2;
    }
    char *abs = realpath(t->credentials, NULL);
    char *slash = abs ? strrchr(abs, '/') : NULL;
    if (slash)
        *slash = '\0';
    struct credentials cred;
    if (!abs) {
        fprintf(stderr, "switchboard: %s: cannot resolve its folder\n", t->credentials);
        cfg_free(root);
        return 2;
    }
    if (credentials_from_tree(root, t->credentials, abs, &cred, err, sizeof err) != 0) {
        fprintf(stderr, "switchboard: %s\n", err); /* root was freed with the credentials */
        free(abs);
        return 2;
    }
    char *bot_json = try_bot_config(t->endpoints, t->echo, paths->data_dir, err, sizeof err);
    struct endpoints ep;
    case_bot_endpoints(&ep, paths->data_dir);
    ep.dir = abs;
    if (!bot_json || cfg_parse_string("the bot", bot_json, strlen(bot_json), &ep.root, err,
                                      sizeof err) != 0) {
        fprintf(stderr, "switchboard: %s\n", err);
        free(bot_json);
        credentials_free(&cred);
        endpoints_free(&ep);
        return 2;
    }
    free(bot_json);
    ep.bot.params = ep.root;
    struct script_state *st = load_state(&cred, &ep, paths, limits, err, sizeof err);
    if (!st) {
        lua_error_first_line(err);
        fprintf(stderr, "switchboard: %s\n", err);
        return 2;
    }
    lua_State *L = st->L;
    int rc = 2;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "switchboard.cases");
    if (lua_state_pcall(L, 1, 1, err, sizeof err) == 0) {
        lua_getfield(L, -1, "try");
        lua_createtable(L, 0, 8);
        lua_pushstring(L, t->channel);
        lua_setfield(L, -2, "channel");
        lua_pushstring(L, t->method);
        lua_setfield(L, -2, "method");
        lua_pushstring(L, t->path);
        lua_setfield(L, -2, "path");
        lua_pushlstring(L, t->body, t->body_len);
        lua_setfield(L, -2, "body");
        lua_pushboolean(L, t->sign);
        lua_setfield(L, -2, "sign");
        lua_createtable(L, t->header_count, 0);
        for (int i = 0; i < t->header_count; i++) {
            lua_pushstring(L, t->headers[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "header_lines");
        lua_createtable(L, t->query_count, 0);
        for (int i = 0; i < t->query_count; i++) {
            lua_pushstring(L, t->query[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "query_pairs");
        lua_pushlightuserdata(L, st);
        lua_pushcclosure(L, l_request, 1);
        push_channels(L, &st->gen->channels);
        if (lua_state_pcall(L, 3, 1, err, sizeof err) == 0)
            rc = (int)lua_tointeger(L, -1);
    }
    if (rc == 2 && err[0])
        fprintf(stderr, "switchboard: %s\n", err);
    fflush(stdout);
    script_state_close(st);
    captured_free();
    store_destroy(file_store);
    file_store = NULL;
    return rc;
}
