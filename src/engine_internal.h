/* SPDX-License-Identifier: MIT */
/* engine_internal: what the engine's own files share; no other module includes it.
 *
 * The engine is five files: engine.c (workers, their event loops and inboxes, reloads, the
 * graceful stop), job.c (a request that runs a script: its coroutine, its waits and their
 * cancellation, its deadline), host_api.c (the `host` table pipeline.lua is given),
 * builtin_routes.c (the routes answered in C: root, status, metrics, health, 404, 405) and
 * connections.c (WebSocket connections: their sockets, frames and events for Lua).
 * Uses: http, outbound, timers, scripts, lua_sb (struct lua_task), sender_gate, metrics, store,
 * store_redis and store_backend (the Redis backend of sb.store). */
#ifndef SB_ENGINE_INTERNAL_H
#define SB_ENGINE_INTERNAL_H

#include "engine.h"
#include "http.h"
#include "lua_sb.h"
#include "router.h"
#include "scripts.h"
#include "sender_gate.h"
#include "store.h"
#include "store_backend.h"
#include "store_redis.h"
#include "timers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

struct job;
struct lua_request;
struct outbound_call;
struct connection;
struct conn_mail;

#define CONN_ID_SIZE 33            /* 32 hex digits and a NUL */
#define CONN_EPOLL_TAG 0x5357u     /* epoll data: this tag in the high 32 bits, the fd below */

/* What a parked job waits for. Each kind knows how to stop waiting (a deadline fired, or the job
 * ends early): cancel returns 1 when the job may be resumed now, 0 when something else will
 * resume it (the sender's turn was handed over meanwhile and is on its way through the inbox). */
struct job_wait {
    const char *name;
    int (*cancel)(struct job *job);
};

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
    const struct job_wait *wait;  /* NULL while running */
    struct timer sleep_timer;     /* sb.sleep */
    struct timer deadline;        /* --response-timeout of the message being processed */
    char id[65];                  /* the request id (the request itself may be gone: async) */
    const char *channel;          /* its channel's name (the generation's, which st keeps) */
    uint64_t message_started_us;  /* host.message_begin, for the bot latency metric */
    struct outbound_call *call;   /* an outbound request under way */
    char deadline_text[96];
    struct gate_waiter gate;
    char *gate_sender;            /* the sender whose gate the job holds or waits for */
    /* The order across hosts (store.order, docs/multi-host.md): the sender's turn in Redis the
     * job holds or waits for, and its arrival number (asked while it waits on this host). */
    struct store_redis_turn *turn;
    struct store_redis_call *seq_call;
    unsigned long long seq;
    unsigned gate_held : 1;
    unsigned streaming : 1;
    unsigned in_message : 1;      /* between host.message_begin and message_end */
    unsigned opening : 1;         /* the upgrade request of a WebSocket: on_open runs */
    unsigned upgraded : 1;        /* ... and it accepted: the 101 is on its way */
    struct connection *conn;      /* the connection whose event (or opening) this job runs */
    struct job *prev, *next;      /* the worker's live jobs */
    struct job *woken_next;       /* the worker's inbox */
    unsigned woken_by_store : 1;  /* in the inbox with a value for its sb.store.pop */
    struct job *soon_prev, *soon_next; /* resumed at the next turn of the loop (sb.store) */
    struct store_waiter store_waiter;  /* sb.store.pop waiting for a push */
    struct timer store_timer;     /* ... for at most this long */
    struct buffer store_value;    /* the value a push handed it */
    char *store_key;              /* the key it waits on */
    /* A call to the remote store (engine.c, store_backend.h): its cancel while it waits, and
     * whether its answer came (the job is then on the soon list). */
    void (*remote_cancel)(void *ctx);
    void *remote_ctx;
    unsigned remote_answered : 1;
};

struct worker {
    struct engine *engine;
    unsigned index;
    pthread_t thread;
    int thread_started;
    int stuck;                    /* did not stop by the drain deadline: left running at exit */
    struct script_state *lua;     /* the current scripts: new jobs start here */
    struct script_state *retired; /* older scripts that jobs still run on */
    struct http_server *http;
    struct outbound *outbound;
    int epfd, wake_fd;
    atomic_int stopping;
    atomic_int draining;          /* graceful stop: finish what is in flight, accept nothing new */
    atomic_int accepting_stopped;
    uint64_t drain_until_ms;

    /* Jobs handed their sender's turn by a message on another worker. */
    pthread_mutex_t inbox_lock;
    struct job *woken_head, *woken_tail;
    struct script_state *incoming; /* a reload's scripts, adopted between jobs */
    struct conn_mail *mail_head, *mail_tail; /* sends for this worker's connections */
    /* worker_post writes the eventfd only while the loop waits in epoll_wait (inbox_asleep);
     * an awake loop finds inbox_posted set before it waits again (engine.c). */
    atomic_int inbox_posted, inbox_asleep;
    /* Jobs handed their sender's turn by a message of this worker: no lock, no wake-up; the
     * loop resumes them before it waits again (engine.c, run_handed). */
    struct job *handed_head, *handed_tail;

    /* WebSocket connections (connections.c). */
    struct connection *connections;
    unsigned connection_count;
    struct connection **conn_buckets; /* by id */
    struct connection **conn_by_fd;   /* by socket, for epoll */
    size_t conn_by_fd_size;
    struct connection *conn_ready;    /* to look at between events */
    struct job *soon;                 /* jobs to resume at the next turn (sb.store answers) */
    struct store_redis *redis;        /* sb.store's Redis backend (NULL: the embedded store) */
    struct store_backend store_backend; /* ... as lua_sb_store.c reaches it */
    uint64_t order_logged_ms;         /* the last "order across hosts not kept" log line */
    unsigned long order_unlogged;     /* ... and the messages since, not logged one by one */

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
    char admin_token[256];         /* server.admin_token at startup ("" when not set) */
    struct store *store;           /* sb.store, shared by every worker */
    struct store_redis_host *redis; /* sb.store's Redis backend (endpoints.yml `store:`), or NULL */
    char push_token[256];          /* server.push_token at startup ("" when not set: no
                                      proactive messages route) */
    pthread_mutex_t reload_lock;   /* guards the two fields below (read by /status) */
    unsigned generation;
    char last_reload_error[2048];
};

/* ---- job.c ---------------------------------------------------------------------------------- */

/* Start a job for a webhook or a declared route: its coroutine runs pipeline.run. */
void job_start(struct worker *w, struct http_exchange *x, const struct http_request *r,
               const struct route_match *m);
/* Start a job without an HTTP exchange, for a connection's event or (conn NULL) a claimed inbox
 * entry, whose job id host.inbox_take sets later: push (run protected on the state's main
 * thread) pushes the function to run and its nargs arguments. A connection is told the job
 * started and ended (connection_job_started, connection_job_done). */
void job_start_call(struct worker *w, struct connection *conn, const char *channel,
                    lua_CFunction push, void *ctx, int nargs);
/* Resume a job from the worker's inbox: its sender's turn came, or a value for its pop. */
void job_resume_from_inbox(struct job *job);
/* Resume the jobs whose store answer waits for this turn of the loop. */
void jobs_run_soon(struct worker *w);
/* Graceful stop: every sb.store.pop waiting for a push returns nil now (long polls answer). */
void jobs_end_pops(struct worker *w);
/* End a job that will not be resumed (the worker stops): frees it. */
void job_free(struct job *job);
/* The job whose own coroutine L is, or NULL. */
struct job *job_of(lua_State *L);
/* The message's deadline starts and the job asks for its sender's turn. Returns 1 when the job
 * must wait for it (the caller yields), 0 when it has it, -1 when out of memory. */
int job_message_begin(struct job *job, const char *sender);
/* The message is done: its deadline stops and the sender's next message may go. */
void job_message_end(struct job *job);
/* The contract of an answer handed from Lua (pipeline.run's results, host.answer's arguments),
 * checked here only: `count` values at L[base..]: status (an integer 100-599), content type (a
 * string or nil), body (a string or nil), headers (a table of name = string or number, or nil;
 * other entries are skipped). Returns NULL when they hold, else what is wrong. */
const char *job_answer_problem(lua_State *L, int base, int count);
/* Answer with values that passed job_answer_problem. Never raises. */
void job_answer(struct job *job, lua_State *L, int base);

/* ---- engine.c ------------------------------------------------------------------------------- */

/* Put a job in its worker's inbox and wake the worker (any thread). On the worker's own thread
 * it goes on the worker's handed list instead, which the loop empties without a wake-up. */
void worker_post(struct worker *w, struct job *job);
/* Wake the worker's loop (any thread): it drains its inbox. */
void worker_wake(struct worker *w);
/* A job of state st ended: a retired state whose last job this was is closed. */
void worker_state_released(struct worker *w, struct script_state *st);

/* ---- host_api.c, builtin_routes.c ----------------------------------------------------------- */

/* Push the `host` table pipeline.setup receives. */
void host_api_push(lua_State *L);
/* The server's request handler: built-in routes answered here, webhooks and declared routes
 * become jobs. ctx is the worker. */
void builtin_routes_on_request(void *ctx, struct http_exchange *x, const struct http_request *r);

/* ---- connections.c -------------------------------------------------------------------------- */

/* A new connection of this worker for the channel's WebSocket route, before its 101. */
struct connection *connection_new(struct worker *w, const char *channel, const char *remote_addr);
const char *connection_id(const struct connection *c);
/* The handshake of a WebSocket request, checked before on_open runs: NULL when it is one, else
 * the status (400, 403, 426) and message to answer with. */
const char *connection_handshake_problem(struct worker *w, struct http_exchange *x,
                                         const struct http_request *r, int *status);
/* on_open accepted: answer 101 and take the socket over. Returns -1 when the key is invalid. */
int connection_accept(struct connection *c, struct http_exchange *x, const char *client_key);
/* on_open refused (the HTTP answer went): the connection never opens. */
void connection_discard(struct connection *c);
void connection_job_started(struct connection *c, struct job *job);
void connection_job_done(struct connection *c);
/* An epoll event for a connection's socket. */
void connection_on_socket(struct worker *w, int fd, uint32_t events);
/* Start pending events and free finished connections; the worker's loop calls it each turn. */
void connections_run_ready(struct worker *w);
/* Sends from other workers, in order. */
void connection_deliver_mail(struct worker *w, struct conn_mail *m);
/* What scripts ask, on the connection's own worker. Each returns -1 when the connection is gone
 * (or closing, for a send). */
int connection_send(struct worker *w, const char *id, int binary, const char *data, size_t len);
int connection_close(struct worker *w, const char *id, uint16_t code, const char *reason);
int connection_bind(struct worker *w, const char *id, const char *sender);
/* Send text every `seconds` while open (0 stops): an application-level ping. */
int connection_keepalive(struct worker *w, const char *id, double seconds, const char *text,
                         size_t len);
/* Send to every connection bound to sender, on any worker: the number it was handed to. */
int connections_send_to_sender(struct worker *self, const char *sender, int binary,
                               const char *data, size_t len);
/* The worker adopts a reload's scripts: each connection's conn.data goes along (as JSON). */
void connections_adopt(struct worker *w, struct script_state *old, struct script_state *fresh);
/* Graceful stop: close every open connection with 1001. */
void connections_going_away(struct worker *w);
/* The worker stops: every connection goes at once. */
void connections_free_all(struct worker *w);

#endif
