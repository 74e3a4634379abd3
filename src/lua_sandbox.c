/* SPDX-License-Identifier: MIT */
/* lua_sandbox: see lua_sandbox.h. */
#include "lua_sandbox.h"

#include "lua_budget.h"
#include "lua_sb.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

/* Registry keys (addresses of these variables). */
static char key_memo;        /* table -> its read-only proxy (the libraries: their proxies) */
static char key_proxy;       /* in a proxy's metatable: the name its errors use */
static char key_env_mt;      /* the metatable of script environments: __index = the base */
static char key_per_env;     /* module name -> function opening one instance per environment */
static char key_replaceable; /* protected metatables the sandbox's setmetatable may replace */
static char key_real_require, key_real_load;

#define READ_ONLY "%s is read-only (shared by every script)"

/* ---- read-only proxies ---------------------------------------------------------------------- */

/* __newindex of a proxy. Upvalue: its name. */
static int l_readonly_newindex(lua_State *L)
{
    return luaL_error(L, READ_ONLY, lua_tostring(L, lua_upvalueindex(1)));
}

/* The iterator __pairs returns: next over the contents, never handing the contents table out.
 * Upvalue: the contents. */
static int l_proxy_next(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 2);
    if (lua_next(L, -2))
        return 2;
    lua_pushnil(L);
    return 1;
}

/* __pairs(proxy) -> iterator, proxy, nil. Upvalue: the iterator. */
static int l_proxy_pairs(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* __len(proxy). Upvalue: the contents. */
static int l_proxy_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
    return 1;
}

/* Push an empty table reading `contents` (a table __index: no call per read). */
static void push_proxy(lua_State *L, int contents, const char *name)
{
    contents = lua_absindex(L, contents);
    lua_newtable(L);
    lua_createtable(L, 0, 6);
    lua_pushvalue(L, contents);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_pushcclosure(L, l_readonly_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, contents);
    lua_pushcclosure(L, l_proxy_next, 1);
    lua_pushcclosure(L, l_proxy_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushvalue(L, contents);
    lua_pushcclosure(L, l_proxy_len, 1);
    lua_setfield(L, -2, "__len");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushstring(L, name);
    lua_rawsetp(L, -2, &key_proxy);
    lua_setmetatable(L, -2);
}

/* The name of the read-only table at idx, or NULL when it is not one. */
static const char *readonly_name(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return NULL;
    const char *name = lua_rawgetp(L, -1, &key_proxy) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 2); /* the name stays alive in the metatable */
    return name;
}

static void memo_set(lua_State *L, int table, int proxy)
{
    table = lua_absindex(L, table);
    proxy = lua_absindex(L, proxy);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_memo);
    lua_pushvalue(L, table);
    lua_pushvalue(L, proxy);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void lua_sandbox_push_readonly(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx) || readonly_name(L, idx)) {
        lua_pushvalue(L, idx);
        return;
    }
    luaL_checkstack(L, 8, "tables nested too deeply");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_memo);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 2);
    lua_newtable(L); /* the contents: a copy whose tables are proxies too */
    int contents = lua_gettop(L);
    push_proxy(L, contents, name);
    memo_set(L, idx, -1); /* before the contents: a table that holds itself gets its proxy */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int value = lua_gettop(L);
        if (lua_istable(L, value)) {
            if (lua_type(L, value - 1) == LUA_TSTRING)
                lua_pushfstring(L, "%s.%s", name, lua_tostring(L, value - 1));
            else
                lua_pushstring(L, name);
            lua_sandbox_push_readonly(L, value, lua_tostring(L, -1));
            lua_replace(L, value);
            lua_pop(L, 1);
        }
        lua_pushvalue(L, value - 1);
        lua_pushvalue(L, value);
        lua_rawset(L, contents);
        lua_pop(L, 1);
    }
    lua_remove(L, contents);
}

void lua_sandbox_protect_metatable(lua_State *L, int idx, const char *name, int replaceable)
{
    if (!lua_getmetatable(L, idx))
        return;
    int mt = lua_gettop(L);
    lua_pushliteral(L, "__metatable");
    if (lua_rawget(L, mt) == LUA_TNIL) { /* its owner may have protected it already */
        lua_sandbox_push_readonly(L, mt, name);
        lua_setfield(L, mt, "__metatable");
    }
    lua_pop(L, 1);
    if (replaceable) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_replaceable);
        lua_pushvalue(L, mt);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ---- base functions ------------------------------------------------------------------------- */

/* Replaces a function that is not available: raises naming it and why. */
static int l_refused(lua_State *L)
{
    return luaL_error(L, "%s is not available to Switchboard scripts (%s)",
                      lua_tostring(L, lua_upvalueindex(1)), lua_tostring(L, lua_upvalueindex(2)));
}

static void refuse(lua_State *L, int into, const char *library, const char *name, const char *why)
{
    lua_pushfstring(L, "%s.%s", library, name);
    lua_pushstring(L, why);
    lua_pushcclosure(L, l_refused, 2);
    lua_setfield(L, into, name);
}

/* setmetatable(t, mt) -> t  [-0,+1,e]
 * As Lua's, but refusing __gc (a finalizer runs with hooks off, out of the budget's reach). A
 * protected metatable stays, except the JSON array mark, which scripts may replace. */
static int l_setmetatable(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int t = lua_type(L, 2);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        int has_gc = lua_rawget(L, 2) != LUA_TNIL; /* Lua marks finalizers by a raw look too */
        lua_pop(L, 1);
        if (has_gc)
            return luaL_error(L, "__gc metamethods are not available to Switchboard scripts "
                                 "(a finalizer cannot be given a CPU budget)");
    }
    if (lua_getmetatable(L, 1)) {
        lua_pushliteral(L, "__metatable");
        if (lua_rawget(L, -2) != LUA_TNIL) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &key_replaceable);
            lua_pushvalue(L, -3);
            if (lua_rawget(L, -2) == LUA_TNIL)
                return luaL_error(L, "cannot change a protected metatable");
        }
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* rawset(t, k, v) -> t, refusing the host's read-only tables  [-0,+1,e] */
static int l_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    const char *name = readonly_name(L, 1);
    if (name)
        return luaL_error(L, READ_ONLY, name);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* collectgarbage([opt [, arg]]): only what cannot change how the state collects (the host picked
 * the generational mode, and a stopped collector would let garbage count against the memory
 * cap). Upvalue: Lua's collectgarbage. */
static int l_collectgarbage(lua_State *L)
{
    static const char *const allowed[] = {"collect", "count", "step", "isrunning", NULL};
    const char *opt = luaL_optstring(L, 1, "collect");
    for (int i = 0; allowed[i]; i++) {
        if (strcmp(opt, allowed[i]) == 0) {
            lua_pushvalue(L, lua_upvalueindex(1));
            lua_insert(L, 1);
            lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
            return lua_gettop(L);
        }
    }
    return luaL_error(L, "collectgarbage('%s') is not available to Switchboard scripts (the host "
                         "runs the collector)", opt);
}

/* The message handler xpcall installs: the script's own handler, unless the CPU budget is
 * spent (the handler would then run with hooks off, out of the budget's reach). */
static int l_budget_aware_handler(lua_State *L)
{
    if (lua_budget_exceeded())
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int finish_xpcall(lua_State *L, int status, lua_KContext first_result)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)first_result + 1;
}

/* xpcall(f, msgh, ...) -> true, results... | false, error; yieldable like Lua's own. */
static int l_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, l_budget_aware_handler, 1);
    lua_replace(L, 2);           /* 2: the handler; 1: f; 3..n: arguments */
    lua_pushboolean(L, 1);       /* n+1: the first result */
    lua_pushvalue(L, 1);         /* n+2: f */
    lua_rotate(L, 3, 2);         /* true, f below the arguments: 3: true, 4: f, 5..: args */
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 3, finish_xpcall);
    return finish_xpcall(L, status, 3);
}

/* ---- what a script environment knows: its own load, loadfile, dofile and require ------------ */

/* load(chunk [, name [, mode [, env]]]): text only, whatever mode asks; without an env argument
 * the chunk gets the calling script's environment (an explicit nil means "no _ENV", as in Lua).
 * Upvalue: the environment. */
static int l_env_load(lua_State *L)
{
    if (lua_gettop(L) < 4) {
        lua_settop(L, 3);
        lua_pushvalue(L, lua_upvalueindex(1));
    }
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_real_load);
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* loadfile(filename [, mode [, env]]): text only; a file name is needed (standard input would
 * block a worker). Upvalue: the environment. */
static int l_env_loadfile(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    int env = !lua_isnone(L, 3) ? 3 : lua_upvalueindex(1);
    if (luaL_loadfilex(L, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
    return 1;
}

/* dofile(filename): text only, in the calling script's environment. Upvalue: the environment. */
static int l_env_dofile(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (luaL_loadfilex(L, name, "t") != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

/* require(name) -> module, loader data. "_G" is the calling script's environment, a
 * per-environment module is opened once for it, the standard libraries are their proxies;
 * anything else is Lua's require (text files only, see lua_state.c). Upvalues: the environment,
 * its per-environment modules (a table made on first use). */
static int l_env_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (strcmp(name, "_G") == 0) {
        lua_pushvalue(L, lua_upvalueindex(1));
        return 1;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_per_env);
    if (lua_getfield(L, 2, name) == LUA_TFUNCTION) {
        if (!lua_istable(L, lua_upvalueindex(2))) {
            lua_newtable(L);
            lua_replace(L, lua_upvalueindex(2));
        }
        if (lua_getfield(L, lua_upvalueindex(2), name) != LUA_TNIL)
            return 1;
        lua_pop(L, 1);
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, lua_upvalueindex(2), name);
        return 1;
    }
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_real_require);
    lua_insert(L, 1);
    lua_call(L, 1, 2);
    if (lua_istable(L, 1)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_memo);
        lua_pushvalue(L, 1);
        if (lua_rawget(L, -2) != LUA_TNIL)
            lua_replace(L, 1);
        lua_settop(L, 2);
    }
    return 2;
}

void lua_sandbox_push_env(lua_State *L)
{
    lua_createtable(L, 0, 8);
    int env = lua_gettop(L);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_pushvalue(L, env);
    lua_pushnil(L);
    lua_pushcclosure(L, l_env_require, 2);
    lua_setfield(L, env, "require");
    static const struct { const char *name; lua_CFunction f; } own[] = {
        {"load", l_env_load}, {"loadfile", l_env_loadfile}, {"dofile", l_env_dofile},
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        lua_pushvalue(L, env);
        lua_pushcclosure(L, own[i].f, 1);
        lua_setfield(L, env, own[i].name);
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_env_mt);
    lua_setmetatable(L, env);
}

void lua_sandbox_per_env_module(lua_State *L, const char *name, lua_CFunction open)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_per_env);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* ---- coroutines: each one an entry resumes is put under its CPU budget ---------------------- */

static char key_anchors; /* registry: the coroutines resumed during the entry, kept alive */
static _Thread_local int anchored;

/* Keep the thread at idx alive until the entry ends and let the budget hook it. */
static void track(lua_State *L, int idx)
{
    lua_State *co = lua_tothread(L, idx);
    if (!co)
        return;
    idx = lua_absindex(L, idx);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_anchors) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &key_anchors);
    }
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    anchored = 1;
    lua_budget_track(co);
}

void lua_sandbox_entry_end(lua_State *L)
{
    if (!anchored)
        return;
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_anchors);
    anchored = 0;
}

/* A request's own coroutine (the engine resumes it when its wait is over) is not the script's
 * to resume or close, even when the script kept it from coroutine.running(). */
static void check_not_a_request(lua_State *L, const char *what)
{
    lua_State *co = lua_tothread(L, 1);
    if (co && lua_task_of(co))
        luaL_error(L, "%s: this coroutine belongs to the host (it runs a request)", what);
}

/* coroutine.resume(co, ...), tracking co. Upvalue: Lua's coroutine.resume. */
static int l_co_resume(lua_State *L)
{
    check_not_a_request(L, "coroutine.resume");
    track(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* coroutine.close(co). Upvalue: Lua's coroutine.close. */
static int l_co_close(lua_State *L)
{
    check_not_a_request(L, "coroutine.close");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* The function coroutine.wrap returns. Upvalues: the coroutine, Lua's coroutine.resume. */
static int l_co_wrapped(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, lua_upvalueindex(1));
    track(L, -1);
    lua_rotate(L, 1, 2); /* resume, co, arguments... */
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    if (!lua_toboolean(L, 1)) {
        /* Like Lua's own wrap: raise the error, with the position when it is a message. */
        lua_settop(L, 2);
        if (lua_type(L, 2) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, 2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
    lua_remove(L, 1);
    return lua_gettop(L);
}

/* coroutine.wrap(f). Upvalues: Lua's coroutine.create and coroutine.resume. */
static int l_co_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 1, 1);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushcclosure(L, l_co_wrapped, 2);
    return 1;
}

/* ---- the cut-down libraries ----------------------------------------------------------------- */

/* io.lines(filename, ...): a file name is needed (standard input would block a worker).
 * Upvalue: Lua's io.lines. */
static int l_io_lines(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "io.lines needs a file name in Switchboard scripts (standard input "
                             "would block a worker)");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* debug.getinfo([thread,] f [, what]) -> table: Lua's, without the `func` field (a function up
 * the stack may be one of the host's, such as the original of a wrapped function). Upvalue:
 * Lua's debug.getinfo. */
static int l_getinfo(lua_State *L)
{
    int arg = lua_type(L, 1) == LUA_TTHREAD ? 2 : 1;
    if ((arg == 1 || lua_tothread(L, 1) == L) && lua_type(L, arg) == LUA_TNUMBER) {
        /* A level on this thread: one more, for this wrapper's own frame. */
        lua_Integer level = luaL_checkinteger(L, arg);
        lua_pushinteger(L, level >= 0 && level < LUA_MAXINTEGER ? level + 1 : level);
        lua_replace(L, arg);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        lua_setfield(L, -2, "func");
    }
    return 1;
}

/* Copy real[names...] into the table at `into`. */
static void copy_fields(lua_State *L, int into, int real, const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        lua_getfield(L, real, names[i]);
        lua_setfield(L, into, names[i]);
    }
}

/* Replace the value on the top, package.loaded[key] (key at `key`), by what scripts see of it:
 * the proxy of a library, nothing for the real globals and the per-environment modules. */
static void script_view(lua_State *L, int key)
{
    key = lua_absindex(L, key);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    int hidden = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    if (!hidden && lua_type(L, key) == LUA_TSTRING) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_per_env);
        hidden = lua_getfield(L, -1, lua_tostring(L, key)) != LUA_TNIL;
        lua_pop(L, 2);
    }
    if (hidden) {
        lua_pop(L, 1);
        lua_pushnil(L);
    } else if (lua_istable(L, -1)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_memo);
        lua_pushvalue(L, -2);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            lua_replace(L, -3);
            lua_pop(L, 1);
        } else {
            lua_pop(L, 2);
        }
    }
}

/* __index of the package.loaded view: (view, key) -> module. Upvalue: package.loaded. */
static int l_loaded_index(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    script_view(L, 2);
    return 1;
}

/* The iterator of the package.loaded view: (view, key) -> key, module. Upvalue: package.loaded. */
static int l_loaded_next(lua_State *L)
{
    lua_settop(L, 2);
    while (lua_next(L, lua_upvalueindex(1))) {
        script_view(L, -2);
        if (!lua_isnil(L, -1))
            return 2;
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    return 1;
}

/* package.loaded as scripts see it: read-only, with the libraries' proxies. */
static void push_loaded_view(lua_State *L, int real_loaded)
{
    lua_newtable(L);
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, real_loaded);
    lua_pushcclosure(L, l_loaded_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "package.loaded");
    lua_pushcclosure(L, l_readonly_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, real_loaded);
    lua_pushcclosure(L, l_loaded_next, 1);
    lua_pushcclosure(L, l_proxy_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushliteral(L, "package.loaded");
    lua_rawsetp(L, -2, &key_proxy);
    lua_setmetatable(L, -2);
}

/* base[name] = the proxy of `contents` (at the top, popped); `real` (the library) maps to it. */
static void add_library(lua_State *L, int base, const char *name, int real)
{
    real = lua_absindex(L, real);
    push_proxy(L, -1, name);
    memo_set(L, real, -1);
    lua_setfield(L, base, name);
    lua_pop(L, 1);
}

static void library_whole(lua_State *L, int base, const char *name)
{
    lua_getglobal(L, name);
    lua_pushvalue(L, -1);
    add_library(L, base, name, -2);
    lua_pop(L, 1);
}

static void library_coroutine(lua_State *L, int base)
{
    static const char *const keep[] = {"create", "isyieldable", "running", "status", "yield",
                                       NULL};
    lua_getglobal(L, "coroutine");
    int real = lua_gettop(L);
    lua_newtable(L);
    int lib = lua_gettop(L);
    copy_fields(L, lib, real, keep);
    lua_getfield(L, real, "resume");
    lua_pushcclosure(L, l_co_resume, 1);
    lua_setfield(L, lib, "resume");
    lua_getfield(L, real, "close");
    lua_pushcclosure(L, l_co_close, 1);
    lua_setfield(L, lib, "close");
    lua_getfield(L, real, "create");
    lua_getfield(L, real, "resume");
    lua_pushcclosure(L, l_co_wrap, 2);
    lua_setfield(L, lib, "wrap");
    add_library(L, base, "coroutine", real);
    lua_pop(L, 1);
}

static void library_os(lua_State *L, int base)
{
    static const char *const keep[] = {"clock", "date", "difftime", "getenv", "time", "remove",
                                       "rename", "tmpname", NULL};
    lua_getglobal(L, "os");
    int real = lua_gettop(L);
    lua_newtable(L);
    int lib = lua_gettop(L);
    copy_fields(L, lib, real, keep);
    refuse(L, lib, "os", "exit", "it would end the host");
    refuse(L, lib, "os", "execute", "it would block a worker");
    add_library(L, base, "os", real);
    lua_pop(L, 1);
}

static void library_io(lua_State *L, int base)
{
    static const char *const keep[] = {"open", "write", "close", "type", "stdout", "stderr",
                                       "tmpfile", NULL};
    lua_getglobal(L, "io");
    int real = lua_gettop(L);
    lua_newtable(L);
    int lib = lua_gettop(L);
    copy_fields(L, lib, real, keep);
    lua_getfield(L, real, "lines");
    lua_pushcclosure(L, l_io_lines, 1);
    lua_setfield(L, lib, "lines");
    refuse(L, lib, "io", "popen", "it would block a worker");
    refuse(L, lib, "io", "read", "standard input would block a worker");
    /* Files share one metatable: scripts see a read-only view of it. */
    lua_getfield(L, real, "stdout");
    lua_sandbox_protect_metatable(L, -1, "the metatable of files", 0);
    lua_pop(L, 1);
    add_library(L, base, "io", real);
    lua_pop(L, 1);
}

static void library_debug(lua_State *L, int base)
{
    lua_getglobal(L, "debug");
    int real = lua_gettop(L);
    lua_newtable(L);
    int lib = lua_gettop(L);
    lua_getfield(L, real, "traceback");
    lua_setfield(L, lib, "traceback");
    lua_getfield(L, real, "getinfo");
    lua_pushcclosure(L, l_getinfo, 1);
    lua_setfield(L, lib, "getinfo");
    refuse(L, lib, "debug", "sethook", "the host's CPU budget uses the hook");
    add_library(L, base, "debug", real);
    lua_pop(L, 1);
}

static void library_package(lua_State *L, int base)
{
    static const char *const keep[] = {"path", "config", "searchpath", NULL};
    lua_getglobal(L, "package");
    int real = lua_gettop(L);
    lua_newtable(L);
    int lib = lua_gettop(L);
    copy_fields(L, lib, real, keep);
    lua_getfield(L, real, "loaded");
    push_loaded_view(L, lua_gettop(L));
    lua_setfield(L, lib, "loaded");
    lua_pop(L, 1);
    refuse(L, lib, "package", "loadlib", "native code could take the host down");
    add_library(L, base, "package", real);
    lua_pop(L, 1);
}

void lua_sandbox_apply(lua_State *L)
{
    static const char *const plain[] = {"assert", "error", "getmetatable", "ipairs", "next",
                                        "pairs", "pcall", "print", "rawequal", "rawget", "rawlen",
                                        "select", "tonumber", "tostring", "type", "_VERSION",
                                        NULL};
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_memo);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_per_env);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_replaceable);
    lua_getglobal(L, "require");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_real_require);
    lua_getglobal(L, "load");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_real_load);

    lua_pushglobaltable(L);
    int globals = lua_gettop(L);
    lua_createtable(L, 0, 40);
    int base = lua_gettop(L);
    copy_fields(L, base, globals, plain);
    lua_pushcfunction(L, l_setmetatable);
    lua_setfield(L, base, "setmetatable");
    lua_pushcfunction(L, l_rawset);
    lua_setfield(L, base, "rawset");
    lua_pushcfunction(L, l_xpcall);
    lua_setfield(L, base, "xpcall");
    lua_getfield(L, globals, "collectgarbage");
    lua_pushcclosure(L, l_collectgarbage, 1);
    lua_setfield(L, base, "collectgarbage");

    library_whole(L, base, "string");
    library_whole(L, base, "table");
    library_whole(L, base, "math");
    library_whole(L, base, "utf8");
    library_coroutine(L, base);
    library_os(L, base);
    library_io(L, base);
    library_debug(L, base);
    library_package(L, base);

    /* Every string shares one metatable; its __index is now the proxy of string. */
    lua_pushliteral(L, "");
    lua_sandbox_protect_metatable(L, -1, "the string metatable", 0);
    lua_pop(L, 1);

    lua_createtable(L, 0, 2); /* the metatable of script environments */
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_env_mt);
    lua_pop(L, 2);
}
