/* SPDX-License-Identifier: MIT */
/* timers: the points in time an engine worker acts at (sb.sleep, response deadlines).
 *
 * A binary min-heap of timers that live inside their owners (a job holds its own); each timer
 * knows its slot, so stopping one is O(log n) without searching. One heap per worker thread;
 * not thread-safe. Uses: nothing. */
#ifndef SB_TIMERS_H
#define SB_TIMERS_H

#include <stddef.h>
#include <stdint.h>

struct timer {
    uint64_t due_ms;               /* monotonic milliseconds */
    size_t slot;                   /* index in the heap; TIMER_IDLE when not armed */
    void (*fire)(struct timer *t); /* called by timers_run once due (the timer is stopped) */
};

#define TIMER_IDLE SIZE_MAX
#define TIMER_INIT(fire_fn) ((struct timer){.slot = TIMER_IDLE, .fire = (fire_fn)})

struct timer_heap {
    struct timer **items;
    size_t count, cap;
};

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t timers_now_ms(void);
/* Arm (or re-arm) t to fire at due_ms. Returns 0, or -1 when out of memory (t stays idle). */
int timer_start(struct timer_heap *h, struct timer *t, uint64_t due_ms);
/* Disarm t; nothing happens when it is idle. */
void timer_stop(struct timer_heap *h, struct timer *t);
/* Fire every timer that is due, earliest first. */
void timers_run(struct timer_heap *h);
/* Milliseconds until the earliest timer is due (0 when overdue), or -1 when none is armed. */
long timers_next_ms(const struct timer_heap *h);
void timers_free(struct timer_heap *h);

#endif
