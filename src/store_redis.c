/* SPDX-License-Identifier: MIT */
/* store_redis: see store_redis.h. The hiredis adapter (addRead, delRead, addWrite, delWrite,
 * cleanup) keeps each connection's socket in the worker's epoll set; hiredis 0.14 has no timeouts
 * of its own, so the connect timeout, the command timeout, the reconnect backoff and the waits of
 * pops are timers in the worker's heap.
 *
 * Failures are never handled inside a hiredis callback (freeing a context there is not safe):
 * fail() notes the first error, and settle(), called whenever hiredis has returned control to
 * this file (after an epoll event, a timer, the start), drops both connections, which answers
 * every call in flight with a NULL reply, and schedules the next attempt. */
#include "store_redis.h"

#include "log.h"
#include "metrics.h"
#include "store.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#define BACKOFF_FIRST_MS 100u
#define BACKOFF_MAX_MS 5000u
#define MAX_IN_FLIGHT 65536u      /* calls one worker may have waiting for Redis */
#define RESOLVE_POLL_MS 10u
#define CHANNEL_INFIX "pushed:"   /* a push publishes to <prefix>pushed:<key> */

/* EXPIRE with a TTL of 0: remove the expiry, true when the key exists (PERSIST alone answers 0
 * for a key without a TTL). */
static const char PERSIST_SCRIPT[] =
    "if redis.call('exists', KEYS[1]) == 1 then redis.call('persist', KEYS[1]) return 1 end "
    "return 0";

#define CONTAINER(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- the host ------------------------------------------------------------------------------ */

struct worker_state {
    int up;
    time_t since; /* up: when it came up; else when it went down (or started) */
};

struct store_redis_host {
    struct store_config cfg;
    char id[33];                /* this host among those sharing the Redis: random, per process */
    pthread_mutex_t lock;
    unsigned workers;
    struct worker_state *ws;
    char last_error[256];
    time_t last_error_at;
    unsigned long long reconnects;
};

struct store_redis_host *store_redis_host_create(const struct store_config *cfg, unsigned workers)
{
    struct store_redis_host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->ws = calloc(workers ? workers : 1, sizeof *h->ws);
    if (!h->ws) {
        free(h);
        return NULL;
    }
    h->cfg = *cfg;
    h->workers = workers;
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        /* No entropy source: time, pid and an address still tell hosts apart. */
        uint64_t a = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32), b = (uintptr_t)h;
        memcpy(raw, &a, 8);
        memcpy(raw + 8, &b, 8);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(h->id + 2 * i, 3, "%02x", raw[i]);
    time_t now = time(NULL);
    for (unsigned i = 0; i < workers; i++)
        h->ws[i].since = now;
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

void store_redis_host_destroy(struct store_redis_host *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    explicit_bzero(h->cfg.password, sizeof h->cfg.password);
    free(h->ws);
    h->ws = NULL;
    free(h);
}

void store_redis_host_status(struct store_redis_host *h, struct store_redis_status *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->url, sizeof out->url, "%s", h->cfg.url_shown);
    snprintf(out->prefix, sizeof out->prefix, "%s", h->cfg.prefix);
    pthread_mutex_lock(&h->lock);
    out->workers = h->workers;
    time_t latest_up = 0, earliest_down = 0;
    for (unsigned i = 0; i < h->workers; i++) {
        if (h->ws[i].up) {
            out->up++;
            if (h->ws[i].since > latest_up)
                latest_up = h->ws[i].since;
        } else if (!earliest_down || h->ws[i].since < earliest_down) {
            earliest_down = h->ws[i].since;
        }
    }
    out->connected = out->up == h->workers;
    out->since = out->connected ? latest_up : earliest_down;
    snprintf(out->last_error, sizeof out->last_error, "%s", h->last_error);
    out->last_error_at = h->last_error_at;
    out->reconnects = h->reconnects;
    pthread_mutex_unlock(&h->lock);
}

/* ---- one worker: its data ------------------------------------------------------------------- */

enum link { LINK_DOWN, LINK_RESOLVING, LINK_CONNECTING, LINK_UP };
enum { CONN_COMMANDS, CONN_SUBSCRIBER };
enum sub_state { SUB_PENDING, SUB_ACTIVE, SUB_LEAVING };

struct conn {
    struct store_redis *r;
    redisAsyncContext *ac;      /* NULL when there is none */
    unsigned which;             /* CONN_COMMANDS or CONN_SUBSCRIBER */
    uint32_t gen;               /* bumped per context: stale epoll events are ignored */
    uint32_t events;            /* what epoll watches for it */
    int fd;
    unsigned handshake;         /* setup replies still to come (AUTH, SELECT, PING) */
    int ready;
};

/* A key that pops of this worker wait on, by the channel its pushes publish to. */
struct wait_key {
    struct wait_key *next_in_bucket;
    char *channel, *rkey;       /* <prefix>pushed:<key>, <prefix><key> */
    size_t channel_len, rkey_len;
    struct store_redis_call *head, *tail; /* its waiters, oldest first */
    struct store_redis_turn *turns; /* or: the senders' turns waiting on it (order) */
    unsigned count;
    enum sub_state sub;
    unsigned notes;             /* pushes heard and not yet tried with an LPOP */
};

struct store_redis_call {
    struct store_redis *r;
    store_redis_done done;      /* NULL once answered or detached */
    void *ctx;
    enum store_op op;
    int in_flight;              /* a command of this call waits for its reply */
    uint64_t sent_ms;
    struct store_redis_call *fl_prev, *fl_next;
    /* a pop that waits */
    int waits;                  /* it is a waiting pop (it keeps rkey and channel) */
    struct wait_key *key;       /* the key it waits on, NULL when not queued */
    struct store_redis_call *w_prev, *w_next;
    struct timer timer;         /* its wait */
    char *rkey, *channel;
    size_t rkey_len, channel_len;
    /* a command of a sender's turn (the turn gets the reply; the call is freed with it) */
    struct store_redis_turn *turn;
    int turn_cmd;
};

struct resolve {
    struct gaicb cb;
    struct addrinfo hints;
};

struct store_redis {
    struct store_redis_host *h;
    const struct store_config *cfg;
    unsigned index;
    int epfd;
    struct timer_heap *timers;
    struct conn conns[2];
    enum link link;
    int teardown;               /* a failure was noted: settle() drops the connections */
    int in_settle, failing, failures, ending;
    char error[256];            /* the failure being handled */
    char logged_error[256];     /* the last one logged, so a repeated one is not logged again */
    unsigned backoff_ms;
    unsigned seed;
    unsigned address_turn;      /* which of the name's addresses the next attempt uses */
    struct timer retry_timer, connect_timer, reply_timer, resolve_timer;
    struct resolve *resolving;
    struct store_redis_call *fl_head, *fl_tail; /* calls whose commands wait for a reply */
    unsigned fl_count;
    struct wait_key **buckets;
    size_t bucket_count, key_count;
    struct store_redis_turn *turns; /* every sender's turn of this worker (order) */
    struct inbox *inbox;            /* the inbox stream (store.inbox), NULL when off */
    struct conn_subs *conn_subs;    /* senders of this worker's connections (across hosts) */
};

static void settle(struct store_redis *r);
static void turn_reply(struct store_redis_call *call, const redisReply *reply);
static void turns_subscribed(struct store_redis *r, struct wait_key *k);
static void turns_heard(struct store_redis *r, struct wait_key *k, const redisReply *payload);
static void fail_turns(struct store_redis *r, const char *error);
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void on_subscription(redisAsyncContext *ac, void *reply, void *privdata);
static void inbox_link_up(struct store_redis *r);
static void inbox_free(struct store_redis *r);
static void conn_subs_link_up(struct store_redis *r);
static void conn_subs_free(struct store_redis *r);

/* Note the first failure; settle() acts on it once hiredis has returned. */
__attribute__((format(printf, 2, 3))) static void fail(struct store_redis *r, const char *fmt, ...)
{
    if (r->teardown)
        return;
    r->teardown = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
}

static void host_note(struct store_redis *r, int up, const char *error)
{
    struct store_redis_host *h = r->h;
    pthread_mutex_lock(&h->lock);
    if (r->index < h->workers) {
        if (h->ws[r->index].up != up)
            h->ws[r->index].since = time(NULL);
        h->ws[r->index].up = up;
    }
    if (error) {
        snprintf(h->last_error, sizeof h->last_error, "%s", error);
        h->last_error_at = time(NULL);
    }
    if (up && r->failures)
        h->reconnects++;
    pthread_mutex_unlock(&h->lock);
}

static int can_send(const struct store_redis *r)
{
    return r->link == LINK_UP && !r->teardown && r->conns[CONN_COMMANDS].ac &&
           r->conns[CONN_SUBSCRIBER].ac;
}

/* ---- the hiredis adapter -------------------------------------------------------------------- */

static void ev_want(struct conn *c, uint32_t want)
{
    if (want == c->events || !c->ac)
        return;
    uint32_t id = c->which | ((c->gen & 0x7fffffffu) << 1);
    struct epoll_event ev = {.events = want, .data.u64 = ((uint64_t)REDIS_EPOLL_TAG << 32) | id};
    int op = !c->events ? EPOLL_CTL_ADD : want ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    if (epoll_ctl(c->r->epfd, op, c->fd, &ev) != 0) {
        fail(c->r, "cannot watch the connection: %s", strerror(errno));
        return;
    }
    c->events = want;
}

static void ev_add_read(void *p) { struct conn *c = p; ev_want(c, c->events | EPOLLIN); }
static void ev_del_read(void *p) { struct conn *c = p; ev_want(c, c->events & ~(uint32_t)EPOLLIN); }
static void ev_add_write(void *p) { struct conn *c = p; ev_want(c, c->events | EPOLLOUT); }
static void ev_del_write(void *p)
{
    struct conn *c = p;
    ev_want(c, c->events & ~(uint32_t)EPOLLOUT);
}

/* hiredis frees the context right after: forget it. */
static void ev_cleanup(void *p)
{
    struct conn *c = p;
    if (c->ac && !c->r->teardown) /* hiredis dropped it: whatever the reason, both go */
        fail(c->r, "%s", c->ac->err ? c->ac->errstr : "the connection to Redis closed");
    if (c->events)
        epoll_ctl(c->r->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->events = 0;
    c->ac = NULL;
    c->fd = -1;
    c->handshake = 0;
    c->ready = 0;
    c->gen++;
}

void store_redis_on_event(struct store_redis *r, uint32_t data, uint32_t events)
{
    struct conn *c = &r->conns[data & 1u];
    uint32_t gen = (c->gen & 0x7fffffffu);
    if (!c->ac || (data >> 1) != gen)
        return; /* a context freed earlier in this turn */
    uint32_t trouble = events & (EPOLLERR | EPOLLHUP);
    if ((events & EPOLLIN) || (trouble && (c->events & EPOLLIN)))
        redisAsyncHandleRead(c->ac);
    if (c->ac && (c->gen & 0x7fffffffu) == gen &&
        ((events & EPOLLOUT) || (trouble && (c->events & EPOLLOUT))))
        redisAsyncHandleWrite(c->ac);
    settle(r);
}

/* ---- keys and channels ---------------------------------------------------------------------- */

static size_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return (size_t)h;
}

static struct wait_key **key_slot(struct store_redis *r, const char *channel, size_t len)
{
    struct wait_key **p = &r->buckets[hash_bytes(channel, len) & (r->bucket_count - 1)];
    while (*p && !((*p)->channel_len == len && memcmp((*p)->channel, channel, len) == 0))
        p = &(*p)->next_in_bucket;
    return p;
}

static struct wait_key *key_find(struct store_redis *r, const char *channel, size_t len)
{
    return r->bucket_count ? *key_slot(r, channel, len) : NULL;
}

static int keys_grow(struct store_redis *r)
{
    size_t n = r->bucket_count ? r->bucket_count * 2 : 64;
    struct wait_key **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < r->bucket_count; i++) {
        struct wait_key *k = r->buckets[i];
        while (k) {
            struct wait_key *next = k->next_in_bucket;
            size_t at = hash_bytes(k->channel, k->channel_len) & (n - 1);
            k->next_in_bucket = b[at];
            b[at] = k;
            k = next;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->bucket_count = n;
    return 0;
}

static void key_free(struct store_redis *r, struct wait_key *k)
{
    struct wait_key **p = key_slot(r, k->channel, k->channel_len);
    if (*p == k) {
        *p = k->next_in_bucket;
        r->key_count--;
    }
    free(k->channel);
    free(k->rkey);
    free(k);
}

/* ---- calls ---------------------------------------------------------------------------------- */

static void fl_unlink(struct store_redis *r, struct store_redis_call *call)
{
    if (call->fl_prev)
        call->fl_prev->fl_next = call->fl_next;
    else
        r->fl_head = call->fl_next;
    if (call->fl_next)
        call->fl_next->fl_prev = call->fl_prev;
    else
        r->fl_tail = call->fl_prev;
    call->fl_prev = call->fl_next = NULL;
    r->fl_count--;
}

/* The command timeout runs from the oldest command without a reply: replies come in order, so
 * when it has none by then the connection is stuck. */
static void arm_reply_timer(struct store_redis *r)
{
    if (!r->fl_head) {
        timer_stop(r->timers, &r->reply_timer);
        return;
    }
    uint64_t due = r->fl_head->sent_ms + (uint64_t)(r->cfg->command_timeout * 1000.0 + 0.5);
    if (r->reply_timer.slot == TIMER_IDLE || r->reply_timer.due_ms != due)
        timer_start(r->timers, &r->reply_timer, due);
}

/* Send one command of a call; its reply goes to on_reply. */
static int send_tracked(struct store_redis *r, struct store_redis_call *call, int argc,
                        const char **argv, const size_t *lens)
{
    if (redisAsyncCommandArgv(r->conns[CONN_COMMANDS].ac, on_reply, call, argc, argv, lens) !=
        REDIS_OK)
        return -1;
    call->in_flight = 1;
    call->sent_ms = timers_now_ms();
    call->fl_prev = r->fl_tail;
    call->fl_next = NULL;
    if (r->fl_tail)
        r->fl_tail->fl_next = call;
    else
        r->fl_head = call;
    r->fl_tail = call;
    r->fl_count++;
    if (r->fl_head == call)
        arm_reply_timer(r);
    return 0;
}

static void maybe_free(struct store_redis_call *call)
{
    if (call->done || call->in_flight || call->key)
        return;
    timer_stop(call->r->timers, &call->timer);
    free(call->rkey);
    free(call->channel);
    free(call);
}

static void finish(struct store_redis_call *call, const struct store_reply *reply)
{
    store_redis_done done = call->done;
    call->done = NULL;
    timer_stop(call->r->timers, &call->timer);
    if (done)
        done(call->ctx, reply);
}

static void finish_kind(struct store_redis_call *call, enum store_reply_kind kind,
                        long long integer, const char *error)
{
    struct store_reply reply = {.kind = kind, .integer = integer, .error = error};
    finish(call, &reply);
}

/* The message sb.store returns for an error reply. */
static const char *error_text(enum store_op op, const char *redis_error, char *buf, size_t size)
{
    if (op == STORE_OP_INCR && (strncmp(redis_error, "WRONGTYPE", 9) == 0 ||
                                strncmp(redis_error, "ERR value is not an integer", 27) == 0 ||
                                strncmp(redis_error, "ERR increment or decrement", 26) == 0))
        return "the value is not an integer (or the sum overflows)";
    if (strncmp(redis_error, "WRONGTYPE", 9) == 0)
        return "the key holds another type of value";
    if (strncmp(redis_error, "OOM", 3) == 0)
        return "the store is out of memory";
    snprintf(buf, size, "store error: %s", redis_error);
    return buf;
}

/* ---- pops that wait -------------------------------------------------------------------------- */

static void send_untracked(struct store_redis *r, int argc, const char **argv, const size_t *lens)
{
    if (can_send(r))
        redisAsyncCommandArgv(r->conns[CONN_COMMANDS].ac, NULL, NULL, argc, argv, lens);
}

static void subscribe(struct store_redis *r, struct wait_key *k, const char *verb)
{
    const char *argv[] = {verb, k->channel};
    size_t lens[] = {strlen(verb), k->channel_len};
    struct conn *c = &r->conns[CONN_SUBSCRIBER];
    /* UNSUBSCRIBE's confirmation goes to the channel's SUBSCRIBE callback (hiredis). */
    if (!c->ac || redisAsyncCommandArgv(c->ac, on_subscription, r, 2, argv, lens) != REDIS_OK)
        fail(r, "cannot %s a key's channel", verb);
}

/* Try an LPOP for the oldest waiters without one, once per push heard. */
static void pump(struct store_redis *r, struct wait_key *k)
{
    if (k->notes > k->count)
        k->notes = k->count;
    for (struct store_redis_call *w = k->head; w && k->notes > 0 && can_send(r); w = w->w_next) {
        if (w->in_flight)
            continue;
        const char *argv[] = {"LPOP", w->rkey};
        size_t lens[] = {4, w->rkey_len};
        if (send_tracked(r, w, 2, argv, lens) != 0)
            break;
        k->notes--;
    }
}

/* The call stops waiting on its key (answered, timed out, detached); the last waiter of a key
 * unsubscribes from its channel. */
static void leave_key(struct store_redis_call *call)
{
    struct wait_key *k = call->key;
    if (!k)
        return;
    struct store_redis *r = call->r;
    if (call->w_prev)
        call->w_prev->w_next = call->w_next;
    else
        k->head = call->w_next;
    if (call->w_next)
        call->w_next->w_prev = call->w_prev;
    else
        k->tail = call->w_prev;
    call->w_prev = call->w_next = NULL;
    call->key = NULL;
    k->count--;
    if (k->count == 0 && k->sub == SUB_ACTIVE) {
        k->sub = SUB_LEAVING;
        k->notes = 0;
        subscribe(r, k, "UNSUBSCRIBE");
    }
    /* SUB_PENDING: the confirmation unsubscribes; SUB_LEAVING: already on its way. */
}

/* The wait key of `channel`: the one this worker has, or a new one (its subscription on the way)
 * for the Redis key `rkey`. NULL when out of memory. Both pops and senders' turns wait on them. */
static struct wait_key *key_open(struct store_redis *r, const char *channel, size_t channel_len,
                                 const char *rkey, size_t rkey_len)
{
    struct wait_key *k = key_find(r, channel, channel_len);
    if (k)
        return k;
    if (r->key_count >= r->bucket_count && keys_grow(r) != 0)
        return NULL;
    k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->channel = malloc(channel_len);
    k->rkey = malloc(rkey_len);
    if (!k->channel || !k->rkey) {
        free(k->channel);
        free(k->rkey);
        free(k);
        return NULL;
    }
    memcpy(k->channel, channel, channel_len);
    memcpy(k->rkey, rkey, rkey_len);
    k->channel_len = channel_len;
    k->rkey_len = rkey_len;
    *key_slot(r, k->channel, k->channel_len) = k;
    r->key_count++;
    k->sub = SUB_PENDING;
    subscribe(r, k, "SUBSCRIBE");
    return k;
}

/* An LPOP found the list empty: wait on the key (subscribing to its channel first). */
static void join_key(struct store_redis_call *call)
{
    struct store_redis *r = call->r;
    struct wait_key *k = key_open(r, call->channel, call->channel_len, call->rkey,
                                  call->rkey_len);
    if (!k)
        goto nomem;
    call->key = k;
    call->w_prev = k->tail;
    call->w_next = NULL;
    if (k->tail)
        k->tail->w_next = call;
    else
        k->head = call;
    k->tail = call;
    k->count++;
    return;
nomem:
    finish_kind(call, STORE_REPLY_ERROR, 0, "the store is out of memory");
}

/* A value an LPOP took for a pop that no longer waits goes back to the front of the list, and
 * the other waiters hear of it. */
static void give_back(struct store_redis *r, struct store_redis_call *call, const char *v,
                      size_t len)
{
    if (!can_send(r)) {
        log_msg(LOG_WARNING, NULL, "sb.store: a value popped for a request that ended meanwhile "
                                   "could not go back to its list: the connection to Redis is "
                                   "down");
        return;
    }
    const char *argv[] = {"LPUSH", call->rkey, v};
    size_t lens[] = {5, call->rkey_len, len};
    send_untracked(r, 3, argv, lens);
    const char *pub[] = {"PUBLISH", call->channel, ""};
    size_t pub_lens[] = {7, call->channel_len, 0};
    send_untracked(r, 3, pub, pub_lens);
}

static void pop_reply(struct store_redis_call *call, const redisReply *reply)
{
    struct store_redis *r = call->r;
    if (reply->type == REDIS_REPLY_STRING) {
        if (!call->done) {
            give_back(r, call, reply->str, reply->len);
        } else {
            struct wait_key *k = call->key;
            leave_key(call);
            struct store_reply ok = {.kind = STORE_REPLY_VALUE, .data = reply->str,
                                     .len = reply->len};
            finish(call, &ok);
            if (k && k->count && k->notes)
                pump(r, k);
        }
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        if (!call->done)
            return;
        if (!call->key)
            join_key(call);
        else if (call->key->notes)
            pump(r, call->key);
        return;
    }
    char buf[300];
    leave_key(call);
    finish_kind(call, STORE_REPLY_ERROR, 0,
                error_text(call->op, reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                      : "an unexpected reply",
                           buf, sizeof buf));
}

/* A subscription's reply: its confirmation, a push heard, or its end. */
static void on_subscription(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    (void)ac;
    struct store_redis *r = privdata;
    redisReply *reply = reply_ptr;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    struct wait_key *k = key_find(r, reply->element[1]->str, reply->element[1]->len);
    if (!k)
        return;
    if (strcmp(kind, "subscribe") == 0 && k->sub == SUB_PENDING) {
        if (k->count == 0) {
            k->sub = SUB_LEAVING;
            subscribe(r, k, "UNSUBSCRIBE");
            return;
        }
        k->sub = SUB_ACTIVE;
        if (k->turns) {
            turns_subscribed(r, k);
            return;
        }
        k->notes = k->count; /* a push may have come between their LPOP and now */
        pump(r, k);
    } else if (strcmp(kind, "message") == 0 && k->sub == SUB_ACTIVE) {
        if (k->turns) {
            if (reply->elements >= 3)
                turns_heard(r, k, reply->element[2]);
            return;
        }
        k->notes++;
        pump(r, k);
    } else if (strcmp(kind, "unsubscribe") == 0 && k->sub == SUB_LEAVING) {
        if (k->count) {
            k->sub = SUB_PENDING; /* pops came meanwhile */
            subscribe(r, k, "SUBSCRIBE");
        } else {
            key_free(r, k);
        }
    }
}

static void wait_timed_out(struct timer *t)
{
    struct store_redis_call *call = CONTAINER(t, struct store_redis_call, timer);
    struct store_redis *r = call->r;
    leave_key(call);
    finish_kind(call, STORE_REPLY_NIL, 0, NULL);
    maybe_free(call);
    settle(r);
}

/* ---- replies -------------------------------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct store_redis_call *call = privdata;
    struct store_redis *r = call->r;
    redisReply *reply = reply_ptr;
    if (call->in_flight) {
        int was_head = r->fl_head == call;
        fl_unlink(r, call);
        call->in_flight = 0;
        if (was_head)
            arm_reply_timer(r);
    }
    if (call->turn) {
        if (!reply && !r->teardown)
            fail(r, "%s", ac->err ? ac->errstr : "the connection to Redis closed");
        turn_reply(call, reply);
        free(call);
        return;
    }
    if (!reply) {
        /* The connection went: every call in flight fails the same way. */
        if (!r->teardown) /* hiredis dropped the connection itself (its callbacks come first) */
            fail(r, "%s", ac->err ? ac->errstr : "the connection to Redis closed");
        char msg[300];
        snprintf(msg, sizeof msg, "store unavailable: %s", r->error);
        leave_key(call);
        finish_kind(call, STORE_REPLY_ERROR, 0, msg);
        maybe_free(call);
        return;
    }
    if (call->op == STORE_OP_POP && call->waits) {
        pop_reply(call, reply);
        maybe_free(call);
        return;
    }
    if (!call->done) {
        maybe_free(call);
        return;
    }
    char buf[300];
    struct store_reply out = {.kind = STORE_REPLY_NIL};
    switch (reply->type) {
    case REDIS_REPLY_ERROR:
        out.kind = STORE_REPLY_ERROR;
        out.error = error_text(call->op, reply->str, buf, sizeof buf);
        break;
    case REDIS_REPLY_NIL:
        out.kind = call->op == STORE_OP_SET ? STORE_REPLY_BOOL : STORE_REPLY_NIL;
        break;
    case REDIS_REPLY_STATUS: /* SET: OK */
        out.kind = STORE_REPLY_BOOL;
        out.integer = 1;
        break;
    case REDIS_REPLY_INTEGER:
        out.integer = reply->integer;
        out.kind = call->op == STORE_OP_DEL || call->op == STORE_OP_EXPIRE ? STORE_REPLY_BOOL
                                                                           : STORE_REPLY_INT;
        if (out.kind == STORE_REPLY_BOOL)
            out.integer = reply->integer > 0;
        break;
    case REDIS_REPLY_STRING:
        out.kind = STORE_REPLY_VALUE;
        out.data = reply->str;
        out.len = reply->len;
        break;
    default:
        out.kind = STORE_REPLY_ERROR;
        out.error = "store error: an unexpected reply from Redis";
        break;
    }
    finish(call, &out);
    maybe_free(call);
}

/* ---- connecting ----------------------------------------------------------------------------- */

static void link_up(struct store_redis *r)
{
    r->link = LINK_UP;
    timer_stop(r->timers, &r->connect_timer);
    r->backoff_ms = BACKOFF_FIRST_MS;
    if (r->failing)
        log_msg(LOG_INFO, NULL, "sb.store: worker %u is connected to Redis %s again", r->index,
                r->cfg->url_shown);
    else if (r->index == 0)
        log_msg(LOG_INFO, NULL, "sb.store: connected to Redis %s (prefix \"%s\")",
                r->cfg->url_shown, r->cfg->prefix);
    host_note(r, 1, NULL);
    r->failing = 0;
    r->logged_error[0] = '\0';
    inbox_link_up(r); /* the inbox's group, acknowledgements cut by the loss, a claim round */
    conn_subs_link_up(r); /* the subscriptions of connections' senders, again */
}

static void on_setup(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct conn *c = privdata;
    struct store_redis *r = c->r;
    redisReply *reply = reply_ptr;
    if (!reply) {
        fail(r, "%s", ac->err ? ac->errstr : "the connection closed during its setup");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        fail(r, "Redis refused the connection's setup: %s", reply->str);
        return;
    }
    if (c->handshake && --c->handshake == 0) {
        c->ready = 1;
        if (r->conns[CONN_COMMANDS].ready && r->conns[CONN_SUBSCRIBER].ready && !r->teardown)
            link_up(r);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status != REDIS_OK)
        fail(c->r, "cannot connect to %s:%u: %s", c->r->cfg->host, c->r->cfg->port,
             ac->errstr[0] ? ac->errstr : "refused");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    (void)status;
    fail(c->r, "%s", ac->err ? ac->errstr : "Redis closed the connection");
}

static void setup_command(struct conn *c, int argc, const char **argv)
{
    size_t lens[3];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(c->ac, on_setup, c, argc, argv, lens) == REDIS_OK)
        c->handshake++;
    else
        fail(c->r, "cannot send the connection's setup");
}

static void connect_one(struct store_redis *r, struct conn *c, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, (int)r->cfg->port);
    if (!ac) {
        fail(r, "out of memory");
        return;
    }
    if (ac->err) {
        fail(r, "cannot connect to %s:%u: %s", r->cfg->host, r->cfg->port, ac->errstr);
        redisAsyncFree(ac);
        return;
    }
    c->ac = ac;
    c->fd = ac->c.fd;
    c->events = 0;
    c->handshake = 0;
    c->ready = 0;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* after the adapter: it asks for a write */
    if (r->cfg->password[0]) {
        const char *auth_user[] = {"AUTH", r->cfg->username, r->cfg->password};
        const char *auth[] = {"AUTH", r->cfg->password};
        if (r->cfg->username[0])
            setup_command(c, 3, auth_user);
        else
            setup_command(c, 2, auth);
    }
    if (c->which == CONN_COMMANDS && r->cfg->db) {
        char db[16];
        snprintf(db, sizeof db, "%u", r->cfg->db);
        const char *select[] = {"SELECT", db};
        setup_command(c, 2, select);
    }
    const char *ping[] = {"PING"};
    setup_command(c, 1, ping); /* answered: the server serves (not LOADING, say) */
}

static void connect_pair(struct store_redis *r, const char *ip)
{
    r->link = LINK_CONNECTING;
    connect_one(r, &r->conns[CONN_COMMANDS], ip);
    if (!r->teardown)
        connect_one(r, &r->conns[CONN_SUBSCRIBER], ip);
}

static void resolve_free(struct resolve *res)
{
    if (res->cb.ar_result)
        freeaddrinfo(res->cb.ar_result);
    free(res);
}

/* The host name's resolution ended: connect to its first address. */
static void resolved(struct store_redis *r)
{
    struct resolve *res = r->resolving;
    r->resolving = NULL;
    int rc = gai_error(&res->cb);
    char ip[INET6_ADDRSTRLEN] = "";
    const struct addrinfo *ai = rc == 0 ? res->cb.ar_result : NULL;
    /* A name with several addresses (localhost: ::1 and 127.0.0.1): each failed attempt moves
     * on to the next one. */
    unsigned count = 0;
    for (const struct addrinfo *a = ai; a; a = a->ai_next)
        count++;
    for (unsigned skip = count ? r->address_turn % count : 0; ai && skip; skip--)
        ai = ai->ai_next;
    if (ai && ai->ai_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof ip);
    else if (ai && ai->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip,
                  sizeof ip);
    resolve_free(res);
    if (!ip[0]) {
        fail(r, "cannot resolve %s: %s", r->cfg->host, rc ? gai_strerror(rc) : "no address");
        return;
    }
    connect_pair(r, ip);
}

static void resolve_poll(struct timer *t)
{
    struct store_redis *r = CONTAINER(t, struct store_redis, resolve_timer);
    if (r->link != LINK_RESOLVING || !r->resolving)
        return;
    if (gai_error(&r->resolving->cb) == EAI_INPROGRESS)
        timer_start(r->timers, &r->resolve_timer, timers_now_ms() + RESOLVE_POLL_MS);
    else
        resolved(r);
    settle(r);
}

static int numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* One attempt: resolve the name without blocking (getaddrinfo_a), then connect both. */
static void attempt(struct store_redis *r)
{
    timer_start(r->timers, &r->connect_timer,
                timers_now_ms() + (uint64_t)(r->cfg->connect_timeout * 1000.0 + 0.5));
    if (numeric_host(r->cfg->host)) {
        connect_pair(r, r->cfg->host);
        return;
    }
    r->link = LINK_RESOLVING;
    if (!r->resolving) { /* else: the previous attempt's resolution is still running */
        struct resolve *res = calloc(1, sizeof *res);
        if (!res) {
            fail(r, "out of memory");
            return;
        }
        res->hints.ai_family = AF_UNSPEC;
        res->hints.ai_socktype = SOCK_STREAM;
        res->cb.ar_name = r->cfg->host;
        res->cb.ar_request = &res->hints;
        struct gaicb *list[] = {&res->cb};
        int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
        if (rc != 0) {
            free(res);
            fail(r, "cannot resolve %s: %s", r->cfg->host, gai_strerror(rc));
            return;
        }
        r->resolving = res;
    }
    timer_start(r->timers, &r->resolve_timer, timers_now_ms() + 1);
}

static void retry_fired(struct timer *t)
{
    struct store_redis *r = CONTAINER(t, struct store_redis, retry_timer);
    attempt(r);
    settle(r);
}

static void connect_timed_out(struct timer *t)
{
    struct store_redis *r = CONTAINER(t, struct store_redis, connect_timer);
    if (r->link == LINK_UP)
        return;
    fail(r, "no connection to %s:%u within %g s", r->cfg->host, r->cfg->port,
         r->cfg->connect_timeout);
    settle(r);
}

static void reply_timed_out(struct timer *t)
{
    struct store_redis *r = CONTAINER(t, struct store_redis, reply_timer);
    fail(r, "Redis did not answer within %g s (command_timeout)", r->cfg->command_timeout);
    settle(r);
}

/* Every waiting pop fails (the connection went) or answers nil (the host stops). */
static void end_all_waits(struct store_redis *r, enum store_reply_kind kind, const char *error)
{
    for (size_t i = 0; i < r->bucket_count; i++) {
        struct wait_key *k = r->buckets[i];
        while (k) {
            struct wait_key *next = k->next_in_bucket;
            while (k->head) {
                struct store_redis_call *call = k->head;
                leave_key(call);
                finish_kind(call, kind, 0, error);
                maybe_free(call);
            }
            k = next;
        }
    }
}

static void drop_keys(struct store_redis *r)
{
    for (size_t i = 0; i < r->bucket_count; i++)
        while (r->buckets[i])
            key_free(r, r->buckets[i]);
}

/* Act on a noted failure: drop both connections (every call in flight fails), fail the waiting
 * pops and try again after the backoff. */
static void settle(struct store_redis *r)
{
    if (!r->teardown || r->in_settle)
        return;
    r->in_settle = 1;
    int was_up = r->link == LINK_UP;
    r->link = LINK_DOWN;
    timer_stop(r->timers, &r->connect_timer);
    timer_stop(r->timers, &r->resolve_timer);
    for (int i = 0; i < 2; i++)
        if (r->conns[i].ac)
            redisAsyncFree(r->conns[i].ac); /* on_reply fails the calls in flight */
    char msg[300];
    snprintf(msg, sizeof msg, "store unavailable: %s", r->error);
    end_all_waits(r, STORE_REPLY_ERROR, msg);
    fail_turns(r, msg);
    drop_keys(r);
    timer_stop(r->timers, &r->reply_timer);
    r->failures++;
    r->address_turn++;
    if (was_up)
        log_msg(LOG_ERROR, NULL, "sb.store: worker %u lost its connection to Redis %s: %s; "
                                 "sb.store calls fail until it is back",
                r->index, r->cfg->url_shown, r->error);
    else if (strcmp(r->error, r->logged_error) != 0)
        log_msg(r->failing ? LOG_WARNING : LOG_ERROR, NULL,
                "sb.store: worker %u cannot connect to Redis %s: %s; sb.store calls fail until "
                "it is reachable (retrying)",
                r->index, r->cfg->url_shown, r->error);
    snprintf(r->logged_error, sizeof r->logged_error, "%s", r->error);
    r->failing = 1;
    host_note(r, 0, r->error);
    /* 0.75 to 1.25 times the backoff, so the workers (and hosts) do not retry in step. */
    unsigned spread = r->backoff_ms / 2;
    uint64_t delay = r->backoff_ms - r->backoff_ms / 4;
    if (spread)
        delay += (unsigned)rand_r(&r->seed) % spread;
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
    if (!r->ending)
        timer_start(r->timers, &r->retry_timer, timers_now_ms() + delay);
    r->teardown = 0;
    r->in_settle = 0;
}

/* ---- the worker's interface ------------------------------------------------------------------ */

struct store_redis *store_redis_create(struct store_redis_host *h, unsigned index, int epfd,
                                       struct timer_heap *timers)
{
    struct store_redis *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->h = h;
    r->cfg = &h->cfg;
    r->index = index;
    r->epfd = epfd;
    r->timers = timers;
    r->backoff_ms = BACKOFF_FIRST_MS;
    r->seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (index * 2654435761u);
    r->retry_timer = TIMER_INIT(retry_fired);
    r->connect_timer = TIMER_INIT(connect_timed_out);
    r->reply_timer = TIMER_INIT(reply_timed_out);
    r->resolve_timer = TIMER_INIT(resolve_poll);
    for (unsigned i = 0; i < 2; i++) {
        r->conns[i].r = r;
        r->conns[i].which = i;
        r->conns[i].fd = -1;
    }
    return r;
}

void store_redis_start(struct store_redis *r)
{
    attempt(r);
    settle(r);
}

void store_redis_end_waits(struct store_redis *r)
{
    r->ending = 1;
    timer_stop(r->timers, &r->retry_timer);
    end_all_waits(r, STORE_REPLY_NIL, NULL);
}

void store_redis_destroy(struct store_redis *r)
{
    if (!r)
        return;
    r->ending = 1;
    r->teardown = 1; /* no new command from the callbacks below */
    snprintf(r->error, sizeof r->error, "the host is stopping");
    timer_stop(r->timers, &r->retry_timer);
    timer_stop(r->timers, &r->connect_timer);
    timer_stop(r->timers, &r->resolve_timer);
    timer_stop(r->timers, &r->reply_timer);
    for (int i = 0; i < 2; i++)
        if (r->conns[i].ac)
            redisAsyncFree(r->conns[i].ac);
    end_all_waits(r, STORE_REPLY_ERROR, "store unavailable: the host is stopping");
    fail_turns(r, "store unavailable: the host is stopping");
    drop_keys(r);
    free(r->buckets);
    r->buckets = NULL;
    if (r->resolving) {
        /* A resolution still running writes into it: wait for its end (only at exit). */
        if (gai_cancel(&r->resolving->cb) == EAI_NOTCANCELED) {
            const struct gaicb *list[] = {&r->resolving->cb};
            while (gai_error(&r->resolving->cb) == EAI_INPROGRESS)
                gai_suspend(list, 1, NULL);
        }
        resolve_free(r->resolving);
        r->resolving = NULL;
    }
    conn_subs_free(r);
    inbox_free(r);
    free(r);
}

struct store_redis_call *store_redis_call(struct store_redis *r, const struct store_request *req,
                                          store_redis_done done, void *ctx, char *err,
                                          size_t errlen)
{
    if ((req->op == STORE_OP_SET || req->op == STORE_OP_PUSH) && req->value_len > STORE_MAX_VALUE) {
        snprintf(err, errlen, "the value is too big for the store");
        return NULL;
    }
    if (!can_send(r)) {
        snprintf(err, errlen, "store unavailable: %s",
                 r->logged_error[0] ? r->logged_error : "not connected to Redis yet");
        return NULL;
    }
    if (r->fl_count >= MAX_IN_FLIGHT) {
        snprintf(err, errlen, "store unavailable: too many calls are waiting for Redis");
        return NULL;
    }
    size_t plen = strlen(r->cfg->prefix);
    char rkey[sizeof r->cfg->prefix + STORE_MAX_KEY + 1];
    if (req->key_len > STORE_MAX_KEY) {
        snprintf(err, errlen, "the key is too long");
        return NULL;
    }
    memcpy(rkey, r->cfg->prefix, plen);
    memcpy(rkey + plen, req->key, req->key_len);
    size_t rkey_len = plen + req->key_len;

    struct store_redis_call *call = calloc(1, sizeof *call);
    if (!call) {
        snprintf(err, errlen, "the store is out of memory");
        return NULL;
    }
    call->r = r;
    call->done = done;
    call->ctx = ctx;
    call->op = req->op;
    call->timer = TIMER_INIT(wait_timed_out);

    const char *argv[7];
    size_t lens[7];
    int argc = 0;
    char num[32], ttl[32];
#define ARG(s, n) (argv[argc] = (s), lens[argc] = (n), argc++)
    switch (req->op) {
    case STORE_OP_GET:
        ARG("GET", 3);
        ARG(rkey, rkey_len);
        break;
    case STORE_OP_SET:
        ARG("SET", 3);
        ARG(rkey, rkey_len);
        ARG(req->value, req->value_len);
        if (req->ttl_ms) {
            ARG("PX", 2);
            ARG(ttl, (size_t)snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)req->ttl_ms));
        }
        if (req->only_if_absent)
            ARG("NX", 2);
        break;
    case STORE_OP_INCR:
        ARG("INCRBY", 6);
        ARG(rkey, rkey_len);
        ARG(num, (size_t)snprintf(num, sizeof num, "%lld", req->by));
        break;
    case STORE_OP_DEL:
        ARG("DEL", 3);
        ARG(rkey, rkey_len);
        break;
    case STORE_OP_EXPIRE:
        if (req->ttl_ms) {
            ARG("PEXPIRE", 7);
            ARG(rkey, rkey_len);
            ARG(ttl, (size_t)snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)req->ttl_ms));
        } else {
            ARG("EVAL", 4);
            ARG(PERSIST_SCRIPT, sizeof PERSIST_SCRIPT - 1);
            ARG("1", 1);
            ARG(rkey, rkey_len);
        }
        break;
    case STORE_OP_PUSH:
        ARG("RPUSH", 5);
        ARG(rkey, rkey_len);
        ARG(req->value, req->value_len);
        break;
    case STORE_OP_POP:
        ARG("LPOP", 4);
        ARG(rkey, rkey_len);
        break;
    case STORE_OP_LENGTH:
        ARG("LLEN", 4);
        ARG(rkey, rkey_len);
        break;
    }
#undef ARG
    int waits = req->op == STORE_OP_POP && req->wait_ms && !r->ending;
    char *channel = NULL;
    size_t channel_len = plen + sizeof CHANNEL_INFIX - 1 + req->key_len;
    if (waits || req->op == STORE_OP_PUSH) {
        channel = malloc(channel_len);
        if (!channel) {
            free(call);
            snprintf(err, errlen, "the store is out of memory");
            return NULL;
        }
        memcpy(channel, r->cfg->prefix, plen);
        memcpy(channel + plen, CHANNEL_INFIX, sizeof CHANNEL_INFIX - 1);
        memcpy(channel + plen + sizeof CHANNEL_INFIX - 1, req->key, req->key_len);
    }
    if (waits) {
        call->waits = 1;
        call->rkey = malloc(rkey_len);
        if (!call->rkey) {
            free(channel);
            free(call);
            snprintf(err, errlen, "the store is out of memory");
            return NULL;
        }
        memcpy(call->rkey, rkey, rkey_len);
        call->rkey_len = rkey_len;
        call->channel = channel;
        call->channel_len = channel_len;
        channel = NULL;
    }
    if (send_tracked(r, call, argc, argv, lens) != 0) {
        free(channel);
        free(call->rkey);
        free(call->channel);
        free(call);
        snprintf(err, errlen, "store unavailable: the connection to Redis is closing");
        return NULL;
    }
    if (req->op == STORE_OP_PUSH) {
        /* Waiting pops (of any host) hear of it; nobody listening costs Redis a lookup. */
        const char *pub[] = {"PUBLISH", channel, ""};
        size_t pub_lens[] = {7, channel_len, 0};
        send_untracked(r, 3, pub, pub_lens);
        free(channel);
    }
    if (waits)
        timer_start(r->timers, &call->timer, timers_now_ms() + req->wait_ms);
    return call;
}

void store_redis_detach(struct store_redis_call *call)
{
    if (!call)
        return;
    call->done = NULL;
    timer_stop(call->r->timers, &call->timer);
    leave_key(call);
    maybe_free(call);
}

/* ---- a sender's turn across hosts ----------------------------------------------------------
 * Per sender, Redis holds <prefix>\0turn:h:<sender> (the host whose turn it is, with a lease) and
 * <prefix>\0turn:q:<sender> (a sorted set: each waiting host once, scored by the arrival number
 * of its first waiting message; numbers come from <prefix>\0turn:seq). No sb.store key holds a
 * NUL byte, so these never meet a script's keys. The scripts below pass the turn atomically:
 * whoever finds no holder promotes the lowest score and PUBLISHes the new holder's id on
 * <prefix>turn:<sender>, which the waiting hosts are subscribed to. A waiting host also arms a
 * timer to the holder's lease: when it fires and the holder has not renewed it (a host gone), its
 * JOIN finds no holder and promotes the next host. */

/* KEYS: queue, holder, counter. ARGV: host id, arrival number (0: take one), lease ms, channel,
 * recheck ('1': the host kept the turn while this message's number was on its way, so a host
 * waiting with a lower number gets it first). -> {held, number, ms until the holder's lease
 * ends, 1 when it passed an expired turn on}: a queue without a holder means the holder's lease
 * ran out, since a release passes the turn on. */
static const char JOIN_SCRIPT[] =
    "local q, h, me, lease = KEYS[1], KEYS[2], ARGV[1], ARGV[3] "
    "local seq = tonumber(ARGV[2]) "
    "if seq == 0 then seq = redis.call('incr', KEYS[3]) end "
    "local holder = redis.call('get', h) "
    "if holder == me then redis.call('zrem', q, me) "
    "  local first = ARGV[5] == '1' and redis.call('zrange', q, 0, 0, 'withscores') or {} "
    "  if first[2] and tonumber(first[2]) < seq then "
    "    redis.call('zadd', q, seq, me) redis.call('zrem', q, first[1]) "
    "    redis.call('set', h, first[1], 'px', lease) redis.call('publish', ARGV[4], first[1]) "
    "    return {0, seq, tonumber(lease), 0} end "
    "  redis.call('pexpire', h, lease) return {1, seq, 0, 0} end "
    "local expired = 0 "
    "if not holder and redis.call('zcard', q) > 0 then expired = 1 end "
    "redis.call('zadd', q, seq, me) "
    "if holder then return {0, seq, redis.call('pttl', h), 0} end "
    "local top = redis.call('zpopmin', q) "
    "redis.call('set', h, top[1], 'px', lease) "
    "if top[1] == me then return {1, seq, 0, expired} end "
    "redis.call('publish', ARGV[4], top[1]) "
    "return {0, seq, tonumber(lease), expired}";

/* KEYS: queue, holder. ARGV: host id, the number of the host's next waiting message (0: none),
 * lease ms, channel. -> {held (by the host again, for that message), lost (it was not the
 * holder)} */
static const char RELEASE_SCRIPT[] =
    "local q, h, me = KEYS[1], KEYS[2], ARGV[1] "
    "local holder = redis.call('get', h) "
    "local lost = 1 "
    "if holder == me then redis.call('del', h) holder = false lost = 0 end "
    "redis.call('zrem', q, me) "
    "if ARGV[2] ~= '0' then redis.call('zadd', q, ARGV[2], me) end "
    "if holder then return {0, lost} end "
    "local top = redis.call('zpopmin', q) "
    "if #top == 0 then return {0, lost} end "
    "redis.call('set', h, top[1], 'px', ARGV[3]) "
    "if top[1] == me then return {1, lost} end "
    "redis.call('publish', ARGV[4], top[1]) "
    "return {0, lost}";

/* KEYS: holder. ARGV: host id, lease ms. -> 1 renewed, 0 not the holder any more */
static const char RENEW_SCRIPT[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0";

#define TURN_MARGIN_MS 5u /* past the lease's end before looking: it has surely ended */

enum turn_state { TURN_JOINING, TURN_WAITING, TURN_HELD, TURN_RELEASING, TURN_DONE };
enum turn_cmd { CMD_JOIN, CMD_RENEW, CMD_RELEASE };

struct store_redis_turn {
    struct store_redis *r;
    enum turn_state state;
    store_redis_turn_done done;
    void *ctx;
    store_redis_turn_released released;
    unsigned long long seq, next_seq;
    unsigned pending;           /* commands waiting for their reply */
    int checking;               /* a JOIN waits for its reply */
    int recheck;                /* its first JOIN checks a kept turn (STORE_TURN_RECHECK) */
    int lost;                   /* its lease ran out while held (logged once) */
    struct wait_key *key;       /* subscribed while it waits */
    struct store_redis_turn *k_prev, *k_next;
    struct store_redis_turn *t_prev, *t_next; /* r->turns */
    struct timer timer;         /* waiting: the holder's lease end; held: the renewal; releasing
                                 * without Redis: the deferred answer */
    char *sender, *queue, *holder, *channel;
    size_t queue_len, holder_len, channel_len;
};

static uint64_t lease_ms(const struct store_redis *r)
{
    return (uint64_t)(r->cfg->order_lease * 1000.0 + 0.5);
}

int store_redis_order(const struct store_redis *r) { return r && r->cfg->order; }

const char *store_redis_host_id(const struct store_redis *r) { return r->h->id; }

static char *joined(const char *prefix, const char *infix, size_t infix_len, const char *sender,
                    size_t *len)
{
    size_t plen = strlen(prefix), slen = strlen(sender);
    char *s = malloc(plen + infix_len + slen + 1);
    if (!s)
        return NULL;
    memcpy(s, prefix, plen);
    memcpy(s + plen, infix, infix_len);
    memcpy(s + plen + infix_len, sender, slen + 1);
    *len = plen + infix_len + slen;
    return s;
}

static void turn_leave_key(struct store_redis_turn *t)
{
    struct wait_key *k = t->key;
    if (!k)
        return;
    if (t->k_prev)
        t->k_prev->k_next = t->k_next;
    else
        k->turns = t->k_next;
    if (t->k_next)
        t->k_next->k_prev = t->k_prev;
    t->k_prev = t->k_next = NULL;
    t->key = NULL;
    k->count--;
    if (k->count == 0 && k->sub == SUB_ACTIVE) {
        k->sub = SUB_LEAVING;
        subscribe(t->r, k, "UNSUBSCRIBE");
    }
}

/* Wait for the turn: subscribe to the sender's channel (its confirmation sends a JOIN again, so
 * a turn passed before the subscription took effect is not missed). */
static int turn_join_key(struct store_redis_turn *t)
{
    struct store_redis *r = t->r;
    if (t->key)
        return 0;
    struct wait_key *k = key_open(r, t->channel, t->channel_len, t->queue, t->queue_len);
    if (!k)
        return -1;
    t->key = k;
    t->k_prev = NULL;
    t->k_next = k->turns;
    if (k->turns)
        k->turns->k_prev = t;
    k->turns = t;
    k->count++;
    return 0;
}

static void turn_maybe_free(struct store_redis_turn *t)
{
    if (t->state != TURN_DONE || t->pending)
        return;
    struct store_redis *r = t->r;
    turn_leave_key(t);
    timer_stop(r->timers, &t->timer);
    if (t->t_prev)
        t->t_prev->t_next = t->t_next;
    else
        r->turns = t->t_next;
    if (t->t_next)
        t->t_next->t_prev = t->t_prev;
    free(t->sender);
    free(t->queue);
    free(t->holder);
    free(t->channel);
    free(t);
}

/* The turn ends: a release is answered (held: the host keeps it for its next message), anything
 * else is told it failed. */
static void turn_end(struct store_redis_turn *t, int held, const char *error)
{
    enum turn_state was = t->state;
    if (was == TURN_DONE)
        return;
    t->state = TURN_DONE;
    turn_leave_key(t);
    timer_stop(t->r->timers, &t->timer);
    if (was == TURN_RELEASING) {
        if (t->released)
            t->released(t->sender, held);
    } else if (t->done) {
        t->done(t->ctx, 0, error);
    }
}

static int turn_send(struct store_redis_turn *t, enum turn_cmd cmd, int argc, const char **argv,
                     const size_t *lens)
{
    struct store_redis *r = t->r;
    if (!can_send(r))
        return -1;
    struct store_redis_call *call = calloc(1, sizeof *call);
    if (!call)
        return -1;
    call->r = r;
    call->turn = t;
    call->turn_cmd = (int)cmd;
    call->timer = TIMER_INIT(wait_timed_out); /* never started */
    if (send_tracked(r, call, argc, argv, lens) != 0) {
        free(call);
        return -1;
    }
    t->pending++;
    return 0;
}

static int turn_send_join(struct store_redis_turn *t)
{
    struct store_redis *r = t->r;
    char counter[sizeof r->cfg->prefix + 16], seq[32], lease[32];
    size_t counter_len = (size_t)snprintf(counter, sizeof counter, "%s", r->cfg->prefix);
    memcpy(counter + counter_len, "\0turn:seq", 9);
    counter_len += 9;
    /* Only the first JOIN rechecks: a later one (subscribed, the lease's timer) finding this host
     * the holder was promoted by a release, which gave it to the lowest number already. */
    const char *argv[] = {"EVAL", JOIN_SCRIPT, "3", t->queue, t->holder, counter, r->h->id,
                          seq, lease, t->channel, t->recheck ? "1" : "0"};
    size_t lens[] = {4, sizeof JOIN_SCRIPT - 1, 1, t->queue_len, t->holder_len, counter_len,
                     strlen(r->h->id),
                     (size_t)snprintf(seq, sizeof seq, "%llu", t->seq),
                     (size_t)snprintf(lease, sizeof lease, "%llu",
                                      (unsigned long long)lease_ms(r)),
                     t->channel_len, 1};
    if (turn_send(t, CMD_JOIN, 11, argv, lens) != 0)
        return -1;
    t->checking = 1;
    t->recheck = 0;
    return 0;
}

static void turn_send_renew(struct store_redis_turn *t)
{
    struct store_redis *r = t->r;
    char lease[32];
    const char *argv[] = {"EVAL", RENEW_SCRIPT, "1", t->holder, r->h->id, lease};
    size_t lens[] = {4, sizeof RENEW_SCRIPT - 1, 1, t->holder_len, strlen(r->h->id),
                     (size_t)snprintf(lease, sizeof lease, "%llu",
                                      (unsigned long long)lease_ms(r))};
    turn_send(t, CMD_RENEW, 6, argv, lens); /* not sent: the connection is going, which ends it */
}

static void turn_note_lost(struct store_redis_turn *t)
{
    if (t->lost)
        return;
    t->lost = 1;
    metrics_order(ORDER_LEASE_LOST);
    log_msg(LOG_WARNING, NULL, "sb.store: worker %u held a sender's turn whose lease ran out "
                               "before its message ended (store.order_lease %g s): the sender's "
                               "next message may have started on another host meanwhile",
            t->r->index, t->r->cfg->order_lease);
}

/* The turn is this host's: renew its lease every third of it while the message runs. */
static void turn_now_held(struct store_redis_turn *t)
{
    turn_leave_key(t);
    t->state = TURN_HELD;
    timer_start(t->r->timers, &t->timer, timers_now_ms() + lease_ms(t->r) / 3);
    if (t->done)
        t->done(t->ctx, 1, NULL);
}

static void turn_timer_fired(struct timer *timer)
{
    struct store_redis_turn *t = CONTAINER(timer, struct store_redis_turn, timer);
    struct store_redis *r = t->r;
    switch (t->state) {
    case TURN_WAITING:
        /* The holder's lease should have ended: a JOIN takes the turn over if it did. */
        if (!t->checking && turn_send_join(t) != 0)
            timer_start(r->timers, &t->timer, timers_now_ms() + lease_ms(r));
        break;
    case TURN_HELD:
        if (!t->lost)
            turn_send_renew(t);
        timer_start(r->timers, &t->timer, timers_now_ms() + lease_ms(r) / 3);
        break;
    case TURN_RELEASING: /* no Redis to tell: answered from the loop */
        turn_end(t, 0, NULL);
        turn_maybe_free(t);
        break;
    default:
        break;
    }
    settle(r);
}

static void turns_subscribed(struct store_redis *r, struct wait_key *k)
{
    for (struct store_redis_turn *t = k->turns; t; t = t->k_next)
        if (t->state == TURN_WAITING && !t->checking && turn_send_join(t) != 0)
            fail(r, "cannot send a command");
}

static void turns_heard(struct store_redis *r, struct wait_key *k, const redisReply *payload)
{
    if (payload->type != REDIS_REPLY_STRING)
        return;
    int mine = payload->len == strlen(r->h->id) && memcmp(payload->str, r->h->id,
                                                          payload->len) == 0;
    struct store_redis_turn *t = k->turns;
    while (t) {
        struct store_redis_turn *next = t->k_next;
        if (t->state == TURN_WAITING) {
            if (mine)
                turn_now_held(t);
            else /* another host's: its lease just started */
                timer_start(r->timers, &t->timer, timers_now_ms() + lease_ms(r) + TURN_MARGIN_MS);
        }
        t = next;
    }
}

static void turn_reply(struct store_redis_call *call, const redisReply *reply)
{
    struct store_redis_turn *t = call->turn;
    struct store_redis *r = t->r;
    t->pending--;
    if (call->turn_cmd == CMD_JOIN)
        t->checking = 0;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        char msg[300];
        if (reply)
            snprintf(msg, sizeof msg, "store error: %s", reply->str);
        else
            snprintf(msg, sizeof msg, "store unavailable: %s", r->error);
        if (t->state == TURN_HELD && reply)
            turn_note_lost(t); /* the holder key is not what the script expects */
        else
            turn_end(t, 0, msg);
        turn_maybe_free(t);
        return;
    }
    const redisReply *e = reply->type == REDIS_REPLY_ARRAY ? *reply->element : NULL;
    long long first = e && e->type == REDIS_REPLY_INTEGER ? e->integer
                      : reply->type == REDIS_REPLY_INTEGER ? reply->integer
                                                           : -1;
    switch ((enum turn_cmd)call->turn_cmd) {
    case CMD_JOIN:
        if (reply->elements >= 4 && reply->element[1]->type == REDIS_REPLY_INTEGER)
            t->seq = (unsigned long long)reply->element[1]->integer;
        if (reply->elements >= 4 && reply->element[3]->type == REDIS_REPLY_INTEGER &&
            reply->element[3]->integer == 1)
            metrics_order(ORDER_LEASE_EXPIRED);
        if (t->state != TURN_JOINING && t->state != TURN_WAITING)
            break; /* held meanwhile (published), or released */
        if (first == 1) {
            turn_now_held(t);
        } else {
            long long pttl = reply->elements >= 3 &&
                                     reply->element[2]->type == REDIS_REPLY_INTEGER
                                 ? reply->element[2]->integer
                                 : (long long)lease_ms(r);
            if (pttl < 0)
                pttl = pttl == -2 ? 0 : (long long)lease_ms(r);
            t->state = TURN_WAITING;
            if (turn_join_key(t) != 0) {
                turn_end(t, 0, "the store is out of memory");
                break;
            }
            timer_start(r->timers, &t->timer,
                        timers_now_ms() + (uint64_t)pttl + TURN_MARGIN_MS);
        }
        break;
    case CMD_RENEW:
        if (first == 0 && t->state == TURN_HELD)
            turn_note_lost(t);
        break;
    case CMD_RELEASE: {
        const redisReply *lost = reply->elements >= 2 ? reply->element[1] : NULL;
        if (lost && lost->type == REDIS_REPLY_INTEGER && lost->integer == 1 && t->lost == 0 &&
            t->next_seq != (unsigned long long)-1) /* next_seq -1: it never held */
            turn_note_lost(t);
        turn_end(t, first == 1, NULL);
        break;
    }
    }
    turn_maybe_free(t);
}

static void fail_turns(struct store_redis *r, const char *error)
{
    struct store_redis_turn *t = r->turns;
    while (t) {
        struct store_redis_turn *next = t->t_next;
        turn_end(t, 0, error);
        turn_maybe_free(t);
        t = next;
    }
}

struct store_redis_turn *store_redis_turn_take(struct store_redis *r, const char *sender,
                                               unsigned long long seq, enum store_turn_ask how,
                                               store_redis_turn_done done, void *ctx, char *err,
                                               size_t errlen)
{
    /* What the host has from its previous message is let go even without Redis (see release). */
    if (how != STORE_TURN_HANDED && how != STORE_TURN_PLACE && !can_send(r)) {
        snprintf(err, errlen, "store unavailable: %s",
                 r->logged_error[0] ? r->logged_error : "not connected to Redis yet");
        return NULL;
    }
    struct store_redis_turn *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->r = r;
    t->done = done;
    t->ctx = ctx;
    t->seq = seq;
    t->recheck = how == STORE_TURN_RECHECK;
    t->timer = TIMER_INIT(turn_timer_fired);
    t->sender = strdup(sender);
    t->queue = joined(r->cfg->prefix, "\0turn:q:", 8, sender, &t->queue_len);
    t->holder = joined(r->cfg->prefix, "\0turn:h:", 8, sender, &t->holder_len);
    t->channel = joined(r->cfg->prefix, "turn:", 5, sender, &t->channel_len);
    t->t_next = r->turns;
    if (r->turns)
        r->turns->t_prev = t;
    r->turns = t;
    t->state = TURN_JOINING;
    if (!t->sender || !t->queue || !t->holder || !t->channel) {
        snprintf(err, errlen, "out of memory");
        t->done = NULL;
        turn_end(t, 0, NULL);
        turn_maybe_free(t);
        return NULL;
    }
    if (how == STORE_TURN_PLACE) { /* the host's place: nothing to ask, never held here */
        t->state = TURN_WAITING;
        return t;
    }
    if (how == STORE_TURN_HANDED) { /* from this host's previous message: keep renewing it */
        t->state = TURN_HELD;
        timer_start(r->timers, &t->timer, timers_now_ms() + lease_ms(r) / 3);
        return t;
    }
    if (turn_send_join(t) != 0) {
        snprintf(err, errlen, "store unavailable: the connection to Redis is closing");
        t->done = NULL;
        turn_end(t, 0, NULL);
        turn_maybe_free(t);
        return NULL;
    }
    return t;
}

void store_redis_turn_release(struct store_redis_turn *t, unsigned long long next_seq,
                              store_redis_turn_released released)
{
    struct store_redis *r = t->r;
    int was_held = t->state == TURN_HELD;
    turn_leave_key(t);
    t->state = TURN_RELEASING;
    t->done = NULL;
    t->released = released;
    t->next_seq = was_held ? next_seq : (unsigned long long)-1;
    char next[32], lease[32];
    const char *argv[] = {"EVAL", RELEASE_SCRIPT, "2", t->queue, t->holder, r->h->id, next,
                          lease, t->channel};
    size_t lens[] = {4, sizeof RELEASE_SCRIPT - 1, 1, t->queue_len, t->holder_len,
                     strlen(r->h->id), (size_t)snprintf(next, sizeof next, "%llu", next_seq),
                     (size_t)snprintf(lease, sizeof lease, "%llu",
                                      (unsigned long long)lease_ms(r)),
                     t->channel_len};
    if (turn_send(t, CMD_RELEASE, 9, argv, lens) != 0)
        timer_start(r->timers, &t->timer, timers_now_ms()); /* answered from the loop */
    else
        timer_stop(r->timers, &t->timer);
}

int store_redis_turn_held(const struct store_redis_turn *t) { return t->state == TURN_HELD; }

void store_redis_turn_keep(struct store_redis_turn *t)
{
    t->done = NULL; /* nothing to answer: the turn stays the host's in Redis */
    turn_end(t, 0, NULL);
    turn_maybe_free(t);
}

struct store_redis_call *store_redis_turn_number(struct store_redis *r, store_redis_done done,
                                                 void *ctx, char *err, size_t errlen)
{
    struct store_request req = {.op = STORE_OP_INCR, .key = "\0turn:seq", .key_len = 9, .by = 1};
    return store_redis_call(r, &req, done, ctx, err, errlen);
}

/* ---- open connections across hosts -----------------------------------------------------------
 * Per worker, a table of the senders its connections are bound to, each with the state of its
 * subscription to <prefix>conn:<sender> on the subscriber connection. The subscription callback
 * is this section's own (conn_sub_reply), so the keys' callback never sees these channels. A
 * message is the sending host's id (32 hex digits), 't' or 'b' (text or binary), then the data;
 * a worker ignores what its own host sent (that host delivered it already). While the connection
 * to Redis is down every subscription counts as gone; link_up makes them again. */

#define CONN_INFIX "conn:"
#define CONN_HOST_ID_LEN 32

enum conn_sub_state { CSUB_NONE, CSUB_PENDING, CSUB_ACTIVE, CSUB_LEAVING };

struct conn_sub {
    struct conn_sub *next;
    char *sender;
    char *channel;              /* <prefix>conn:<sender> */
    size_t channel_len;
    unsigned count;             /* this worker's connections bound to the sender */
    enum conn_sub_state state;
};

struct conn_subs {
    struct conn_sub **buckets;
    size_t bucket_count, count;
    store_redis_conn_heard heard;
    void *ctx;
};

static struct conn_sub **conn_sub_slot(struct conn_subs *t, const char *channel, size_t len)
{
    struct conn_sub **p = &t->buckets[hash_bytes(channel, len) & (t->bucket_count - 1)];
    while (*p && !((*p)->channel_len == len && memcmp((*p)->channel, channel, len) == 0))
        p = &(*p)->next;
    return p;
}

static int conn_subs_grow(struct conn_subs *t)
{
    size_t n = t->bucket_count ? t->bucket_count * 2 : 64;
    struct conn_sub **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < t->bucket_count; i++) {
        struct conn_sub *e = t->buckets[i];
        while (e) {
            struct conn_sub *next = e->next;
            size_t at = hash_bytes(e->channel, e->channel_len) & (n - 1);
            e->next = b[at];
            b[at] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->bucket_count = n;
    return 0;
}

static void conn_sub_remove(struct conn_subs *t, struct conn_sub *e)
{
    struct conn_sub **p = conn_sub_slot(t, e->channel, e->channel_len);
    if (*p == e) {
        *p = e->next;
        t->count--;
    }
    free(e->sender);
    free(e->channel);
    free(e);
}

static void conn_sub_reply(redisAsyncContext *ac, void *reply_ptr, void *privdata);

static void conn_sub_send(struct store_redis *r, struct conn_sub *e, const char *verb)
{
    const char *argv[] = {verb, e->channel};
    size_t lens[] = {strlen(verb), e->channel_len};
    struct conn *c = &r->conns[CONN_SUBSCRIBER];
    if (!c->ac || redisAsyncCommandArgv(c->ac, conn_sub_reply, r, 2, argv, lens) != REDIS_OK) {
        /* The context is closing (link_up subscribes again) or out of memory. Not a failure
         * of the link: this may run inside a script's call, where the link cannot be reset. */
        e->state = CSUB_NONE;
        return;
    }
    e->state = verb[0] == 'S' ? CSUB_PENDING : CSUB_LEAVING;
}

/* Subscribe or unsubscribe as the count says, from a settled state. */
static void conn_sub_settle(struct store_redis *r, struct conn_sub *e)
{
    if (!can_send(r)) {
        e->state = CSUB_NONE; /* the subscription (if any) goes with the connection */
    } else if (e->count && e->state == CSUB_NONE) {
        conn_sub_send(r, e, "SUBSCRIBE");
    } else if (!e->count && e->state == CSUB_ACTIVE) {
        conn_sub_send(r, e, "UNSUBSCRIBE");
    }
    /* PENDING and LEAVING: their confirmation looks at the count again. */
    if (!e->count && e->state == CSUB_NONE)
        conn_sub_remove(r->conn_subs, e);
}

static void conn_sub_heard(struct store_redis *r, struct conn_sub *e, const redisReply *msg)
{
    struct conn_subs *t = r->conn_subs;
    if (msg->type != REDIS_REPLY_STRING || msg->len < CONN_HOST_ID_LEN + 1 || !t->heard ||
        !e->count)
        return;
    if (memcmp(msg->str, r->h->id, CONN_HOST_ID_LEN) == 0)
        return; /* this host's own send: its connections have it */
    const char *data = msg->str + CONN_HOST_ID_LEN + 1;
    t->heard(t->ctx, e->sender, msg->str[CONN_HOST_ID_LEN] == 'b', data,
             msg->len - CONN_HOST_ID_LEN - 1);
}

/* A confirmation, or a message. A NULL reply (the context is being freed) says nothing about
 * which channel: link_up starts every subscription afresh. */
static void conn_sub_reply(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    (void)ac;
    struct store_redis *r = privdata;
    const redisReply *reply = reply_ptr;
    if (!reply || !r->conn_subs || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING || !r->conn_subs->bucket_count)
        return;
    struct conn_sub *e =
        *conn_sub_slot(r->conn_subs, reply->element[1]->str, reply->element[1]->len);
    if (!e)
        return;
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "message") == 0) {
        conn_sub_heard(r, e, reply->element[2]); /* LEAVING too: a connection may bind again */
    } else if (strcmp(kind, "subscribe") == 0 && e->state == CSUB_PENDING) {
        e->state = CSUB_ACTIVE;
        conn_sub_settle(r, e); /* every connection left meanwhile: unsubscribe */
    } else if (strcmp(kind, "unsubscribe") == 0 && e->state == CSUB_LEAVING) {
        e->state = CSUB_NONE;
        conn_sub_settle(r, e); /* a connection came meanwhile: subscribe again */
    }
}

static void conn_subs_link_up(struct store_redis *r)
{
    struct conn_subs *t = r->conn_subs;
    if (!t)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        struct conn_sub *e = t->buckets[i];
        while (e) {
            struct conn_sub *next = e->next;
            e->state = CSUB_NONE; /* whatever it was, it was on a connection that is gone */
            conn_sub_settle(r, e);
            e = next;
        }
    }
}

static void conn_subs_free(struct store_redis *r)
{
    struct conn_subs *t = r->conn_subs;
    if (!t)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        while (t->buckets[i]) {
            struct conn_sub *e = t->buckets[i];
            t->buckets[i] = e->next;
            free(e->sender);
            free(e->channel);
            free(e);
        }
    }
    free(t->buckets);
    free(t);
    r->conn_subs = NULL;
}

int store_redis_conn_watch(struct store_redis *r, const char *sender,
                           store_redis_conn_heard heard, void *ctx)
{
    if (!r->conn_subs && !(r->conn_subs = calloc(1, sizeof *r->conn_subs)))
        return -1;
    struct conn_subs *t = r->conn_subs;
    t->heard = heard;
    t->ctx = ctx;
    size_t channel_len;
    char *channel = joined(r->cfg->prefix, CONN_INFIX, sizeof CONN_INFIX - 1, sender,
                           &channel_len);
    if (!channel)
        return -1;
    if (t->count >= t->bucket_count && conn_subs_grow(t) != 0) {
        free(channel);
        return -1;
    }
    struct conn_sub **slot = conn_sub_slot(t, channel, channel_len);
    struct conn_sub *e = *slot;
    if (e) {
        free(channel);
    } else {
        e = calloc(1, sizeof *e);
        if (!e || !(e->sender = strdup(sender))) {
            free(e);
            free(channel);
            return -1;
        }
        e->channel = channel;
        e->channel_len = channel_len;
        *slot = e;
        t->count++;
    }
    e->count++;
    if (e->count == 1)
        conn_sub_settle(r, e);
    return 0;
}

void store_redis_conn_unwatch(struct store_redis *r, const char *sender)
{
    struct conn_subs *t = r->conn_subs;
    if (!t || !t->bucket_count)
        return;
    size_t channel_len;
    char *channel = joined(r->cfg->prefix, CONN_INFIX, sizeof CONN_INFIX - 1, sender,
                           &channel_len);
    if (!channel)
        return; /* the subscription stays until the connection to Redis goes: harmless */
    struct conn_sub *e = *conn_sub_slot(t, channel, channel_len);
    free(channel);
    if (!e || !e->count)
        return;
    if (--e->count == 0)
        conn_sub_settle(r, e);
}

int store_redis_conn_publish(struct store_redis *r, const char *sender, int binary,
                             const char *data, size_t len)
{
    if (!can_send(r) || strlen(r->h->id) != CONN_HOST_ID_LEN)
        return 0;
    size_t channel_len;
    char *channel = joined(r->cfg->prefix, CONN_INFIX, sizeof CONN_INFIX - 1, sender,
                           &channel_len);
    char *message = malloc(CONN_HOST_ID_LEN + 1 + len);
    if (!channel || !message) {
        free(channel);
        free(message);
        return 0;
    }
    memcpy(message, r->h->id, CONN_HOST_ID_LEN);
    message[CONN_HOST_ID_LEN] = binary ? 'b' : 't';
    if (len)
        memcpy(message + CONN_HOST_ID_LEN + 1, data, len);
    const char *argv[] = {"PUBLISH", channel, message};
    size_t lens[] = {7, channel_len, CONN_HOST_ID_LEN + 1 + len};
    send_untracked(r, 3, argv, lens); /* hiredis copies the command */
    free(channel);
    free(message);
    return 1;
}

/* ---- the inbox stream ------------------------------------------------------------------------
 * docs/multi-host.md "Nothing acked is lost". Keys: the stream <prefix> NUL "inbox" (no sb.store
 * key holds a NUL byte), its consumer group "workers", one consumer per host (its id). Each entry
 * holds one message: fields channel, request (the request id) and message (the UserMessage as
 * JSON). Four scripts, each one round trip:
 *   ADD:   XADD every message of a request, then XREADGROUP ">" until they are read: they are in
 *          this host's pending list from the start, so XAUTOCLAIM can find them if it dies;
 *   RENEW: for the entries a worker runs, XCLAIM ... JUSTID (idle time back to 0) while the host
 *          still owns them; the ids it no longer owns come back (another host claimed them);
 *   ACK:   XACK + XDEL of the entries still owned by this host (an entry another host claimed is
 *          left to that host);
 *   CLAIM: XAUTOCLAIM of the entries idle for longer than claim_idle, with their delivery counts
 *          (XPENDING); those delivered too often are dropped; worker 0 also deletes consumers
 *          without pending entries that stayed idle (hosts gone).
 * The commands are tracked like sb.store's calls (the command timeout applies) but answered by
 * this section's callback. Nothing here starts a job inside a Redis callback: claimed entries are
 * handed over from a timer, acknowledgements go out from a timer of the next turn. */

#define INBOX_KEY "\0inbox"
#define INBOX_KEY_LEN 6
#define INBOX_GROUP "workers"
#define INBOX_CLAIM_BATCH 100u  /* claimed entries one worker runs at a time, at most */
#define INBOX_MAX_DELIVERIES 5  /* more: dropped (a message that makes every host die) */
#define INBOX_CHUNK 256u        /* ids per RENEW or ACK command */
#define INBOX_ID_SIZE 48        /* "<ms>-<seq>": 41 characters at most */
#define INBOX_LOG_EVERY_MS 10000u

static const char INBOX_ADD_SCRIPT[] =
    "local k, g, me, n = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]) "
    "local ids = {} "
    "for i = 1, n do ids[i] = redis.call('xadd', k, '*', 'channel', ARGV[4], 'request', ARGV[5], "
    "  'message', ARGV[5 + i]) end "
    "local function read() "
    "  return redis.pcall('xreadgroup', 'group', g, me, 'count', n + 100, 'streams', k, '>') end "
    "local r = read() "
    "if type(r) == 'table' and r.err then "
    "  if not string.find(r.err, 'NOGROUP', 1, true) then return r end "
    "  redis.call('xgroup', 'create', k, g, '0') r = read() end "
    "for _ = 1, 1000 do "
    "  if type(r) ~= 'table' or r.err then break end "
    "  local got = r[1][2] "
    "  if #got == 0 or got[#got][1] == ids[n] then break end "
    "  r = read() end "
    "return ids";

static const char INBOX_RENEW_SCRIPT[] =
    "local k, g, me = KEYS[1], ARGV[1], ARGV[2] "
    "local lost = {} "
    "for i = 3, #ARGV do "
    "  local p = redis.pcall('xpending', k, g, ARGV[i], ARGV[i], 1) "
    "  if type(p) == 'table' and p[1] and p[1][2] == me then "
    "    redis.call('xclaim', k, g, me, 0, ARGV[i], 'justid') "
    "  else lost[#lost + 1] = ARGV[i] end end "
    "return lost";

static const char INBOX_ACK_SCRIPT[] =
    "local k, g, me = KEYS[1], ARGV[1], ARGV[2] "
    "local out = {} "
    "for i = 3, #ARGV do "
    "  local p = redis.pcall('xpending', k, g, ARGV[i], ARGV[i], 1) "
    "  local e = type(p) == 'table' and p[1] "
    "  if e and e[2] ~= me then out[#out + 1] = 0 "
    "  else "
    "    if e then redis.call('xack', k, g, ARGV[i]) end "
    "    redis.call('xdel', k, ARGV[i]) "
    "    out[#out + 1] = e and 1 or 2 end end "
    "return out";

static const char INBOX_CLAIM_SCRIPT[] =
    "local k, g, me = KEYS[1], ARGV[1], ARGV[2] "
    "local r = redis.pcall('xautoclaim', k, g, me, ARGV[3], ARGV[4], 'count', ARGV[5]) "
    "if type(r) == 'table' and r.err then "
    "  if not string.find(r.err, 'NOGROUP', 1, true) then return r end "
    "  redis.call('xgroup', 'create', k, g, '0', 'mkstream') return {'0-0', {}, {}} end "
    "local run, dropped = {}, {} "
    "for _, e in ipairs(r[2]) do "
    "  if type(e) == 'table' and type(e[2]) == 'table' then "
    "    local p = redis.call('xpending', k, g, e[1], e[1], 1) "
    "    local n = p[1] and p[1][4] or 1 "
    "    if n > tonumber(ARGV[6]) then "
    "      redis.call('xack', k, g, e[1]) redis.call('xdel', k, e[1]) "
    "      dropped[#dropped + 1] = {e[1], e[2], n} "
    "    else run[#run + 1] = {e[1], e[2], n} end end end "
    "if ARGV[7] == '1' then "
    "  local gone = 0 "
    "  for _, c in ipairs(redis.call('xinfo', 'consumers', k, g)) do "
    "    local f = {} "
    "    for i = 1, #c, 2 do f[c[i]] = c[i + 1] end "
    "    if gone < 100 and f.pending == 0 and f.idle > tonumber(ARGV[3]) and f.name ~= me then "
    "      redis.call('xgroup', 'delconsumer', k, g, f.name) gone = gone + 1 end end end "
    "return {r[1], run, dropped}";

enum inbox_cmd_kind { ICMD_GROUP, ICMD_ADD, ICMD_RENEW, ICMD_ACK, ICMD_CLAIM };

struct inbox_entry {
    struct inbox_entry *next_in_bucket;
    struct inbox_entry *prev, *next; /* every entry of the worker */
    char id[INBOX_ID_SIZE];
    void *owner;                /* the job running it; NULL: claimed, its job not started yet */
    unsigned claimed : 1;       /* from a claim: counts against INBOX_CLAIM_BATCH */
    unsigned acking : 1;        /* processed: its acknowledgement is queued or on its way */
    unsigned ack_sent : 1;      /* ... on its way */
    unsigned lost : 1;          /* another host claimed it meanwhile (logged, counted) */
};

/* A claimed entry waiting for its job (started from a timer, not inside the reply). */
struct inbox_start {
    struct inbox_start *next;
    struct store_redis_claimed e;
    char *data;                 /* the strings e points into */
};

struct inbox {
    struct store_redis *r;
    char *key;                  /* <prefix> NUL inbox */
    size_t key_len;
    struct inbox_entry **buckets;
    size_t bucket_count, count;
    struct inbox_entry *head;
    size_t claimed_running;     /* entries from claims not acknowledged yet */
    size_t owned;               /* entries with an owner (a job's end looks only when some) */
    size_t acks_queued, acks_sent;
    struct timer renew_timer, claim_timer, flush_timer, start_timer;
    struct inbox_start *starts, *starts_tail;
    char cursor[INBOX_ID_SIZE]; /* where the next XAUTOCLAIM goes on */
    int claiming;               /* a CLAIM waits for its reply */
    store_redis_claimed_fn claimed;
    void *ctx;
    uint64_t logged_ms, lost_logged_ms;
    unsigned long unlogged, lost_unlogged;
};

struct store_redis_inbox_add {
    struct store_redis *r;
    store_redis_added_fn done;  /* NULL once detached */
    void *ctx, *owner;
    size_t n;
};

struct inbox_cmd {
    enum inbox_cmd_kind kind;
    struct store_redis_inbox_add *add;
    size_t n;
    char (*ids)[INBOX_ID_SIZE]; /* RENEW, ACK */
};

static uint64_t inbox_idle_ms(const struct store_redis *r)
{
    return (uint64_t)(r->cfg->claim_idle * 1000.0 + 0.5);
}

int store_redis_inbox_on(const struct store_redis *r) { return r && r->cfg->inbox && r->inbox; }

static size_t inbox_hash(const char *id) { return hash_bytes(id, strlen(id)); }

static struct inbox_entry **inbox_slot(struct inbox *ib, const char *id)
{
    struct inbox_entry **p = &ib->buckets[inbox_hash(id) & (ib->bucket_count - 1)];
    while (*p && strcmp((*p)->id, id) != 0)
        p = &(*p)->next_in_bucket;
    return p;
}

static struct inbox_entry *inbox_find(struct inbox *ib, const char *id)
{
    return ib && ib->bucket_count ? *inbox_slot(ib, id) : NULL;
}

static int inbox_grow(struct inbox *ib)
{
    size_t n = ib->bucket_count ? ib->bucket_count * 2 : 64;
    struct inbox_entry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (struct inbox_entry *e = ib->head; e; e = e->next) {
        size_t at = inbox_hash(e->id) & (n - 1);
        e->next_in_bucket = b[at];
        b[at] = e;
    }
    free(ib->buckets);
    ib->buckets = b;
    ib->bucket_count = n;
    return 0;
}

static void inbox_arm_renewal(struct inbox *ib)
{
    if (ib->renew_timer.slot == TIMER_IDLE)
        timer_start(ib->r->timers, &ib->renew_timer, timers_now_ms() + inbox_idle_ms(ib->r) / 3);
}

/* A new entry this worker runs (or is about to). NULL when out of memory (or already known). */
static struct inbox_entry *inbox_track(struct inbox *ib, const char *id, size_t len, void *owner,
                                       int claimed)
{
    if (len == 0 || len >= INBOX_ID_SIZE)
        return NULL;
    if (ib->count >= ib->bucket_count && inbox_grow(ib) != 0)
        return NULL;
    char key[INBOX_ID_SIZE];
    memcpy(key, id, len);
    key[len] = '\0';
    struct inbox_entry **slot = inbox_slot(ib, key);
    if (*slot)
        return NULL;
    struct inbox_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->id, key, len + 1);
    e->owner = owner;
    ib->owned += owner != NULL;
    e->claimed = claimed != 0;
    *slot = e;
    e->next = ib->head;
    if (ib->head)
        ib->head->prev = e;
    ib->head = e;
    ib->count++;
    if (claimed)
        ib->claimed_running++;
    metrics_inbox_pending_add(1);
    inbox_arm_renewal(ib);
    return e;
}

static void inbox_untrack(struct inbox *ib, struct inbox_entry *e)
{
    struct inbox_entry **slot = inbox_slot(ib, e->id);
    if (*slot == e)
        *slot = e->next_in_bucket;
    if (e->prev)
        e->prev->next = e->next;
    else
        ib->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    ib->count--;
    ib->owned -= e->owner != NULL;
    if (e->claimed)
        ib->claimed_running--;
    if (e->acking && e->ack_sent)
        ib->acks_sent--;
    else if (e->acking)
        ib->acks_queued--;
    metrics_inbox_pending_add(-1);
    free(e);
}

/* Some lines are logged at most every 10 s per worker (a Redis outage would flood the log). */
static int inbox_may_log(uint64_t *last, unsigned long *unlogged)
{
    uint64_t now = timers_now_ms();
    if (*last && now - *last < INBOX_LOG_EVERY_MS) {
        (*unlogged)++;
        return 0;
    }
    *last = now;
    return 1;
}

/* Messages that run without the inbox: counted, logged at most every 10 s. */
static void inbox_unprotected(struct store_redis *r, size_t n, const char *request,
                              const char *error)
{
    struct inbox *ib = r->inbox;
    metrics_inbox(INBOX_UNPROTECTED, n);
    unsigned long before = ib->unlogged;
    if (!inbox_may_log(&ib->logged_ms, &ib->unlogged))
        return;
    log_msg(LOG_ERROR, request, "sb.store: %zu message%s of an async channel could not be kept in "
                                "the inbox stream (%s): processed without it, so they are lost if "
                                "this host dies before they are done%s",
            n, n == 1 ? "" : "s", error, before ? "; so were earlier messages since the last "
                                                  "such line" : "");
    ib->unlogged = 0;
}

static void inbox_taken_over(struct store_redis *r, struct inbox_entry *e)
{
    struct inbox *ib = r->inbox;
    if (e->lost)
        return;
    e->lost = 1;
    metrics_inbox(INBOX_TAKEN_OVER, 1);
    unsigned long before = ib->lost_unlogged;
    if (!inbox_may_log(&ib->lost_logged_ms, &ib->lost_unlogged))
        return;
    log_msg(LOG_WARNING, NULL, "sb.store: inbox entry %s was claimed by another host while worker "
                               "%u ran it (it did not renew it within store.claim_idle %g s): "
                               "the message may run twice%s",
            e->id, r->index, r->cfg->claim_idle,
            before ? "; so may earlier ones since the last such line" : "");
    ib->lost_unlogged = 0;
}

static void inbox_on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Send one command of this section, tracked for the command timeout. */
static int inbox_send(struct store_redis *r, struct inbox_cmd *cmd, int argc, const char **argv,
                      const size_t *lens)
{
    if (!can_send(r) || r->fl_count >= MAX_IN_FLIGHT)
        return -1;
    struct store_redis_call *call = calloc(1, sizeof *call);
    if (!call)
        return -1;
    call->r = r;
    call->ctx = cmd;
    call->timer = TIMER_INIT(wait_timed_out); /* never started */
    if (redisAsyncCommandArgv(r->conns[CONN_COMMANDS].ac, inbox_on_reply, call, argc, argv,
                              lens) != REDIS_OK) {
        free(call);
        return -1;
    }
    call->in_flight = 1;
    call->sent_ms = timers_now_ms();
    call->fl_prev = r->fl_tail;
    if (r->fl_tail)
        r->fl_tail->fl_next = call;
    else
        r->fl_head = call;
    r->fl_tail = call;
    r->fl_count++;
    if (r->fl_head == call)
        arm_reply_timer(r);
    return 0;
}

/* EVAL script 1 key group consumer args... */
static int inbox_eval(struct store_redis *r, struct inbox_cmd *cmd, const char *script,
                      size_t script_len, size_t extra, const char *const *args,
                      const size_t *arg_lens)
{
    size_t argc = 6 + extra;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    int rc = -1;
    if (argv && lens) {
        argv[0] = "EVAL", lens[0] = 4;
        argv[1] = script, lens[1] = script_len;
        argv[2] = "1", lens[2] = 1;
        argv[3] = r->inbox->key, lens[3] = r->inbox->key_len;
        argv[4] = INBOX_GROUP, lens[4] = sizeof INBOX_GROUP - 1;
        argv[5] = r->h->id, lens[5] = strlen(r->h->id);
        for (size_t i = 0; i < extra; i++) {
            argv[6 + i] = args[i];
            lens[6 + i] = arg_lens ? arg_lens[i] : strlen(args[i]);
        }
        rc = inbox_send(r, cmd, (int)argc, argv, lens);
    }
    free(argv);
    free(lens);
    return rc;
}

static struct inbox_cmd *inbox_cmd_new(enum inbox_cmd_kind kind, size_t n)
{
    struct inbox_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd)
        return NULL;
    cmd->kind = kind;
    cmd->n = n;
    if (n && !(cmd->ids = calloc(n, sizeof *cmd->ids))) {
        free(cmd);
        return NULL;
    }
    return cmd;
}

static void inbox_cmd_free(struct inbox_cmd *cmd)
{
    free(cmd->ids);
    cmd->ids = NULL;
    free(cmd);
}

/* RENEW or ACK for up to INBOX_CHUNK ids. */
static int inbox_send_ids(struct store_redis *r, enum inbox_cmd_kind kind,
                          struct inbox_entry **entries, size_t n)
{
    struct inbox_cmd *cmd = inbox_cmd_new(kind, n);
    const char *args[INBOX_CHUNK];
    if (!cmd)
        return -1;
    for (size_t i = 0; i < n; i++) {
        memcpy(cmd->ids[i], entries[i]->id, INBOX_ID_SIZE);
        args[i] = cmd->ids[i];
    }
    const char *script = kind == ICMD_ACK ? INBOX_ACK_SCRIPT : INBOX_RENEW_SCRIPT;
    size_t len = kind == ICMD_ACK ? sizeof INBOX_ACK_SCRIPT - 1 : sizeof INBOX_RENEW_SCRIPT - 1;
    if (inbox_eval(r, cmd, script, len, n, args, NULL) != 0) {
        inbox_cmd_free(cmd);
        return -1;
    }
    return 0;
}

static int inbox_flush_batch(struct store_redis *r, struct inbox_entry **batch, size_t *n)
{
    struct inbox *ib = r->inbox;
    if (!can_send(r) || inbox_send_ids(r, ICMD_ACK, batch, *n) != 0)
        return -1; /* sent when the connection is back (link_up) */
    for (size_t i = 0; i < *n; i++)
        batch[i]->ack_sent = 1;
    ib->acks_queued -= *n;
    ib->acks_sent += *n;
    *n = 0;
    return 0;
}

/* Send the queued acknowledgements (while connected; else when the connection is back). */
static void inbox_flush(struct store_redis *r)
{
    struct inbox *ib = r->inbox;
    struct inbox_entry *batch[INBOX_CHUNK];
    size_t n = 0;
    for (struct inbox_entry *e = ib->head; e && ib->acks_queued > n; e = e->next) {
        if (!e->acking || e->ack_sent)
            continue;
        batch[n++] = e;
        if (n == INBOX_CHUNK && inbox_flush_batch(r, batch, &n) != 0)
            return;
    }
    if (n)
        inbox_flush_batch(r, batch, &n);
}

static void inbox_flush_fired(struct timer *t)
{
    struct inbox *ib = CONTAINER(t, struct inbox, flush_timer);
    inbox_flush(ib->r);
    settle(ib->r);
}

/* Every third of claim_idle while the worker runs entries: renew those it still owns. */
static void inbox_renew_fired(struct timer *t)
{
    struct inbox *ib = CONTAINER(t, struct inbox, renew_timer);
    struct store_redis *r = ib->r;
    struct inbox_entry *batch[INBOX_CHUNK];
    size_t n = 0;
    for (struct inbox_entry *e = ib->head; e && can_send(r); e = e->next) {
        if (e->lost)
            continue;
        batch[n++] = e;
        if (n == INBOX_CHUNK) {
            if (inbox_send_ids(r, ICMD_RENEW, batch, n) != 0)
                break;
            n = 0;
        }
    }
    if (n && can_send(r))
        inbox_send_ids(r, ICMD_RENEW, batch, n);
    if (ib->count)
        timer_start(r->timers, &ib->renew_timer, timers_now_ms() + inbox_idle_ms(r) / 3);
    settle(r);
}

static void inbox_schedule_claim(struct inbox *ib, uint64_t in_ms)
{
    struct store_redis *r = ib->r;
    if (r->ending)
        return;
    timer_start(r->timers, &ib->claim_timer, timers_now_ms() + in_ms);
}

/* A round of claims: at most as many entries as the batch has room for. */
static void inbox_claim_fired(struct timer *t)
{
    struct inbox *ib = CONTAINER(t, struct inbox, claim_timer);
    struct store_redis *r = ib->r;
    uint64_t interval = (uint64_t)(r->cfg->claim_interval * 1000.0 + 0.5);
    /* 0.9 to 1.1 times the interval, so hosts started together do not claim in step. */
    uint64_t next = interval - interval / 10 + (interval / 5 ? (unsigned)rand_r(&r->seed) %
                                                                   (interval / 5) : 0);
    size_t room = ib->claimed_running < INBOX_CLAIM_BATCH
                      ? INBOX_CLAIM_BATCH - ib->claimed_running
                      : 0;
    if (ib->claiming || !can_send(r) || r->ending) {
        inbox_schedule_claim(ib, next); /* link_up claims at once when the connection is back */
        return;
    }
    if (room == 0) { /* the claimed entries still run: look again soon */
        inbox_schedule_claim(ib, next < 1000 ? next : 1000);
        return;
    }
    struct inbox_cmd *cmd = inbox_cmd_new(ICMD_CLAIM, 0);
    char idle[32], count[32], max[32];
    snprintf(idle, sizeof idle, "%llu", (unsigned long long)inbox_idle_ms(r));
    snprintf(count, sizeof count, "%zu", room);
    snprintf(max, sizeof max, "%d", INBOX_MAX_DELIVERIES);
    const char *args[] = {idle, ib->cursor, count, max, r->index == 0 ? "1" : "0"};
    if (cmd && inbox_eval(r, cmd, INBOX_CLAIM_SCRIPT, sizeof INBOX_CLAIM_SCRIPT - 1, 5, args,
                          NULL) == 0)
        ib->claiming = 1;
    else if (cmd)
        inbox_cmd_free(cmd);
    inbox_schedule_claim(ib, next);
    settle(r);
}

/* The claimed entries' jobs start, oldest first; an entry no job took is released. */
static void inbox_start_fired(struct timer *t)
{
    struct inbox *ib = CONTAINER(t, struct inbox, start_timer);
    struct store_redis *r = ib->r;
    while (ib->starts) {
        struct inbox_start *s = ib->starts;
        ib->starts = s->next;
        if (!ib->starts)
            ib->starts_tail = NULL;
        if (ib->claimed && !r->ending) /* a host that stops leaves them to the others */
            ib->claimed(ib->ctx, &s->e);
        struct inbox_entry *e = inbox_find(ib, s->e.id);
        if (e && !e->owner && !e->acking) {
            log_msg(LOG_WARNING, s->e.request, "sb.store: inbox entry %s (channel %s) could not "
                                               "start on worker %u: left for a later claim",
                    s->e.id, s->e.channel, r->index);
            inbox_untrack(ib, e);
        }
        free(s->data);
        free(s);
    }
    settle(r);
}

static const redisReply *field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    return NULL;
}

/* A claimed (or dropped) entry: {id, {field, value, ...}, deliveries}. NULL when malformed. */
static struct inbox_start *inbox_start_new(const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    const redisReply *id = e->element[0], *fields = e->element[1];
    const redisReply *channel = field(fields, "channel"), *request = field(fields, "request"),
                     *message = field(fields, "message");
    struct inbox_start *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    size_t cl = channel ? channel->len : 0, rl = request ? request->len : 0,
           ml = message ? message->len : 0;
    s->data = malloc(id->len + cl + rl + ml + 4);
    if (!s->data) {
        free(s);
        return NULL;
    }
    char *p = s->data;
    s->e.id = p;
    memcpy(p, id->str, id->len);
    p[id->len] = '\0';
    p += id->len + 1;
    s->e.channel = p;
    if (cl)
        memcpy(p, channel->str, cl);
    p[cl] = '\0';
    p += cl + 1;
    s->e.request = p;
    if (rl)
        memcpy(p, request->str, rl);
    p[rl] = '\0';
    p += rl + 1;
    s->e.message = p;
    if (ml)
        memcpy(p, message->str, ml);
    p[ml] = '\0';
    s->e.message_len = ml;
    s->e.deliveries = e->element[2]->type == REDIS_REPLY_INTEGER ? e->element[2]->integer : 0;
    return s;
}

static void inbox_claim_reply(struct store_redis *r, const redisReply *reply)
{
    struct inbox *ib = r->inbox;
    ib->claiming = 0;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING) {
        log_msg(LOG_WARNING, NULL, "sb.store: worker %u could not claim inbox entries: %s",
                r->index, reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
        return;
    }
    snprintf(ib->cursor, sizeof ib->cursor, "%s", reply->element[0]->str);
    const redisReply *run = reply->element[1], *dropped = reply->element[2];
    for (size_t i = 0; dropped->type == REDIS_REPLY_ARRAY && i < dropped->elements; i++) {
        struct inbox_start *s = inbox_start_new(dropped->element[i]);
        metrics_inbox(INBOX_DROPPED, 1);
        if (!s)
            continue;
        log_msg(LOG_ERROR, s->e.request, "sb.store: inbox entry %s (channel %s) was delivered %lld "
                                         "times without being processed (each host that ran it "
                                         "stopped?): dropped unprocessed: %.*s",
                s->e.id, s->e.channel, s->e.deliveries,
                (int)(s->e.message_len > 300 ? 300 : s->e.message_len), s->e.message);
        free(s->data);
        free(s);
    }
    size_t claimed = 0;
    for (size_t i = 0; run->type == REDIS_REPLY_ARRAY && i < run->elements; i++) {
        struct inbox_start *s = inbox_start_new(run->element[i]);
        if (!s || !inbox_track(ib, s->e.id, strlen(s->e.id), NULL, 1)) {
            /* Not tracked: never renewed, so it is claimed again later. */
            if (s)
                free(s->data);
            free(s);
            continue;
        }
        claimed++;
        if (ib->starts_tail)
            ib->starts_tail->next = s;
        else
            ib->starts = s;
        ib->starts_tail = s;
    }
    if (claimed) {
        metrics_inbox(INBOX_CLAIMED, claimed);
        log_msg(LOG_INFO, NULL, "sb.store: worker %u claimed %zu inbox entr%s of a host that "
                                "stopped renewing them",
                r->index, claimed, claimed == 1 ? "y" : "ies");
        timer_start(r->timers, &ib->start_timer, timers_now_ms());
    }
    if (strcmp(ib->cursor, "0-0") != 0) /* more of the pending list to look at: soon */
        inbox_schedule_claim(ib, claimed ? 100 : 1000);
}

static void inbox_add_reply(struct store_redis *r, struct store_redis_inbox_add *a,
                            const redisReply *reply)
{
    struct inbox *ib = r->inbox;
    char error[300] = "";
    if (!reply)
        snprintf(error, sizeof error, "store unavailable: %s", r->error);
    else if (reply->type == REDIS_REPLY_ERROR)
        snprintf(error, sizeof error, "store error: %s", reply->str);
    else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != a->n)
        snprintf(error, sizeof error, "store error: an unexpected reply from Redis");
    for (size_t i = 0; !error[0] && i < a->n; i++)
        if (reply->element[i]->type != REDIS_REPLY_STRING ||
            reply->element[i]->len >= INBOX_ID_SIZE)
            snprintf(error, sizeof error, "store error: an unexpected reply from Redis");
    if (error[0]) {
        if (a->done) {
            inbox_unprotected(r, a->n, NULL, error);
            a->done(a->ctx, NULL, 0, error);
        }
        free(a);
        return;
    }
    metrics_inbox(INBOX_APPENDED, a->n);
    if (!a->done) { /* its job stopped waiting: the entries are left to a claim */
        free(a);
        return;
    }
    const char *ids[64], **many = a->n > 64 ? malloc(a->n * sizeof *many) : ids;
    if (!many) {
        a->done(a->ctx, NULL, 0, "out of memory");
        free(a);
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        many[i] = reply->element[i]->str;
        /* Not tracked (out of memory): not renewed, so claimed later; it may run twice. */
        inbox_track(ib, reply->element[i]->str, reply->element[i]->len, a->owner, 0);
    }
    a->done(a->ctx, many, a->n, NULL);
    if (many != ids)
        free(many);
    free(a);
}

static void inbox_ids_reply(struct store_redis *r, struct inbox_cmd *cmd, const redisReply *reply)
{
    struct inbox *ib = r->inbox;
    int ok = reply && reply->type == REDIS_REPLY_ARRAY;
    if (reply && !ok)
        log_msg(LOG_WARNING, NULL, "sb.store: worker %u: an inbox %s failed: %s", r->index,
                cmd->kind == ICMD_ACK ? "acknowledgement" : "renewal",
                reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
    if (cmd->kind == ICMD_RENEW) {
        for (size_t i = 0; ok && i < reply->elements; i++) {
            const redisReply *id = reply->element[i];
            struct inbox_entry *e = id->type == REDIS_REPLY_STRING ? inbox_find(ib, id->str) : NULL;
            if (e)
                inbox_taken_over(r, e);
        }
        return;
    }
    size_t acked = 0;
    for (size_t i = 0; i < cmd->n; i++) {
        struct inbox_entry *e = inbox_find(ib, cmd->ids[i]);
        if (!e || !e->ack_sent)
            continue;
        if (!ok || i >= reply->elements) { /* to be sent again (the connection went) */
            e->ack_sent = 0;
            ib->acks_sent--;
            ib->acks_queued++;
            continue;
        }
        const redisReply *v = reply->element[i];
        if (v->type == REDIS_REPLY_INTEGER && v->integer == 1)
            acked++;
        else if (v->type == REDIS_REPLY_INTEGER && v->integer == 0)
            inbox_taken_over(r, e); /* the host that claimed it acknowledges it */
        inbox_untrack(ib, e);
    }
    if (acked)
        metrics_inbox(INBOX_ACKED, acked);
}

static void inbox_on_reply(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
    struct store_redis_call *call = privdata;
    struct store_redis *r = call->r;
    const redisReply *reply = reply_ptr;
    if (call->in_flight) {
        int was_head = r->fl_head == call;
        fl_unlink(r, call);
        call->in_flight = 0;
        if (was_head)
            arm_reply_timer(r);
    }
    if (!reply && !r->teardown)
        fail(r, "%s", ac->err ? ac->errstr : "the connection to Redis closed");
    struct inbox_cmd *cmd = call->ctx;
    free(call);
    if (r->inbox) {
        switch (cmd->kind) {
        case ICMD_GROUP:
            if (reply && reply->type == REDIS_REPLY_ERROR &&
                strncmp(reply->str, "BUSYGROUP", 9) != 0)
                log_msg(LOG_WARNING, NULL, "sb.store: the inbox stream's group: %s", reply->str);
            break;
        case ICMD_ADD:
            inbox_add_reply(r, cmd->add, reply);
            break;
        case ICMD_RENEW:
        case ICMD_ACK:
            inbox_ids_reply(r, cmd, reply);
            break;
        case ICMD_CLAIM:
            inbox_claim_reply(r, reply);
            break;
        }
    } else if (cmd->kind == ICMD_ADD) {
        free(cmd->add);
    }
    inbox_cmd_free(cmd);
}

/* Connected (again): the group exists, acknowledgements that were cut go out, entries are
 * renewed at once (they may have idled meanwhile) and a claim round follows. */
static void inbox_link_up(struct store_redis *r)
{
    struct inbox *ib = r->inbox;
    if (!ib)
        return;
    struct inbox_cmd *cmd = inbox_cmd_new(ICMD_GROUP, 0);
    const char *argv[] = {"XGROUP", "CREATE", ib->key, INBOX_GROUP, "0", "MKSTREAM"};
    size_t lens[] = {6, 6, ib->key_len, sizeof INBOX_GROUP - 1, 1, 8};
    if (cmd && inbox_send(r, cmd, 6, argv, lens) != 0)
        inbox_cmd_free(cmd);
    if (ib->acks_queued)
        timer_start(r->timers, &ib->flush_timer, timers_now_ms());
    if (ib->count)
        timer_start(r->timers, &ib->renew_timer, timers_now_ms());
    snprintf(ib->cursor, sizeof ib->cursor, "0-0");
    inbox_schedule_claim(ib, (unsigned)rand_r(&r->seed) % 200);
}

static void inbox_free(struct store_redis *r)
{
    struct inbox *ib = r->inbox;
    if (!ib)
        return;
    timer_stop(r->timers, &ib->renew_timer);
    timer_stop(r->timers, &ib->claim_timer);
    timer_stop(r->timers, &ib->flush_timer);
    timer_stop(r->timers, &ib->start_timer);
    while (ib->head)
        inbox_untrack(ib, ib->head);
    while (ib->starts) {
        struct inbox_start *s = ib->starts;
        ib->starts = s->next;
        free(s->data);
        free(s);
    }
    free(ib->buckets);
    free(ib->key);
    free(ib);
    r->inbox = NULL;
}

void store_redis_inbox_setup(struct store_redis *r, store_redis_claimed_fn claimed, void *ctx)
{
    if (!r->cfg->inbox || r->inbox)
        return;
    struct inbox *ib = calloc(1, sizeof *ib);
    size_t plen = strlen(r->cfg->prefix);
    if (!ib || !(ib->key = malloc(plen + INBOX_KEY_LEN))) {
        free(ib);
        log_msg(LOG_ERROR, NULL, "sb.store: out of memory for the inbox of worker %u", r->index);
        return;
    }
    memcpy(ib->key, r->cfg->prefix, plen);
    memcpy(ib->key + plen, INBOX_KEY, INBOX_KEY_LEN);
    ib->key_len = plen + INBOX_KEY_LEN;
    ib->r = r;
    ib->claimed = claimed;
    ib->ctx = ctx;
    ib->renew_timer = TIMER_INIT(inbox_renew_fired);
    ib->claim_timer = TIMER_INIT(inbox_claim_fired);
    ib->flush_timer = TIMER_INIT(inbox_flush_fired);
    ib->start_timer = TIMER_INIT(inbox_start_fired);
    snprintf(ib->cursor, sizeof ib->cursor, "0-0");
    r->inbox = ib;
}

struct store_redis_inbox_add *store_redis_inbox_add(struct store_redis *r, const char *channel,
                                                    const char *request,
                                                    const char *const *messages,
                                                    const size_t *lens, size_t n, void *owner,
                                                    store_redis_added_fn done, void *ctx,
                                                    char *err, size_t errlen)
{
    if (!store_redis_inbox_on(r) || n == 0) {
        snprintf(err, errlen, "the inbox is off");
        return NULL;
    }
    if (!can_send(r)) {
        snprintf(err, errlen, "store unavailable: %s",
                 r->logged_error[0] ? r->logged_error : "not connected to Redis yet");
        inbox_unprotected(r, n, request, err);
        return NULL;
    }
    struct store_redis_inbox_add *a = calloc(1, sizeof *a);
    struct inbox_cmd *cmd = inbox_cmd_new(ICMD_ADD, 0);
    const char **args = malloc((n + 3) * sizeof *args);
    size_t *arg_lens = malloc((n + 3) * sizeof *arg_lens);
    char count[32];
    int rc = -1;
    if (a && cmd && args && arg_lens) {
        a->r = r;
        a->done = done;
        a->ctx = ctx;
        a->owner = owner;
        a->n = n;
        cmd->add = a;
        args[0] = count, arg_lens[0] = (size_t)snprintf(count, sizeof count, "%zu", n);
        args[1] = channel, arg_lens[1] = strlen(channel);
        args[2] = request, arg_lens[2] = strlen(request);
        for (size_t i = 0; i < n; i++)
            args[3 + i] = messages[i], arg_lens[3 + i] = lens[i];
        rc = inbox_eval(r, cmd, INBOX_ADD_SCRIPT, sizeof INBOX_ADD_SCRIPT - 1, n + 3, args,
                        arg_lens);
    }
    free(args);
    free(arg_lens);
    if (rc != 0) {
        free(a);
        if (cmd)
            inbox_cmd_free(cmd);
        snprintf(err, errlen, "store unavailable: the connection to Redis is closing");
        inbox_unprotected(r, n, request, err);
        return NULL;
    }
    return a;
}

void store_redis_inbox_add_detach(struct store_redis_inbox_add *a)
{
    if (a)
        a->done = NULL;
}

void store_redis_inbox_done(struct store_redis *r, const char *id)
{
    struct inbox *ib = r ? r->inbox : NULL;
    struct inbox_entry *e = inbox_find(ib, id);
    if (!e || e->acking)
        return;
    e->acking = 1;
    ib->owned -= e->owner != NULL;
    e->owner = NULL;
    ib->acks_queued++;
    /* Sent at the next turn of the loop, with the others of this turn. */
    if (ib->flush_timer.slot == TIMER_IDLE)
        timer_start(r->timers, &ib->flush_timer, timers_now_ms());
}

void store_redis_inbox_release(struct store_redis *r, const char *id)
{
    struct inbox *ib = r ? r->inbox : NULL;
    struct inbox_entry *e = inbox_find(ib, id);
    if (!e || e->acking)
        return;
    log_msg(LOG_WARNING, NULL, "sb.store: inbox entry %s was not processed on worker %u: left "
                               "for a claim after store.claim_idle (%g s)",
            id, r->index, r->cfg->claim_idle);
    inbox_untrack(ib, e);
}

int store_redis_inbox_take(struct store_redis *r, const char *id, void *owner)
{
    struct inbox_entry *e = inbox_find(r ? r->inbox : NULL, id);
    if (!e || e->owner || e->acking || !owner)
        return -1;
    e->owner = owner;
    r->inbox->owned++;
    return 0;
}

void store_redis_inbox_owner_ended(struct store_redis *r, void *owner)
{
    struct inbox *ib = r ? r->inbox : NULL;
    if (!ib || !owner || !ib->owned)
        return;
    struct inbox_entry *e = ib->head;
    while (e) {
        struct inbox_entry *next = e->next;
        if (e->owner == owner && !e->acking)
            store_redis_inbox_release(r, e->id);
        e = next;
    }
}

int store_redis_inbox_busy(const struct store_redis *r)
{
    const struct inbox *ib = r ? r->inbox : NULL;
    return ib && can_send(r) && (ib->acks_queued || ib->acks_sent);
}
