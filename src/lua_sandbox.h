/* SPDX-License-Identifier: MIT */
/* lua_sandbox: what Switchboard scripts see of a Lua state (docs/reloading-and-guards.md, "What
 * scripts cannot do"). An allow-list, as Redis's script_lua.c does it:
 *
 * - The state's real globals (LUA_RIDX_GLOBALS, the full standard libraries) are the host's;
 *   scripts never see them.
 * - A base table holds what scripts may use: the safe base functions, a budget-aware xpcall, a
 *   setmetatable without __gc, a rawset that refuses read-only tables, a collectgarbage that
 *   cannot change the collector's mode, and the libraries as read-only proxies (os, io, debug and
 *   package cut down; os.exit, os.execute, io.popen, io.read, package.loadlib and debug.sethook
 *   raise an error that says why).
 * - Every script file runs in an environment of its own (lua_sandbox_push_env): its globals land
 *   there, and it reads the rest from the base. Its load, loadfile and dofile (text only) give
 *   chunks that environment by default; its require hands out the per-environment modules
 *   (lua_sandbox_per_env_module) and the proxies of the standard libraries.
 * - Shared tables (the switchboard module, the host's own modules, shared metatables) are given
 *   to scripts as read-only proxies (lua_sandbox_push_readonly): an empty table whose metatable
 *   has the contents as a table __index (no call per read), a __newindex that raises
 *   "<name> is read-only (shared by every script)", __pairs and __len, and __metatable.
 * Coroutines a script resumes are put under the CPU budget of its entry; a request's own
 * coroutine cannot be resumed or closed by a script.
 * Uses: Lua, lua_budget, lua_sb (the task a coroutine runs). */
#ifndef SB_LUA_SANDBOX_H
#define SB_LUA_SANDBOX_H

#include <lua.h>

/* Build the scripts' view of a state whose standard libraries are open and whose package.path
 * is set; protects the string and file metatables. The real globals stay untouched. */
void lua_sandbox_apply(lua_State *L);
/* Push a new script environment: a table whose globals are its own, reading the base. */
void lua_sandbox_push_env(lua_State *L);
/* Push a read-only proxy of the table at idx (tables in it become proxies too; a table gets the
 * same proxy every time). Anything but a table is pushed as it is. `name` is for errors. */
void lua_sandbox_push_readonly(lua_State *L, int idx, const char *name);
/* Protect the metatable of the value at idx (when it has one and it is not protected yet):
 * __metatable becomes a read-only view of it. With `replaceable`, the sandbox's setmetatable may still replace it on a table
 * (the JSON array mark, which docs/lua-api.md lets scripts replace). */
void lua_sandbox_protect_metatable(lua_State *L, int idx, const char *name, int replaceable);
/* `require(name)` in a script environment calls open() once per environment (lua-cjson: its
 * settings are per instance, so each script gets its own). */
void lua_sandbox_per_env_module(lua_State *L, const char *name, lua_CFunction open);
/* The entry ended: let go of the coroutines it resumed. */
void lua_sandbox_entry_end(lua_State *L);

#endif
