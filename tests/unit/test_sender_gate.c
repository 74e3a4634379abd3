/* SPDX-License-Identifier: MIT */
/* test_sender_gate: one message per sender at a time, waiters in arrival order, cancel, and a
 * multi-threaded stress run checking that no two owners of one sender ever overlap. */
#include "../../src/sender_gate.h"
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

/* ---- single-threaded: wake is called synchronously from leave -------------------------------- */

struct logged_waiter {
    struct gate_waiter w;
    int id;
};

static int woken[16]; /* ids in the order they were woken */
static int nwoken;

static void log_wake(struct gate_waiter *w)
{
    if (nwoken < (int)(sizeof woken / sizeof woken[0]))
        woken[nwoken] = container_of(w, struct logged_waiter, w)->id;
    nwoken++;
}

static void init_waiters(struct logged_waiter *ws, int n)
{
    for (int i = 0; i < n; i++) {
        ws[i].w.wake = log_wake;
        ws[i].w.next = (struct gate_waiter *)(uintptr_t)0xdead; /* enter must not trust it */
        ws[i].id = i;
    }
    nwoken = 0;
}

static void test_fifo(void)
{
    struct logged_waiter ws[4];

    init_waiters(ws, 4);
    CHECK(sender_gate_active() == 0);
    CHECK(sender_gate_enter("alice", &ws[0].w) == 1); /* free: the caller owns it now */
    CHECK(sender_gate_active() == 1);
    CHECK(nwoken == 0);
    CHECK(sender_gate_enter("alice", &ws[1].w) == 0); /* queued */
    CHECK(sender_gate_enter("alice", &ws[2].w) == 0);
    CHECK(sender_gate_enter("alice", &ws[3].w) == 0);
    CHECK(nwoken == 0);                              /* nobody woken before a leave */
    CHECK(sender_gate_active() == 1);                /* one sender, however many wait */

    sender_gate_leave("alice");
    CHECK(nwoken == 1 && woken[0] == 1);             /* one by one ... */
    sender_gate_leave("alice");
    CHECK(nwoken == 2 && woken[1] == 2);             /* ... in arrival order */
    sender_gate_leave("alice");
    CHECK(nwoken == 3 && woken[2] == 3);
    CHECK(sender_gate_active() == 1);                /* waiter 3 holds it */
    sender_gate_leave("alice");
    CHECK(nwoken == 3);
    CHECK(sender_gate_active() == 0);
    sender_gate_leave("alice"); /* leaving a free gate does nothing */
    CHECK(nwoken == 3 && sender_gate_active() == 0);

    /* the gate is free again */
    CHECK(sender_gate_enter("alice", &ws[0].w) == 1);
    sender_gate_leave("alice");
    CHECK(sender_gate_active() == 0);
}

static void test_independent(void)
{
    struct logged_waiter ws[4];

    init_waiters(ws, 4);
    CHECK(sender_gate_enter("alice", &ws[0].w) == 1);
    CHECK(sender_gate_enter("bob", &ws[1].w) == 1);  /* alice does not hold bob up */
    CHECK(sender_gate_enter("alic", &ws[2].w) == 1); /* nor does a prefix of her name */
    CHECK(sender_gate_active() == 3);
    CHECK(sender_gate_enter("alice", &ws[3].w) == 0);
    sender_gate_leave("bob");                         /* bob leaving does not wake alice's */
    sender_gate_leave("alic");
    CHECK(nwoken == 0);
    CHECK(sender_gate_active() == 1);
    sender_gate_leave("alice");
    CHECK(nwoken == 1 && woken[0] == 3);
    sender_gate_leave("alice");
    CHECK(sender_gate_active() == 0);

    /* many senders at once, more than share a bucket by chance */
    {
        char name[32];
        struct logged_waiter w;

        int all_entered = 1;

        init_waiters(&w, 1);
        for (int i = 0; i < 10000; i++) {
            snprintf(name, sizeof name, "user-%d", i);
            all_entered &= sender_gate_enter(name, &w.w) == 1;
        }
        CHECK(all_entered);
        CHECK(sender_gate_active() == 10000);
        for (int i = 0; i < 10000; i++) {
            snprintf(name, sizeof name, "user-%d", i);
            sender_gate_leave(name);
        }
        CHECK(sender_gate_active() == 0 && nwoken == 0);
    }
}

static void test_cancel(void)
{
    struct logged_waiter ws[6];

    init_waiters(ws, 6);
    CHECK(sender_gate_cancel("carol", &ws[1].w) == 0); /* nothing to cancel */
    CHECK(sender_gate_enter("carol", &ws[0].w) == 1);
    CHECK(sender_gate_enter("carol", &ws[1].w) == 0);
    CHECK(sender_gate_enter("carol", &ws[2].w) == 0);
    CHECK(sender_gate_enter("carol", &ws[3].w) == 0);
    CHECK(sender_gate_cancel("dave", &ws[2].w) == 0); /* another sender's queue */
    CHECK(sender_gate_cancel("carol", &ws[2].w) == 1); /* from the middle */
    CHECK(sender_gate_cancel("carol", &ws[3].w) == 1); /* the tail */
    CHECK(sender_gate_enter("carol", &ws[4].w) == 0);  /* the queue still appends correctly */
    CHECK(nwoken == 0);
    sender_gate_leave("carol");
    CHECK(nwoken == 1 && woken[0] == 1);
    sender_gate_leave("carol");
    CHECK(nwoken == 2 && woken[1] == 4);               /* 2 and 3 are never woken */
    CHECK(sender_gate_active() == 1);

    /* the head, and the only waiter: head and tail both go */
    CHECK(sender_gate_enter("carol", &ws[5].w) == 0);
    CHECK(sender_gate_cancel("carol", &ws[5].w) == 1);
    CHECK(sender_gate_enter("carol", &ws[2].w) == 0);
    sender_gate_leave("carol");
    CHECK(nwoken == 3 && woken[2] == 2);

    /* after it was handed the gate, cancel returns 0 and the waiter owns the gate */
    CHECK(sender_gate_enter("carol", &ws[3].w) == 0);
    sender_gate_leave("carol");
    CHECK(nwoken == 4 && woken[3] == 3);
    CHECK(sender_gate_cancel("carol", &ws[3].w) == 0);
    CHECK(sender_gate_active() == 1);
    sender_gate_leave("carol");
    CHECK(sender_gate_active() == 0);
    CHECK(nwoken == 4);
    CHECK(sender_gate_cancel("carol", &ws[3].w) == 0);
}

/* For the order across hosts: leave_to_unnumbered hands the gate over only while the first waiter
 * has no arrival number yet (the holder then keeps its turn in Redis for it), in one step, and
 * the waiter learns what it was handed; otherwise it reports the first waiter's number, read in
 * that same step (the holder releases with it). */
static void test_leave_to_unnumbered(void)
{
    struct logged_waiter ws[3];
    unsigned long long seq = 99;

    init_waiters(ws, 3);
    CHECK(sender_gate_leave_to_unnumbered("erin", SENDER_GATE_TURN_UNCHECKED, &seq) == 0);
    CHECK(seq == 0); /* no entry */
    CHECK(sender_gate_enter("erin", &ws[0].w) == 1);
    seq = 99;
    CHECK(sender_gate_leave_to_unnumbered("erin", SENDER_GATE_TURN_UNCHECKED, &seq) == 0);
    CHECK(seq == 0);                  /* no waiter */
    CHECK(sender_gate_active() == 1); /* the holder still holds it */
    CHECK(sender_gate_enter("erin", &ws[1].w) == 0);
    CHECK(sender_gate_enter("erin", &ws[2].w) == 0);
    sender_gate_set_seq("erin", &ws[1].w, 7);
    /* the first waiter has its number: nothing changes, the holder releases with it instead */
    CHECK(sender_gate_leave_to_unnumbered("erin", SENDER_GATE_TURN_UNCHECKED, &seq) == 0);
    CHECK(seq == 7);
    CHECK(nwoken == 0);
    sender_gate_leave_handing("erin", SENDER_GATE_TURN);
    CHECK(nwoken == 1 && woken[0] == 1 && ws[1].w.handed == SENDER_GATE_TURN);
    /* the next one has no number yet: it is handed the gate with the host's place to check */
    CHECK(sender_gate_leave_to_unnumbered("erin", SENDER_GATE_PLACE, &seq) == 1);
    CHECK(nwoken == 2 && woken[1] == 2 && ws[2].w.handed == SENDER_GATE_PLACE);
    CHECK(sender_gate_active() == 1);
    sender_gate_leave("erin");
    CHECK(sender_gate_active() == 0);
    CHECK(nwoken == 2);
}

/* ---- multi-threaded stress ------------------------------------------------------------------- */

#define THREADS 4
#define ITERATIONS 2000
#define SENDERS 3

static const char *const senders[SENDERS] = {"s0", "s1", "s2"};
static atomic_int inside[SENDERS];   /* owners of each sender right now: must never exceed 1 */
static atomic_int overlaps;
static atomic_long entries[SENDERS]; /* times each sender was owned */
static atomic_long cancelled;
static atomic_long handed;           /* times a queued waiter was woken to own the gate */
static atomic_long late_cancels;     /* cancels that lost the race with a leave */

/* One per thread, reused: a thread waits for one gate at a time. */
struct thread_waiter {
    struct gate_waiter w;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int woken;
    unsigned seed;
};

static void signal_wake(struct gate_waiter *w)
{
    struct thread_waiter *t = container_of(w, struct thread_waiter, w);

    pthread_mutex_lock(&t->lock);
    t->woken = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void wait_woken(struct thread_waiter *t)
{
    pthread_mutex_lock(&t->lock);
    while (!t->woken)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

/* Holds the gate of sender s for a moment, checking nobody else does. */
static void own(struct thread_waiter *t, int s)
{
    if (atomic_fetch_add(&inside[s], 1) != 0)
        atomic_fetch_add(&overlaps, 1);
    atomic_fetch_add(&entries[s], 1);
    for (unsigned spin = rand_r(&t->seed) % 64; spin > 0; spin--)
        if (atomic_load(&inside[s]) != 1)
            atomic_fetch_add(&overlaps, 1);
    if (rand_r(&t->seed) % 8 == 0)
        sched_yield();
    atomic_fetch_sub(&inside[s], 1);
    sender_gate_leave(senders[s]);
}

static void *stress_thread(void *arg)
{
    struct thread_waiter *t = arg;

    for (int i = 0; i < ITERATIONS; i++) {
        int s = (int)(rand_r(&t->seed) % SENDERS);

        pthread_mutex_lock(&t->lock);
        t->woken = 0;
        pthread_mutex_unlock(&t->lock);
        if (sender_gate_enter(senders[s], &t->w)) {
            own(t, s);
            continue;
        }
        /* Queued. Now and then give up, racing the holder's leave. */
        if (rand_r(&t->seed) % 5 == 0) {
            if (rand_r(&t->seed) % 2)
                sched_yield(); /* lets the holder's leave come first more often */
            if (sender_gate_cancel(senders[s], &t->w)) {
                atomic_fetch_add(&cancelled, 1);
                continue; /* never woken: woken stays 0 */
            }
            atomic_fetch_add(&late_cancels, 1);
        }
        atomic_fetch_add(&handed, 1);
        wait_woken(t); /* handed over (also after a cancel that came too late) */
        own(t, s);
    }
    return NULL;
}

static void test_stress(void)
{
    struct thread_waiter tw[THREADS];
    pthread_t th[THREADS];
    long total = 0;

    for (int i = 0; i < THREADS; i++) {
        tw[i].w.wake = signal_wake;
        tw[i].w.next = NULL;
        pthread_mutex_init(&tw[i].lock, NULL);
        pthread_cond_init(&tw[i].cond, NULL);
        tw[i].woken = 0;
        tw[i].seed = 12345u + (unsigned)i * 7919u;
    }
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, stress_thread, &tw[i]) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(th[i], NULL) == 0);

    for (int s = 0; s < SENDERS; s++) {
        CHECK(atomic_load(&inside[s]) == 0);
        total += atomic_load(&entries[s]);
    }
    CHECK(atomic_load(&overlaps) == 0);
    CHECK(total + atomic_load(&cancelled) == (long)THREADS * ITERATIONS); /* nothing lost */
    CHECK(sender_gate_active() == 0);                                     /* everything drained */
    CHECK(atomic_load(&handed) > 0); /* the run did contend */
    fprintf(stderr, "stress: %ld owned (%ld after waiting), %ld cancelled, %ld late cancels, "
            "%d overlaps\n", total, atomic_load(&handed), atomic_load(&cancelled),
            atomic_load(&late_cancels), atomic_load(&overlaps));
    for (int i = 0; i < THREADS; i++) {
        pthread_mutex_destroy(&tw[i].lock);
        pthread_cond_destroy(&tw[i].cond);
    }
}

int main(void)
{
    test_fifo();
    test_independent();
    test_cancel();
    test_leave_to_unnumbered();
    test_stress();
    return CHECK_DONE();
}
