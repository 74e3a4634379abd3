/* SPDX-License-Identifier: MIT */
/* lua_sb: the `switchboard` module scripts get with `local sb = require "switchboard"`
 * (docs/contract.md §6): sb.json, sb.log, sb.uuid, sb.now, sb.sleep, sb.urlencode, sb.urldecode;
 * and the host's HTTP errors (a table a script or the host raises to answer with a given status).
 *
 * The module finds the request a call belongs to through the running coroutine: the engine puts a
 * `struct lua_task` pointer in each job coroutine's extra space. Waiting (sb.sleep) is delegated
 * to the engine through the task's operations, so this file knows nothing of event loops.
 * Uses: Lua 5.4, lua_json, lua_crypto, outbound (plain structs), log. */
#ifndef SB_LUA_SB_H
#define SB_LUA_SB_H

#include <lauxlib.h>
#include <lua.h>

#include "lua_json.h"
#include "outbound.h"

struct lua_task;

/* What the engine does for the module. Each arranges for the task's coroutine to be resumed
 * later; the caller then yields with sb_yield_wait. */
struct lua_task_ops {
    /* Resume after `seconds`, with no values. */
    void (*sleep)(struct lua_task *t, double seconds);
    /* Start an outbound request; resume with the values of sb_push_http_result. Returns 0, or -1
     * with err (nothing started, no resume). */
    int (*http)(struct lua_task *t, const struct outbound_request *req, char *err, size_t errlen);
    /* Connections (docs/lua-api.md, "Connections"); NULL where there are none (offline). The
     * first three act on a connection of the task's worker by id and return -1 when it is gone;
     * send_to_sender returns how many connections bound to sender it was handed to. */
    int (*conn_send)(struct lua_task *t, const char *id, int binary, const char *data,
                     size_t len);
    int (*conn_close)(struct lua_task *t, const char *id, int code, const char *reason);
    int (*conn_bind)(struct lua_task *t, const char *id, const char *sender);
    int (*conn_keepalive)(struct lua_task *t, const char *id, double seconds, const char *text,
                          size_t len);
    int (*send_to_sender)(struct lua_task *t, const char *sender, int binary, const char *data,
                          size_t len);
    /* sb.store (docs/lua-api.md, "sb.store"): the host's store (NULL: none); a call's answer
     * waits for the next turn of the loop (resume with no values: the answer is on the stack);
     * a pop of an empty list waits for a push (resume with the value as a string, or with
     * nothing after `seconds`). store_wait returns 0, or -1 with err. */
    struct store *(*store)(struct lua_task *t);
    void (*next_turn)(struct lua_task *t);
    int (*store_wait)(struct lua_task *t, const char *key, double seconds, char *err,
                      size_t errlen);
};

/* What the module knows of the request a coroutine works for. */
struct lua_task {
    const char *request_id;
    lua_State *co;                 /* the task's own coroutine */
    const struct lua_task_ops *ops;
    const char *cancelled;         /* set by the engine (deadline): every wait raises this */
    int record_ref;                /* > 0: registry ref of the request's recording (recorder.lua),
                                    * whose `calls` sb.http.request appends to */
};

/* The task of the running coroutine, or NULL outside requests (init, scripts' own coroutines). */
static inline struct lua_task *lua_task_of(lua_State *L)
{
    return *(struct lua_task **)lua_getextraspace(L);
}
static inline void lua_task_bind(lua_State *co, struct lua_task *t)
{
    *(struct lua_task **)lua_getextraspace(co) = t;
}

int luaopen_switchboard(lua_State *L);
/* While allowed (a channel's startup hook, run by the main thread), sb.http.request outside a
 * request waits for its answer, blocking the thread; elsewhere it needs a request's coroutine. */
void lua_sb_allow_blocking(int allowed);

/* Yield the running task's coroutine until the engine resumes it. When it resumes, the values
 * the engine passed are returned to the script, or, when the task was cancelled meanwhile, the
 * cancellation is raised as an error. Use as `return sb_yield_wait(L);` from a C function. */
int sb_yield_wait(lua_State *L);
/* Push what sb.http.request returns for a result: a table {status, headers, body, json}, or
 * nil and an error message. Returns the number of values pushed. */
int sb_push_http_result(lua_State *L, const struct outbound_result *r);

/* The task of the running coroutine when it may wait; else raises naming `what` (outside a
 * request's own coroutine, or when the task was cancelled). */
struct lua_task *sb_waiting_task(lua_State *L, const char *what);

/* The families of the module, each in a file of its own (called by luaopen_switchboard):
 * push the sb.http table; add sb.strip, sb.urlencode and sb.urldecode to the table on top. */
void lua_sb_http_open(lua_State *L);
void lua_sb_text_register(lua_State *L);
/* Push the sb.store table. */
void lua_sb_store_open(lua_State *L);
/* Push the sb.connections table. */
void lua_sb_conn_open(lua_State *L);
/* The `conn` object of connection id in this state: the same object (and conn.data) for every
 * event of the connection.  [-0,+1,m] */
void lua_sb_push_connection(lua_State *L, const char *id);
/* The connection is gone: this state lets its object go. Never raises.  [-0,+0,-] */
void lua_sb_forget_connection(lua_State *L, const char *id);
/* A reload: conn.data of connection id is copied from one state to the other as JSON (a value
 * JSON cannot hold fails the copy: -1 with err). Never raises. */
int lua_sb_carry_connection_data(lua_State *from, lua_State *to, const char *id, char *err,
                                 size_t errlen);
/* Push sb.urlencode(value at idx).  [-0,+1,e] */
void sb_push_urlencoded(lua_State *L, int idx);

/* Push sb.uuid(): 32 lower-case hex characters of a random (version 4) uuid.  [-0,+1,e] */
void sb_push_uuid(lua_State *L);
/* Push sb.strip() of the string at idx: without leading and trailing white space (ASCII and
 * Unicode); that string itself when it has nothing to strip.  [-0,+1,m] */
void sb_push_stripped(lua_State *L, int idx);

/* Raise an HTTP error: a table {status=, error=code, message=} with the module's metatable.
 * The pipeline answers it as {"error": code, "message": message} with that status. */
int sb_raise_http_error(lua_State *L, int status, const char *code, const char *fmt, ...);
/* Append the form-decoded (+ is space, %XX) bytes of s[0..len) to b. */
void sb_urldecode_into(luaL_Buffer *b, const char *s, size_t len);

#endif
