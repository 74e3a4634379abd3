/* lua_sandbox: what the standard libraries may not do in a Switchboard script (SPEC §6): end
 * the process (os.exit), block its worker (os.execute, io.popen, io.read), load native or
 * compiled code (package.loadlib, binary chunks through load, loadfile, dofile), or run code
 * the CPU budget cannot stop (__gc finalizers, debug.sethook, an xpcall message handler after the
 * budget is spent). Each refused function raises an error that says why.
 * Uses: Lua, lua_budget. */
#ifndef SB_LUA_SANDBOX_H
#define SB_LUA_SANDBOX_H

#include <lua.h>

/* Apply to a state whose standard libraries are open. coroutine.resume and coroutine.wrap are
 * wrapped so that the coroutines a script runs are under the CPU budget of its entry. */
void lua_sandbox_apply(lua_State *L);
/* The entry ended: let go of the coroutines it resumed. */
void lua_sandbox_entry_end(lua_State *L);

#endif
