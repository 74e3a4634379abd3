/* SPDX-License-Identifier: MIT */
/* engine: the workers that run the on_new_message pipeline (docs/architecture.md, "The flow of one
 * message").
 *
 * Each worker is one thread with one event loop (epoll), one HTTP server on the shared listening
 * socket and one Lua state holding every channel, the bot and the pipeline. A request that needs a
 * script becomes a job: a coroutine running pipeline.run. Whatever a job waits for (its sender's
 * turn, sb.sleep) parks the coroutine, never the thread; the loop resumes it when the wait is
 * over. Built-in routes (root, health, status, 404, 405) are answered in C.
 * Uses: job, host_api, builtin_routes (engine_internal.h), http, outbound, timers,
 * scripts, lua_budget, metrics, log. */
#ifndef SB_ENGINE_H
#define SB_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "lua_state.h"

struct script_config;

struct engine_options {
    struct lua_paths paths;           /* data_dir; project_dir comes from the configuration */
    struct lua_limits limits;
    struct script_config *config;     /* engine_create takes ownership (also when it fails) */
    const char *connector;            /* --connector, or NULL */
    const char *record_dir;           /* --record: absolute folder for case files, or NULL */
    unsigned workers;                 /* 0: one per CPU the process may run on */
    double response_timeout;          /* seconds one message may take (--response-timeout) */
    struct http_options http;         /* borrowed pointers inside must outlive the engine */
    struct websocket_options {
        size_t max_message;           /* bytes of one message from a client: over it, 1009 */
        size_t send_queue;            /* bytes waiting to be written: over it, the client is cut */
        uint64_t ping_interval_ms;    /* keep-alive: ping after this much silence; 0: never */
    } websocket;
    int listen_fd;
};

struct engine;

/* Create the workers: every Lua state is loaded (channels, bot, pipeline) before this returns, so
 * a configuration error stops startup with nothing half-started. Returns NULL with err. */
struct engine *engine_create(const struct engine_options *opt, char *err, size_t errlen);
/* Start the worker threads. Returns 0 or -1 with err. */
int engine_start(struct engine *e, char *err, size_t errlen);
/* Graceful stop: accept no new connections (the listening socket is closed: the engine owns it
 * from here), let the requests in flight finish (at most `seconds`), then stop the workers.
 * engine_destroy answers what is left (503) and frees everything afterwards. Returns the number
 * of workers that did not stop (held by one long call into C): the caller must then end the
 * process with _exit once engine_destroy returned, since those still run. */
unsigned engine_drain(struct engine *e, double seconds);
/* Ask the workers to stop, wait for them, free everything. */
void engine_destroy(struct engine *e);
unsigned engine_worker_count(const struct engine *e);

/* Load every channel and the bot into a scratch state and discard it: `switchboard check`.
 * Does not take the configuration. summary gets "2 channels (rest, myio)". */
int engine_check(const struct engine_options *opt, char *summary, size_t size, char *err,
                 size_t errlen);

/* Reload (docs/contract.md §7): load every script again (from `config` when given: SIGHUP, which
 * the engine then owns; else from the current configuration) into new states, off the workers; when
 * all of it loads, each worker switches between jobs and requests in flight finish on the old
 * scripts. On failure nothing changes, err says why and /status shows it. Main thread only. */
int engine_reload(struct engine *e, struct script_config *config, char *err, size_t errlen);
/* Record a reload that failed before reaching the engine (an unreadable configuration file),
 * for /status. */
void engine_note_reload_error(struct engine *e, const char *error);
/* The Lua files the current scripts were loaded from (main thread only; valid until the next
 * reload). */
void engine_watched_files(const struct engine *e, char *const **files, size_t *count);
unsigned engine_generation(const struct engine *e);
/* 1 when a file of the current scripts was modified (or removed) at or after `since`, a time of
 * CLOCK_REALTIME_COARSE (the clock file times come from) at the start of one of its ticks. */
struct timespec;
int engine_files_changed_since(const struct engine *e, const struct timespec *since);
/* "/webhooks/rest/webhook, ..." for the startup line. */
void engine_describe_channels(const struct engine *e, char *out, size_t size);

/* The contract of an answer handed from Lua (pipeline.run's results, host.answer's arguments):
 * `count` values at L[base..]: status (an integer 100-599), content type (a string or nil), body
 * (a string or nil), headers (a table, or nil). Returns NULL when they hold, else what is wrong.
 * (job.c; offline runs check the same.) */
struct lua_State;
const char *job_answer_problem(struct lua_State *L, int base, int count);

/* The number of CPUs this process may run on. */
unsigned engine_cpu_count(void);

#endif
