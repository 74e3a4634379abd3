/* lua_sandbox: see lua_sandbox.h. */
#include "lua_sandbox.h"

#include "lua_state.h"

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
    if (lua_state_budget_exceeded())
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
}
