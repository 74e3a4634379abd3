/* SPDX-License-Identifier: MIT */
/* lua_budget: the CPU budget of one entry into Lua (docs/contract.md §6: a job's resume, an init
 * call).
 *
 * No hook runs while a script stays within its budget: a timer on the thread's CPU clock sends
 * the thread a signal every tick, and only an entry that is still running after budget/tick ticks
 * gets a count hook, installed from the signal handler (lua_sethook may be called there). From
 * then on the hook raises an error at every instruction of script code (not of the host's own
 * Lua), so a script's pcall cannot swallow it; the error unwinds to the host, which ends the
 * entry. Coroutines a script resumes during the entry are hooked too (lua_sandbox reports them).
 * State is per thread: a Lua state is used by one thread at a time.
 * Uses: Lua, POSIX timers and signals. */
#ifndef SB_LUA_BUDGET_H
#define SB_LUA_BUDGET_H

#include <lua.h>

/* Start an entry running on thread L: `seconds` of CPU (0: no budget); code whose chunk name
 * starts with host_prefix ("@<data_dir>/lua/switchboard/") is never interrupted. */
void lua_budget_begin(lua_State *L, double seconds, const char *host_prefix);
/* End the entry: removes any hook it got. Returns 1 when the budget was used up. */
int lua_budget_end(void);
/* 1 while the running entry's budget is used up (its error is unwinding). */
int lua_budget_exceeded(void);
/* A coroutine the entry is about to resume: it is hooked like the entry's own thread. The
 * caller keeps it alive until the entry ends (lua_sandbox anchors it in the registry). */
void lua_budget_track(lua_State *co);
/* The calling thread will run no more entries: free its timer. */
void lua_budget_thread_exit(void);

#endif
