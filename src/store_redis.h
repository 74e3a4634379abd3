/* SPDX-License-Identifier: MIT */
/* store_redis: the Redis backend of sb.store (docs/lua-api.md "sb.store", docs/multi-host.md),
 * for hosts that share their state. One `struct store_redis` per engine worker: it owns two
 * connections made with hiredis's async API, both driven by the worker's epoll loop and timer
 * heap, so no call ever blocks the thread:
 *   - the command connection: every sb.store call, pipelined, answered in order;
 *   - the subscriber connection: a pop that waits subscribes to the key's channel
 *     (<prefix>pushed:<key>), which every push publishes to after its RPUSH; a notification makes
 *     the oldest local waiter of that key try LPOP again. No connection is ever blocked (no
 *     BLPOP), so one waiting pop costs a subscription, not a connection.
 * Both connections go up and down together: when either fails, both are dropped, every call in
 * flight and every waiting pop fails ("store unavailable: ..."), and a new pair is tried after a
 * backoff (100 ms doubling to 5 s, jittered). While the pair is not connected, calls fail at once.
 *
 * Values are bytes: what lua_sb_store.c stores (its marker-byte encoding) goes to Redis as it is.
 * Every key is prefixed with the configured prefix.
 *
 * The host-wide part (`struct store_redis_host`) holds the configuration and what /status and
 * /metrics show; the workers write their state into it under its mutex (rare: at transitions).
 * Uses: hiredis (async), timers, config (struct store_config), log, metrics. */
#ifndef SB_STORE_REDIS_H
#define SB_STORE_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "timers.h"

/* epoll data of the connections' sockets: this tag in the high 32 bits. */
#define REDIS_EPOLL_TAG 0x5244u

struct store_redis_host;
struct store_redis;
struct store_redis_call;

enum store_op {
    STORE_OP_GET,    /* -> value | nil */
    STORE_OP_SET,    /* -> boolean (add: false when the key existed) */
    STORE_OP_INCR,   /* -> integer */
    STORE_OP_DEL,    /* -> boolean */
    STORE_OP_EXPIRE, /* -> boolean */
    STORE_OP_PUSH,   /* -> integer: the list's length */
    STORE_OP_POP,    /* -> value | nil (wait_ms: waits that long for a push) */
    STORE_OP_LENGTH, /* -> integer */
};

struct store_request {
    enum store_op op;
    const char *key;       /* without the prefix */
    size_t key_len;
    const char *value;     /* set, push */
    size_t value_len;
    uint64_t ttl_ms;       /* set, expire: 0 = none */
    int only_if_absent;    /* set: add */
    long long by;          /* incr */
    uint64_t wait_ms;      /* pop: 0 = answer at once */
};

enum store_reply_kind { STORE_REPLY_NIL, STORE_REPLY_BOOL, STORE_REPLY_INT, STORE_REPLY_VALUE,
                        STORE_REPLY_ERROR };

struct store_reply {
    enum store_reply_kind kind;
    long long integer;     /* BOOL (0/1), INT */
    const char *data;      /* VALUE: bytes, valid during the done call only */
    size_t len;
    const char *error;     /* ERROR: what sb.store returns after nil (valid during the call) */
};

/* Called once with the answer, on the worker's thread from its loop (never from inside
 * store_redis_call), unless the call was detached first. */
typedef void (*store_redis_done)(void *ctx, const struct store_reply *reply);

/* ---- the host ------------------------------------------------------------------------------ */

/* The shared part for `workers` workers; cfg is copied. NULL when out of memory. */
struct store_redis_host *store_redis_host_create(const struct store_config *cfg,
                                                 unsigned workers);
void store_redis_host_destroy(struct store_redis_host *h);

/* What /status and /metrics show. */
struct store_redis_status {
    char url[448];            /* without the password */
    char prefix[128];
    unsigned workers, up;     /* workers, and those whose connections are up */
    int connected;            /* every worker is up */
    time_t since;             /* connected: since every worker is; else: since the first worker
                               * in trouble lost its connection (or started) */
    char last_error[256];     /* "" when none yet */
    time_t last_error_at;
    unsigned long long reconnects; /* connections made again after one was lost or refused */
};
void store_redis_host_status(struct store_redis_host *h, struct store_redis_status *out);

/* ---- one worker ---------------------------------------------------------------------------- */

/* The worker's backend: its sockets go into epfd, its timers into `timers` (the worker's). Does
 * not connect yet. NULL when out of memory. */
struct store_redis *store_redis_create(struct store_redis_host *h, unsigned index, int epfd,
                                       struct timer_heap *timers);
/* Start connecting (on the worker's thread). */
void store_redis_start(struct store_redis *r);
/* An epoll event for data.u64 with REDIS_EPOLL_TAG (its low 32 bits are `data`). */
void store_redis_on_event(struct store_redis *r, uint32_t data, uint32_t events);
/* Graceful stop: every waiting pop answers nil now, and later pops do not wait. */
void store_redis_end_waits(struct store_redis *r);
/* Frees the connections (calls still in flight get no answer: detach them first) and r. */
void store_redis_destroy(struct store_redis *r);

/* Send a call. Returns its handle, or NULL with the error sb.store returns in err ("store
 * unavailable: ...", or "the value is too big for the store"): then done is never called. */
struct store_redis_call *store_redis_call(struct store_redis *r, const struct store_request *req,
                                          store_redis_done done, void *ctx, char *err,
                                          size_t errlen);
/* The caller does not want the answer any more (its request ended or timed out): done is never
 * called. A value a waiting pop took meanwhile goes back to the front of the list. */
void store_redis_detach(struct store_redis_call *call);

/* ---- a sender's turn across hosts (docs/multi-host.md "Order across hosts") -----------------
 * With `store.order` on, a message holding its sender's gate on this host also needs the
 * sender's turn in Redis, which the hosts sharing the Redis pass on in the order their messages
 * took their arrival numbers. The turn is a lease (store.order_lease), renewed every third of it
 * while held; a waiting host is woken by a PUBLISH when the turn passes, and a timer armed to the
 * holder's lease end lets it take over from a host that died. */
struct store_redis_turn;
/* held 1: the turn is the caller's. held 0: it could not be had, or was lost with the connection
 * (error says why; the turn is gone: forget it). Called from the loop, never from inside a
 * store_redis_turn_* call. */
typedef void (*store_redis_turn_done)(void *ctx, int held, const char *error);
/* A release is done: held 1 when the host keeps the turn for the number it gave (its next
 * waiting message's). Always called once, from the loop. */
typedef void (*store_redis_turn_released)(const char *sender, int held);

/* Whether the order across hosts is on (store.order). */
int store_redis_order(const struct store_redis *r);
/* This host's id in Redis (random, per process). */
const char *store_redis_host_id(const struct store_redis *r);
/* Take an arrival number for a message that waits behind another of its sender on this host:
 * a STORE_REPLY_INT, as store_redis_call. */
struct store_redis_call *store_redis_turn_number(struct store_redis *r, store_redis_done done,
                                                 void *ctx, char *err, size_t errlen);
/* How store_redis_turn_take asks for the turn. */
enum store_turn_ask {
    /* join the sender's queue with the message's number (0: take one now) */
    STORE_TURN_JOIN,
    /* this host's previous message handed it over: only renew it */
    STORE_TURN_HANDED,
    /* this host's previous message kept it, or the host's place in the queue, while this
     * message's number was on its way: keep the turn when no other host waits with a lower
     * number, else pass it on and join the queue (with this number) */
    STORE_TURN_RECHECK,
    /* this host's previous message kept the host's place in the queue (it may hold the turn by
     * now) for this message, which goes without the turn: ask nothing, only keep or release it */
    STORE_TURN_PLACE,
};
/* Ask for the sender's turn with the message's arrival number seq. NULL (err set) when Redis
 * cannot be asked: then done is never called. */
struct store_redis_turn *store_redis_turn_take(struct store_redis *r, const char *sender,
                                               unsigned long long seq, enum store_turn_ask how,
                                               store_redis_turn_done done, void *ctx, char *err,
                                               size_t errlen);
/* Whether t holds the turn now (not still awaited, not lost with the connection). */
int store_redis_turn_held(const struct store_redis_turn *t);
/* Forget a turn here without telling Redis: this host's next message takes it over
 * (STORE_TURN_RECHECK, on any worker), a held turn while its lease runs, an awaited one as the
 * host's place in the queue (a JOIN still on its way lands, its answer is dropped). Frees t. */
void store_redis_turn_keep(struct store_redis_turn *t);
/* Give the turn back (held or still awaited; its done is not called any more); next_seq, when
 * not 0, queues the host again at once for its next waiting message. Frees the turn once
 * released is called. */
void store_redis_turn_release(struct store_redis_turn *t, unsigned long long next_seq,
                              store_redis_turn_released released);


/* ---- open connections across hosts (docs/multi-host.md "Open connections across hosts") -----
 * A worker with connections bound to a sender subscribes, on its subscriber connection, to
 * <prefix>conn:<sender> (once, however many of its connections are bound to it); a send to the
 * sender on any host publishes there, led by the sending host's id, and the workers of the other
 * hosts that hold the sender hand it to their connections. Redis drops the subscriptions of a
 * host whose connection closes (a host that died), so no stale binding is kept; subscriptions
 * lost with the connection are made again when it is back. */
typedef void (*store_redis_conn_heard)(void *ctx, const char *sender, int binary,
                                       const char *data, size_t len);
/* One more connection of this worker is bound to sender; heard (with ctx, the same for every
 * call) gets what the other hosts send to it, on the worker's thread. -1 when out of memory. */
int store_redis_conn_watch(struct store_redis *r, const char *sender,
                           store_redis_conn_heard heard, void *ctx);
/* One connection bound to sender less on this worker; the last one unsubscribes. */
void store_redis_conn_unwatch(struct store_redis *r, const char *sender);
/* Send to the sender's connections on the other hosts, without waiting for Redis: 1 when it went
 * to Redis, 0 when the connection to Redis is down (only this host's connections get it). */
int store_redis_conn_publish(struct store_redis *r, const char *sender, int binary,
                             const char *data, size_t len);

/* ---- the inbox stream (docs/multi-host.md "Nothing acked is lost") --------------------------
 * With `store.inbox` on, an async channel's messages are appended to the stream <prefix> NUL
 * "inbox" (one entry per message, read into this host's pending list of the group "workers" in
 * the same script) before the platform is answered, and acknowledged and deleted once processed.
 * While an entry runs, its worker renews it every third of store.claim_idle; every worker claims,
 * every store.claim_interval (and when it connects), the entries of any host that stayed silent
 * for longer than claim_idle (XAUTOCLAIM), at most INBOX_CLAIM_BATCH running at a time, and runs
 * them through `claimed`. An entry delivered more than 5 times is dropped with an ERROR. */
struct store_redis_claimed {
    const char *id, *channel, *request; /* the entry's id, its channel's name, its request id */
    const char *message;                /* the UserMessage as JSON */
    size_t message_len;
    long long deliveries;               /* this one included */
};
/* Called from the loop (a timer, never inside a Redis callback) for each claimed entry: start
 * its job, which takes it with store_redis_inbox_take; an entry nobody took is released. */
typedef void (*store_redis_claimed_fn)(void *ctx, const struct store_redis_claimed *entry);
/* Whether the inbox is on (Redis store and store.inbox). */
int store_redis_inbox_on(const struct store_redis *r);
/* Where claimed entries go. */
void store_redis_inbox_setup(struct store_redis *r, store_redis_claimed_fn claimed, void *ctx);

struct store_redis_inbox_add;
/* The entries are in the stream (ids[0..n), in the order given; valid during the call), or could
 * not be added (ids NULL, error says why: the messages run without the inbox, logged and counted
 * here). Called once, from the loop, unless detached first. */
typedef void (*store_redis_added_fn)(void *ctx, const char *const *ids, size_t n,
                                     const char *error);
/* Append n messages (JSON) of a request to the stream, owned by `owner` (the job that runs them).
 * NULL when Redis cannot be asked (err says why, logged and counted): then done is never called. */
struct store_redis_inbox_add *store_redis_inbox_add(struct store_redis *r, const char *channel,
                                                    const char *request,
                                                    const char *const *messages,
                                                    const size_t *lens, size_t n, void *owner,
                                                    store_redis_added_fn done, void *ctx,
                                                    char *err, size_t errlen);
/* The owner stopped waiting: done is never called; entries added meanwhile are left to a claim. */
void store_redis_inbox_add_detach(struct store_redis_inbox_add *a);
/* The entry was processed: acknowledge and delete it (batched, retried after a reconnection). */
void store_redis_inbox_done(struct store_redis *r, const char *id);
/* The entry was not processed: stop renewing it, so that a claim runs it later (logged). */
void store_redis_inbox_release(struct store_redis *r, const char *id);
/* A claimed entry's job takes it. 0, or -1 when the entry is not this worker's to run. */
int store_redis_inbox_take(struct store_redis *r, const char *id, void *owner);
/* The owner ended: entries it did not finish are released. */
void store_redis_inbox_owner_ended(struct store_redis *r, void *owner);
/* Acknowledgements are queued or on their way (a graceful stop waits for them). */
int store_redis_inbox_busy(const struct store_redis *r);

#endif
