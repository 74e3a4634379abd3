/* lua_sandbox: see lua_sandbox.h. */
#include "lua_sandbox.h"

#include "lua_budget.h"

#include <lauxlib.h>
#include <string.h>

/* Replaces a function that is not available: raises naming it and why. */
static int l_refused(lua_State *L)
{
    return luaL_error(L, "%s is not available to Switchboard scripts (%s)",
                      lua_tostring(L, lua_upvalueindex(1)), lua_tostring(L, lua_upvalueindex(2)));
}

static void refuse(lua_State *L, const char *library, const char *name, const char *why)
{
    lua_getglobal(L, library);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushfstring(L, "%s.%s", library, name);
    lua_pushstring(L, why);
    lua_pushcclosure(L, l_refused, 2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* load(chunk [, name [, mode [, env]]]): text only, whatever mode asks. Upvalue: Lua's load.
 * An env argument is passed on only when given (an explicit nil would mean "no _ENV"). */
static int l_load_text(lua_State *L)
{
    int n = lua_gettop(L);
    if (n < 3)
        lua_settop(L, 3);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L);
}

/* loadfile([filename [, mode [, env]]]): text only. */
static int l_loadfile_text(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, NULL);
    int env = !lua_isnone(L, 3) ? 3 : 0;
    if (luaL_loadfilex(L, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

/* dofile([filename]): text only. */
static int l_dofile_text(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, NULL);
    lua_settop(L, 1);
    if (luaL_loadfilex(L, name, "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

/* setmetatable(t, mt) refusing __gc: a finalizer runs with hooks off, out of the budget's
 * reach. Upvalue: Lua's setmetatable. */
static int l_setmetatable_no_gc(lua_State *L)
{
    if (lua_istable(L, 2)) {
        int has_gc = lua_getfield(L, 2, "__gc") != LUA_TNIL;
        lua_pop(L, 1);
        if (has_gc)
            return luaL_error(L, "__gc metamethods are not available to Switchboard scripts "
                                 "(a finalizer cannot be given a CPU budget)");
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
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

/* coroutine.resume(co, ...), tracking co. Upvalue: Lua's coroutine.resume. */
static int l_co_resume(lua_State *L)
{
    track(L, 1);
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

static void budget_coroutines(lua_State *L)
{
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, "resume");
    lua_pushcclosure(L, l_co_resume, 1);
    lua_setfield(L, -2, "resume");
    lua_getfield(L, -1, "create");
    lua_getfield(L, -2, "resume");
    lua_getupvalue(L, -1, 1); /* the original resume, kept by our wrapper */
    lua_remove(L, -2);
    lua_pushcclosure(L, l_co_wrap, 2);
    lua_setfield(L, -2, "wrap");
    lua_pop(L, 1);
}

static void wrap_global(lua_State *L, const char *name, lua_CFunction f)
{
    lua_getglobal(L, name);
    lua_pushcclosure(L, f, 1);
    lua_setglobal(L, name);
}

void lua_sandbox_apply(lua_State *L)
{
    refuse(L, "os", "exit", "it would end the host");
    refuse(L, "os", "execute", "it would block a worker");
    refuse(L, "io", "popen", "it would block a worker");
    refuse(L, "io", "read", "standard input would block a worker");
    refuse(L, "package", "loadlib", "native code could take the host down");
    refuse(L, "debug", "sethook", "the host's CPU budget uses the hook");
    wrap_global(L, "load", l_load_text);
    lua_pushcfunction(L, l_loadfile_text);
    lua_setglobal(L, "loadfile");
    lua_pushcfunction(L, l_dofile_text);
    lua_setglobal(L, "dofile");
    wrap_global(L, "setmetatable", l_setmetatable_no_gc);
    lua_getglobal(L, "debug"); /* debug.setmetatable would be the way around */
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "setmetatable");
        lua_pushcclosure(L, l_setmetatable_no_gc, 1);
        lua_setfield(L, -2, "setmetatable");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_xpcall);
    lua_setglobal(L, "xpcall");
    budget_coroutines(L);
}
