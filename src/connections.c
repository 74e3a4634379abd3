/* SPDX-License-Identifier: MIT */
/* connections: WebSocket connections (docs/lua-api.md, "Connections"; see engine_internal.h).
 *
 * A connection belongs to the worker whose server accepted it: that worker's loop reads and
 * writes its socket (no thread per connection) and its Lua state runs the channel's on_open,
 * on_message and on_close, one event at a time per connection, in order. The frames are
 * ws_frame's. Writes go through a bounded queue: a client that stops reading is closed, never
 * buffered without limit. Sends from another worker (a sender, a proactive message) reach the
 * connection through its worker's inbox, by id: a connection may be gone by then.
 *
 * Senders find connections through bindings (conn:bind(sender_id)), a table shared by every
 * worker under one mutex. With the Redis store, sends also reach the senders' connections on the
 * other hosts (docs/multi-host.md, "Open connections across hosts"): a worker's first binding of
 * a sender subscribes to the sender's channel, and every send publishes there.
 *
 * Nothing here starts a job or frees a connection in the middle of a call: a change of state
 * puts the connection on its worker's `ready` list, and connections_run_ready (the worker's
 * loop, between events) starts its next Lua event or frees it. So a send made from a script can
 * end the connection without running another script inside that call. */
#include "engine_internal.h"

#include "list.h"
#include "log.h"
#include "lua_sb.h"
#include "metrics.h"
#include "ws_frame.h"

#include <errno.h>
#include <lauxlib.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_BUCKETS 1024u        /* per worker, by id */
#define BINDING_BUCKETS 4096u     /* every worker, by sender */
#define READ_CHUNK 16384
#define CLOSE_WAIT_MS 2000        /* how long a close handshake may take before the socket goes */
#define EVENTS_PAUSE_BYTES (1u << 20) /* queued for Lua: reading pauses above this */

enum conn_state {
    CONN_OPENING,   /* on_open runs; the 101 is not sent yet */
    CONN_OPEN,
    CONN_CLOSING,   /* our close frame is queued or sent: waiting for the client's */
    CONN_CLOSED     /* the socket is gone; events may still be running */
};

/* An event for the channel's Lua, in arrival order. */
struct conn_event {
    struct conn_event *next;
    enum { EVENT_MESSAGE, EVENT_CLOSE } kind;
    int binary;
    uint16_t code;
    size_t len;
    char data[]; /* the message, or the close reason; NUL-terminated */
};

/* A sender's bound connection. */
struct binding {
    struct binding *next;
    struct worker *w;
    char conn_id[CONN_ID_SIZE];
    char sender[];
};

/* A send from another worker, by connection id. */
struct conn_mail {
    struct conn_mail *next;
    char conn_id[CONN_ID_SIZE];
    int opcode;        /* WS_OP_TEXT, WS_OP_BINARY, or WS_OP_CLOSE */
    uint16_t code;
    size_t len;
    char data[];
};

struct connection {
    char id[CONN_ID_SIZE];
    struct worker *w;
    char *channel;                 /* the channel's name: a reload keeps names, not indexes */
    char *remote_addr;
    enum conn_state state;
    struct http_upgraded *up;
    int fd;                        /* -1 until upgraded, and once the socket is gone */
    uint32_t watching;             /* the epoll events asked for */
    struct ws_parser parser;
    struct buffer out;             /* frames not yet written */
    size_t out_off;
    struct timer ping_timer, close_timer, keepalive_timer;
    char *keepalive_text;          /* conn:keepalive: sent every keepalive_ms */
    size_t keepalive_len;
    uint64_t keepalive_ms;
    uint64_t heard_ms;             /* the last bytes from the client */
    unsigned ping_outstanding : 1;
    unsigned close_sent : 1;
    unsigned reported : 1;         /* on_close is queued: nothing more goes to Lua */
    unsigned paused : 1;           /* reading stopped: too much waits for Lua */
    unsigned ready : 1;            /* on the worker's ready list */
    struct conn_event *ev_head, *ev_tail;
    size_t ev_bytes;
    struct job *job;               /* the event running now */
    char **senders;                /* bound senders */
    size_t sender_count;
    struct connection *hnext;      /* the worker's id table */
    struct connection *prev, *next;
    struct connection *ready_next;
};

#define CONN_OF(ptr, member)                                                                   \
    ((struct connection *)((char *)(ptr) - offsetof(struct connection, member)))

/* ---- the worker's table ---------------------------------------------------------------------- */

static uint32_t hash_text(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

struct connection *connection_find(struct worker *w, const char *id)
{
    if (!w->conn_buckets)
        return NULL;
    struct connection *c = w->conn_buckets[hash_text(id) % CONN_BUCKETS];
    while (c && strcmp(c->id, id) != 0)
        c = c->hnext;
    return c;
}

static void table_remove(struct worker *w, struct connection *c)
{
    for (struct connection **p = &w->conn_buckets[hash_text(c->id) % CONN_BUCKETS]; *p;
         p = &(*p)->hnext) {
        if (*p == c) {
            *p = c->hnext;
            break;
        }
    }
    LIST_UNLINK(w->connections, c, prev, next);
    w->connection_count--;
}

/* ---- bindings: which connections a sender has ------------------------------------------------ */

static pthread_mutex_t binding_lock = PTHREAD_MUTEX_INITIALIZER;
static struct binding *bindings[BINDING_BUCKETS];

static void heard_from_hosts(void *ctx, const char *sender, int binary, const char *data,
                             size_t len);

static int binding_add(struct connection *c, const char *sender)
{
    for (size_t i = 0; i < c->sender_count; i++)
        if (strcmp(c->senders[i], sender) == 0)
            return 0;
    char **grown = realloc(c->senders, (c->sender_count + 1) * sizeof *grown);
    struct binding *b = calloc(1, sizeof *b + strlen(sender) + 1);
    char *copy = strdup(sender);
    /* With Redis, the worker's first connection bound to the sender subscribes to it. */
    int watch_failed = grown && b && copy && c->w->redis &&
                       store_redis_conn_watch(c->w->redis, sender, heard_from_hosts, c->w) != 0;
    if (!grown || !b || !copy || watch_failed) {
        if (grown)
            c->senders = grown;
        free(b);
        free(copy);
        return -1;
    }
    c->senders = grown;
    c->senders[c->sender_count++] = copy;
    b->w = c->w;
    memcpy(b->conn_id, c->id, sizeof b->conn_id);
    strcpy(b->sender, sender);
    pthread_mutex_lock(&binding_lock);
    struct binding **slot = &bindings[hash_text(sender) % BINDING_BUCKETS];
    b->next = *slot;
    *slot = b;
    pthread_mutex_unlock(&binding_lock);
    return 0;
}

static void bindings_drop(struct connection *c)
{
    pthread_mutex_lock(&binding_lock);
    for (size_t i = 0; i < c->sender_count; i++) {
        for (struct binding **p = &bindings[hash_text(c->senders[i]) % BINDING_BUCKETS]; *p;) {
            struct binding *b = *p;
            if (strcmp(b->conn_id, c->id) == 0 && strcmp(b->sender, c->senders[i]) == 0) {
                *p = b->next;
                free(b);
            } else {
                p = &b->next;
            }
        }
    }
    pthread_mutex_unlock(&binding_lock);
    for (size_t i = 0; i < c->sender_count; i++) {
        if (c->w->redis)
            store_redis_conn_unwatch(c->w->redis, c->senders[i]);
        free(c->senders[i]);
    }
    free(c->senders);
    c->senders = NULL;
    c->sender_count = 0;
}

/* ---- the socket ------------------------------------------------------------------------------ */

static uint64_t epoll_data(int fd)
{
    return ((uint64_t)CONN_EPOLL_TAG << 32) | (uint32_t)fd;
}

static void watch(struct connection *c, uint32_t events)
{
    if (c->fd < 0 || c->watching == events)
        return;
    struct epoll_event ev = {.events = events, .data.u64 = epoll_data(c->fd)};
    epoll_ctl(c->w->epfd, c->watching ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->watching = events;
}

static void queue_close_event(struct connection *c, uint16_t code, const char *reason);

/* Look at the connection again between events (connections_run_ready). */
static void schedule(struct connection *c)
{
    if (c->ready)
        return;
    c->ready = 1;
    c->ready_next = c->w->conn_ready;
    c->w->conn_ready = c;
}

/* The socket goes (libmicrohttpd closes it); on_close is reported when it was not yet. */
static void drop_socket(struct connection *c, uint16_t code, const char *reason)
{
    if (c->fd >= 0) {
        epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        if ((size_t)c->fd < c->w->conn_by_fd_size)
            c->w->conn_by_fd[c->fd] = NULL;
        c->fd = -1;
        c->watching = 0;
    }
    if (c->up) {
        http_upgraded_close(c->up);
        c->up = NULL;
        metrics_websocket_connections_add(-1);
    }
    timer_stop(&c->w->timers, &c->ping_timer);
    timer_stop(&c->w->timers, &c->close_timer);
    timer_stop(&c->w->timers, &c->keepalive_timer);
    c->state = CONN_CLOSED;
    bindings_drop(c);
    buffer_free(&c->out);
    c->out_off = 0;
    queue_close_event(c, code, reason);
    schedule(c);
}

/* Write what is queued; watch for room when the socket is full. Returns -1 when the socket
 * failed (it is dropped then). */
static int flush(struct connection *c)
{
    if (c->fd < 0)
        return 0; /* before the 101: what is queued goes once the socket is ours */
    while (c->fd >= 0 && c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(c, (c->paused ? 0 : EPOLLIN) | EPOLLOUT);
            return 0;
        }
        if (n < 0 && errno == EINTR)
            continue;
        drop_socket(c, 1006, "the connection was lost while sending");
        return -1;
    }
    c->out.len = c->out_off = 0;
    if (c->fd < 0)
        return 0;
    if (c->state == CONN_CLOSING && c->close_sent && c->reported) {
        /* Both close frames went: the handshake is over. */
        drop_socket(c, 1000, "");
        return -1;
    }
    watch(c, c->paused ? 0 : EPOLLIN);
    return 0;
}

/* Queue one frame. A client that lets more than the limit pile up is not reading: it is cut. */
static int send_frame(struct connection *c, int opcode, const void *data, size_t len)
{
    if (c->state == CONN_CLOSED || (c->close_sent && opcode != WS_OP_CLOSE))
        return -1;
    size_t limit = c->w->engine->opt.websocket.send_queue;
    if (c->out.len - c->out_off + len > limit && opcode != WS_OP_CLOSE) {
        log_msg(LOG_WARNING, NULL, "connection %s: the client does not read (more than %zu bytes "
                                   "waiting): closed", c->id, limit);
        drop_socket(c, 1006, "the client did not read what was sent (send queue full)");
        return -1;
    }
    if (c->out_off && c->out_off == c->out.len)
        c->out.len = c->out_off = 0;
    if (ws_frame_append(&c->out, opcode, data, len) != 0) {
        drop_socket(c, 1011, "out of memory");
        return -1;
    }
    if (c->fd >= 0 && !(c->watching & EPOLLOUT))
        return flush(c);
    return 0;
}

/* Start the close handshake (or answer the client's): our close frame, then the socket goes
 * once the client's close came and ours is written, or after CLOSE_WAIT_MS. */
static void send_close(struct connection *c, uint16_t code, const char *reason)
{
    if (c->close_sent || c->state == CONN_CLOSED)
        return;
    unsigned char payload[WS_MAX_CONTROL];
    size_t len = code == 1005 ? 0 : ws_close_payload(payload, code, reason ? reason : "");
    c->state = CONN_CLOSING;
    send_frame(c, WS_OP_CLOSE, payload, len);
    c->close_sent = 1;
    bindings_drop(c); /* nothing more reaches it: sends to its senders must not count it */
    if (c->state != CONN_CLOSED) {
        timer_start(&c->w->timers, &c->close_timer, timers_now_ms() + CLOSE_WAIT_MS);
        flush(c);
    }
}

static void close_timer_fired(struct timer *t)
{
    struct connection *c = CONN_OF(t, close_timer);
    drop_socket(c, c->reported ? 1000 : 1006, "the close handshake did not finish");
}

static void ping_timer_fired(struct timer *t)
{
    struct connection *c = CONN_OF(t, ping_timer);
    uint64_t interval = c->w->engine->opt.websocket.ping_interval_ms;
    if (c->state != CONN_OPEN || !interval)
        return;
    uint64_t now = timers_now_ms();
    if (now - c->heard_ms >= interval) {
        if (c->ping_outstanding) {
            log_msg(LOG_INFO, NULL, "connection %s: no answer to a ping in %.3g s: closed", c->id,
                    (double)interval / 1000.0);
            drop_socket(c, 1006, "the client did not answer a ping");
            return;
        }
        c->ping_outstanding = 1;
        send_frame(c, WS_OP_PING, "", 0);
        if (c->state == CONN_CLOSED)
            return;
        now = timers_now_ms();
    }
    timer_start(&c->w->timers, &c->ping_timer, now + interval);
}

static void keepalive_fired(struct timer *t)
{
    struct connection *c = CONN_OF(t, keepalive_timer);
    if (c->state != CONN_OPEN || !c->keepalive_ms)
        return;
    send_frame(c, WS_OP_TEXT, c->keepalive_text, c->keepalive_len);
    if (c->state == CONN_OPEN)
        timer_start(&c->w->timers, &c->keepalive_timer, timers_now_ms() + c->keepalive_ms);
}

/* ---- events for Lua -------------------------------------------------------------------------- */

static void queue_event(struct connection *c, int kind, int binary, uint16_t code,
                        const void *data, size_t len)
{
    struct conn_event *ev = malloc(sizeof *ev + len + 1);
    if (!ev) {
        log_msg(LOG_ERROR, NULL, "connection %s: out of memory queueing a message", c->id);
        return;
    }
    ev->next = NULL;
    ev->kind = kind;
    ev->binary = binary;
    ev->code = code;
    ev->len = len;
    if (len)
        memcpy(ev->data, data, len);
    ev->data[len] = '\0';
    if (c->ev_tail)
        c->ev_tail->next = ev;
    else
        c->ev_head = ev;
    c->ev_tail = ev;
    c->ev_bytes += len;
    schedule(c);
}

static void queue_close_event(struct connection *c, uint16_t code, const char *reason)
{
    if (c->reported)
        return;
    c->reported = 1;
    /* A connection refused in on_open never opened: its channel hears nothing more. */
    if (!c->up && c->state != CONN_CLOSED)
        return;
    queue_event(c, EVENT_CLOSE, 0, code, reason, strlen(reason));
}

/* What an event job runs: pipeline.connection(event, channel, conn, a, b), built on the
 * state's main thread.  [-0,+6,m] */
struct event_call {
    struct connection *c;
    const struct conn_event *ev;
    int channel_index;
};

static int l_push_event(lua_State *L)
{
    struct event_call *call = lua_touserdata(L, 1);
    struct script_state *st = call->c->w->lua;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->connection_ref);
    lua_pushstring(L, call->ev->kind == EVENT_MESSAGE ? "message" : "close");
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->channel_refs[call->channel_index]);
    lua_sb_push_connection(L, call->c->id);
    if (call->ev->kind == EVENT_MESSAGE) {
        lua_pushlstring(L, call->ev->data, call->ev->len);
        lua_pushboolean(L, call->ev->binary);
    } else {
        lua_pushinteger(L, call->ev->code);
        lua_pushlstring(L, call->ev->data, call->ev->len);
    }
    return 6;
}

static int channel_index(const struct script_state *st, const char *name)
{
    const struct channel_set *set = &st->gen->channels;
    for (size_t i = 0; i < set->count; i++)
        if (set->defs[i].name && strcmp(set->defs[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Run the next events while none runs (one may end at once). Reading resumes once the queue is
 * small again. */
static void start_next_event(struct connection *c)
{
    while (!c->job && c->ev_head) {
        struct conn_event *ev = c->ev_head;
        c->ev_head = ev->next;
        if (!c->ev_head)
            c->ev_tail = NULL;
        c->ev_bytes -= ev->len;
        int index = channel_index(c->w->lua, c->channel);
        if (index < 0) {
            log_msg(LOG_WARNING, NULL, "connection %s: the channel '%s' is gone after a reload: "
                                       "closed", c->id, c->channel);
            if (ev->kind == EVENT_MESSAGE && c->state != CONN_CLOSED)
                send_close(c, 1001, "the channel is gone");
        } else {
            struct event_call call = {c, ev, index};
            job_start_call(c->w, c, c->channel, l_push_event, &call, 5);
        }
        free(ev);
    }
    if (c->paused && c->ev_bytes < EVENTS_PAUSE_BYTES / 2 && c->fd >= 0) {
        c->paused = 0;
        watch(c, EPOLLIN | (c->out_off < c->out.len ? EPOLLOUT : 0));
    }
}

void connection_job_started(struct connection *c, struct job *job)
{
    c->job = job;
}

void connection_job_done(struct connection *c)
{
    c->job = NULL;
    schedule(c);
}

/* Gone from the worker, from the Lua states that know it, and from the bindings (if the close
 * did not drop them already) once the socket is closed and on_close has run. */
static void free_if_done(struct connection *c)
{
    if (c->state != CONN_CLOSED || c->job || c->ev_head)
        return;
    struct worker *w = c->w;
    lua_sb_forget_connection(w->lua->L, c->id);
    for (struct script_state *st = w->retired; st; st = st->next)
        lua_sb_forget_connection(st->L, c->id);
    bindings_drop(c);
    table_remove(w, c);
    ws_parser_free(&c->parser);
    buffer_free(&c->out);
    free(c->channel);
    free(c->remote_addr);
    free(c->keepalive_text);
    free(c);
}

/* ---- reading --------------------------------------------------------------------------------- */

static void handle_frames(struct connection *c, const unsigned char *buf, size_t len)
{
    while (len && c->state != CONN_CLOSED) {
        struct ws_event ev;
        size_t used = ws_parse(&c->parser, buf, len, &ev);
        buf += used;
        len -= used;
        switch (ev.kind) {
        case WS_EV_NONE:
            if (!used)
                return;
            break;
        case WS_EV_MESSAGE:
            if (c->state == CONN_OPEN)
                queue_event(c, EVENT_MESSAGE, ev.binary, 0, ev.data, ev.len);
            if (c->ev_bytes > EVENTS_PAUSE_BYTES && !c->paused) {
                c->paused = 1; /* the rest waits in the socket: TCP slows the client down */
                watch(c, c->out_off < c->out.len ? EPOLLOUT : 0);
            }
            break;
        case WS_EV_PING:
            send_frame(c, WS_OP_PONG, ev.data, ev.len);
            break;
        case WS_EV_PONG:
            c->ping_outstanding = 0;
            break;
        case WS_EV_CLOSE: {
            char reason[WS_MAX_CONTROL + 1];
            size_t n = ev.reason_len < WS_MAX_CONTROL ? ev.reason_len : WS_MAX_CONTROL;
            memcpy(reason, ev.reason, n);
            reason[n] = '\0';
            uint16_t code = ev.code;
            queue_close_event(c, code, reason);
            if (!c->close_sent)
                send_close(c, code, reason); /* echo it (an empty close for 1005) */
            else
                flush(c);
            return;
        }
        case WS_EV_ERROR:
            log_msg(LOG_INFO, NULL, "connection %s: %s: closing with %u", c->id, ev.reason,
                    (unsigned)ev.code);
            queue_close_event(c, ev.code, ev.reason);
            send_close(c, ev.code, ev.reason);
            return;
        }
    }
}

static void on_readable(struct connection *c)
{
    unsigned char buf[READ_CHUNK];
    for (int rounds = 0; c->fd >= 0 && !c->paused && rounds < 16; rounds++) {
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            c->heard_ms = timers_now_ms();
            handle_frames(c, buf, (size_t)n);
            /* A short read emptied the socket: the next recv would only say EAGAIN, and the
             * level-triggered epoll reports whatever arrives later. */
            if ((size_t)n < sizeof buf)
                return;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        drop_socket(c, 1006, n == 0 ? "the client closed the connection without a close frame"
                                    : "the connection was lost");
        return;
    }
}

void connection_on_socket(struct worker *w, int fd, uint32_t events)
{
    if (fd < 0 || (size_t)fd >= w->conn_by_fd_size || !w->conn_by_fd[fd])
        return;
    struct connection *c = w->conn_by_fd[fd];
    if (events & EPOLLOUT) {
        if (flush(c) != 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(c);
}

/* ---- opening --------------------------------------------------------------------------------- */

static void random_id(char out[CONN_ID_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
        for (size_t i = 0; i < sizeof bytes; i++)
            bytes[i] = (unsigned char)rand();
    }
    for (size_t i = 0; i < sizeof bytes; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[32] = '\0';
}

struct connection *connection_new(struct worker *w, const char *channel, const char *remote_addr)
{
    if (!w->conn_buckets && !(w->conn_buckets = calloc(CONN_BUCKETS, sizeof *w->conn_buckets)))
        return NULL;
    struct connection *c = calloc(1, sizeof *c);
    if (!c || !(c->channel = strdup(channel)) || !(c->remote_addr = strdup(remote_addr))) {
        if (c)
            free(c->channel);
        free(c);
        return NULL;
    }
    random_id(c->id);
    c->w = w;
    c->fd = -1;
    c->state = CONN_OPENING;
    c->ping_timer = TIMER_INIT(ping_timer_fired);
    c->close_timer = TIMER_INIT(close_timer_fired);
    c->keepalive_timer = TIMER_INIT(keepalive_fired);
    ws_parser_init(&c->parser, w->engine->opt.websocket.max_message);
    struct connection **slot = &w->conn_buckets[hash_text(c->id) % CONN_BUCKETS];
    c->hnext = *slot;
    *slot = c;
    LIST_PUSH(w->connections, c, prev, next);
    w->connection_count++;
    return c;
}

/* libmicrohttpd handed the socket over after the 101 (or could not send it: fd < 0). */
static void upgraded(void *ctx, struct http_upgraded *u, int fd, const char *extra,
                     size_t extra_len)
{
    struct connection *c = ctx;
    struct worker *w = c->w;
    if (!u || fd < 0) {
        c->reported = 1; /* it never opened: nothing for on_close */
        c->state = CONN_CLOSED;
        schedule(c);
        return;
    }
    if ((size_t)fd >= w->conn_by_fd_size) {
        size_t size = (size_t)fd + 1024;
        struct connection **grown = realloc(w->conn_by_fd, size * sizeof *grown);
        if (!grown) {
            http_upgraded_close(u);
            c->reported = 1;
            c->state = CONN_CLOSED;
            schedule(c);
            return;
        }
        memset(grown + w->conn_by_fd_size, 0, (size - w->conn_by_fd_size) * sizeof *grown);
        w->conn_by_fd = grown;
        w->conn_by_fd_size = size;
    }
    w->conn_by_fd[fd] = c;
    c->up = u;
    c->fd = fd;
    metrics_websocket_connections_add(1);
    int closing = c->state == CONN_CLOSING; /* conn:close in on_open */
    if (!closing)
        c->state = CONN_OPEN;
    c->heard_ms = timers_now_ms();
    uint64_t interval = w->engine->opt.websocket.ping_interval_ms;
    if (interval)
        timer_start(&w->timers, &c->ping_timer, c->heard_ms + interval);
    watch(c, EPOLLIN);
    if (c->keepalive_ms)
        timer_start(&w->timers, &c->keepalive_timer, c->heard_ms + c->keepalive_ms);
    if (flush(c) != 0)
        return;
    if (extra_len)
        handle_frames(c, (const unsigned char *)extra, extra_len);
    if (closing && c->close_sent)
        timer_start(&w->timers, &c->close_timer, timers_now_ms() + CLOSE_WAIT_MS);
}

const char *connection_id(const struct connection *c) { return c->id; }

/* An Origin allowed by --cors; without --cors any origin is (as for the other routes, the host
 * leaves it to the channel then: on_open sees req.headers.origin). */
static int origin_allowed(struct worker *w, const char *origin)
{
    const char *const *allowed = w->engine->opt.http.cors_origins;
    if (!allowed || !origin)
        return 1;
    for (; *allowed; allowed++)
        if (strcmp(*allowed, "*") == 0 || strcasecmp(*allowed, origin) == 0)
            return 1;
    return 0;
}

const char *connection_handshake_problem(struct worker *w, struct http_exchange *x,
                                         const struct http_request *r, int *status)
{
    const char *upgrade = http_header_value(x, "Upgrade");
    *status = 400;
    if (strcmp(r->method, "GET") != 0)
        return "a WebSocket opens with GET";
    if (!ws_token_listed(upgrade, "websocket")) {
        *status = 426;
        return "this route is a WebSocket: connect with a WebSocket client (Upgrade: websocket)";
    }
    if (!ws_token_listed(http_header_value(x, "Connection"), "upgrade"))
        return "a WebSocket handshake needs Connection: Upgrade";
    const char *version = http_header_value(x, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13") != 0) {
        *status = 426;
        return "only WebSocket version 13 is supported (Sec-WebSocket-Version: 13)";
    }
    char accept[29];
    const char *key = http_header_value(x, "Sec-WebSocket-Key");
    if (!key || ws_accept_key(key, accept) != 0)
        return "Sec-WebSocket-Key must be the base64 of 16 bytes";
    if (!origin_allowed(w, http_header_value(x, "Origin"))) {
        *status = 403;
        return "this Origin is not allowed (--cors)";
    }
    return NULL;
}

int connection_accept(struct connection *c, struct http_exchange *x, const char *client_key)
{
    char accept[29];
    if (!client_key || ws_accept_key(client_key, accept) != 0)
        return -1;
    struct http_header headers[] = {{"Upgrade", "websocket"},
                                    {"Connection", "Upgrade"},
                                    {"Sec-WebSocket-Accept", accept}};
    http_upgrade(x, headers, sizeof headers / sizeof headers[0], upgraded, c);
    return 0;
}

void connection_discard(struct connection *c)
{
    c->reported = 1;
    c->state = CONN_CLOSED;
    schedule(c);
}

void connections_run_ready(struct worker *w)
{
    while (w->conn_ready) {
        struct connection *c = w->conn_ready;
        w->conn_ready = c->ready_next;
        c->ready = 0;
        start_next_event(c);
        if (!c->ready)
            free_if_done(c);
    }
}

/* ---- what scripts ask (through their task's operations) -------------------------------------- */

int connection_send(struct worker *w, const char *id, int binary, const char *data, size_t len)
{
    struct connection *c = connection_find(w, id);
    if (!c || c->state == CONN_CLOSED || c->close_sent)
        return -1;
    return send_frame(c, binary ? WS_OP_BINARY : WS_OP_TEXT, data, len);
}

int connection_close(struct worker *w, const char *id, uint16_t code, const char *reason)
{
    struct connection *c = connection_find(w, id);
    if (!c || c->state == CONN_CLOSED)
        return -1;
    send_close(c, code, reason);
    return 0;
}

int connection_keepalive(struct worker *w, const char *id, double seconds, const char *text,
                         size_t len)
{
    struct connection *c = connection_find(w, id);
    if (!c || c->state == CONN_CLOSED)
        return -1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    free(c->keepalive_text);
    c->keepalive_text = copy;
    c->keepalive_len = len;
    c->keepalive_ms = (uint64_t)(seconds * 1000.0 + 0.5);
    timer_stop(&w->timers, &c->keepalive_timer);
    if (c->keepalive_ms && c->state == CONN_OPEN)
        timer_start(&w->timers, &c->keepalive_timer, timers_now_ms() + c->keepalive_ms);
    return 0;
}

int connection_bind(struct worker *w, const char *id, const char *sender)
{
    struct connection *c = connection_find(w, id);
    if (!c || c->state == CONN_CLOSED || c->close_sent)
        return -1;
    return binding_add(c, sender);
}

/* Put a send in the worker's inbox (under its lock) and wake it. */
static void worker_post_mail(struct worker *w, struct conn_mail *m)
{
    pthread_mutex_lock(&w->inbox_lock);
    if (w->mail_tail)
        w->mail_tail->next = m;
    else
        w->mail_head = m;
    w->mail_tail = m;
    pthread_mutex_unlock(&w->inbox_lock);
    worker_wake(w);
}

/* Hand a send to the connection's worker. */
static void post_mail(struct worker *to, const char *id, int opcode, uint16_t code,
                      const char *data, size_t len)
{
    struct conn_mail *m = malloc(sizeof *m + len + 1);
    if (!m)
        return;
    m->next = NULL;
    memcpy(m->conn_id, id, CONN_ID_SIZE);
    m->opcode = opcode;
    m->code = code;
    m->len = len;
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    worker_post_mail(to, m);
}

int connections_send_to_sender(struct worker *self, const char *sender, int binary,
                               const char *data, size_t len)
{
    enum { MAX_TARGETS = 64 };
    struct { struct worker *w; char id[CONN_ID_SIZE]; } targets[MAX_TARGETS];
    int count = 0;
    pthread_mutex_lock(&binding_lock);
    for (struct binding *b = bindings[hash_text(sender) % BINDING_BUCKETS]; b; b = b->next) {
        if (strcmp(b->sender, sender) == 0 && count < MAX_TARGETS) {
            targets[count].w = b->w;
            memcpy(targets[count].id, b->conn_id, CONN_ID_SIZE);
            count++;
        }
    }
    pthread_mutex_unlock(&binding_lock);
    int sent = 0;
    for (int i = 0; i < count; i++) {
        if (targets[i].w == self) {
            sent += connection_send(self, targets[i].id, binary, data, len) == 0;
        } else {
            post_mail(targets[i].w, targets[i].id, binary ? WS_OP_BINARY : WS_OP_TEXT, 0, data,
                      len);
            sent++;
        }
    }
    /* The other hosts' connections: published without waiting, so not counted. */
    if (self && self->redis)
        store_redis_conn_publish(self->redis, sender, binary, data, len);
    return sent;
}

/* What another host sent to a sender this worker holds connections of (its Redis
 * subscription): to each of them, on this worker only (every worker holding the sender hears
 * it for itself). */
static void heard_from_hosts(void *ctx, const char *sender, int binary, const char *data,
                             size_t len)
{
    struct worker *w = ctx;
    enum { MAX_TARGETS = 64 };
    char ids[MAX_TARGETS][CONN_ID_SIZE];
    int count = 0;
    pthread_mutex_lock(&binding_lock);
    for (struct binding *b = bindings[hash_text(sender) % BINDING_BUCKETS]; b; b = b->next) {
        if (b->w == w && strcmp(b->sender, sender) == 0 && count < MAX_TARGETS)
            memcpy(ids[count++], b->conn_id, CONN_ID_SIZE);
    }
    pthread_mutex_unlock(&binding_lock);
    for (int i = 0; i < count; i++)
        connection_send(w, ids[i], binary, data, len);
}

void connection_deliver_mail(struct worker *w, struct conn_mail *m)
{
    while (m) {
        struct conn_mail *next = m->next;
        if (m->opcode == WS_OP_CLOSE)
            connection_close(w, m->conn_id, m->code, m->data);
        else
            connection_send(w, m->conn_id, m->opcode == WS_OP_BINARY, m->data, m->len);
        free(m);
        m = next;
    }
}

/* ---- the end --------------------------------------------------------------------------------- */

void connections_adopt(struct worker *w, struct script_state *old, struct script_state *fresh)
{
    for (struct connection *c = w->connections; c; c = c->next) {
        char err[256];
        if (c->state != CONN_CLOSED &&
            lua_sb_carry_connection_data(old->L, fresh->L, c->id, err, sizeof err) != 0)
            log_msg(LOG_WARNING, c->id, "conn.data could not be carried to the new scripts (only "
                                        "JSON values can): %s", err);
    }
}

void connections_going_away(struct worker *w)
{
    for (struct connection *c = w->connections; c; c = c->next)
        if (c->state == CONN_OPEN)
            send_close(c, 1001, "the host is stopping");
}

void connections_free_all(struct worker *w)
{
    w->conn_ready = NULL;
    while (w->connections) {
        struct connection *c = w->connections;
        c->job = NULL; /* the worker's jobs are freed without running */
        c->reported = 1;
        if (c->fd >= 0 || c->up)
            drop_socket(c, 1001, "");
        while (c->ev_head) {
            struct conn_event *ev = c->ev_head;
            c->ev_head = ev->next;
            free(ev);
        }
        c->ev_tail = NULL;
        c->state = CONN_CLOSED;
        free_if_done(c);
    }
    w->conn_ready = NULL;
    free(w->conn_buckets);
    w->conn_buckets = NULL;
    free(w->conn_by_fd);
    w->conn_by_fd = NULL;
    w->conn_by_fd_size = 0;
}
