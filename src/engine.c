/* SPDX-License-Identifier: MIT */
/* engine: see engine.h. This file runs the workers (their event loops, inboxes and states),
 * reloads and the graceful stop; jobs are in job.c, the pipeline's host table in host_api.c,
 * the routes answered in C in builtin_routes.c (engine_internal.h has what they share). */
#include "engine_internal.h"

#include "bot.h"
#include "channel.h"
#include "config.h"
#include "log.h"
#include "list.h"
#include "lua_budget.h"
#include "metrics.h"
#include "offline.h"
#include "outbound.h"

#include <errno.h>
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

/* ---- states and the inbox ------------------------------------------------------------------ */

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

void worker_state_released(struct worker *w, struct script_state *st)
{
    if (--st->jobs == 0 && st != w->lua)
        retire_done(w, st);
}

/* Make a reload's scripts current: new jobs use them, running jobs finish on theirs. */
static void adopt_scripts(struct worker *w, struct script_state *fresh)
{
    struct script_state *old = w->lua;
    connections_adopt(w, old, fresh);
    w->lua = fresh;
    if (old->jobs == 0) {
        script_state_close(old);
    } else {
        old->next = w->retired;
        w->retired = old;
    }
}

static void wake_worker(struct worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n;
}

/* The worker whose loop runs on this thread (NULL on other threads). */
static _Thread_local struct worker *this_worker;

void worker_post(struct worker *w, struct job *job)
{
    if (w == this_worker) {
        /* Mostly a message handing its sender's turn to the next one on the same worker: with
         * every message of a busy sender here, a wake-up (eventfd, epoll) per message was most
         * of its cost. The loop runs the list before it waits again. */
        if (w->handed_tail)
            w->handed_tail->woken_next = job;
        else
            w->handed_head = job;
        w->handed_tail = job;
        return;
    }
    pthread_mutex_lock(&w->inbox_lock);
    if (w->woken_tail)
        w->woken_tail->woken_next = job;
    else
        w->woken_head = job;
    w->woken_tail = job;
    pthread_mutex_unlock(&w->inbox_lock);
    /* A loop that is awake sees the flag before it waits again (worker_main): no system call on
     * either side. The two flags are sequentially consistent, so either the loop sees
     * inbox_posted before it waits, or this sees inbox_asleep and wakes it. */
    atomic_store(&w->inbox_posted, 1);
    if (atomic_load(&w->inbox_asleep))
        wake_worker(w);
}

void worker_wake(struct worker *w) { wake_worker(w); }

/* The eventfd was written (a reload, sends for connections, the stop, or a job posted while the
 * loop slept): reset it. Returns 1. */
static int read_wake(struct worker *w)
{
    uint64_t ignored;
    ssize_t n = read(w->wake_fd, &ignored, sizeof ignored);
    (void)n;
    return 1;
}

/* At most this many handed jobs per call: a long queue of one sender does not keep the loop
 * from its sockets and timers (the rest runs in the next turn, which does not wait). */
#define HANDED_PER_CALL 64

/* Resume the jobs this worker's own messages handed their turn to, and those they hand it to in
 * turn: a sender's waiting messages on this worker run one after another in this call, until
 * the next in the sender's queue is on another worker (woken through its inbox) or none is left.
 * Runs between events only, never inside a job's step. */
static void run_handed(struct worker *w)
{
    for (unsigned n = 0; w->handed_head && n < HANDED_PER_CALL; n++) {
        struct job *job = w->handed_head;
        w->handed_head = job->woken_next;
        if (!w->handed_head)
            w->handed_tail = NULL;
        job->woken_next = NULL;
        job_resume_from_inbox(job);
    }
}

/* Adopt a reload's scripts, deliver sends for this worker's connections, and resume the jobs
 * other messages handed their sender's turn to. */
static void drain_inbox(struct worker *w)
{
    pthread_mutex_lock(&w->inbox_lock);
    struct job *job = w->woken_head;
    w->woken_head = w->woken_tail = NULL;
    struct script_state *fresh = w->incoming;
    w->incoming = NULL;
    struct conn_mail *mail = w->mail_head;
    w->mail_head = w->mail_tail = NULL;
    pthread_mutex_unlock(&w->inbox_lock);
    if (fresh)
        adopt_scripts(w, fresh);
    connection_deliver_mail(w, mail);
    while (job) {
        struct job *next = job->woken_next;
        job->woken_next = NULL;
        job_resume_from_inbox(job);
        job = next;
    }
    run_handed(w); /* the messages these handed the turn to here, before new requests queue */
}

/* ---- the remote store: a job waits for its answer (store_backend.h) ------------------------- */

/* The job stops waiting (its deadline, its end): an answer already in is dropped from the soon
 * list, one still coming is detached; either way the call's record goes. */
static int cancel_remote(struct job *job)
{
    if (job->remote_answered)
        LIST_UNLINK(job->w->soon, job, soon_prev, soon_next);
    job->remote_answered = 0;
    void (*cancel)(void *) = job->remote_cancel;
    job->remote_cancel = NULL;
    if (cancel)
        cancel(job->remote_ctx);
    job->remote_ctx = NULL;
    return 1;
}

static const struct job_wait wait_remote = {"the store's answer", cancel_remote};

static void remote_park(struct lua_task *t, void (*cancel)(void *ctx), void *ctx)
{
    struct job *job = (struct job *)t;
    job->remote_cancel = cancel;
    job->remote_ctx = ctx;
    job->remote_answered = 0;
    job->wait = &wait_remote;
}

/* The answer came (from the worker's loop): the job resumes with the next batch of the soon list
 * (jobs_run_soon), which clears its wait. */
static void remote_wake(struct lua_task *t)
{
    struct job *job = (struct job *)t;
    job->remote_cancel = NULL;
    job->remote_ctx = NULL;
    job->remote_answered = 1;
    LIST_PUSH(job->w->soon, job, soon_prev, soon_next);
}

/* As the embedded store's pop: inside a message its deadline ends the wait first, outside one (a
 * long poll) it is at most the response timeout; while the host stops, a pop does not wait. */
static double remote_wait_bound(struct lua_task *t, double seconds)
{
    struct job *job = (struct job *)t;
    double longest = job->w->engine->opt.response_timeout;
    if (job->deadline.slot != TIMER_IDLE)
        longest += 1;
    if (atomic_load(&job->w->draining))
        longest = 0;
    return seconds <= longest ? seconds : longest;
}

/* ---- the inbox stream: claimed entries (docs/multi-host.md "Nothing acked is lost") --------- */

struct inbox_call {
    struct worker *w;
    const struct store_redis_claimed *e;
    int channel;
};

/* pipeline.run("inbox", channel, message JSON, entry id, request id).  [-0,+5,m] */
static int l_push_inbox(lua_State *L)
{
    struct inbox_call *c = lua_touserdata(L, 1);
    struct script_state *st = c->w->lua;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->run_ref);
    lua_pushliteral(L, "inbox");
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->channel_refs[c->channel]);
    lua_pushlstring(L, c->e->message, c->e->message_len);
    lua_pushstring(L, c->e->id);
    lua_pushstring(L, c->e->request);
    return 6;
}

/* A claimed entry runs on this worker's current scripts, through its channel's senders; the
 * entry of a channel that no longer exists is acknowledged unprocessed. */
static void inbox_claimed(void *ctx, const struct store_redis_claimed *e)
{
    struct worker *w = ctx;
    const struct channel_set *set = &w->lua->gen->channels;
    int index = -1;
    for (size_t i = 0; i < set->count && index < 0; i++)
        if (set->defs[i].name && strcmp(set->defs[i].name, e->channel) == 0)
            index = (int)i;
    if (index < 0) {
        log_msg(LOG_WARNING, e->request[0] ? e->request : NULL,
                "sb.store: claimed inbox entry %s is for the channel '%s', which this host does "
                "not have (any more): acknowledged without processing it",
                e->id, e->channel);
        store_redis_inbox_done(w->redis, e->id);
        return;
    }
    struct inbox_call call = {w, e, index};
    job_start_call(w, NULL, set->defs[index].name, l_push_inbox, &call, 5);
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
    if (w->conn_ready || w->soon || w->handed_head)
        return 0;
    if (atomic_load(&w->draining))
        return 50; /* look at the drain condition regularly */
    long timeout = earliest(http_server_timeout_ms(w->http), outbound_timeout_ms(w->outbound));
    timeout = earliest(timeout, timers_next_ms(&w->timers));
    return timeout < 0 ? 1000 : (int)timeout;
}

/* The memory of this worker's states, for /metrics (read by whichever worker scrapes). */
static void publish_memory(struct worker *w)
{
    unsigned slot = 0;
    metrics_lua_memory(w->index, slot++, w->lua->gen->number, lua_state_memory(w->lua->L));
    for (struct script_state *st = w->retired; st && slot < METRICS_STATE_SLOTS; st = st->next)
        metrics_lua_memory(w->index, slot++, st->gen->number, lua_state_memory(st->L));
    for (; slot < METRICS_STATE_SLOTS; slot++)
        metrics_lua_memory(w->index, slot, 0, 0);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[64];
    this_worker = w;
    metrics_bind_worker(w->index);
    publish_memory(w);
    if (w->redis) {
        store_backend_bind(&w->store_backend);
        store_redis_start(w->redis);
    }
    int going_away = 0;
    uint64_t next_sweep = 0;
    while (!atomic_load(&w->stopping)) {
        if (atomic_load(&w->draining)) {
            http_server_stop_accepting(w->http);
            atomic_store(&w->accepting_stopped, 1);
            if (!going_away) {
                connections_going_away(w); /* 1001 to every client; their close ends them */
                jobs_end_pops(w);
                if (w->redis)
                    store_redis_end_waits(w->redis); /* long polls answer now */
                going_away = 1;
            }
            /* Acknowledgements of processed inbox entries go out before the loop ends. */
            if ((!w->jobs && !http_server_busy(w->http) && !w->connection_count &&
                 !store_redis_inbox_busy(w->redis)) ||
                timers_now_ms() >= w->drain_until_ms)
                break;
        }
        int timeout = loop_timeout(w);
        atomic_store(&w->inbox_asleep, 1);
        if (atomic_load(&w->inbox_posted))
            timeout = 0;
        int n = epoll_wait(w->epfd, events, 64, timeout);
        atomic_store(&w->inbox_asleep, 0);
        if (n < 0 && errno != EINTR) {
            log_msg(LOG_ERROR, NULL, "worker %u: epoll_wait: %s", w->index, strerror(errno));
            break;
        }
        int woken = atomic_exchange(&w->inbox_posted, 0);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64 >> 32;
            if (tag == OUTBOUND_EPOLL_TAG)
                outbound_on_socket(w->outbound, (int)(uint32_t)events[i].data.u64,
                                   events[i].events);
            else if (tag == CONN_EPOLL_TAG)
                connection_on_socket(w, (int)(uint32_t)events[i].data.u64, events[i].events);
            else if (tag == REDIS_EPOLL_TAG && w->redis)
                store_redis_on_event(w->redis, (uint32_t)events[i].data.u64, events[i].events);
            else if (events[i].data.u64 == EV_WAKE)
                woken = read_wake(w);
        }
        if (woken)
            drain_inbox(w);
        outbound_on_timer(w->outbound);
        timers_run(&w->timers);
        /* Before the server runs: what they answer is sent in this turn. What parks while the
         * server runs (new requests) makes the next wait return at once (loop_timeout). */
        connections_run_ready(w);
        jobs_run_soon(w);
        run_handed(w);
        http_server_run(w->http);
        run_handed(w);
        if (w->index == 0 && !w->redis && timers_now_ms() >= next_sweep) {
            store_sweep(w->engine->store, timers_now_ms(), 1000); /* expired keys nobody reads */
            next_sweep = timers_now_ms() + 1000;
        }
        publish_memory(w);
    }
    store_backend_bind(NULL);
    lua_budget_thread_exit();
    return NULL;
}

static void scripts_options_init(struct script_options *so, const struct engine_options *opt)
{
    memset(so, 0, sizeof *so);
    so->paths = opt->paths;
    so->limits = opt->limits;
    so->connector = opt->connector;
    so->record_dir = opt->record_dir;
    so->push_host = host_api_push;
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
    if (offline_self_test(&gen->channels, &so.paths, &so.limits, err, errlen) != 0) {
        script_state_close(state);
        return -1;
    }
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
    w->http = http_server_create(e->opt.listen_fd, &e->opt.http, builtin_routes_on_request, w, err,
                                 errlen);
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
    if (e->redis) {
        w->redis = store_redis_create(e->redis, index, w->epfd, &w->timers);
        if (!w->redis) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        w->store_backend = (struct store_backend){.redis = w->redis, .park = remote_park,
                                                  .wake = remote_wake,
                                                  .wait_bound = remote_wait_bound};
        store_redis_inbox_setup(w->redis, inbox_claimed, w);
    }
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
    /* Connections first: libmicrohttpd stops only once every socket it handed over is back. */
    if (w->lua)
        connections_free_all(w);
    pthread_mutex_lock(&w->inbox_lock);
    connection_deliver_mail(w, w->mail_head); /* to connections that are gone: freed */
    w->mail_head = w->mail_tail = NULL;
    pthread_mutex_unlock(&w->inbox_lock);
    if (w->http)
        http_server_destroy(w->http); /* answers exchanges still waiting */
    w->http = NULL;
    while (w->jobs) {
        w->jobs->x = NULL; /* the server answered and freed it */
        job_free(w->jobs);
    }
    store_redis_destroy(w->redis); /* every job detached its calls above */
    w->redis = NULL;
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
    snprintf(e->admin_token, sizeof e->admin_token, "%s",
             opt->config->endpoints.server.admin_token);
    e->store = store_create(&(struct store_limits){opt->config->endpoints.server.store_max_bytes});
    if (!e->store) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    const struct store_config *sc = &opt->config->endpoints.store;
    if (sc->redis) {
        /* Redis down at startup is no error: the host serves what needs no store and every
         * worker keeps trying (docs/multi-host.md). */
        /* An inbox entry's holder renews it while it runs; others claim it after claim_idle of
         * silence, by default the response timeout and 10 s (docs/configuration.md#store). */
        struct store_config with_idle = *sc;
        if (!(with_idle.claim_idle > 0))
            with_idle.claim_idle = opt->response_timeout + 10;
        e->redis = store_redis_host_create(&with_idle, e->worker_count);
        explicit_bzero(with_idle.password, sizeof with_idle.password);
        if (!e->redis) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    snprintf(e->push_token, sizeof e->push_token, "%s",
             opt->config->endpoints.server.push_token);
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
    store_destroy(e->store);
    store_redis_host_destroy(e->redis);
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
    /* A channel with cases beside it (X.cases/ next to X.lua) passes them before the new
     * generation is adopted: a failing case rejects the reload like a syntax error. */
    if (gen && offline_self_test(&gen->channels, &e->scripts.paths, &e->scripts.limits, err,
                                 errlen) != 0) {
        for (unsigned i = 0; i < e->worker_count; i++)
            script_state_close(states[i]); /* the last one frees the generation */
        gen = NULL;
    }
    metrics_reload(config ? RELOAD_SIGHUP : RELOAD_FILE_CHANGE, gen != NULL);
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
    /* Every inbox first, then every wake-up: the workers switch as close together as they can. */
    for (unsigned i = 0; i < e->worker_count; i++) {
        struct worker *w = &e->workers[i];
        pthread_mutex_lock(&w->inbox_lock);
        struct script_state *unused = w->incoming; /* a reload the worker has not picked up */
        w->incoming = states[i];
        pthread_mutex_unlock(&w->inbox_lock);
        script_state_close(unused);
    }
    for (unsigned i = 0; i < e->worker_count; i++)
        wake_worker(&e->workers[i]);
    free(states);
    return 0;
}

void engine_note_reload_error(struct engine *e, const char *error)
{
    metrics_reload(RELOAD_SIGHUP, 0); /* only SIGHUP reads the configuration files again */
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
        /* File times come from the kernel's coarse clock, which lags the fine one by up to a
         * tick: `since` is the start of a tick of that clock, taken before loading, so a time
         * equal to it is a save made after (main.c, start_of_next_tick). */
        if (st.st_mtim.tv_sec > since->tv_sec ||
            (st.st_mtim.tv_sec == since->tv_sec && st.st_mtim.tv_nsec >= since->tv_nsec))
            return 1;
    }
    return 0;
}

/* Each channel's webhook, its WebSocket route when it has one, and its mount. */
static void describe_channels(const struct generation *gen, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < gen->channels.count && used < size; i++) {
        used += (size_t)snprintf(out + used, size - used, "%s/webhooks/%s/webhook", i ? ", " : "",
                                 gen->channels.defs[i].name);
        const struct route_channel *rc = i < gen->routes.count ? &gen->routes.channels[i] : NULL;
        int websocket = 0;
        for (size_t k = 0; rc && k < rc->count && !websocket; k++)
            websocket = strcmp(rc->routes[k].spec, CHANNEL_WEBSOCKET_ROUTE) == 0;
        if (rc && rc->mount && !websocket && used < size)
            used += (size_t)snprintf(out + used, size - used, " (and %s/)", rc->mount);
        for (size_t k = 0; rc && k < rc->count && used < size; k++)
            if (strcmp(rc->routes[k].spec, CHANNEL_WEBSOCKET_ROUTE) == 0 && rc->mount)
                used += (size_t)snprintf(out + used, size - used, " (WebSocket %s%s)", rc->mount,
                                         rc->routes[k].path);
            else if (strcmp(rc->routes[k].spec, CHANNEL_WEBSOCKET_ROUTE) == 0)
                used += (size_t)snprintf(out + used, size - used, " (WebSocket /webhooks/%s%s)",
                                         gen->channels.defs[i].name, rc->routes[k].path);
    }
}

void engine_describe_channels(const struct engine *e, char *out, size_t size)
{
    describe_channels(e->gen, out, size);
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
