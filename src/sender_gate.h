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
    /* For the order across hosts (docs/multi-host.md): the waiter's number in the sender's
     * arrival order in Redis (0: none yet), and what the leaving holder handed it (a
     * SENDER_GATE_* below). Both under the gate's lock. */
    unsigned long long seq;
    int handed;
};

/* What a leaving holder hands the next waiter besides the gate. */
enum {
    SENDER_GATE_NOTHING = 0,
    /* The host's turn in Redis, kept for this waiter's number: it must release it later. */
    SENDER_GATE_TURN = 1,
    /* The host's turn in Redis, kept while this waiter's number was still on its way: it must
     * check it against the other hosts' numbers once that number is in (or release it). */
    SENDER_GATE_TURN_UNCHECKED = 2,
    /* The host's place in the sender's queue in Redis (it may hold the turn by now), kept while
     * this waiter's number was on its way: it must ask with that number (or leave the queue). */
    SENDER_GATE_PLACE = 3,
};

/* Returns 1 when the gate was free and is now the caller's, 0 when `w` was queued (wake comes
 * later). The sender string is copied. */
int sender_gate_enter(const char *sender, struct gate_waiter *w);
/* The current holder leaves: the next waiter, if any, is handed the gate and woken. */
void sender_gate_leave(const char *sender);
/* The same, handing the next waiter `handed` (its gate_waiter.handed; 0 when there is none). */
void sender_gate_leave_handing(const char *sender, int handed);
/* Leave, handing the next waiter `handed`, only when it has no arrival number yet: returns 1
 * then, else 0, nothing changes and *first_seq is the first waiter's number (0: none waits). One
 * step under the lock, so the first waiter cannot change in between. */
int sender_gate_leave_to_unnumbered(const char *sender, int handed, unsigned long long *first_seq);
/* Record a queued waiter's arrival number (nothing when it is no longer queued). */
void sender_gate_set_seq(const char *sender, struct gate_waiter *w, unsigned long long seq);
/* Take a queued waiter back (its message is abandoned). Returns 1 when it was removed, 0 when it
 * had already been handed the gate (then the caller owns the gate and must leave it). A 0 comes
 * only once the hand-over's wake call has returned, so the caller may free `w` either way. */
int sender_gate_cancel(const char *sender, struct gate_waiter *w);
/* Number of senders that hold or wait for the gate (for /status and tests). */
unsigned long sender_gate_active(void);

#endif
