/* SPDX-License-Identifier: MIT */
/* host_api: the `host` table pipeline.lua receives in pipeline.setup (see engine_internal.h).
 * These are the only calls from the pipeline into the engine: a message's turn and deadline,
 * streaming, answering before processing ends, counting a bot failure, and the recording of a
 * request. Each but bot_failure belongs to the request's own coroutine. */
#include "engine_internal.h"

#include "lua_state.h"
#include "metrics.h"

#include <lauxlib.h>

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
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
}
