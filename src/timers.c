/* SPDX-License-Identifier: MIT */
/* timers: see timers.h. */
#include "timers.h"

#include <stdlib.h>
#include <time.h>

uint64_t timers_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void swap(struct timer_heap *h, size_t a, size_t b)
{
    struct timer *t = h->items[a];
    h->items[a] = h->items[b];
    h->items[b] = t;
    h->items[a]->slot = a;
    h->items[b]->slot = b;
}

static void sift_up(struct timer_heap *h, size_t i)
{
    while (i > 0 && h->items[(i - 1) / 2]->due_ms > h->items[i]->due_ms) {
        swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(struct timer_heap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->count && h->items[l]->due_ms < h->items[m]->due_ms)
            m = l;
        if (r < h->count && h->items[r]->due_ms < h->items[m]->due_ms)
            m = r;
        if (m == i)
            return;
        swap(h, i, m);
        i = m;
    }
}

void timer_stop(struct timer_heap *h, struct timer *t)
{
    size_t i = t->slot;
    if (i >= h->count || h->items[i] != t)
        return;
    size_t last = --h->count;
    if (i != last) {
        h->items[i] = h->items[last];
        h->items[i]->slot = i;
        sift_down(h, i);
        sift_up(h, i);
    }
    t->slot = TIMER_IDLE;
}

int timer_start(struct timer_heap *h, struct timer *t, uint64_t due_ms)
{
    timer_stop(h, t);
    if (h->count == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct timer **grown = realloc(h->items, cap * sizeof *grown);
        if (!grown)
            return -1;
        h->items = grown;
        h->cap = cap;
    }
    size_t i = h->count++;
    t->due_ms = due_ms;
    t->slot = i;
    h->items[i] = t;
    sift_up(h, i);
    return 0;
}

void timers_run(struct timer_heap *h)
{
    uint64_t now = timers_now_ms();
    while (h->count > 0 && h->items[0]->due_ms <= now) {
        struct timer *t = h->items[0];
        timer_stop(h, t);
        t->fire(t);
    }
}

long timers_next_ms(const struct timer_heap *h)
{
    if (h->count == 0)
        return -1;
    uint64_t now = timers_now_ms(), due = h->items[0]->due_ms;
    return due > now ? (long)(due - now) : 0;
}

void timers_free(struct timer_heap *h)
{
    free(h->items);
    h->items = NULL;
    h->count = h->cap = 0;
}
