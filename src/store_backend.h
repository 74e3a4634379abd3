/* SPDX-License-Identifier: MIT */
/* store_backend: how sb.store (lua_sb_store.c) reaches a remote backend. An engine worker whose
 * host is configured with `store:` binds its backend to its thread; every other thread (the main
 * thread's `init` and startup hooks, `switchboard test`) has none, and sb.store uses the embedded
 * store through the task's operations as before.
 *
 * A remote call parks the task's coroutine with `park` (the engine records a wait whose cancel
 * calls `cancel(ctx)`: the deadline, the job's end), then yields; when the answer arrives the
 * backend's callback calls `wake`, and the engine resumes the coroutine at the next turn of its
 * loop with no values (the continuation reads the answer it kept). Uses: store_redis. */
#ifndef SB_STORE_BACKEND_H
#define SB_STORE_BACKEND_H

struct lua_task;
struct store_redis;

struct store_backend {
    struct store_redis *redis;
    /* The task waits for a remote answer; cancel(ctx) is called if it stops waiting first (and
     * then wake is not called). */
    void (*park)(struct lua_task *t, void (*cancel)(void *ctx), void *ctx);
    /* The answer is there: resume the task at the next turn of the loop. */
    void (*wake)(struct lua_task *t);
    /* The seconds a pop may wait, bounded as for the embedded store (the response timeout, the
     * message's deadline, 0 while the host stops). */
    double (*wait_bound)(struct lua_task *t, double seconds);
};

/* This thread's backend (NULL: the embedded store). Set by each engine worker for itself. */
void store_backend_bind(const struct store_backend *b);
const struct store_backend *store_backend_current(void);

#endif
