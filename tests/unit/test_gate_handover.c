/* SPDX-License-Identifier: MIT */
/* test_gate_handover: sender_gate_cancel against a hand-over in flight on another thread.
 *
 * sender_gate_leave pops the next waiter under the gate's lock and calls its wake callback after
 * dropping it. A waiter whose owner cancels in between finds itself no longer queued (cancel
 * returns 0: it was handed the gate) and may then free the waiter, as the engine does with a
 * job at a worker's stop, while the other thread's wake still reads it. Cancel must not return
 * before that wake has returned. Runs threads: meant for the TSan and ASan builds too. */
#include "../../src/sender_gate.h"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#define container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

/* ---- deterministic: the cancel lands while the wake runs ------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int wake_started, cancel_returned; /* under mu */
static atomic_int wake_done;

/* Wait on cv until *flag is set or ms milliseconds passed; mu held. Returns the flag. */
static int wait_flag(int *flag, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!*flag)
        if (pthread_cond_timedwait(&cv, &mu, &until) == ETIMEDOUT)
            break;
    return *flag;
}

/* The wake of the waiter: tells the test it started, then gives a cancel up to 300 ms to return
 * (a correct cancel cannot return before this wake has, so the wait runs out). */
static void slow_wake(struct gate_waiter *w)
{
    (void)w;
    pthread_mutex_lock(&mu);
    wake_started = 1;
    pthread_cond_broadcast(&cv);
    wait_flag(&cancel_returned, 300);
    pthread_mutex_unlock(&mu);
    atomic_store(&wake_done, 1);
}

static void *leave_alice(void *arg)
{
    (void)arg;
    sender_gate_leave("alice");
    return NULL;
}

static void test_cancel_waits_for_the_wake(void)
{
    struct gate_waiter holder = {0}, waiter = {.wake = slow_wake};
    CHECK(sender_gate_enter("alice", &holder) == 1);
    CHECK(sender_gate_enter("alice", &waiter) == 0);

    pthread_t t;
    CHECK(pthread_create(&t, NULL, leave_alice, NULL) == 0); /* hands the gate to `waiter` */
    pthread_mutex_lock(&mu);
    CHECK(wait_flag(&wake_started, 10000)); /* popped, wake running */
    pthread_mutex_unlock(&mu);

    CHECK(sender_gate_cancel("alice", &waiter) == 0); /* too late: it holds the gate */
    int done_when_cancel_returned = atomic_load(&wake_done);
    pthread_mutex_lock(&mu);
    cancel_returned = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    /* Returning 0 while the wake still ran would let the owner free the waiter under it. */
    CHECK(done_when_cancel_returned == 1);

    sender_gate_leave("alice"); /* the waiter's owner passes the gate on */
    pthread_join(t, NULL);
    CHECK(sender_gate_active() == 0);
}

/* ---- stress: the owner frees its waiter as soon as it may ------------------------------------ */

struct owned_waiter {
    struct gate_waiter w;
    atomic_int wakes; /* a wake after the free is a use after free (ASan, TSan) */
};

static void counting_wake(struct gate_waiter *w)
{
    struct owned_waiter *o = container_of(w, struct owned_waiter, w);
    for (int i = 0; i < 50; i++)
        sched_yield(); /* widen the window between the pop and the use */
    atomic_fetch_add(&o->wakes, 1);
}

static pthread_barrier_t round_start;
static atomic_int rounds_done;
#define ROUNDS 300

static void *leaver(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_barrier_wait(&round_start);
        sender_gate_leave("bob"); /* the holder, on another worker, leaves */
        atomic_fetch_add(&rounds_done, 1);
        pthread_barrier_wait(&round_start);
    }
    return NULL;
}

static void test_cancel_and_free_under_hand_over(void)
{
    pthread_t t;
    struct gate_waiter holder = {0};
    int handed = 0, removed = 0, bad = 0;
    pthread_barrier_init(&round_start, NULL, 2);
    CHECK(pthread_create(&t, NULL, leaver, NULL) == 0);
    for (int i = 0; i < ROUNDS; i++) {
        struct owned_waiter *o = calloc(1, sizeof *o);
        o->w.wake = counting_wake;
        if (sender_gate_enter("bob", &holder) != 1 || sender_gate_enter("bob", &o->w) != 0)
            bad++;
        pthread_barrier_wait(&round_start);
        for (int k = 0; k < i % 7; k++)
            sched_yield();
        if (sender_gate_cancel("bob", &o->w)) {
            removed++; /* never woken: the leave found the queue empty */
        } else {
            handed++;
            if (atomic_load(&o->wakes) != 1)
                bad++;
            sender_gate_leave("bob");
        }
        free(o);
        o = NULL;
        pthread_barrier_wait(&round_start); /* the leave of this round has returned */
    }
    pthread_join(t, NULL);
    pthread_barrier_destroy(&round_start);
    CHECK(bad == 0);
    CHECK(handed + removed == ROUNDS);
    CHECK(atomic_load(&rounds_done) == ROUNDS);
    CHECK(sender_gate_active() == 0);
    fprintf(stderr, "stress: %d handed over, %d cancelled in the queue\n", handed, removed);
}

int main(void)
{
    test_cancel_waits_for_the_wake();
    test_cancel_and_free_under_hand_over();
    return CHECK_DONE();
}
