/* SPDX-License-Identifier: MIT */
/* sender_gate: per-sender order across all workers (docs/contract.md §5). A message enters the
 * gate of its sender before it reaches the bot and leaves it afterwards; while one message of a
 * sender is inside, the sender's next messages wait in arrival order. Different senders never
 * wait for each other. The lock is held only to look up and update one entry, never while a
 * message runs.
 * Uses: pthreads. */
#ifndef SB_SENDER_GATE_H
#define SB_SENDER_GATE_H

struct gate_waiter {
    /* Called (from the thread that leaves the gate, without the gate's lock) when the waiter is
     * handed the gate. The waiter then owns it and must leave it later. */
    void (*wake)(struct gate_waiter *w);
    struct gate_waiter *next;
};

/* Returns 1 when the gate was free and is now the caller's, 0 when `w` was queued (wake comes
 * later). The sender string is copied. */
int sender_gate_enter(const char *sender, struct gate_waiter *w);
/* The current holder leaves: the next waiter, if any, is handed the gate and woken. */
void sender_gate_leave(const char *sender);
/* Take a queued waiter back (its message is abandoned). Returns 1 when it was removed, 0 when it
 * had already been handed the gate (then the caller owns the gate and must leave it). A 0 comes
 * only once the hand-over's wake call has returned, so the caller may free `w` either way. */
int sender_gate_cancel(const char *sender, struct gate_waiter *w);
/* Number of senders that hold or wait for the gate (for /status and tests). */
unsigned long sender_gate_active(void);

#endif
