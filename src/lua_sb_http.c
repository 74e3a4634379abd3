/* SPDX-License-Identifier: MIT */
/* lua_sb_http: sb.http.request, the outbound HTTP family of the switchboard module
 * (docs/lua-api.md). A request parks the calling request's coroutine (the engine runs it through
 * the task's operations and resumes it with the answer), except in a channel's startup hook,
 * where it blocks the main thread. Uses: Lua, outbound (plain structs), lua_json, lua_sb. */
#include "lua_sb.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_REQUEST_HEADERS 64
#define MAX_HTTP_TIMEOUT 86400 /* seconds: a day; larger values would overflow libcurl's ms */

/* Read opts.headers (at idx) into hs; returns the count. Values are converted with tostring and
 * kept alive in the table at keep_idx. */
static size_t read_request_headers(lua_State *L, int idx, int keep_idx, struct outbound_header *hs)
{
    size_t n = 0;
    if (lua_isnil(L, idx))
        return 0;
    luaL_argexpected(L, lua_istable(L, idx), 1, "headers as a table of name = value");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (n == MAX_REQUEST_HEADERS)
            luaL_error(L, "sb.http.request: more than %d headers", MAX_REQUEST_HEADERS);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "sb.http.request: header names must be strings");
        luaL_tolstring(L, -1, NULL);
        hs[n].name = lua_tostring(L, -3);
        hs[n].value = lua_tostring(L, -1);
        lua_rawseti(L, keep_idx, (lua_Integer)n + 1);
        lua_pop(L, 1);
        n++;
    }
    return n;
}

static int has_header(const struct outbound_header *hs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(hs[i].name, name) == 0)
            return 1;
    return 0;
}

/* ---- recording (switchboard run --record, lua/switchboard/recorder.lua) ------------------------ */

/* Append {method, url, body} to the recording's calls unless it is paused (the bot's own calls
 * are not the channel's). Returns the call's index, or 0 when it is not recorded.  [-0,+0,m] */
static lua_Integer record_call(lua_State *L, const struct lua_task *t,
                               const struct outbound_request *req)
{
    int top = lua_gettop(L);
    lua_Integer n = 0;
    luaL_checkstack(L, 4, "recording an outbound call");
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->record_ref); /* top + 1: the recording */
    if (!lua_istable(L, top + 1))
        goto done;
    lua_getfield(L, top + 1, "paused");
    if (lua_toboolean(L, -1) || lua_getfield(L, top + 1, "calls") != LUA_TTABLE)
        goto done;
    n = (lua_Integer)lua_rawlen(L, -1) + 1;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, req->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, req->url);
    lua_setfield(L, -2, "url");
    lua_pushlstring(L, req->body ? req->body : "", req->body ? req->body_len : 0);
    lua_setfield(L, -2, "body");
    lua_rawseti(L, -2, n);
done:
    lua_settop(L, top);
    return n;
}

/* The answer to recorded call n, from the results at stack slots 1 and 2: the result table as
 * `answer`, or the error message as `error`.  [-0,+0,m] */
static void record_answer(lua_State *L, const struct lua_task *t, lua_Integer n)
{
    int top = lua_gettop(L);
    luaL_checkstack(L, 4, "recording an outbound answer");
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->record_ref);
    if (lua_istable(L, -1) && lua_getfield(L, -1, "calls") == LUA_TTABLE &&
        lua_rawgeti(L, -1, n) == LUA_TTABLE) {
        if (lua_istable(L, 1)) {
            lua_pushvalue(L, 1);
            lua_setfield(L, -2, "answer");
        } else if (lua_type(L, 2) == LUA_TSTRING) {
            lua_pushvalue(L, 2);
            lua_setfield(L, -2, "error");
        }
    }
    lua_settop(L, top);
}

/* Continuation of an outbound request: what the engine resumed with (or the cancellation),
 * recorded first when the request is.  */
static int after_http(lua_State *L, int status, lua_KContext recorded)
{
    (void)status;
    struct lua_task *t = lua_task_of(L);
    if (t && t->cancelled) {
        lua_pushstring(L, t->cancelled);
        return lua_error(L);
    }
    if (recorded > 0 && t && t->record_ref > 0)
        record_answer(L, t, (lua_Integer)recorded);
    return lua_gettop(L);
}

static _Thread_local int blocking_allowed;

void lua_sb_allow_blocking(int allowed) { blocking_allowed = allowed; }

struct blocking_call {
    lua_State *L;
    int results;
};

static void blocking_done(void *ctx, const struct outbound_result *result)
{
    struct blocking_call *call = ctx;
    call->results = sb_push_http_result(call->L, result);
}

/* sb.http.request{method=, url=, headers=, body=, json=, form=, timeout=, ca_file=, proxy=}
 *   -> {status=, headers=, body=, json=} | nil, error   [-0,+(1|2),e]
 * Waits without blocking the worker; outside the workers (startup hooks) it blocks. */
static int l_http_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* In a channel's startup hook (the main thread, once per load) the call may simply wait;
     * everywhere else it must park its request's coroutine. */
    struct lua_task *t = NULL;
    int blocking = blocking_allowed && !lua_task_of(L);
    if (!blocking)
        t = sb_waiting_task(L, "sb.http.request");
    lua_newtable(L); /* 2: keeps converted strings alive until the request is started */
    lua_getfield(L, 1, "url");       /* 3 */
    lua_getfield(L, 1, "method");    /* 4 */
    lua_getfield(L, 1, "headers");   /* 5 */
    lua_getfield(L, 1, "body");      /* 6 */
    lua_getfield(L, 1, "json");      /* 7 */
    lua_getfield(L, 1, "form");      /* 8 */
    lua_getfield(L, 1, "timeout");   /* 9 */
    lua_getfield(L, 1, "ca_file");   /* 10 */
    lua_getfield(L, 1, "proxy");     /* 11 */

    struct outbound_request req = {0};
    struct outbound_header headers[MAX_REQUEST_HEADERS + 1];
    if (lua_type(L, 3) != LUA_TSTRING)
        return luaL_error(L, "sb.http.request: url must be a string");
    req.url = lua_tostring(L, 3);
    if (!lua_isnil(L, 5) && !lua_istable(L, 5))
        return luaL_error(L, "sb.http.request: headers must be a table of name = value");
    if (!lua_isnil(L, 9) && !lua_isnumber(L, 9))
        return luaL_error(L, "sb.http.request: timeout must be a number of seconds");
    int bodies = !lua_isnil(L, 6) + !lua_isnil(L, 7) + !lua_isnil(L, 8);
    if (bodies > 1)
        return luaL_error(L, "sb.http.request: give one of body, json or form");
    size_t n = read_request_headers(L, 5, 2, headers);
    const char *content_type = NULL;
    if (!lua_isnil(L, 6)) {
        if (lua_type(L, 6) != LUA_TSTRING)
            return luaL_error(L, "sb.http.request: body must be a string");
        req.body = lua_tolstring(L, 6, &req.body_len);
    } else if (!lua_isnil(L, 7)) {
        sb_json_encode(L, 7);
        lua_replace(L, 7);
        req.body = lua_tolstring(L, 7, &req.body_len);
        content_type = "application/json";
    } else if (!lua_isnil(L, 8)) {
        sb_push_urlencoded(L, 8);
        lua_replace(L, 8);
        req.body = lua_tolstring(L, 8, &req.body_len);
        content_type = "application/x-www-form-urlencoded";
    }
    if (content_type && !has_header(headers, n, "Content-Type"))
        headers[n++] = (struct outbound_header){"Content-Type", content_type};
    req.headers = headers;
    req.header_count = n;
    req.method = lua_isnil(L, 4) ? (req.body ? "POST" : "GET") : luaL_checkstring(L, 4);
    req.timeout = luaL_optnumber(L, 9, 30);
    if (!(req.timeout > 0) || !(req.timeout <= MAX_HTTP_TIMEOUT))
        return luaL_error(L, "sb.http.request: timeout must be a number of seconds > 0 and at "
                             "most %d", MAX_HTTP_TIMEOUT);
    if (!lua_isnil(L, 10) && lua_type(L, 10) != LUA_TSTRING)
        return luaL_error(L, "sb.http.request: ca_file must be a file name");
    req.ca_file = lua_tostring(L, 10);
    if (!lua_isnil(L, 11) && lua_type(L, 11) != LUA_TSTRING)
        return luaL_error(L, "sb.http.request: proxy must be a URL such as http://proxy:3128");
    req.proxy = lua_tostring(L, 11);
    req.request_id = t ? t->request_id : NULL;

    char err[256];
    if (blocking) {
        struct blocking_call call = {L, 0};
        if (outbound_perform_blocking(&req, blocking_done, &call, err, sizeof err) == 0)
            return call.results;
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_Integer recorded = t->record_ref > 0 ? record_call(L, t, &req) : 0;
    if (t->ops->http(t, &req, err, sizeof err) != 0) {
        lua_settop(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, err);
        if (recorded > 0)
            record_answer(L, t, recorded);
        return 2;
    }
    lua_settop(L, 0);
    return lua_yieldk(L, 0, (lua_KContext)recorded, after_http);
}

int sb_push_http_result(lua_State *L, const struct outbound_result *r)
{
    if (!r->ok) {
        lua_pushnil(L);
        lua_pushstring(L, r->error ? r->error : "request failed");
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, r->body, r->body_len);
    lua_setfield(L, -2, "body");
    lua_createtable(L, 0, (int)r->header_count);
    const char *content_type = NULL;
    for (size_t i = 0; i < r->header_count; i++) {
        /* A repeated header reads as its values joined with ", ". */
        if (lua_getfield(L, -1, r->headers[i].name) == LUA_TSTRING) {
            lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), r->headers[i].value);
            lua_remove(L, -2);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, r->headers[i].value);
        }
        lua_setfield(L, -2, r->headers[i].name);
        if (strcmp(r->headers[i].name, "content-type") == 0)
            content_type = r->headers[i].value;
    }
    lua_setfield(L, -2, "headers");
    /* json: the decoded body when the server says it is JSON and it decodes. */
    if (content_type && strstr(content_type, "json") && r->body_len > 0) {
        if (sb_json_decode(L, r->body, r->body_len) == 0)
            lua_setfield(L, -2, "json");
        else
            lua_pop(L, 1);
    }
    return 1;
}

void lua_sb_http_open(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"request", l_http_request},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
}
