/* SPDX-License-Identifier: MIT */
/* host_api: the `host` table pipeline.lua receives in pipeline.setup (see engine_internal.h).
 * These are the only calls from the pipeline into the engine: a message's turn and deadline,
 * streaming, answering before processing ends, counting a bot failure, the recording of a
 * request, and the inbox stream of async messages (store_redis.c). Each but bot_failure belongs
 * to the request's own coroutine. */
#include "engine_internal.h"

#include "lua_state.h"
#include "metrics.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static struct job *running_job(lua_State *L)
{
    struct job *job = job_of(L);
    if (!job)
        luaL_error(L, "this host function belongs to the pipeline's own coroutine");
    return job;
}

/* host.message_begin(sender): starts the message's deadline, then waits (parks the coroutine)
 * for the sender's turn  [-0,+0,e] */
static int l_host_message_begin(lua_State *L)
{
    struct job *job = running_job(L);
    const char *sender = luaL_checkstring(L, 1);
    if (job->gate_sender)
        return luaL_error(L, "message_begin called twice");
    int wait = job_message_begin(job, sender);
    if (wait < 0)
        return luaL_error(L, "out of memory");
    if (wait == 0)
        return 0;
    lua_settop(L, 0);
    return sb_yield_wait(L);
}

/* host.message_end(): stops the deadline; the sender's next message may go  [-0,+0,-] */
static int l_host_message_end(lua_State *L)
{
    struct job *job = running_job(L);
    job_message_end(job);
    /* The pipeline has caught whatever the message raised, a spent CPU budget included: what
     * follows (the next message, respond) gets a budget of its own. */
    lua_state_budget_end(L);
    lua_state_budget_begin(L);
    return 0;
}

/* host.stream_start(status, content_type)  [-0,+0,e] */
static int l_host_stream_start(lua_State *L)
{
    struct job *job = running_job(L);
    int status = (int)luaL_checkinteger(L, 1);
    const char *content_type = luaL_checkstring(L, 2);
    if (job->x && !job->streaming) {
        http_stream_start(job->x, status, content_type, NULL, 0);
        job->streaming = 1;
    }
    return 0;
}

/* host.stream_write(text)  [-0,+0,e] */
static int l_host_stream_write(lua_State *L)
{
    struct job *job = running_job(L);
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    if (job->x && job->streaming)
        http_stream_write(job->x, text, len);
    return 0;
}

/* host.answer(status, content_type, body, headers): answer now, keep processing  [-0,+0,e] */
static int l_host_answer(lua_State *L)
{
    struct job *job = running_job(L);
    const char *problem = job_answer_problem(L, 1, lua_gettop(L));
    if (problem)
        return luaL_error(L, "host.answer: %s", problem);
    if (job->x)
        job_answer(job, L, 1);
    return 0;
}

/* host.bot_failure(kind): counts a message the bot failed on, for /metrics. kind: "refused",
 * "timeout", "bad_status", "bad_json", "script_error"; any other value counts as "other".
 * Never raises  [-0,+0,-] */
static int l_host_bot_failure(lua_State *L)
{
    const char *kind = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
    metrics_bot_failure(metrics_bot_failure_kind(kind));
    return 0;
}

/* host.record_calls(rec): the request's recording (switchboard run --record), whose `calls`
 * sb.http.request fills; the job lets it go when it ends  [-0,+0,e] */
static int l_host_record_calls(lua_State *L)
{
    struct job *job = running_job(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    if (job->task.record_ref > 0)
        luaL_unref(L, LUA_REGISTRYINDEX, job->task.record_ref);
    lua_settop(L, 1);
    job->task.record_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* ---- the inbox stream (docs/multi-host.md "Nothing acked is lost") --------------------------- */

/* host.inbox_enabled() -> boolean: the async messages go to the inbox stream first  [-0,+1,-] */
static int l_host_inbox_enabled(lua_State *L)
{
    struct job *job = job_of(L);
    lua_pushboolean(L, job && store_redis_inbox_on(job->w->redis));
    return 1;
}

/* One host.inbox_add waiting for Redis: what came back is kept until the coroutine resumes. */
struct inbox_wait {
    struct job *job;
    struct store_redis_inbox_add *add; /* NULL once answered */
    char **ids;
    size_t n;
    char error[300];
};

static void inbox_wait_free(struct inbox_wait *p)
{
    for (size_t i = 0; p->ids && i < p->n; i++)
        free(p->ids[i]);
    free(p->ids);
    p->ids = NULL;
    free(p);
}

static void inbox_added(void *ctx, const char *const *ids, size_t n, const char *error)
{
    struct inbox_wait *p = ctx;
    p->add = NULL;
    if (ids && (p->ids = calloc(n, sizeof *p->ids)) != NULL) {
        p->n = n;
        for (size_t i = 0; i < n; i++)
            if (!(p->ids[i] = strdup(ids[i])))
                snprintf(p->error, sizeof p->error, "out of memory");
    } else {
        snprintf(p->error, sizeof p->error, "%s", error ? error : "out of memory");
    }
    p->job->w->store_backend.wake(&p->job->task);
}

/* The job stopped waiting (it ends): the entries are left to a claim. */
static void inbox_cancel(void *ctx)
{
    struct inbox_wait *p = ctx;
    store_redis_inbox_add_detach(p->add);
    inbox_wait_free(p);
}

/* The ids as an array, or nil and the error.  [-0,+1|2,m] */
static int l_push_inbox_ids(lua_State *L)
{
    struct inbox_wait *p = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (p->error[0]) {
        lua_pushnil(L);
        lua_pushstring(L, p->error);
        return 2;
    }
    lua_createtable(L, (int)p->n, 0);
    for (size_t i = 0; i < p->n; i++) {
        lua_pushstring(L, p->ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int after_inbox_add(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct job *job = job_of(L);
    if (job && job->task.cancelled) { /* inbox_cancel freed the record */
        lua_pushstring(L, job->task.cancelled);
        return lua_error(L);
    }
    struct inbox_wait *p = (struct inbox_wait *)ctx;
    lua_settop(L, 0);
    lua_pushcfunction(L, l_push_inbox_ids);
    lua_pushlightuserdata(L, p);
    int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
    inbox_wait_free(p);
    if (rc != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

/* host.inbox_add(channel, request_id, messages) -> ids | nil, err: appends each message (JSON
 * text) to the inbox stream, this job running them; waits for Redis. nil when Redis cannot keep
 * them (logged and counted: the caller processes them anyway)  [-3,+1|2,e] */
static int l_host_inbox_add(lua_State *L)
{
    struct job *job = running_job(L);
    const char *channel = luaL_checkstring(L, 1);
    const char *request = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    size_t n = (size_t)lua_rawlen(L, 3);
    if (n == 0 || n > 10000)
        return luaL_argerror(L, 3, "1 to 10000 messages expected");
    const char **texts = lua_newuserdatauv(L, n * (sizeof *texts + sizeof(size_t)), 0);
    size_t *lens = (size_t *)(texts + n);
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, 3, (lua_Integer)i + 1) != LUA_TSTRING)
            return luaL_argerror(L, 3, "the messages must be strings (JSON)");
        texts[i] = lua_tolstring(L, -1, &lens[i]); /* the table keeps it alive */
        lua_pop(L, 1);
    }
    char err[320];
    struct inbox_wait *p = calloc(1, sizeof *p);
    if (p) {
        p->job = job;
        p->add = store_redis_inbox_add(job->w->redis, channel, request, texts, lens, n, job,
                                       inbox_added, p, err, sizeof err);
    } else {
        snprintf(err, sizeof err, "out of memory");
    }
    if (!p || !p->add) {
        free(p);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    job->w->store_backend.park(&job->task, inbox_cancel, p);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, (lua_KContext)p, after_inbox_add);
}

/* host.inbox_done(id): the entry was processed: it is acknowledged and deleted  [-0,+0,e] */
static int l_host_inbox_done(lua_State *L)
{
    struct job *job = running_job(L);
    store_redis_inbox_done(job->w->redis, luaL_checkstring(L, 1));
    return 0;
}

/* host.inbox_release(id): the entry was not processed: a claim runs it later  [-0,+0,e] */
static int l_host_inbox_release(lua_State *L)
{
    struct job *job = running_job(L);
    store_redis_inbox_release(job->w->redis, luaL_checkstring(L, 1));
    return 0;
}

/* host.inbox_take(id, request_id) -> boolean: this job runs the claimed entry; its log lines
 * carry the entry's request id from now on  [-0,+1,e] */
static int l_host_inbox_take(lua_State *L)
{
    struct job *job = running_job(L);
    const char *id = luaL_checkstring(L, 1);
    const char *request = luaL_optstring(L, 2, "");
    if (request[0])
        snprintf(job->id, sizeof job->id, "%s", request);
    lua_pushboolean(L, store_redis_inbox_take(job->w->redis, id, job) == 0);
    return 1;
}

void host_api_push(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"message_begin", l_host_message_begin},
        {"message_end", l_host_message_end},
        {"stream_start", l_host_stream_start},
        {"stream_write", l_host_stream_write},
        {"answer", l_host_answer},
        {"bot_failure", l_host_bot_failure},
        {"record_calls", l_host_record_calls},
        {"inbox_enabled", l_host_inbox_enabled},
        {"inbox_add", l_host_inbox_add},
        {"inbox_done", l_host_inbox_done},
        {"inbox_release", l_host_inbox_release},
        {"inbox_take", l_host_inbox_take},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
}
