/* SPDX-License-Identifier: MIT */
/* Unit tests of the timer heap: firing order, stopping, re-arming, the next due time. */
#include "check.h"
#include "timers.h"

#include <stdlib.h>

static int fired[64];
static int fired_count;

struct tagged {
    struct timer t;
    int tag;
};

static void record(struct timer *t)
{
    fired[fired_count++] = ((struct tagged *)t)->tag;
}

static void test_fires_in_due_order(void)
{
    struct timer_heap h = {0};
    struct tagged ts[8];
    uint64_t now = timers_now_ms();
    const int order[8] = {5, 1, 7, 3, 0, 6, 2, 4};
    fired_count = 0;
    for (int i = 0; i < 8; i++) {
        ts[i] = (struct tagged){TIMER_INIT(record), order[i]};
        CHECK(timer_start(&h, &ts[i].t, now - 100 + (uint64_t)order[i]) == 0);
    }
    CHECK(timers_next_ms(&h) == 0);
    timers_run(&h);
    CHECK(fired_count == 8);
    for (int i = 0; i < fired_count; i++)
        CHECK(fired[i] == i);
    CHECK(h.count == 0);
    for (int i = 0; i < 8; i++)
        CHECK(ts[i].t.slot == TIMER_IDLE);
    timers_free(&h);
}

static void test_stop_and_rearm(void)
{
    struct timer_heap h = {0};
    struct tagged a = {TIMER_INIT(record), 1}, b = {TIMER_INIT(record), 2}, c = {TIMER_INIT(record), 3};
    uint64_t now = timers_now_ms();
    fired_count = 0;
    timer_start(&h, &a.t, now - 3);
    timer_start(&h, &b.t, now - 2);
    timer_start(&h, &c.t, now + 60000);
    timer_stop(&h, &a.t);
    timer_stop(&h, &a.t); /* stopping an idle timer does nothing */
    CHECK(a.t.slot == TIMER_IDLE);
    timer_start(&h, &b.t, now + 30000); /* re-arming moves it */
    CHECK(h.count == 2);
    timers_run(&h);
    CHECK(fired_count == 0);
    long next = timers_next_ms(&h);
    CHECK(next > 29000 && next <= 30000);
    timer_stop(&h, &b.t);
    timer_stop(&h, &c.t);
    CHECK(timers_next_ms(&h) == -1);
    timers_free(&h);
}

/* Many timers, random starts and stops: what fires is exactly what is armed, in order. */
static void test_random_operations_keep_the_heap_consistent(void)
{
    enum { N = 500 };
    static struct tagged ts[N];
    int armed[N] = {0};
    struct timer_heap h = {0};
    uint64_t base = timers_now_ms() - 1000000;
    srand(7);
    for (int i = 0; i < N; i++)
        ts[i] = (struct tagged){TIMER_INIT(record), i};
    for (int step = 0; step < 5000; step++) {
        int i = rand() % N;
        if (rand() % 3 == 0) {
            timer_stop(&h, &ts[i].t);
            armed[i] = 0;
        } else {
            timer_start(&h, &ts[i].t, base + (uint64_t)(rand() % 100000));
            armed[i] = 1;
        }
    }
    size_t expected = 0;
    for (int i = 0; i < N; i++)
        expected += (size_t)armed[i];
    CHECK(h.count == expected);
    uint64_t last = 0;
    int in_order = 1;
    while (h.count > 0) {
        struct timer *t = h.items[0];
        if (t->due_ms < last)
            in_order = 0;
        last = t->due_ms;
        timer_stop(&h, t);
    }
    CHECK(in_order);
    timers_free(&h);
}

int main(void)
{
    test_fires_in_due_order();
    test_stop_and_rearm();
    test_random_operations_keep_the_heap_consistent();
    return CHECK_DONE();
}
