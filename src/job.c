/* SPDX-License-Identifier: MIT */
/* job: one request that runs a script (see engine_internal.h). A job is a coroutine running
 * pipeline.run in its worker's current Lua state. Whatever it waits for (its sender's turn,
 * sb.sleep, an outbound request) parks the coroutine; each kind of wait knows how to cancel
 * itself, which the message's deadline and the end of the job use. */
#include "engine_internal.h"

#include "json_writer.h"
#include "list.h"
#include "log.h"
#include "lua_request.h"
#include "lua_sb.h"
#include "lua_state.h"
#include "metrics.h"
#include "outbound.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JOB_OF(ptr, member) ((struct job *)((char *)(ptr) - offsetof(struct job, member)))

struct job *job_of(lua_State *L)
{
    struct lua_task *t = lua_task_of(L);
    return t && t->co == L ? (struct job *)t : NULL;
}

/* ---- the kinds of wait ---------------------------------------------------------------------- */

static int cancel_sleep(struct job *job)
{
    timer_stop(&job->w->timers, &job->sleep_timer);
    return 1;
}

static int cancel_http(struct job *job)
{
    outbound_cancel(job->w->outbound, job->call);
    job->call = NULL;
    return 1;
}

static void drop_seq_call(struct job *job)
{
    store_redis_detach(job->seq_call);
    job->seq_call = NULL;
}

static int cancel_turn(struct job *job)
{
    drop_seq_call(job);
    if (!sender_gate_cancel(job->gate_sender, &job->gate))
        return 0; /* handed the turn meanwhile: the inbox resumes it into the cancellation */
    free(job->gate_sender);
    job->gate_sender = NULL;
    return 1;
}

static int cancel_soon(struct job *job)
{
    LIST_UNLINK(job->w->soon, job, soon_prev, soon_next);
    return 1;
}

/* A pop waiting for a push: when a push handed the value over meanwhile, the inbox resumes the
 * job; a job resumed into a cancellation puts the value back (resume_with_store_value). */
static int cancel_store_pop(struct job *job)
{
    timer_stop(&job->w->timers, &job->store_timer);
    return store_cancel_wait(job->w->engine->store, &job->store_waiter);
}

static const struct job_wait wait_sleep = {"sb.sleep", cancel_sleep};
static const struct job_wait wait_http = {"an outbound request", cancel_http};
static const struct job_wait wait_turn = {"the sender's turn", cancel_turn};
static const struct job_wait wait_soon = {"the store's answer", cancel_soon};
static const struct job_wait wait_store_pop = {"sb.store.pop", cancel_store_pop};
static int cancel_order(struct job *job);
static const struct job_wait wait_order = {"the sender's turn across hosts", cancel_order};
static const struct job_wait wait_number = {"the sender's turn across hosts", cancel_order};

/* ---- the sender's turn ---------------------------------------------------------------------- */

/* ---- the order across hosts (store.order, docs/multi-host.md) -------------------------------
 * Only the message holding its sender's gate on this host asks Redis for the sender's turn, so
 * a host has one place in a sender's queue in Redis at most; the messages waiting behind it on
 * this host take an arrival number each, and a release queues the host again at once with the
 * number of its next one.
 * When that next message's number has not come back yet, a release could only leave the queue,
 * and a message of another host that took a later number could go first. So the holder keeps
 * the turn in Redis and hands it over unchecked (SENDER_GATE_TURN_UNCHECKED); the next message
 * waits for its number (wait_number) and then asks with it, keeping the turn only when no host
 * waits with a lower number (STORE_TURN_RECHECK). Its deadline or a lost connection end that
 * wait as they end the wait for the turn. A message that leaves while still waiting for the turn
 * (its deadline) keeps the host's place in the queue the same way (SENDER_GATE_PLACE): the next
 * message's JOIN then moves it to its own number, or rechecks the turn when the place came to
 * the top meanwhile. */

static int order_on(const struct job *job) { return store_redis_order(job->w->redis); }

/* A release reached Redis: the next message of this host, if any, gets the gate, and with it the
 * turn when the host kept it. */
static void turn_released(const char *sender, int held)
{
    sender_gate_leave_handing(sender, held);
}

/* Redis cannot be asked: the message goes in its turn on this host only (logged at most every
 * 10 s per worker, counted always). */
static void order_fallback(struct job *job, const char *error)
{
    struct worker *w = job->w;
    metrics_order(ORDER_FALLBACK);
    uint64_t now = timers_now_ms();
    if (w->order_logged_ms && now - w->order_logged_ms < 10000) {
        w->order_unlogged++;
        return;
    }
    log_msg(LOG_ERROR, job->id, "sb.store: the order of a sender's messages across hosts is not "
                                "kept for this message (%s): it goes in its turn on this host "
                                "only%s",
            error ? error : "Redis is unreachable",
            w->order_unlogged ? "; so did earlier messages since the last such line" : "");
    w->order_logged_ms = now;
    w->order_unlogged = 0;
}

/* The turn in Redis came (held), or cannot come: the waiting job goes on at the next turn of the
 * loop either way. A turn lost while held (the connection went) only leaves the job without it. */
static void turn_ready(void *ctx, int held, const char *error)
{
    struct job *job = ctx;
    if (!held) {
        job->turn = NULL;
        if (job->wait != &wait_order)
            return;
        order_fallback(job, error);
    }
    if (job->wait == &wait_order) {
        LIST_PUSH(job->w->soon, job, soon_prev, soon_next);
        job->wait = &wait_soon;
    }
}

/* Own, without asking Redis, what this host's previous message handed over: the turn (renewed
 * while held) or the host's place in the queue; leave_gate passes it on. */
static void own_handed(struct job *job, int handed)
{
    char err[320];
    drop_seq_call(job);
    job->turn =
        store_redis_turn_take(job->w->redis, job->gate_sender, 0,
                              handed == SENDER_GATE_PLACE ? STORE_TURN_PLACE : STORE_TURN_HANDED,
                              turn_ready, job, err, sizeof err);
    if (!job->turn)
        order_fallback(job, err);
}

/* The job holds the gate on this host: ask for the turn in Redis (handed: what this host's
 * previous message passed on, a SENDER_GATE_*). Returns 1 when the job must wait for it. */
static int take_turn(struct job *job, int handed)
{
    char err[320];
    if (handed == SENDER_GATE_TURN) { /* the host holds it for this message: keep it */
        own_handed(job, handed);
        return 0;
    }
    if (job->seq_call) { /* its number is on its way: a new one would come after later ones */
        job->wait = &wait_number;
        return 1;
    }
    int recheck = handed == SENDER_GATE_TURN_UNCHECKED || handed == SENDER_GATE_PLACE;
    job->turn = store_redis_turn_take(job->w->redis, job->gate_sender, job->seq,
                                      recheck ? STORE_TURN_RECHECK : STORE_TURN_JOIN, turn_ready,
                                      job, err, sizeof err);
    if (!job->turn) {
        order_fallback(job, err);
        return 0;
    }
    job->wait = &wait_order;
    return 1;
}

/* The arrival number of a message waiting on this host. A message that holds the gate already
 * and waits for it asks for the turn now (with no number when it failed: the turn takes one, or
 * the message goes on without Redis). */
static void number_came(void *ctx, const struct store_reply *reply)
{
    struct job *job = ctx;
    job->seq_call = NULL;
    if (reply->kind == STORE_REPLY_INT && reply->integer > 0 && job->gate_sender) {
        job->seq = (unsigned long long)reply->integer;
        sender_gate_set_seq(job->gate_sender, &job->gate, job->seq);
    }
    if (job->wait == &wait_number && !take_turn(job, job->gate.handed)) {
        LIST_PUSH(job->w->soon, job, soon_prev, soon_next);
        job->wait = &wait_soon;
    }
}

/* Leave the gate. With a turn in Redis (held or awaited) the turn is released first, and the
 * gate is left when Redis answered; what the host was handed for this job (handed) is released
 * too. When the next message's number is still on its way, what the host has in Redis is kept
 * for it instead (see above). The first waiter's number is read in the same step as that check:
 * a waiter cancelled in between would leave the queue to one without a number. */
static void leave_gate(struct job *job, int handed)
{
    struct store_redis_turn *t = job->turn;
    job->turn = NULL;
    if (!t && (!handed || !order_on(job))) {
        sender_gate_leave(job->gate_sender);
        return;
    }
    int place = t ? !store_redis_turn_held(t) : handed == SENDER_GATE_PLACE;
    unsigned long long next_seq;
    if (sender_gate_leave_to_unnumbered(
            job->gate_sender, place ? SENDER_GATE_PLACE : SENDER_GATE_TURN_UNCHECKED, &next_seq)) {
        if (t)
            store_redis_turn_keep(t);
        return;
    }
    if (!t) {
        char err[320];
        t = store_redis_turn_take(job->w->redis, job->gate_sender, 0,
                                  place ? STORE_TURN_PLACE : STORE_TURN_HANDED, NULL, NULL, err,
                                  sizeof err);
    }
    if (t)
        store_redis_turn_release(t, next_seq, turn_released);
    else
        sender_gate_leave(job->gate_sender);
}

/* The deadline (or the job's end) while the turn in Redis, or the number to ask it with, is
 * awaited: what the host holds or awaits is given back or passed on, and the gate goes with it. */
static int cancel_order(struct job *job)
{
    drop_seq_call(job);
    leave_gate(job, job->wait == &wait_number ? job->gate.handed : SENDER_GATE_NOTHING);
    job->gate_held = 0;
    free(job->gate_sender);
    job->gate_sender = NULL;
    return 1;
}

/* Leave the gate, or the queue for it; a turn handed over meanwhile is passed on. */
static void release_gate(struct job *job)
{
    drop_seq_call(job);
    if (job->gate_held)
        leave_gate(job, 0);
    else if (job->wait == &wait_turn && !sender_gate_cancel(job->gate_sender, &job->gate))
        leave_gate(job, job->gate.handed);
    job->gate_held = 0;
    free(job->gate_sender);
    job->gate_sender = NULL;
}

/* sender_gate wake: may run on any thread, so the job goes through its worker's inbox. */
static void job_gate_wake(struct gate_waiter *g)
{
    struct job *job = JOB_OF(g, gate);
    /* Stopping: the job is freed by its own worker, which passes the turn on. */
    if (!atomic_load(&job->w->stopping))
        worker_post(job->w, job);
}

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* The message left the bot: message_end (observed), or its job ended first (seconds < 0). */
static void message_done(struct job *job, int observe)
{
    if (!job->in_message)
        return;
    job->in_message = 0;
    metrics_message_end(observe ? (double)(now_us() - job->message_started_us) / 1e6 : -1);
}

int job_message_begin(struct job *job, const char *sender)
{
    double timeout = job->w->engine->opt.response_timeout;
    message_done(job, 0); /* a message_begin without its end: the gauge stays right */
    job->in_message = 1;
    job->message_started_us = now_us();
    metrics_message_begin();
    job->task.cancelled = NULL;
    timer_start(&job->w->timers, &job->deadline,
                timers_now_ms() + (uint64_t)(timeout * 1000.0 + 0.5));
    job->gate_sender = strdup(sender);
    if (!job->gate_sender)
        return -1;
    job->seq = 0;
    if (sender_gate_enter(sender, &job->gate)) {
        job->gate_held = 1;
        return order_on(job) ? take_turn(job, 0) : 0;
    }
    job->wait = &wait_turn;
    if (order_on(job)) { /* its place in the arrival order across hosts */
        char err[320];
        job->seq_call = store_redis_turn_number(job->w->redis, number_came, job, err, sizeof err);
    }
    return 1;
}

void job_message_end(struct job *job)
{
    message_done(job, 1);
    timer_stop(&job->w->timers, &job->deadline);
    job->task.cancelled = NULL;
    if (job->gate_sender)
        release_gate(job);
}

/* ---- answering ------------------------------------------------------------------------------ */

#define MAX_ANSWER_HEADERS 32

/* The text of a string or number at idx without asking Lua to convert (a conversion allocates,
 * and this runs outside any protected call): strings as they are, numbers into `buf`. */
static const char *plain_text(lua_State *L, int idx, size_t *len, char *buf, size_t size)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return lua_tolstring(L, idx, len);
    if (lua_type(L, idx) != LUA_TNUMBER)
        return NULL;
    if (lua_isinteger(L, idx))
        snprintf(buf, size, "%lld", (long long)lua_tointeger(L, idx));
    else
        snprintf(buf, size, "%.14g", (double)lua_tonumber(L, idx));
    *len = strlen(buf);
    return buf;
}

const char *job_answer_problem(lua_State *L, int base, int count)
{
    if (count < 3 || count > 4)
        return "status, content type, body and headers expected";
    lua_Integer status = lua_isinteger(L, base) ? lua_tointeger(L, base) : 0;
    if (status < 100 || status > 599)
        return "the status must be an integer from 100 to 599";
    if (!lua_isnil(L, base + 1) && lua_type(L, base + 1) != LUA_TSTRING)
        return "the content type must be a string or nil";
    if (!lua_isnil(L, base + 2) && lua_type(L, base + 2) != LUA_TSTRING)
        return "the body must be a string or nil";
    if (count == 4 && !lua_isnil(L, base + 3) && !lua_istable(L, base + 3))
        return "the headers must be a table or nil";
    return NULL;
}

void job_answer(struct job *job, lua_State *L, int base)
{
    struct http_header headers[MAX_ANSWER_HEADERS];
    char numbers[MAX_ANSWER_HEADERS][32];
    size_t count = 0, len;
    struct http_response resp = {0};
    resp.status = (int)lua_tointeger(L, base);
    resp.content_type = lua_type(L, base + 1) == LUA_TSTRING ? lua_tostring(L, base + 1) : NULL;
    resp.body = lua_type(L, base + 2) == LUA_TSTRING ? lua_tolstring(L, base + 2, &resp.body_len)
                                                     : NULL;
    if (lua_istable(L, base + 3) && lua_checkstack(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, base + 3)) {
            const char *value = plain_text(L, -1, &len, numbers[count], sizeof numbers[count]);
            if (lua_type(L, -2) == LUA_TSTRING && value && count < MAX_ANSWER_HEADERS) {
                headers[count].name = lua_tostring(L, -2);
                headers[count].value = value; /* the table keeps a string value alive */
                count++;
            }
            lua_pop(L, 1);
        }
    }
    resp.headers = headers;
    resp.header_count = count;
    http_respond(job->x, &resp);
    job->x = NULL;
    /* The exchange may be freed from now on: so is everything req borrowed from it. */
    lua_request_invalidate(job->req);
}

/* on_open accepted the connection: 101, and the socket becomes the connection's. */
static void open_connection(struct job *job)
{
    const char *key = http_header_value(job->x, "Sec-WebSocket-Key");
    if (connection_accept(job->conn, job->x, key) != 0) {
        http_respond_error(job->x, 400, "bad_request",
                           "Sec-WebSocket-Key must be the base64 of 16 bytes");
    } else {
        job->upgraded = 1;
    }
    job->x = NULL;
    lua_request_invalidate(job->req);
}

/* ---- running -------------------------------------------------------------------------------- */

void job_free(struct job *job)
{
    struct worker *w = job->w;
    struct script_state *st = job->st;
    lua_State *L = st->L;
    message_done(job, 0);
    timer_stop(&w->timers, &job->deadline);
    timer_stop(&w->timers, &job->store_timer);
    if (job->wait && job->wait != &wait_turn)
        job->wait->cancel(job);
    if (job->gate_sender)
        release_gate(job);
    if (w->redis) /* inbox entries it did not finish are left to a claim */
        store_redis_inbox_owner_ended(w->redis, job);
    lua_request_invalidate(job->req);
    luaL_unref(L, LUA_REGISTRYINDEX, job->req_ref);
    if (job->task.record_ref > 0)
        luaL_unref(L, LUA_REGISTRYINDEX, job->task.record_ref);
    if (job->co) {
        lua_task_bind(job->co, NULL);
        /* A coroutine that ended normally is kept for the next job: creating one per request was
         * a measurable share of the rest echo benchmark. One that returned only needs its stack
         * emptied; resetting it would also shrink its stack to the minimum, which the next
         * request grows again in steps. One that failed or was left waiting is reset. */
        lua_Debug frame;
        int returned = lua_status(job->co) == LUA_OK && !lua_getstack(job->co, 0, &frame);
        if (returned)
            lua_settop(job->co, 0);
        if ((returned || lua_resetthread(job->co) == LUA_OK) &&
            st->idle_count < sizeof st->idle / sizeof st->idle[0])
            st->idle[st->idle_count++] = (struct idle_coroutine){job->co, job->co_ref};
        else
            luaL_unref(L, LUA_REGISTRYINDEX, job->co_ref);
    }
    LIST_UNLINK(w->jobs, job, prev, next);
    struct connection *conn = job->conn;
    buffer_free(&job->store_value);
    free(job->store_key);
    free(job);
    if (conn)
        connection_job_done(conn);
    /* Buffers Lua's string functions allocate are not covered by its emergency collection: when
     * the state grew by a quarter of its cap since the last full collection, collect now so the
     * next request has room (memory a script keeps on purpose does not trigger it again). */
    size_t limit = w->engine->opt.limits.memory_limit;
    if (limit && lua_state_memory(L) > st->memory_after_gc + limit / 4) {
        lua_gc(L, LUA_GCCOLLECT);
        st->memory_after_gc = lua_state_memory(L);
    }
    worker_state_released(w, st);
}

/* Resume the coroutine with the nargs values on top of its stack. It runs until it waits again
 * or ends; an end answers the request (pipeline.run's results) and frees the job. */
static void job_resume(struct job *job, int nargs)
{
    lua_State *co = job->co;
    int nres = 0;
    job->wait = NULL;
    log_set_channel(job->channel); /* the job's log lines name its channel */
    lua_state_budget_begin(co);
    int rc = lua_resume(co, job->st->L, nargs, &nres);
    lua_state_budget_end(co);
    if (rc == LUA_YIELD) {
        lua_pop(co, nres);
        if (job->wait) {
            log_set_channel(NULL);
            return; /* parked: its wait resumes it */
        }
        log_msg(LOG_ERROR, job->id, "a script called coroutine.yield outside a coroutine of "
                                       "its own; the request is abandoned");
    } else if (rc == LUA_OK && job->x && !job->streaming) {
        int base = lua_gettop(co) - nres + 1;
        const char *problem = job_answer_problem(co, base, nres);
        if (problem)
            log_msg(LOG_ERROR, job->id, "pipeline.run returned no valid answer: %s", problem);
        else if (job->opening && lua_tointeger(co, base) == 101)
            open_connection(job);
        else
            job_answer(job, co, base);
    } else if (rc != LUA_OK) {
        /* Only a string is read: converting another value would allocate, unprotected. */
        log_msg(LOG_ERROR, job->id, "the pipeline failed: %s",
                lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1)
                : rc == LUA_ERRMEM             ? "not enough memory"
                                               : "(an error that is not a message)");
    }
    if (job->x) {
        if (job->streaming)
            http_stream_finish(job->x);
        else
            http_respond_error(job->x, 500, "internal_error",
                               "the request could not be processed; see the log");
        job->x = NULL;
    }
    if (job->opening && !job->upgraded)
        connection_discard(job->conn); /* refused, or on_open failed: it never opens */
    job_free(job);
    log_set_channel(NULL);
}

static void resume_with_store_value(struct job *job);
static void store_pop_timed_out(struct timer *t);

void job_resume_from_inbox(struct job *job)
{
    if (job->woken_by_store) {
        job->woken_by_store = 0;
        resume_with_store_value(job);
        return;
    }
    job->gate_held = 1;
    /* Resumed into a cancellation, it asks Redis for nothing, but a turn or place it was handed
     * is passed on when it leaves. */
    int handed = job->gate.handed;
    if (order_on(job) && job->task.cancelled && handed)
        own_handed(job, handed);
    else if (order_on(job) && !job->task.cancelled && take_turn(job, handed))
        return;
    job_resume(job, 0);
}

/* ---- pushing into a Lua state from the loop -------------------------------------------------
 * Every push can allocate, and an allocation refused by the memory cap raises. Outside a
 * protected call that would abort the process, so the loop pushes only through
 * lua_state_push_protected: the values are built on the state's main thread (idle between
 * events) inside lua_pcall, then moved. A failure leaves the error value on the main thread's
 * stack. */

/* [-0,+n,m] */
static int l_push_http_result(lua_State *L)
{
    const struct outbound_result *result = lua_touserdata(L, 1);
    lua_settop(L, 0);
    return sb_push_http_result(L, result);
}

/* ---- what the waits resume with ------------------------------------------------------------- */

static void sleep_fired(struct timer *t)
{
    job_resume(JOB_OF(t, sleep_timer), 0);
}

/* No sleep outlasts the response timeout: inside a message its deadline (armed for the response
 * timeout) fires first and cancels the sleep; outside one (a hook) the sleep ends after the
 * response timeout. This also keeps a huge number from overflowing the due time. */
static void task_sleep(struct lua_task *t, double seconds)
{
    struct job *job = (struct job *)t;
    double longest = job->w->engine->opt.response_timeout;
    if (job->deadline.slot != TIMER_IDLE)
        longest += 1;
    if (!(seconds <= longest))
        seconds = longest;
    uint64_t due = timers_now_ms() + (uint64_t)(seconds * 1000.0 + 0.5);
    if (timer_start(&job->w->timers, &job->sleep_timer, due) == 0)
        job->wait = &wait_sleep;
}

static void http_done(void *ctx, const struct outbound_result *result)
{
    struct job *job = ctx;
    lua_State *L = job->st->L;
    job->call = NULL;
    if (lua_state_push_protected(L, l_push_http_result, (void *)result) != LUA_OK) {
        /* The answer does not fit in the state: the script gets nil and the error (the memory
         * error's message is preallocated, so nothing here allocates). */
        log_msg(LOG_ERROR, job->id, "the answer to an outbound HTTP request (%zu bytes) does not "
                                    "fit in the script's Lua state: %s",
                result->ok ? result->body_len : (size_t)0,
                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error");
        lua_pushnil(L);
        lua_insert(L, -2);
        lua_settop(L, 2);
    }
    int n = lua_gettop(L);
    if (!lua_checkstack(job->co, n + LUA_MINSTACK)) {
        lua_settop(L, 0);
        n = 0;
    }
    lua_xmove(L, job->co, n);
    job_resume(job, n);
}

static int task_http(struct lua_task *t, const struct outbound_request *req, char *err,
                     size_t errlen)
{
    struct job *job = (struct job *)t;
    job->call = outbound_start(job->w->outbound, req, http_done, job, err, errlen);
    if (!job->call)
        return -1;
    job->wait = &wait_http;
    return 0;
}

/* The message ran out of time: stop what it waits for and resume it into the cancellation,
 * which the pipeline catches, logs and answers with what was collected. */
static void deadline_fired(struct timer *t)
{
    struct job *job = JOB_OF(t, deadline);
    snprintf(job->deadline_text, sizeof job->deadline_text,
             "the message took longer than the response timeout (%g s)",
             job->w->engine->opt.response_timeout);
    job->task.cancelled = job->deadline_text;
    if (job->wait && job->wait->cancel(job))
        job_resume(job, 0);
}

/* ---- connections: what conn and sb.connections ask ------------------------------------------ */

static int task_conn_send(struct lua_task *t, const char *id, int binary, const char *data,
                          size_t len)
{
    return connection_send(((struct job *)t)->w, id, binary, data, len);
}

static int task_conn_close(struct lua_task *t, const char *id, int code, const char *reason)
{
    return connection_close(((struct job *)t)->w, id, (uint16_t)code, reason);
}

static int task_conn_bind(struct lua_task *t, const char *id, const char *sender)
{
    return connection_bind(((struct job *)t)->w, id, sender);
}

static int task_conn_keepalive(struct lua_task *t, const char *id, double seconds,
                               const char *text, size_t len)
{
    return connection_keepalive(((struct job *)t)->w, id, seconds, text, len);
}

static int task_send_to_sender(struct lua_task *t, const char *sender, int binary,
                               const char *data, size_t len)
{
    return connections_send_to_sender(((struct job *)t)->w, sender, binary, data, len);
}

/* ---- sb.store ----------------------------------------------------------------------------- */

static struct store *task_store(struct lua_task *t)
{
    return ((struct job *)t)->w->engine->store;
}

static void task_next_turn(struct lua_task *t)
{
    struct job *job = (struct job *)t;
    LIST_PUSH(job->w->soon, job, soon_prev, soon_next);
    job->wait = &wait_soon;
}

void jobs_run_soon(struct worker *w)
{
    /* Jobs parked during this pass wait for the next one. */
    struct job *batch = w->soon;
    w->soon = NULL;
    while (batch) {
        struct job *job = batch;
        batch = job->soon_next;
        if (batch)
            batch->soon_prev = NULL;
        job->soon_prev = job->soon_next = NULL;
        job_resume(job, 0);
    }
}

/* A push handed this waiting pop its value: on the pushing thread (maybe another worker), the
 * job parked. Keep the value and let the job's own worker resume it. */
static void store_woken(struct store_waiter *sw, const char *value, size_t len)
{
    struct job *job = (struct job *)((char *)sw - offsetof(struct job, store_waiter));
    job->store_value.len = 0;
    if (buffer_append(&job->store_value, value, len) != 0)
        job->store_value.len = (size_t)-1; /* out of memory: the pop answers nil */
    job->woken_by_store = 1;
    if (!atomic_load(&job->w->stopping))
        worker_post(job->w, job);
}

/* The pushed value into the coroutine, as a string.  [-0,+1,m] */
static int l_push_store_value(lua_State *L)
{
    struct job *job = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_pushlstring(L, job->store_value.data, job->store_value.len);
    return 1;
}

static void resume_with_store_value(struct job *job)
{
    timer_stop(&job->w->timers, &job->store_timer);
    lua_State *L = job->st->L;
    if (job->task.cancelled) {
        /* The job is going (its deadline): the value goes back to the list, not lost. */
        if (job->store_value.len != (size_t)-1)
            store_push(job->w->engine->store, job->store_key, job->store_value.data,
                       job->store_value.len, timers_now_ms());
        job_resume(job, 0);
        return;
    }
    if (job->store_value.len == (size_t)-1 ||
        lua_state_push_protected(L, l_push_store_value, job) != LUA_OK) {
        lua_settop(L, 0);
        log_msg(LOG_ERROR, job->id, "a value sb.store.pop received does not fit in the script's "
                                    "Lua state: it is back at the end of the list");
        store_push(job->w->engine->store, job->store_key, job->store_value.data,
                   job->store_value.len, timers_now_ms());
        job_resume(job, 0);
        return;
    }
    lua_xmove(L, job->co, 1);
    job_resume(job, 1);
}

static void store_pop_timed_out(struct timer *t)
{
    struct job *job = JOB_OF(t, store_timer);
    if (store_cancel_wait(job->w->engine->store, &job->store_waiter) == 1)
        job_resume(job, 0); /* nothing came: nil */
    /* else a push handed a value meanwhile: the inbox resumes the job with it */
}

static int task_store_wait(struct lua_task *t, const char *key, double seconds, char *err,
                           size_t errlen)
{
    struct job *job = (struct job *)t;
    free(job->store_key);
    job->store_key = strdup(key);
    if (!job->store_key) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    job->store_waiter.wake = store_woken;
    job->store_value.len = 0;
    /* The waiter is ready before the pop: a push may hand it a value at once, on any thread. */
    job->wait = &wait_store_pop;
    struct buffer now = {0};
    int rc = store_pop(job->w->engine->store, key, timers_now_ms(), &now, &job->store_waiter);
    if (rc == 1) {
        /* A value came between the first look and the wait: answer with it next turn. */
        buffer_free(&job->store_value);
        job->store_value = now;
        job->woken_by_store = 1;
        worker_post(job->w, job);
        return 0;
    }
    buffer_free(&now);
    if (rc < 0) {
        job->wait = NULL;
        snprintf(err, errlen, "the key holds another type of value");
        return -1;
    }
    /* Bounded like sb.sleep: inside a message its deadline ends the wait first; outside one
     * (a route: a long poll) the wait is at most the response timeout. */
    double longest = job->w->engine->opt.response_timeout;
    if (job->deadline.slot != TIMER_IDLE)
        longest += 1;
    if (atomic_load(&job->w->draining))
        longest = 0; /* stopping: a long poll that comes now answers at once */
    if (!(seconds <= longest))
        seconds = longest;
    uint64_t due = timers_now_ms() + (uint64_t)(seconds * 1000.0 + 0.5);
    timer_start(&job->w->timers, &job->store_timer, due);
    return 0;
}

void jobs_end_pops(struct worker *w)
{
    struct job *job = w->jobs;
    while (job) {
        struct job *next = job->next;
        if (job->wait == &wait_store_pop && cancel_store_pop(job) == 1)
            job_resume(job, 0); /* nil: a long poll answers now */
        job = next;
    }
}

static const struct lua_task_ops task_ops = {
    .sleep = task_sleep,
    .http = task_http,
    .conn_send = task_conn_send,
    .conn_close = task_conn_close,
    .conn_bind = task_conn_bind,
    .conn_keepalive = task_conn_keepalive,
    .send_to_sender = task_send_to_sender,
    .store = task_store,
    .next_turn = task_next_turn,
    .store_wait = task_store_wait,
};

/* ---- starting ------------------------------------------------------------------------------- */

struct job_prepare {
    struct job *job;
    const struct route_match *m;
};

/* What pipeline.run gets, built on the state's main thread: the job's coroutine (a new one
 * unless one was reused), then run, kind, channel, req and, for a declared route, the key it was
 * declared with (the router matched it; Lua looks the handler up by it; its {name} segments
 * become req.params); for the proactive messages route, kind "push" and the sender id, decoded.
 * [-0,+5,m] */
static int l_job_prepare(lua_State *L)
{
    struct job_prepare *p = lua_touserdata(L, 1);
    struct job *job = p->job;
    const struct route_match *m = p->m;
    struct script_state *st = job->st;
    lua_settop(L, 0);
    if (!job->co) {
        lua_State *co = lua_newthread(L);
        job->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        job->co = co;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->run_ref);
    lua_pushstring(L, job->opening                 ? "websocket"
                      : m->kind == ROUTE_WEBHOOK   ? "webhook"
                      : m->kind == ROUTE_PROACTIVE ? "push"
                                                   : "route");
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->channel_refs[m->channel]);
    struct lua_request *req = lua_request_push(L, job->x, job->r);
    lua_pushvalue(L, -1);
    job->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    job->req = req;
    if (m->kind == ROUTE_CUSTOM && m->param_count) /* the route's {name} segments */
        lua_request_set_params(L, -1, m);
    if (m->kind == ROUTE_PROACTIVE) { /* the sender, decoded */
        luaL_Buffer b;
        char *out = luaL_buffinitsize(L, &b, m->params[0].value_len);
        luaL_pushresultsize(&b, route_decode(m->params[0].value, m->params[0].value_len, out));
    } else if (m->route) {
        lua_pushstring(L, m->route->spec);
    } else {
        lua_pushnil(L);
    }
    if (!job->opening)
        return 5;
    lua_sb_push_connection(L, connection_id(job->conn));
    return 6;
}

/* A new job on the worker's current scripts, with its timers and task set; not yet on the
 * worker's list. NULL when out of memory. */
static struct job *job_new(struct worker *w, const char *id)
{
    struct job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->w = w;
    job->st = w->lua;
    job->st->jobs++;
    job->co_ref = job->req_ref = LUA_NOREF;
    job->sleep_timer = TIMER_INIT(sleep_fired);
    job->deadline = TIMER_INIT(deadline_fired);
    job->store_timer = TIMER_INIT(store_pop_timed_out);
    job->gate.wake = job_gate_wake;
    memcpy(job->id, id, strnlen(id, sizeof job->id - 1)); /* calloc put the '\0' */
    job->task.request_id = job->id;
    job->task.ops = &task_ops;
    return job;
}

/* Put the job on the worker's list, with a finished coroutine to reuse when there is one. */
static void job_enlist(struct job *job)
{
    struct script_state *st = job->st;
    LIST_PUSH(job->w->jobs, job, prev, next);
    if (st->idle_count > 0) {
        st->idle_count--;
        job->co = st->idle[st->idle_count].co;
        job->co_ref = st->idle[st->idle_count].ref;
    }
}

/* A request to a channel's WebSocket route that is not a handshake gets the error and the
 * headers RFC 6455 asks for. Returns 1 when it was answered. */
static int refuse_handshake(struct worker *w, struct http_exchange *x, const struct http_request *r)
{
    int status;
    const char *problem = connection_handshake_problem(w, x, r, &status);
    if (!problem)
        return 0;
    char body[512];
    json_error_body(body, sizeof body, status == 403 ? "forbidden" : "websocket_required",
                    problem);
    struct http_header headers[] = {{"Upgrade", "websocket"}, {"Sec-WebSocket-Version", "13"}};
    struct http_response resp = {.status = status, .content_type = "application/json",
                                 .body = body, .body_len = strlen(body), .headers = headers,
                                 .header_count = status == 426 ? 2 : 0};
    log_msg(LOG_INFO, r->id, "%s %s: %d %s", r->method, r->path, status, problem);
    http_respond(x, &resp);
    return 1;
}

/* A GET with Upgrade: websocket to a path that has both a plain GET route and the channel's
 * WebSocket route (Engine.IO serves polling and WebSocket on one path) goes to the latter. */
static const struct route_match *prefer_websocket(struct worker *w, struct http_exchange *x,
                                                  const struct route_match *m,
                                                  struct route_match *copy)
{
    if (m->kind != ROUTE_CUSTOM || !m->route ||
        strcmp(m->route->spec, CHANNEL_WEBSOCKET_ROUTE) == 0 ||
        strcmp(m->route->method, "GET") != 0 || !http_header_value(x, "Upgrade"))
        return m;
    const struct route_table *t = &w->lua->gen->routes;
    if (m->channel < 0 || (size_t)m->channel >= t->count)
        return m;
    const struct route_channel *c = &t->channels[m->channel];
    for (size_t i = 0; i < c->count; i++) {
        if (strcmp(c->routes[i].spec, CHANNEL_WEBSOCKET_ROUTE) == 0 &&
            strcmp(c->routes[i].path, m->route->path) == 0) {
            *copy = *m;
            copy->route = &c->routes[i];
            return copy;
        }
    }
    return m;
}

void job_start(struct worker *w, struct http_exchange *x, const struct http_request *r,
               const struct route_match *m)
{
    struct route_match preferred;
    m = prefer_websocket(w, x, m, &preferred);
    int websocket = m->kind == ROUTE_CUSTOM && m->route &&
                    strcmp(m->route->spec, CHANNEL_WEBSOCKET_ROUTE) == 0;
    if (websocket && refuse_handshake(w, x, r))
        return;
    struct job *job = job_new(w, r->id);
    if (!job) {
        http_respond_error(x, 503, "overloaded", "out of memory");
        return;
    }
    struct script_state *st = job->st;
    lua_State *L = st->L;
    job->x = x;
    job->r = r;
    if (m->channel >= 0 && (size_t)m->channel < st->gen->routes.count)
        job->channel = st->gen->routes.channels[m->channel].name;
    if (websocket) {
        job->conn = connection_new(w, job->channel, r->remote_addr);
        if (!job->conn) {
            free(job);
            st->jobs--;
            http_respond_error(x, 503, "overloaded", "out of memory");
            return;
        }
        job->opening = 1;
        connection_job_started(job->conn, job); /* its events wait for on_open */
    }
    job_enlist(job);

    struct job_prepare prepare = {job, m};
    if (lua_state_push_protected(L, l_job_prepare, &prepare) != LUA_OK) {
        log_msg(LOG_ERROR, job->id, "%s %s: no memory left in the channel's Lua state for a new "
                                    "request (server.lua_memory_limit): %s",
                r->method, r->path, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
        lua_settop(L, 0);
        http_respond_error(x, 503, "overloaded",
                           "the channel's Lua state has no memory left for this request; "
                           "try again later");
        job->x = NULL;
        if (job->conn)
            connection_discard(job->conn);
        job_free(job);
        return;
    }
    job->task.co = job->co;
    lua_task_bind(job->co, &job->task);
    int values = job->opening ? 6 : 5;
    lua_xmove(L, job->co, values); /* a new or reset coroutine has room for them */
    job_resume(job, values - 1);
}

struct call_prepare {
    struct job *job;
    lua_CFunction push;
    void *ctx;
    int nargs;
};

/* The coroutine (a new one unless one was reused), then what push pushes.  [-0,+1+n,m] */
static int l_call_prepare(lua_State *L)
{
    struct call_prepare *p = lua_touserdata(L, 1);
    struct job *job = p->job;
    lua_settop(L, 0);
    if (!job->co) {
        lua_State *co = lua_newthread(L);
        job->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        job->co = co;
    }
    lua_pushcfunction(L, p->push);
    lua_pushlightuserdata(L, p->ctx);
    lua_call(L, 1, p->nargs + 1);
    return p->nargs + 1;
}

void job_start_call(struct worker *w, struct connection *conn, const char *channel,
                    lua_CFunction push, void *ctx, int nargs)
{
    /* Without a connection: a claimed inbox entry, whose job takes its request id later
     * (host.inbox_take). */
    struct job *job = job_new(w, conn ? connection_id(conn) : "");
    if (!job) {
        log_msg(LOG_ERROR, NULL, "%s%s: out of memory for an event", conn ? "connection " : "",
                conn ? connection_id(conn) : channel);
        return;
    }
    lua_State *L = job->st->L;
    job->channel = channel;
    job->conn = conn;
    job_enlist(job);
    struct call_prepare prepare = {job, push, ctx, nargs};
    if (lua_state_push_protected(L, l_call_prepare, &prepare) != LUA_OK) {
        log_msg(LOG_ERROR, job->id, "no memory left in the channel's Lua state for a %s "
                                    "(server.lua_memory_limit): %s",
                conn ? "connection event" : "claimed message",
                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
        lua_settop(L, 0);
        job->conn = NULL;
        job_free(job);
        return;
    }
    if (conn)
        connection_job_started(conn, job);
    job->task.co = job->co;
    lua_task_bind(job->co, &job->task);
    lua_xmove(L, job->co, nargs + 1);
    job_resume(job, nargs);
}
