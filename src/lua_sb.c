/* SPDX-License-Identifier: MIT */
/* lua_sb: see lua_sb.h. This file assembles the module and holds its core: HTTP errors, the log,
 * time, ids and sleeping; the families live in lua_sb_http.c, lua_sb_text.c, lua_crypto.c and
 * lua_json.c. */
#include "lua_sb.h"

#include "log.h"
#include "lua_crypto.h"
#include "lua_json.h"
#include "lua_jwt.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Registry keys (addresses of these variables). */
static char key_error_mt, key_format;

/* ---- HTTP errors ---------------------------------------------------------------------------- */

static void push_http_error(lua_State *L, int status, const char *code, const char *message)
{
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, code);
    lua_setfield(L, -2, "error");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_error_mt);
    lua_setmetatable(L, -2);
}

int sb_raise_http_error(lua_State *L, int status, const char *code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    push_http_error(L, status, code, message);
    return lua_error(L);
}

/* sb.http_error(status, code, message): raises; the request is answered with that status and
 * {"error": code, "message": message}  [-0,+0,v] */
static int l_http_error(lua_State *L)
{
    lua_Integer status = luaL_checkinteger(L, 1);
    luaL_argcheck(L, status >= 400 && status <= 599, 1, "status must be 400-599");
    push_http_error(L, (int)status, luaL_checkstring(L, 2), luaL_optstring(L, 3, ""));
    return lua_error(L);
}

/* sb.is_http_error(v) -> boolean  [-0,+1,-] */
static int l_is_http_error(lua_State *L)
{
    int yes = 0;
    if (lua_getmetatable(L, 1)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_error_mt);
        yes = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    lua_pushboolean(L, yes);
    return 1;
}

/* __tostring of an HTTP error: "400 invalid_json: message" */
static int l_http_error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "status");
    lua_getfield(L, 1, "error");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s %s: %s", lua_tostring(L, -3), lua_tostring(L, -2), lua_tostring(L, -1));
    return 1;
}

/* ---- log ------------------------------------------------------------------------------------ */

/* sb.log.<level>(fmt, ...): string.format(fmt, ...) into the host log with the request id;
 * a lone argument is converted with tostring  [-0,+0,e] */
static int l_log(lua_State *L)
{
    enum log_level level = (enum log_level)lua_tointeger(L, lua_upvalueindex(1));
    if (!log_enabled(level))
        return 0;
    const char *text;
    if (lua_gettop(L) <= 1) {
        text = luaL_tolstring(L, 1, NULL);
    } else {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_format);
        lua_insert(L, 1);
        lua_call(L, lua_gettop(L) - 1, 1);
        text = lua_tostring(L, -1);
    }
    struct lua_task *t = lua_task_of(L);
    log_msg(level, t ? t->request_id : NULL, "%s", text ? text : "");
    return 0;
}

static void open_log(lua_State *L)
{
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "format");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_format);
    lua_pop(L, 1);
    static const struct { const char *name; enum log_level level; } levels[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARNING},
        {"warning", LOG_WARNING}, {"error", LOG_ERROR},
    };
    lua_createtable(L, 0, 5);
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        lua_pushinteger(L, levels[i].level);
        lua_pushcclosure(L, l_log, 1);
        lua_setfield(L, -2, levels[i].name);
    }
}

/* ---- time, ids, sleeping -------------------------------------------------------------------- */

/* sb.now() -> seconds since the epoch, as a float  [-0,+1,-] */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

/* uuid4 ids are made for every message: a per-thread xoshiro256** generator seeded from the
 * kernel keeps that off the system call path. */
static _Thread_local uint64_t rng_state[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void)
{
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* sb.uuid() -> 32 lower-case hex characters of a random (version 4) uuid  [-0,+1,e] */
static int l_uuid(lua_State *L)
{
    sb_push_uuid(L);
    return 1;
}

void sb_push_uuid(lua_State *L)
{
    static const char digits[] = "0123456789abcdef";
    if (!rng_seeded) {
        if (getrandom(rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state)
            luaL_error(L, "sb.uuid: no randomness available");
        rng_seeded = 1;
    }
    unsigned char b[16];
    uint64_t hi = rng_next(), lo = rng_next();
    memcpy(b, &hi, 8);
    memcpy(b + 8, &lo, 8);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[32];
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[b[i] >> 4];
        hex[2 * i + 1] = digits[b[i] & 15];
    }
    lua_pushlstring(L, hex, 32);
}

/* Continuation of every wait: return what the engine resumed with, or raise the cancellation. */
static int after_wait(lua_State *L, int status, lua_KContext base)
{
    (void)status;
    struct lua_task *t = lua_task_of(L);
    if (t && t->cancelled) {
        lua_pushstring(L, t->cancelled);
        return lua_error(L);
    }
    return lua_gettop(L) - (int)base;
}

int sb_yield_wait(lua_State *L)
{
    return lua_yieldk(L, 0, lua_gettop(L), after_wait);
}

struct lua_task *sb_waiting_task(lua_State *L, const char *what)
{
    struct lua_task *t = lua_task_of(L);
    if (!t || t->co != L || !lua_isyieldable(L))
        luaL_error(L, "%s can only be called while handling a request, from the request's own "
                      "coroutine (not in init, not in a coroutine the script made)%s", what,
                   strcmp(what, "sb.http.request") == 0 ? ", or in a channel's startup hook" : "");
    if (t->cancelled)
        luaL_error(L, "%s", t->cancelled);
    return t;
}

/* sb.sleep(seconds): parks the request's coroutine, never the worker  [-0,+0,e] */
static int l_sleep(lua_State *L)
{
    lua_Number seconds = luaL_checknumber(L, 1);
    luaL_argcheck(L, seconds >= 0 && seconds == seconds, 1, "must be a number >= 0");
    struct lua_task *t = sb_waiting_task(L, "sb.sleep");
    lua_settop(L, 0);
    t->ops->sleep(t, seconds);
    return sb_yield_wait(L);
}

/* ---- the module ----------------------------------------------------------------------------- */

int luaopen_switchboard(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"now", l_now},
        {"uuid", l_uuid},
        {"sleep", l_sleep},
        {"http_error", l_http_error},
        {"is_http_error", l_is_http_error},
        {NULL, NULL},
    };
    lua_newtable(L); /* the metatable of HTTP errors, hidden from scripts (it is shared) */
    lua_pushcfunction(L, l_http_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "switchboard.http_error");
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_error_mt);

    luaL_newlib(L, functions);
    lua_crypto_register(L);
    lua_jwt_register(L);
    lua_sb_text_register(L);
    lua_sb_http_open(L);
    lua_setfield(L, -2, "http");
    lua_sb_conn_open(L);
    lua_setfield(L, -2, "connections");
    lua_sb_store_open(L);
    lua_setfield(L, -2, "store");
    lua_json_open(L);
    lua_setfield(L, -2, "json");
    open_log(L);
    lua_setfield(L, -2, "log");
    lua_pushliteral(L, SB_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
