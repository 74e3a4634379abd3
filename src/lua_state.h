/* SPDX-License-Identifier: MIT */
/* lua_state: creates the Lua state of an engine worker and calls into it safely.
 *
 * Provides: a state whose real globals hold the standard libraries for the host, while scripts
 * see lua_sandbox's allow-list: each file (lua_state_dofile, require) runs in an environment of
 * its own; `require` is confined to text files on the project's and the host's paths; the
 * switchboard module and the host's own modules are read-only proxies; lua-cjson is opened once
 * per script environment;
 * a counting allocator that caps the state's memory, one protected-call helper that turns errors
 * into "file:line: message" text with a traceback, and conversion of config trees to tables.
 * Uses: Lua 5.4, lua-cjson, config (plain data), lua_sandbox, lua_sb, lua_request,
 * channel_hooks. */
#ifndef SB_LUA_STATE_H
#define SB_LUA_STATE_H

#include <lua.h>
#include <stddef.h>

struct cfg_value;

struct lua_paths {
    const char *project_dir; /* the credentials file's folder: custom channels and their modules */
    const char *data_dir;    /* the host's own files: lua/ and channels/ below it */
};

struct lua_limits {
    size_t memory_limit;     /* bytes; 0 = no cap */
    double cpu_budget;       /* seconds of Lua per call; 0 = no budget */
};

/* A new state, or NULL with a reason in err. */
lua_State *lua_state_new(const struct lua_paths *paths, const struct lua_limits *limits, char *err,
                         size_t errlen);
void lua_state_close(lua_State *L);
/* Bytes the state has allocated right now. */
size_t lua_state_memory(lua_State *L);

/* The CPU budget of one entry into Lua (docs/contract.md §6): begin before resuming a coroutine or
 * calling into a state, end when it returns or yields. Ending resets the hook of `L` (the thread
 * that ran) and returns 1 when the budget was used up. lua_state_pcall does both itself. */
void lua_state_budget_begin(lua_State *L);
int lua_state_budget_end(lua_State *L);
/* 1 while the running entry's budget is spent (the error is unwinding). */
int lua_state_budget_exceeded(void);

/* lua_pcall with a message handler that appends a traceback to string errors (a table error, such
 * as an HTTP error raised by the host, is passed through untouched). On error the message is
 * copied to err (when err is not NULL), the error value stays on the stack, returns -1. */
int lua_state_pcall(lua_State *L, int nargs, int nresults, char *err, size_t errlen);
/* Run fn(ud) in a protected call on L, a main thread with nothing running: the way host code
 * builds values it hands a script (every push may allocate, and an allocation refused by the
 * memory cap raises). Returns LUA_OK with fn's results alone on L's stack, or an error code with
 * the error value on top. */
int lua_state_push_protected(lua_State *L, lua_CFunction fn, void *ud);
/* Cut an error text from lua_state_pcall or lua_state_dofile at its first line break: the one
 * line "file:line: message", without the traceback that follows (for startup and reload errors). */
void lua_error_first_line(char *text);
/* Load a Lua file in text mode and run it in an environment of its own (its globals are its
 * own); leaves its first result on the stack. Returns 0, or -1 with "file:line: message" in err. */
int lua_state_dofile(lua_State *L, const char *path, char *err, size_t errlen);

/* Call fn with the absolute path of every Lua file the state has loaded (lua_state_dofile and
 * require), in load order. */
void lua_state_loaded_files(lua_State *L, void (*fn)(void *ctx, const char *path), void *ctx);

/* Push a config tree as Lua values (maps and sequences become tables, null becomes nil). */
void lua_push_cfg(lua_State *L, const struct cfg_value *v);

#endif
