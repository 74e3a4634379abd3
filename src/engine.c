/* engine: see engine.h. */
#include "engine.h"

#include "bot.h"
#include "channel.h"
#include "config.h"
#include "log.h"
#include "lua_budget.h"
#include "outbound.h"
#include "lua_request.h"
#include "lua_sb.h"
#include "router.h"
#include "scripts.h"
#include "sender_gate.h"
#include "timers.h"

#include <errno.h>
#include <stddef.h>
#include <lauxlib.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum job_wait { WAIT_NONE, WAIT_SLEEP, WAIT_GATE, WAIT_HTTP };

/* One request that runs a script: a coroutine of pipeline.run. */
struct job {
    struct lua_task task;         /* first: a coroutine's task pointer is its job */
    struct worker *w;
    struct script_state *st;      /* the scripts the job started with (reloads do not change it) */
    struct http_exchange *x;      /* NULL once answered */
    const struct http_request *r;
    lua_State *co;
    int co_ref, req_ref;          /* LUA_NOREF until set */
    struct lua_request *req;      /* the `req` object, invalidated when the request ends */
    enum job_wait wait;
    struct timer sleep_timer;     /* sb.sleep */
    struct timer deadline;        /* --response-timeout of the message being processed */
    char id[65];                  /* the request id (the request itself may be gone: async) */
    struct outbound_call *call;   /* WAIT_HTTP */
    char deadline_text[96];
    struct gate_waiter gate;
    char *gate_sender;            /* the sender whose gate the job holds or waits for */
    unsigned gate_held : 1;
    unsigned streaming : 1;
    struct job *prev, *next;      /* the worker's live jobs */
    struct job *woken_next;       /* the worker's inbox */
};

struct worker {
    struct engine *engine;
    unsigned index;
    pthread_t thread;
    int thread_started;
    int stuck;              /* did not stop by the drain deadline: left running at exit */
    struct script_state *lua;     /* the current scripts: new jobs start here */
    struct script_state *retired; /* older scripts that jobs still run on */
    struct http_server *http;
    struct outbound *outbound;
    int epfd, wake_fd;
    atomic_int stopping;
    atomic_int draining;    /* graceful stop: finish what is in flight, accept nothing new */
    atomic_int accepting_stopped;
    uint64_t drain_until_ms;

    /* Jobs handed their sender's turn by another message (possibly on another worker). */
    pthread_mutex_t inbox_lock;
    struct job *woken_head, *woken_tail;
    struct script_state *incoming;  /* a reload's scripts, adopted between jobs */

    struct timer_heap timers;
    struct job *jobs;
};

struct engine {
    struct engine_options opt;
    struct script_options scripts;
    struct script_config *config;  /* the newest (a reference); generations hold their own */
    struct generation *gen;        /* the newest generation (main thread only) */
    unsigned worker_count;
    struct worker *workers;
    time_t started;
    pthread_mutex_t reload_lock;   /* guards the two fields below (read by /status) */
    unsigned generation;
    char last_reload_error[2048];
};

#define EV_HTTP 1u
#define EV_WAKE 2u

unsigned engine_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* ---- jobs ----------------------------------------------------------------------------------- */

static struct job *job_of(lua_State *L)
{
    struct lua_task *t = lua_task_of(L);
    return t && t->co == L ? (struct job *)t : NULL;
}

static void release_gate(struct job *job)
{
    if (job->gate_held)
        sender_gate_leave(job->gate_sender);
    else if (job->wait == WAIT_GATE && !sender_gate_cancel(job->gate_sender, &job->gate))
        sender_gate_leave(job->gate_sender); /* handed over meanwhile: pass it on */
    job->gate_held = 0;
    free(job->gate_sender);
    job->gate_sender = NULL;
}

/* A retired state whose last job ended: close it. */
static void retire_done(struct worker *w, struct script_state *st)
{
    for (struct script_state **p = &w->retired; *p; p = &(*p)->next) {
        if (*p == st) {
            *p = st->next;
            break;
        }
    }
    script_state_close(st);
}

/* Make a reload's scripts current: new jobs use them, running jobs finish on theirs. */
static void adopt_scripts(struct worker *w, struct script_state *fresh)
{
    struct script_state *old = w->lua;
    w->lua = fresh;
    if (old->jobs == 0) {
        script_state_close(old);
    } else {
        old->next = w->retired;
        w->retired = old;
    }
}

static void job_free(struct job *job)
{
    struct worker *w = job->w;
    struct script_state *st = job->st;
    lua_State *L = st->L;
    timer_stop(&w->timers, &job->sleep_timer);
    timer_stop(&w->timers, &job->deadline);
    if (job->call)
        outbound_cancel(w->outbound, job->call);
    job->call = NULL;
    if (job->gate_sender)
        release_gate(job);
    lua_request_invalidate(job->req);
    luaL_unref(L, LUA_REGISTRYINDEX, job->req_ref);
    if (job->co) {
        lua_task_bind(job->co, NULL);
        /* A coroutine that ended normally is reset and kept for the next job: creating one per
         * request was a measurable share of the rest echo benchmark. */
        if (lua_resetthread(job->co) == LUA_OK &&
            st->idle_count < sizeof st->idle / sizeof st->idle[0])
            st->idle[st->idle_count++] = (struct idle_coroutine){job->co, job->co_ref};
        else
            luaL_unref(L, LUA_REGISTRYINDEX, job->co_ref);
    }
    if (job->prev)
        job->prev->next = job->next;
    else
        w->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    free(job);
    /* Buffers Lua's string functions allocate are not covered by its emergency collection: when
     * the state grew by a quarter of its cap since the last full collection, collect now so the
     * next request has room (memory a script keeps on purpose does not trigger it again). */
    size_t limit = w->engine->opt.limits.memory_limit;
    if (limit && lua_state_memory(L) > st->memory_after_gc + limit / 4) {
        lua_gc(L, LUA_GCCOLLECT);
        st->memory_after_gc = lua_state_memory(L);
    }
    if (--st->jobs == 0 && st != w->lua)
        retire_done(w, st);
}

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

/* Finish the exchange with an answer built from the coroutine's results: status, content type,
 * body, headers (a table of name = value). Reads values only: never raises. */
static void job_answer_from_stack(struct job *job, lua_State *co, int base)
{
    struct http_header headers[MAX_ANSWER_HEADERS];
    char numbers[MAX_ANSWER_HEADERS][32];
    size_t count = 0, len;
    struct http_response resp = {0};
    resp.status = (int)lua_tointeger(co, base);
    resp.content_type = lua_type(co, base + 1) == LUA_TSTRING ? lua_tostring(co, base + 1) : NULL;
    resp.body = lua_type(co, base + 2) == LUA_TSTRING ? lua_tolstring(co, base + 2, &resp.body_len)
                                                      : NULL;
    if (lua_istable(co, base + 3) && lua_checkstack(co, 3)) {
        lua_pushnil(co);
        while (lua_next(co, base + 3)) {
            const char *value = plain_text(co, -1, &len, numbers[count], sizeof numbers[count]);
            if (lua_type(co, -2) == LUA_TSTRING && value && count < MAX_ANSWER_HEADERS) {
                headers[count].name = lua_tostring(co, -2);
                headers[count].value = value; /* the table keeps a string value alive */
                count++;
            }
            lua_pop(co, 1);
        }
    }
    resp.headers = headers;
    resp.header_count = count;
    http_respond(job->x, &resp);
    job->x = NULL;
}

static void job_resume(struct job *job, int nargs)
{
    lua_State *co = job->co;
    int nres = 0;
    job->wait = WAIT_NONE;
    lua_state_budget_begin(co);
    int rc = lua_resume(co, job->st->L, nargs, &nres);
    lua_state_budget_end(co);
    if (rc == LUA_YIELD) {
        lua_pop(co, nres);
        if (job->wait != WAIT_NONE)
            return; /* parked: a timer or the sender gate resumes it */
        log_msg(LOG_ERROR, job->id, "a script called coroutine.yield outside a coroutine of "
                                       "its own; the request is abandoned");
    } else if (rc == LUA_OK && job->x) {
        if (nres >= 3 && lua_isinteger(co, -nres))
            job_answer_from_stack(job, co, lua_gettop(co) - nres + 1);
    } else if (rc != LUA_OK) {
        /* Only a string is read: converting another value would allocate, unprotected. */
        log_msg(LOG_ERROR, job->id, "the pipeline failed: %s",
                lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1)
                : rc == LUA_ERRMEM             ? "not enough memory"
                                               : "(an error that is not a message)");
    }
    if (job->x) {
        if (job->streaming) {
            http_stream_finish(job->x);
        } else {
            http_respond_error(job->x, 500, "internal_error",
                               "the request could not be processed; see the log");
        }
        job->x = NULL;
    }
    job_free(job);
}

/* Resume the jobs other messages handed their sender's turn to. */
static void drain_inbox(struct worker *w)
{
    uint64_t ignored;
    ssize_t n = read(w->wake_fd, &ignored, sizeof ignored);
    (void)n;
    pthread_mutex_lock(&w->inbox_lock);
    struct job *job = w->woken_head;
    w->woken_head = w->woken_tail = NULL;
    struct script_state *fresh = w->incoming;
    w->incoming = NULL;
    pthread_mutex_unlock(&w->inbox_lock);
    if (fresh)
        adopt_scripts(w, fresh);
    while (job) {
        struct job *next = job->woken_next;
        job->woken_next = NULL;
        job->gate_held = 1;
        job_resume(job, 0);
        job = next;
    }
}

static void wake_worker(struct worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n;
}

/* sender_gate wake: may run on any thread, so the job goes through its worker's inbox. */
static void job_gate_wake(struct gate_waiter *g)
{
    struct job *job = (struct job *)((char *)g - offsetof(struct job, gate));
    struct worker *w = job->w;
    /* Stopping: the job is freed by its own worker, which passes the turn on. */
    if (atomic_load(&w->stopping))
        return;
    pthread_mutex_lock(&w->inbox_lock);
    if (w->woken_tail)
        w->woken_tail->woken_next = job;
    else
        w->woken_head = job;
    w->woken_tail = job;
    pthread_mutex_unlock(&w->inbox_lock);
    wake_worker(w);
}

#define JOB_OF(ptr, member) ((struct job *)((char *)(ptr) - offsetof(struct job, member)))

static void sleep_fired(struct timer *t)
{
    struct job *job = JOB_OF(t, sleep_timer);
    job_resume(job, 0);
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
        job->wait = WAIT_SLEEP;
}

/* ---- pushing into a Lua state from the loop -----------------------------------------------
 * Every push can allocate, and an allocation refused by the memory cap raises. Outside a
 * protected call that would abort the process, so host code pushes only through
 * push_protected: the values are built on the state's main thread (idle between events) inside
 * lua_pcall, then moved. A failure leaves the error value on the main thread's stack. */

struct http_push {
    const struct outbound_result *result;
    int count;
};

/* [-0,+n,m] */
static int l_push_http_result(lua_State *L)
{
    struct http_push *p = lua_touserdata(L, 1);
    lua_settop(L, 0);
    p->count = sb_push_http_result(L, p->result);
    return p->count;
}

/* Run fn(ud) in a protected call on L (a main thread, idle). Returns LUA_OK with fn's results on
 * L's stack (lua_gettop counts them), or an error code with the error value on top. */
static int push_protected(lua_State *L, lua_CFunction fn, void *ud)
{
    lua_settop(L, 0);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    return lua_pcall(L, 1, LUA_MULTRET, 0);
}

static void http_done(void *ctx, const struct outbound_result *result)
{
    struct job *job = ctx;
    lua_State *L = job->st->L;
    job->call = NULL;
    struct http_push push = {result, 0};
    if (push_protected(L, l_push_http_result, &push) != LUA_OK) {
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
    job->wait = WAIT_HTTP;
    return 0;
}

/* The message ran out of time: stop what it waits for and resume it into the cancellation,
 * which the pipeline catches, logs and answers with what was collected. */
static void deadline_fired(struct timer *t)
{
    struct job *job = JOB_OF(t, deadline);
    struct worker *w = job->w;
    snprintf(job->deadline_text, sizeof job->deadline_text,
             "the message took longer than the response timeout (%g s)",
             w->engine->opt.response_timeout);
    job->task.cancelled = job->deadline_text;
    switch (job->wait) {
    case WAIT_SLEEP:
        timer_stop(&w->timers, &job->sleep_timer);
        break;
    case WAIT_HTTP:
        outbound_cancel(w->outbound, job->call);
        job->call = NULL;
        break;
    case WAIT_GATE:
        if (!sender_gate_cancel(job->gate_sender, &job->gate))
            return; /* handed the turn meanwhile: the inbox resumes it into the cancellation */
        free(job->gate_sender);
        job->gate_sender = NULL;
        break;
    case WAIT_NONE:
        return;
    }
    job_resume(job, 0);
}

static const struct lua_task_ops task_ops = {.sleep = task_sleep, .http = task_http};

struct job_prepare {
    struct job *job;
    const struct route_match *m;
};

/* What pipeline.run gets, built on the state's main thread: the job's coroutine (a new one
 * unless one was reused), then run, kind, channel, req, method, path.  [-0,+6,m] */
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
    lua_pushstring(L, m->kind == ROUTE_WEBHOOK ? "webhook" : "route");
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->channel_refs[m->channel]);
    struct lua_request *req = lua_request_push(L, job->x, job->r);
    lua_pushvalue(L, -1);
    job->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    job->req = req;
    lua_pushstring(L, m->route ? m->route->method : job->r->method);
    lua_pushstring(L, m->route ? m->route->path : "/webhook");
    return 6;
}

static void job_start(struct worker *w, struct http_exchange *x, const struct http_request *r,
                      const struct route_match *m)
{
    struct job *job = calloc(1, sizeof *job);
    if (!job) {
        http_respond_error(x, 503, "overloaded", "out of memory");
        return;
    }
    struct script_state *st = w->lua;
    lua_State *L = st->L;
    job->w = w;
    job->st = st;
    st->jobs++;
    job->x = x;
    job->r = r;
    job->co_ref = job->req_ref = LUA_NOREF;
    job->sleep_timer = TIMER_INIT(sleep_fired);
    job->deadline = TIMER_INIT(deadline_fired);
    job->gate.wake = job_gate_wake;
    snprintf(job->id, sizeof job->id, "%s", r->id);
    job->task.request_id = job->id;
    job->task.ops = &task_ops;
    job->next = w->jobs;
    if (w->jobs)
        w->jobs->prev = job;
    w->jobs = job;
    if (st->idle_count > 0) {
        st->idle_count--;
        job->co = st->idle[st->idle_count].co;
        job->co_ref = st->idle[st->idle_count].ref;
    }

    struct job_prepare prepare = {job, m};
    if (push_protected(L, l_job_prepare, &prepare) != LUA_OK) {
        log_msg(LOG_ERROR, job->id, "%s %s: no memory left in the channel's Lua state for a new "
                                    "request (server.lua_memory_limit): %s",
                r->method, r->path, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
        lua_settop(L, 0);
        http_respond_error(x, 503, "overloaded",
                           "the channel's Lua state has no memory left for this request; "
                           "try again later");
        job->x = NULL;
        job_free(job);
        return;
    }
    job->task.co = job->co;
    lua_task_bind(job->co, &job->task);
    lua_xmove(L, job->co, 6); /* a new or reset coroutine has room for them */
    job_resume(job, 5);
}

/* ---- the host functions pipeline.lua gets --------------------------------------------------- */

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
    double timeout = job->w->engine->opt.response_timeout;
    job->task.cancelled = NULL;
    timer_start(&job->w->timers, &job->deadline, timers_now_ms() + (uint64_t)(timeout * 1000.0 + 0.5));
    job->gate_sender = strdup(sender);
    if (!job->gate_sender)
        return luaL_error(L, "out of memory");
    if (sender_gate_enter(sender, &job->gate)) {
        job->gate_held = 1;
        return 0;
    }
    job->wait = WAIT_GATE;
    lua_settop(L, 0);
    return sb_yield_wait(L);
}

/* host.message_end(): stops the deadline; the sender's next message may go  [-0,+0,-] */
static int l_host_message_end(lua_State *L)
{
    struct job *job = running_job(L);
    timer_stop(&job->w->timers, &job->deadline);
    job->task.cancelled = NULL;
    /* The pipeline has caught whatever the message raised, a spent CPU budget included: what
     * follows (the next message, respond) gets a budget of its own. */
    lua_state_budget_end(L);
    lua_state_budget_begin(L);
    if (job->gate_sender)
        release_gate(job);
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
    if (!job->x)
        return 0;
    job_answer_from_stack(job, L, 1);
    /* The exchange may be freed from now on: so is everything req borrowed from it. */
    lua_request_invalidate(job->req);
    return 0;
}

static void push_host_table(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"message_begin", l_host_message_begin},
        {"message_end", l_host_message_end},
        {"stream_start", l_host_stream_start},
        {"stream_write", l_host_stream_write},
        {"answer", l_host_answer},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
}

/* ---- built-in routes ------------------------------------------------------------------------ */

static void respond_json(struct http_exchange *x, int status, const char *body,
                         const struct http_header *headers, size_t header_count)
{
    struct http_response resp = {.status = status, .content_type = "application/json",
                                 .headers = headers, .header_count = header_count,
                                 .body = body, .body_len = strlen(body)};
    http_respond(x, &resp);
}

static void respond_error(struct http_exchange *x, int status, const char *code,
                          const char *message, const struct http_header *headers,
                          size_t header_count)
{
    char escaped[1024], body[1200];
    http_json_escape(message, escaped, sizeof escaped);
    snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}", code, escaped);
    respond_json(x, status, body, headers, header_count);
}

static void respond_status(struct worker *w, struct http_exchange *x)
{
    struct engine *e = w->engine;
    const struct generation *gen = w->lua->gen;
    size_t size = 8192 + gen->channels.count * 1200;
    char *body = malloc(size);
    if (!body) {
        respond_error(x, 503, "overloaded", "out of memory", NULL, 0);
        return;
    }
    char bot_text[1024], bot[1100], error[2100], last_error[sizeof e->last_reload_error];
    bot_describe(&gen->config->endpoints, e->opt.paths.data_dir, bot_text, sizeof bot_text);
    http_json_escape(bot_text, bot, sizeof bot);
    /* A reload on the main thread may write the error meanwhile: work on a copy. */
    pthread_mutex_lock(&e->reload_lock);
    unsigned newest = e->generation;
    memcpy(last_error, e->last_reload_error, sizeof last_error);
    pthread_mutex_unlock(&e->reload_lock);
    http_json_escape(last_error, error, sizeof error);
    char quoted_error[2200];
    if (error[0])
        snprintf(quoted_error, sizeof quoted_error, "\"%s\"", error);
    else
        snprintf(quoted_error, sizeof quoted_error, "null");

    size_t n = (size_t)snprintf(body, size,
                                "{\"version\":\"%s\",\"uptime\":%ld,\"workers\":%u,"
                                "\"generation\":%u,\"last_reload_error\":%s,"
                                "\"bot\":\"%s\",\"channels\":[",
                                SB_VERSION, (long)(time(NULL) - e->started), e->worker_count,
                                gen->number, quoted_error, bot);
    for (size_t i = 0; i < gen->channels.count && n < size; i++) {
        const struct channel_def *d = &gen->channels.defs[i];
        char key[300], name[300], script[900];
        http_json_escape(d->key, key, sizeof key);
        http_json_escape(d->name ? d->name : "", name, sizeof name);
        http_json_escape(d->script, script, sizeof script);
        /* A rejected reload that names this channel (its script or its key) is its last reload
         * error. */
        char by_key[320];
        snprintf(by_key, sizeof by_key, "channel '%s'", d->key);
        int failed = error[0] && newest == gen->number &&
                     (strstr(last_error, d->script) || strstr(last_error, by_key));
        n += (size_t)snprintf(body + n, size - n,
                              "%s{\"name\":\"%s\",\"key\":\"%s\",\"script\":\"%s\","
                              "\"generation\":%u,\"last_reload_error\":%s}",
                              i ? "," : "", name, key, script, gen->number,
                              failed ? quoted_error : "null");
    }
    unsigned long answers[6] = {0};
    for (unsigned i = 0; i < e->worker_count; i++)
        http_server_answers(e->workers[i].http, answers);
    if (n < size)
        snprintf(body + n, size - n,
                 "],\"requests\":{\"1xx\":%lu,\"2xx\":%lu,\"3xx\":%lu,\"4xx\":%lu,\"5xx\":%lu}}",
                 answers[1], answers[2], answers[3], answers[4], answers[5]);
    respond_json(x, 200, body, NULL, 0);
    free(body);
}

static void on_request(void *ctx, struct http_exchange *x, const struct http_request *r)
{
    struct worker *w = ctx;
    struct route_match m;
    router_match(&w->lua->gen->routes, r->method, r->path, &m);
    switch (m.kind) {
    case ROUTE_ROOT: {
        char text[64];
        snprintf(text, sizeof text, "Hello from Switchboard: %s", SB_VERSION);
        struct http_response resp = {.status = 200, .content_type = "text/plain; charset=utf-8",
                                     .body = text, .body_len = strlen(text)};
        http_respond(x, &resp);
        return;
    }
    case ROUTE_STATUS:
        respond_status(w, x);
        return;
    case ROUTE_HEALTH:
        respond_json(x, 200, "{\"status\":\"ok\"}", NULL, 0);
        return;
    case ROUTE_WEBHOOK:
    case ROUTE_CUSTOM:
        job_start(w, x, r, &m);
        return;
    case ROUTE_METHOD_NOT_ALLOWED: {
        char message[512];
        snprintf(message, sizeof message, "%s is not allowed on %s; allowed: %s", r->method,
                 r->path, m.allow);
        struct http_header allow = {"Allow", m.allow};
        respond_error(x, 405, "method_not_allowed", message, &allow, 1);
        return;
    }
    case ROUTE_NOT_FOUND:
    default: {
        char message[600];
        snprintf(message, sizeof message,
                 "no route for %s %s; channels answer at /webhooks/<name>/webhook", r->method,
                 r->path);
        respond_error(x, 404, "not_found", message, NULL, 0);
        return;
    }
    }
}

/* ---- workers -------------------------------------------------------------------------------- */

static long earliest(long a, long b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static int loop_timeout(struct worker *w)
{
    if (atomic_load(&w->draining))
        return 50; /* look at the drain condition regularly */
    long timeout = earliest(http_server_timeout_ms(w->http), outbound_timeout_ms(w->outbound));
    timeout = earliest(timeout, timers_next_ms(&w->timers));
    return timeout < 0 ? 1000 : (int)timeout;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[64];
    while (!atomic_load(&w->stopping)) {
        if (atomic_load(&w->draining)) {
            http_server_stop_accepting(w->http);
            atomic_store(&w->accepting_stopped, 1);
            if ((!w->jobs && !http_server_busy(w->http)) || timers_now_ms() >= w->drain_until_ms)
                break;
        }
        int n = epoll_wait(w->epfd, events, 64, loop_timeout(w));
        if (n < 0 && errno != EINTR) {
            log_msg(LOG_ERROR, NULL, "worker %u: epoll_wait: %s", w->index, strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64 >> 32;
            if (tag == OUTBOUND_EPOLL_TAG)
                outbound_on_socket(w->outbound, (int)(uint32_t)events[i].data.u64,
                                   events[i].events);
            else if (events[i].data.u64 == EV_WAKE)
                drain_inbox(w);
        }
        outbound_on_timer(w->outbound);
        timers_run(&w->timers);
        http_server_run(w->http);
    }
    lua_budget_thread_exit();
    return NULL;
}

static void scripts_options_init(struct script_options *so, const struct engine_options *opt)
{
    memset(so, 0, sizeof *so);
    so->paths = opt->paths;
    so->limits = opt->limits;
    so->connector = opt->connector;
    so->push_host = push_host_table;
}

int engine_check(const struct engine_options *opt, char *summary, size_t size, char *err,
                 size_t errlen)
{
    struct script_options so;
    scripts_options_init(&so, opt);
    struct script_state *state = NULL;
    struct generation *gen = generation_load(opt->config, &so, 1, &state, 1, 0, err, errlen);
    if (!gen)
        return -1;
    size_t n = (size_t)snprintf(summary, size, "%zu channel%s (", gen->channels.count,
                                gen->channels.count == 1 ? "" : "s");
    for (size_t i = 0; i < gen->channels.count && n < size; i++)
        n += (size_t)snprintf(summary + n, size - n, "%s%s", i ? ", " : "",
                              gen->channels.defs[i].name);
    if (n < size)
        snprintf(summary + n, size - n, ")");
    script_state_close(state);
    return 0;
}

static int worker_init(struct engine *e, struct worker *w, unsigned index,
                       struct script_state *scripts, char *err, size_t errlen)
{
    w->engine = e;
    w->index = index;
    w->epfd = w->wake_fd = -1;
    w->lua = scripts;
    pthread_mutex_init(&w->inbox_lock, NULL);
    w->http = http_server_create(e->opt.listen_fd, &e->opt.http, on_request, w, err, errlen);
    if (!w->http)
        return -1;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->wake_fd < 0) {
        snprintf(err, errlen, "cannot create the event loop: %s", strerror(errno));
        return -1;
    }
    w->outbound = outbound_create(w->epfd, err, errlen);
    if (!w->outbound)
        return -1;
    struct epoll_event http_ev = {.events = EPOLLIN, .data.u64 = EV_HTTP};
    struct epoll_event wake_ev = {.events = EPOLLIN, .data.u64 = EV_WAKE};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, http_server_fd(w->http), &http_ev) != 0 ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &wake_ev) != 0) {
        snprintf(err, errlen, "cannot watch the HTTP server: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void worker_cleanup(struct worker *w)
{
    if (w->http)
        http_server_destroy(w->http); /* answers exchanges still waiting */
    w->http = NULL;
    while (w->jobs) {
        w->jobs->x = NULL; /* the server answered and freed it */
        job_free(w->jobs);
    }
    outbound_destroy(w->outbound);
    w->outbound = NULL;
    while (w->retired)
        retire_done(w, w->retired);
    script_state_close(w->lua);
    w->lua = NULL;
    script_state_close(w->incoming);
    w->incoming = NULL;
    timers_free(&w->timers);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    pthread_mutex_destroy(&w->inbox_lock);
}

struct engine *engine_create(const struct engine_options *opt, char *err, size_t errlen)
{
    struct engine *e = calloc(1, sizeof *e);
    struct script_state **states = NULL;
    if (!e) {
        snprintf(err, errlen, "out of memory");
        script_config_unref(opt->config);
        return NULL;
    }
    e->opt = *opt;
    e->config = opt->config;
    e->worker_count = opt->workers ? opt->workers : engine_cpu_count();
    e->started = time(NULL);
    e->generation = 1;
    pthread_mutex_init(&e->reload_lock, NULL);
    scripts_options_init(&e->scripts, opt);
    e->workers = calloc(e->worker_count, sizeof *e->workers);
    states = calloc(e->worker_count, sizeof *states);
    if (!e->workers || !states) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* Every state is loaded before anything starts: a bad script stops startup here. */
    e->gen = generation_load(e->config, &e->scripts, 1, states, e->worker_count, 1, err, errlen);
    if (!e->gen) {
        e->worker_count = 0; /* no worker was set up */
        goto fail;
    }
    for (unsigned i = 0; i < e->worker_count; i++) {
        if (worker_init(e, &e->workers[i], i, states[i], err, errlen) != 0) {
            for (unsigned j = i + 1; j < e->worker_count; j++)
                script_state_close(states[j]);
            e->worker_count = i + 1;
            goto fail;
        }
    }
    free(states);
    return e;
fail:
    free(states);
    engine_destroy(e);
    return NULL;
}

int engine_start(struct engine *e, char *err, size_t errlen)
{
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct worker *w = &e->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker %u: %s", i, strerror(rc));
            return -1;
        }
        w->thread_started = 1;
    }
    return 0;
}

void engine_destroy(struct engine *e)
{
    if (!e)
        return;
    unsigned stuck = 0;
    for (unsigned i = 0; i < e->worker_count; i++) {
        stuck += e->workers[i].stuck;
        atomic_store(&e->workers[i].stopping, 1);
        if (e->workers[i].wake_fd >= 0)
            wake_worker(&e->workers[i]);
    }
    for (unsigned i = 0; i < e->worker_count; i++)
        if (e->workers[i].thread_started && !e->workers[i].stuck)
            pthread_join(e->workers[i].thread, NULL);
    for (unsigned i = 0; i < e->worker_count && e->workers; i++)
        if (!e->workers[i].stuck)
            worker_cleanup(&e->workers[i]);
    /* A stuck worker still uses its state, the configuration and the engine: the process is
     * about to exit, so they are left to it. */
    if (stuck)
        return;
    free(e->workers);
    script_config_unref(e->config);
    e->config = NULL;
    pthread_mutex_destroy(&e->reload_lock);
    free(e);
}

int engine_reload(struct engine *e, struct script_config *config, char *err, size_t errlen)
{
    struct script_state **states = calloc(e->worker_count, sizeof *states);
    if (!states) {
        snprintf(err, errlen, "out of memory");
        script_config_unref(config);
        return -1;
    }
    struct script_config *source = config ? config : e->config;
    struct generation *gen = generation_load(source, &e->scripts, e->generation + 1, states,
                                             e->worker_count, 1, err, errlen);
    pthread_mutex_lock(&e->reload_lock);
    if (gen) {
        e->generation = gen->number;
        e->last_reload_error[0] = '\0';
    } else {
        snprintf(e->last_reload_error, sizeof e->last_reload_error, "%s", err);
    }
    pthread_mutex_unlock(&e->reload_lock);
    if (!gen) {
        free(states);
        script_config_unref(config);
        return -1;
    }
    if (config) {
        script_config_unref(e->config); /* the old generations keep theirs until they end */
        e->config = config;
    }
    e->gen = gen;
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct worker *w = &e->workers[i];
        pthread_mutex_lock(&w->inbox_lock);
        struct script_state *unused = w->incoming; /* a reload the worker has not picked up */
        w->incoming = states[i];
        pthread_mutex_unlock(&w->inbox_lock);
        script_state_close(unused);
        wake_worker(w);
    }
    free(states);
    return 0;
}

void engine_note_reload_error(struct engine *e, const char *error)
{
    pthread_mutex_lock(&e->reload_lock);
    snprintf(e->last_reload_error, sizeof e->last_reload_error, "%s", error);
    pthread_mutex_unlock(&e->reload_lock);
}

void engine_watched_files(const struct engine *e, char *const **files, size_t *count)
{
    *files = e->gen->files;
    *count = e->gen->file_count;
}

unsigned engine_generation(const struct engine *e) { return e->gen->number; }

int engine_files_changed_since(const struct engine *e, const struct timespec *since)
{
    for (size_t i = 0; i < e->gen->file_count; i++) {
        struct stat st;
        if (stat(e->gen->files[i], &st) != 0)
            return 1;
        /* Strictly later than `since` (a fine clock; file times are at most as fine), so a file
         * written before loading began never counts. */
        if (st.st_mtim.tv_sec > since->tv_sec ||
            (st.st_mtim.tv_sec == since->tv_sec && st.st_mtim.tv_nsec > since->tv_nsec))
            return 1;
    }
    return 0;
}

static void describe_channels(const struct channel_set *set, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < set->count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s/webhooks/%s/webhook", i ? ", " : "",
                                 set->defs[i].name);
}

void engine_describe_channels(const struct engine *e, char *out, size_t size)
{
    describe_channels(&e->gen->channels, out, size);
}

unsigned engine_drain(struct engine *e, double seconds)
{
    uint64_t until = timers_now_ms() + (uint64_t)(seconds * 1000.0);
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct worker *w = &e->workers[i];
        w->drain_until_ms = until;
        atomic_store(&w->draining, 1);
        wake_worker(w);
    }
    /* Once no server accepts any more, close the listening socket so that new connections are
     * refused at once instead of waiting in the backlog. */
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct worker *w = &e->workers[i];
        for (int tries = 0; w->thread_started && !atomic_load(&w->accepting_stopped) &&
                            tries < 1000; tries++)
            usleep(1000);
    }
    if (e->opt.listen_fd >= 0)
        close(e->opt.listen_fd);
    e->opt.listen_fd = -1;
    /* A worker leaves its loop by the deadline unless a script holds it in one long call into
     * C (a backtracking string.find, say), which nothing can interrupt. Such a worker is left
     * behind: the others answer what they have and the process exits without it. */
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    uint64_t now = timers_now_ms(), wait_ms = (until > now ? until - now : 0) + 200;
    limit.tv_sec += (time_t)(wait_ms / 1000);
    limit.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (limit.tv_nsec >= 1000000000L) {
        limit.tv_sec++;
        limit.tv_nsec -= 1000000000L;
    }
    unsigned stuck = 0;
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct worker *w = &e->workers[i];
        if (!w->thread_started)
            continue;
        if (pthread_timedjoin_np(w->thread, NULL, &limit) == 0) {
            w->thread_started = 0;
            continue;
        }
        w->stuck = 1;
        stuck++;
        log_msg(LOG_ERROR, NULL, "worker %u did not stop by the drain deadline: a script is stuck "
                                 "in one long call into C (such as a backtracking string.find); "
                                 "exiting without it, its open requests are cut", w->index);
    }
    return stuck;
}

unsigned engine_worker_count(const struct engine *e) { return e->worker_count; }
