/* SPDX-License-Identifier: MIT */
/* bot: see bot.h. */
#include "bot.h"

#include "config.h"
#include "curl_lib.h"
#include "lua_state.h"
#include "outbound.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define DEMO_BOT "lua/switchboard/demo_bot.lua"
#define HTTP_BOT "lua/switchboard/http_bot.lua"

static void bot_script_path(const struct endpoints *e, const char *data_dir, char *out,
                            size_t size)
{
    if (e->bot.kind == BOT_SCRIPT)
        snprintf(out, size, "%s", e->bot.script);
    else
        snprintf(out, size, "%s/%s", data_dir, e->bot.kind == BOT_HTTP ? HTTP_BOT : DEMO_BOT);
}

void bot_describe(const struct endpoints *e, const char *data_dir, char *out, size_t size)
{
    char path[4096];
    bot_script_path(e, data_dir, path, sizeof path);
    switch (e->bot.kind) {
    case BOT_DEMO:
        snprintf(out, size, "the bundled demo bot (%s)", path);
        break;
    case BOT_SCRIPT:
        snprintf(out, size, "Lua bot %s", path);
        break;
    case BOT_HTTP:
        snprintf(out, size, "HTTP bot %s", e->bot.url);
        break;
    }
}

/* Where the bot was configured, for messages: "endpoints.yml:3:1" or "the demo bot". */
static void bot_where(const struct endpoints *e, char *out, size_t size)
{
    if (e->path && e->bot.line)
        snprintf(out, size, "bot at %s:%d:%d", e->path, e->bot.line, e->bot.column);
    else
        snprintf(out, size, "the demo bot");
}

int bot_load(lua_State *L, const struct endpoints *e, const char *data_dir, int *ref, char *err,
             size_t errlen)
{
    char where[1024];
    bot_where(e, where, sizeof where);
    if (e->bot.kind == BOT_HTTP && !outbound_url_supported(e->bot.url)) {
        snprintf(err, errlen, "%s: url must start with http:// or https://", where);
        return -1;
    }
    if (e->bot.kind == BOT_HTTP) {
        /* Every message goes out through libcurl: load it now rather than in the first
         * message's time. A failure is logged once, and each message fails with it. */
        char curl_err[512];
        curl_lib_get(curl_err, sizeof curl_err);
    }
    char path[4096], lua_err[2048];
    bot_script_path(e, data_dir, path, sizeof path);
    if (lua_state_dofile(L, path, lua_err, sizeof lua_err) != 0) {
        lua_error_first_line(lua_err);
        snprintf(err, errlen, "%s (%s)", lua_err, where);
        return -1;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: the bot script must return a table, not %s (%s)", path,
                 luaL_typename(L, -1), where);
        lua_pop(L, 1);
        return -1;
    }
    if (lua_getfield(L, -1, "handle") != LUA_TFUNCTION) {
        snprintf(err, errlen, "%s: the bot must define handle(msg, out) (%s)", path, where);
        lua_pop(L, 2);
        return -1;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "init") == LUA_TFUNCTION) {
        /* init(config): the bot map without `script`; an HTTP bot's timeout as a number. */
        lua_push_cfg(L, e->bot.params);
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            lua_setfield(L, -2, "script");
            if (e->bot.kind == BOT_HTTP) {
                lua_pushnumber(L, e->bot.timeout);
                lua_setfield(L, -2, "timeout");
            }
        }
        if (lua_state_pcall(L, 1, 0, lua_err, sizeof lua_err) != 0) {
            lua_error_first_line(lua_err);
            snprintf(err, errlen, "%s (in the bot's init, %s)", lua_err, where);
            lua_pop(L, 2);
            return -1;
        }
    } else {
        lua_pop(L, 1);
    }
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}
