/* SPDX-License-Identifier: MIT */
/* lua_sb_store: sb.store, the key-value store shared by every worker (docs/lua-api.md,
 * "sb.store"). Each call does its work in the store at once and parks the calling coroutine until
 * the next turn of the worker's loop, so a script behaves the same whether the store answers at
 * once (the embedded store) or over the network later; pop can wait for a push.
 *
 * Values: a string is kept as it is (so incr works on what set stored, as in Redis); a table,
 * number or boolean as JSON behind a marker byte. A string that starts with the marker byte is
 * escaped. The same bytes go to either backend, so a script works unchanged on both.
 *
 * Backends: the embedded store (store.c) through the task's operations; or, on an engine worker
 * whose host has `store:` in endpoints.yml, Redis (store_redis.c) through the worker's backend
 * (store_backend.h): the call is sent, the coroutine parks, and the reply resumes it at the next
 * turn of the loop. Uses: Lua, lua_sb (the task's operations), lua_json, store, store_backend,
 * store_redis. */
#include "lua_sb.h"

#include "lua_json.h"
#include "store.h"
#include "store_backend.h"
#include "store_redis.h"
#include "timers.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MARK '\x01'       /* first byte of a value that is not a plain string */
#define MARK_JSON 'J'     /* then JSON */
#define MARK_STRING 'S'   /* then a string that itself starts with MARK */
#define MAX_WAIT 3600.0   /* seconds a pop may wait */

static _Thread_local const struct store_backend *thread_backend;

void store_backend_bind(const struct store_backend *b) { thread_backend = b; }

const struct store_backend *store_backend_current(void) { return thread_backend; }

/* The store of the running task, or an error naming the call. */
static struct store *task_store(lua_State *L, const char *what, struct lua_task **task)
{
    struct lua_task *t = sb_waiting_task(L, what);
    struct store *s = t->ops->store ? t->ops->store(t) : NULL;
    if (!s)
        luaL_error(L, "%s: this host has no store", what);
    *task = t;
    return s;
}

static const char *check_key(lua_State *L, int idx)
{
    size_t len;
    const char *key = luaL_checklstring(L, idx, &len);
    if (len > STORE_MAX_KEY)
        luaL_argerror(L, idx, "a key is at most 1024 bytes");
    if (strlen(key) != len)
        luaL_argerror(L, idx, "a key may not hold a NUL byte");
    return key;
}

/* The bytes a value is stored as, pushed as a string.  [-0,+1,e] */
static void push_encoded(lua_State *L, int idx)
{
    size_t len;
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, idx, &len);
        if (len == 0 || s[0] != MARK) {
            lua_pushvalue(L, idx);
            return;
        }
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addchar(&b, MARK);
        luaL_addchar(&b, MARK_STRING);
        luaL_addlstring(&b, s, len);
        luaL_pushresult(&b);
        return;
    }
    int type = lua_type(L, idx);
    if (type != LUA_TTABLE && type != LUA_TNUMBER && type != LUA_TBOOLEAN)
        luaL_argerror(L, idx, "a value is a string, or a table, number or boolean (kept as JSON)");
    sb_json_encode(L, idx);
    const char *json = lua_tolstring(L, -1, &len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, MARK);
    luaL_addchar(&b, MARK_JSON);
    luaL_addlstring(&b, json, len);
    luaL_pushresult(&b);
    lua_remove(L, -2);
}

/* The value stored as bytes, decoded.  [-0,+1,e] */
static void push_decoded(lua_State *L, const char *v, size_t len)
{
    if (len < 2 || v[0] != MARK) {
        lua_pushlstring(L, v, len);
        return;
    }
    if (v[1] == MARK_STRING) {
        lua_pushlstring(L, v + 2, len - 2);
        return;
    }
    if (sb_json_decode(L, v + 2, len - 2) != 0) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, len); /* not ours: give the bytes back */
    }
}


/* ---- the remote backend ------------------------------------------------------------------- */

/* One call to the remote backend: the answer is kept here until the coroutine resumes. */
struct remote {
    const struct store_backend *b;
    struct lua_task *t;
    struct store_redis_call *call; /* NULL once answered */
    enum store_reply_kind kind;
    long long integer;
    char *data;
    size_t len;
    char *error;
};

static void remote_free(struct remote *p)
{
    free(p->data);
    p->data = NULL;
    free(p->error);
    p->error = NULL;
    free(p);
}

/* The backend answered (on the worker's thread, from its loop): keep it, resume next turn. */
static void remote_done(void *ctx, const struct store_reply *reply)
{
    struct remote *p = ctx;
    p->call = NULL;
    p->kind = reply->kind;
    p->integer = reply->integer;
    if (reply->kind == STORE_REPLY_VALUE) {
        p->data = malloc(reply->len ? reply->len : 1);
        if (p->data) {
            memcpy(p->data, reply->data, reply->len);
            p->len = reply->len;
        } else {
            p->kind = STORE_REPLY_ERROR; /* error NULL: out of memory */
        }
    } else if (reply->kind == STORE_REPLY_ERROR && reply->error) {
        p->error = strdup(reply->error);
    }
    p->b->wake(p->t);
}

/* The task stopped waiting (its deadline, its end): the answer is not wanted. */
static void remote_cancel(void *ctx)
{
    struct remote *p = ctx;
    if (p->call)
        store_redis_detach(p->call);
    remote_free(p);
}

static void push_decoded(lua_State *L, const char *v, size_t len);

/* The kept answer, as the embedded path returns it.  [-0,+1|2,m] */
static int l_push_remote(lua_State *L)
{
    struct remote *p = lua_touserdata(L, 1);
    lua_settop(L, 0);
    switch (p->kind) {
    case STORE_REPLY_BOOL:
        lua_pushboolean(L, p->integer != 0);
        return 1;
    case STORE_REPLY_INT:
        lua_pushinteger(L, (lua_Integer)p->integer);
        return 1;
    case STORE_REPLY_VALUE:
        push_decoded(L, p->data, p->len);
        return 1;
    case STORE_REPLY_ERROR:
        lua_pushnil(L);
        lua_pushstring(L, p->error ? p->error : "the store is out of memory");
        return 2;
    case STORE_REPLY_NIL:
        break;
    }
    lua_pushnil(L);
    return 1;
}

/* Resumed: the answer (pushed in a protected call, so the record is freed whatever happens), or
 * the cancellation (the record was freed by remote_cancel). */
static int after_remote(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct lua_task *t = lua_task_of(L);
    if (t && t->cancelled) {
        lua_pushstring(L, t->cancelled);
        return lua_error(L);
    }
    struct remote *p = (struct remote *)ctx;
    lua_settop(L, 0);
    lua_pushcfunction(L, l_push_remote);
    lua_pushlightuserdata(L, p);
    int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
    remote_free(p);
    if (rc != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

static int park(lua_State *L, struct lua_task *t, int n);

/* Send the call and park until its answer; a call that cannot be sent answers nil, err on the
 * next turn, as the embedded store's errors do. */
static int remote_send(lua_State *L, struct lua_task *t, const struct store_backend *b,
                       const struct store_request *req)
{
    char err[320];
    struct remote *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, sizeof err, "the store is out of memory");
    } else {
        p->b = b;
        p->t = t;
        p->call = store_redis_call(b->redis, req, remote_done, p, err, sizeof err);
    }
    if (!p || !p->call) {
        free(p);
        lua_settop(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return park(L, t, 2);
    }
    b->park(t, remote_cancel, p);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, (lua_KContext)p, after_remote);
}

/* A call on the key at index 1 (checked) with no value.  */
static int remote_key_call(lua_State *L, struct lua_task *t, const struct store_backend *b,
                           struct store_request *req)
{
    req->key = lua_tolstring(L, 1, &req->key_len);
    return remote_send(L, t, b, req);
}

static double check_ttl(lua_State *L, int idx)
{
    double ttl = luaL_optnumber(L, idx, 0);
    if (!(ttl >= 0) || ttl > 1e9)
        luaL_argerror(L, idx, "a TTL is a number of seconds, 0 (none) or more");
    return ttl;
}

static uint64_t ttl_ms(double seconds)
{
    return seconds > 0 ? (uint64_t)ceil(seconds * 1000.0) : 0;
}

static int after_turn(lua_State *L, int status, lua_KContext n);

/* Leave the n results on the stack and wait for the next turn; the continuation returns them. */
static int park(lua_State *L, struct lua_task *t, int n)
{
    t->ops->next_turn(t);
    return lua_yieldk(L, 0, (lua_KContext)n, after_turn);
}

/* The results that were left below the (empty) resume values, or the cancellation. */
static int after_turn(lua_State *L, int status, lua_KContext n)
{
    (void)status;
    struct lua_task *t = lua_task_of(L);
    if (t && t->cancelled) {
        lua_pushstring(L, t->cancelled);
        return lua_error(L);
    }
    return (int)n;
}

static int fail(lua_State *L, struct lua_task *t, int rc)
{
    lua_pushnil(L);
    lua_pushstring(L, rc == STORE_WRONGTYPE ? "the key holds another type of value"
                      : rc == STORE_TOOBIG  ? "the value is too big for the store"
                      : rc == STORE_BADKEY  ? "the key is too long"
                                            : "the store is out of memory");
    return park(L, t, 2);
}

/* The answer of a call whose store result is rc: an error, or a boolean (rc == 1) or the
 * integer rc, on the next turn.  [-(any),+1|2,e] */
static int answer(lua_State *L, struct lua_task *t, int rc, int as_boolean)
{
    lua_settop(L, 0);
    if (rc < 0)
        return fail(L, t, rc);
    if (as_boolean)
        lua_pushboolean(L, rc == 1);
    else
        lua_pushinteger(L, rc);
    return park(L, t, 1);
}

/* sb.store.get(key) -> value | nil  [-0,+1,e] */
static int l_get(lua_State *L)
{
    struct lua_task *t;
    struct store *s = task_store(L, "sb.store.get", &t);
    const char *key = check_key(L, 1);
    const struct store_backend *b = store_backend_current();
    if (b)
        return remote_key_call(L, t, b, &(struct store_request){.op = STORE_OP_GET});
    struct buffer out = {0};
    int rc = store_get(s, key, timers_now_ms(), &out);
    lua_settop(L, 0);
    if (rc < 0) {
        buffer_free(&out);
        return fail(L, t, rc);
    }
    if (rc == 1)
        push_decoded(L, out.data, out.len);
    else
        lua_pushnil(L);
    buffer_free(&out);
    return park(L, t, 1);
}

static int set_or_add(lua_State *L, const char *what, int only_if_absent)
{
    struct lua_task *t;
    struct store *s = task_store(L, what, &t);
    const char *key = check_key(L, 1);
    luaL_checkany(L, 2);
    double ttl = check_ttl(L, 3);
    push_encoded(L, 2);
    size_t len;
    const char *v = lua_tolstring(L, -1, &len);
    const struct store_backend *b = store_backend_current();
    if (b)
        return remote_key_call(L, t, b,
                               &(struct store_request){.op = STORE_OP_SET, .value = v,
                                                       .value_len = len, .ttl_ms = ttl_ms(ttl),
                                                       .only_if_absent = only_if_absent});
    int rc = store_set(s, key, v, len, ttl_ms(ttl), only_if_absent, timers_now_ms());
    return answer(L, t, rc, 1);
}

/* sb.store.set(key, value[, ttl]) -> true  [-0,+1,e] */
static int l_set(lua_State *L) { return set_or_add(L, "sb.store.set", 0); }

/* sb.store.add(key, value[, ttl]) -> true when added, false when the key existed  [-0,+1,e] */
static int l_add(lua_State *L) { return set_or_add(L, "sb.store.add", 1); }

/* sb.store.incr(key[, by]) -> the new value  [-0,+1,e] */
static int l_incr(lua_State *L)
{
    struct lua_task *t;
    struct store *s = task_store(L, "sb.store.incr", &t);
    const char *key = check_key(L, 1);
    lua_Integer by = luaL_optinteger(L, 2, 1);
    const struct store_backend *b = store_backend_current();
    if (b)
        return remote_key_call(L, t, b,
                               &(struct store_request){.op = STORE_OP_INCR, .by = (long long)by});
    int64_t result = 0;
    int rc = store_incr(s, key, (int64_t)by, timers_now_ms(), &result);
    lua_settop(L, 0);
    if (rc == STORE_WRONGTYPE) {
        lua_pushnil(L);
        lua_pushliteral(L, "the value is not an integer (or the sum overflows)");
        return park(L, t, 2);
    }
    if (rc < 0)
        return fail(L, t, rc);
    lua_pushinteger(L, (lua_Integer)result);
    return park(L, t, 1);
}

/* sb.store.del(key) -> true when it existed  [-0,+1,e] */
static int l_del(lua_State *L)
{
    struct lua_task *t;
    struct store *s = task_store(L, "sb.store.del", &t);
    const char *key = check_key(L, 1);
    const struct store_backend *b = store_backend_current();
    if (b)
        return remote_key_call(L, t, b, &(struct store_request){.op = STORE_OP_DEL});
    return answer(L, t, store_del(s, key, timers_now_ms()), 1);
}

/* sb.store.expire(key, ttl) -> true when the key exists (ttl 0: no expiry)  [-0,+1,e] */
static int l_expire(lua_State *L)
{
    struct lua_task *t;
    struct store *s = task_store(L, "sb.store.expire", &t);
    const char *key = check_key(L, 1);
    luaL_checknumber(L, 2);
    double ttl = check_ttl(L, 2);
    const struct store_backend *b = store_backend_current();
    if (b)
        return remote_key_call(
            L, t, b, &(struct store_request){.op = STORE_OP_EXPIRE, .ttl_ms = ttl_ms(ttl)});
    return answer(L, t, store_expire(s, key, ttl_ms(ttl), timers_now_ms()), 1);
}

/* sb.store.push(key, value) -> the list's length (0: a waiting pop took it)  [-0,+1,e] */
static int l_push(lua_State *L)
{
    struct lua_task *t;
    struct store *s = task_store(L, "sb.store.push", &t);
    const char *key = check_key(L, 1);
    luaL_checkany(L, 2);
    push_encoded(L, 2);
    size_t len;
    const char *v = lua_tolstring(L, -1, &len);
    const struct store_backend *b = store_backend_current();
    if (b)
        return remote_key_call(L, t, b,
                               &(struct store_request){.op = STORE_OP_PUSH, .value = v,
                                                       .value_len = len});
    return answer(L, t, store_push(s, key, v, len, timers_now_ms()), 0);
}

/* A waited-for value came (as a string), or nothing (the wait's time ran out). */
static int after_pop_wait(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct lua_task *t = lua_task_of(L);
    if (t && t->cancelled) {
        lua_pushstring(L, t->cancelled);
        return lua_error(L);
    }
    if (lua_gettop(L) == 0 || lua_type(L, 1) != LUA_TSTRING) {
        lua_settop(L, 0);
        lua_pushnil(L);
        return 1;
    }
    size_t len;
    const char *v = lua_tolstring(L, 1, &len);
    push_decoded(L, v, len);
    return 1;
}

/* sb.store.pop(key[, wait]) -> the first value of the list, or nil; with `wait` seconds, an
 * empty list waits that long for a push  [-0,+1,e] */
static int l_pop(lua_State *L)
{
    struct lua_task *t;
    struct store *s = task_store(L, "sb.store.pop", &t);
    const char *key = check_key(L, 1);
    double wait = luaL_optnumber(L, 2, 0);
    if (!(wait >= 0) || wait > MAX_WAIT)
        luaL_argerror(L, 2, "a wait is a number of seconds from 0 to 3600");
    const struct store_backend *b = store_backend_current();
    if (b) {
        double bound = wait > 0 ? b->wait_bound(t, wait) : 0;
        uint64_t wait_ms = bound > 0 ? (uint64_t)(bound * 1000.0 + 0.5) : 0;
        return remote_key_call(L, t, b,
                               &(struct store_request){.op = STORE_OP_POP, .wait_ms = wait_ms});
    }
    struct buffer out = {0};
    int rc = store_pop(s, key, timers_now_ms(), &out, NULL);
    if (rc < 0) {
        buffer_free(&out);
        lua_settop(L, 0);
        return fail(L, t, rc);
    }
    if (rc == 1 || wait == 0) {
        lua_settop(L, 0);
        if (rc == 1)
            push_decoded(L, out.data, out.len);
        else
            lua_pushnil(L);
        buffer_free(&out);
        return park(L, t, 1);
    }
    buffer_free(&out);
    char err[256];
    if (t->ops->store_wait(t, key, wait, err, sizeof err) != 0)
        return luaL_error(L, "sb.store.pop: %s", err);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, after_pop_wait);
}

/* sb.store.length(key) -> the number of values in the list  [-0,+1,e] */
static int l_length(lua_State *L)
{
    struct lua_task *t;
    struct store *s = task_store(L, "sb.store.length", &t);
    const char *key = check_key(L, 1);
    const struct store_backend *b = store_backend_current();
    if (b)
        return remote_key_call(L, t, b, &(struct store_request){.op = STORE_OP_LENGTH});
    return answer(L, t, store_list_length(s, key, timers_now_ms()), 0);
}

void lua_sb_store_open(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"get", l_get},       {"set", l_set},   {"add", l_add},       {"incr", l_incr},
        {"del", l_del},       {"expire", l_expire}, {"push", l_push}, {"pop", l_pop},
        {"length", l_length}, {NULL, NULL},
    };
    luaL_newlib(L, functions);
}
