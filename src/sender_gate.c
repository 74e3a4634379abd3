/* SPDX-License-Identifier: MIT */
/* sender_gate: see sender_gate.h. A hash table of busy senders under one mutex; an entry exists
 * only while its sender has a message inside, so the table stays as small as the traffic. */
#include "sender_gate.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GATE_BUCKETS 4096u

struct gate_entry {
    struct gate_entry *next;
    struct gate_waiter *head, *tail; /* queued messages of this sender, arrival order */
    char sender[];
};

/* A hand-over in flight: a waiter popped from its queue whose wake has not returned yet. It
 * lives on the stack of the leaving thread, listed under the lock while that thread calls wake
 * without it. A cancel that no longer finds its waiter queued waits until the waiter is on no
 * such list, so the waiter's owner, once told it holds the gate, may free the waiter: no other
 * thread still reads it. */
struct hand_over {
    const struct gate_waiter *waiter;
    struct hand_over *next;
};

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hand_over_done = PTHREAD_COND_INITIALIZER;
static struct gate_entry *buckets[GATE_BUCKETS];
static unsigned long active_senders;
static struct hand_over *hand_overs; /* in flight, under gate_lock */

/* FNV-1a: short keys, no need for anything stronger. */
static uint32_t hash_sender(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct gate_entry **find_slot(const char *sender)
{
    struct gate_entry **slot = &buckets[hash_sender(sender) % GATE_BUCKETS];
    while (*slot && strcmp((*slot)->sender, sender) != 0)
        slot = &(*slot)->next;
    return slot;
}

int sender_gate_enter(const char *sender, struct gate_waiter *w)
{
    int entered = 0;
    pthread_mutex_lock(&gate_lock);
    struct gate_entry **slot = find_slot(sender);
    if (!*slot) {
        size_t len = strlen(sender);
        struct gate_entry *e = calloc(1, sizeof *e + len + 1);
        if (!e)
            abort(); /* out of memory: nothing sensible to do with the order guarantee */
        memcpy(e->sender, sender, len + 1);
        *slot = e;
        active_senders++;
        entered = 1;
    } else {
        struct gate_entry *e = *slot;
        w->next = NULL;
        w->seq = 0;
        w->handed = 0;
        if (e->tail)
            e->tail->next = w;
        else
            e->head = w;
        e->tail = w;
    }
    pthread_mutex_unlock(&gate_lock);
    return entered;
}

static int handing_over(const struct gate_waiter *w)
{
    for (const struct hand_over *h = hand_overs; h; h = h->next)
        if (h->waiter == w)
            return 1;
    return 0;
}

/* The holder leaves: the first waiter is handed the gate and woken, or the entry goes when none
 * waits. first_seq set: only when the first waiter has no arrival number yet (returns 0, changes
 * nothing and sets *first_seq to that waiter's number otherwise). */
static int leave(const char *sender, int handed, unsigned long long *first_seq)
{
    struct gate_waiter *next = NULL;
    struct hand_over self = {NULL, NULL};
    pthread_mutex_lock(&gate_lock);
    struct gate_entry **slot = find_slot(sender);
    struct gate_entry *e = *slot;
    if (first_seq && (!e || !e->head || e->head->seq != 0)) {
        *first_seq = e && e->head ? e->head->seq : 0;
        pthread_mutex_unlock(&gate_lock);
        return 0;
    }
    if (e) {
        next = e->head;
        if (next) {
            e->head = next->next;
            if (!e->head)
                e->tail = NULL;
            next->next = NULL;
            next->handed = handed;
            self.waiter = next;
            self.next = hand_overs;
            hand_overs = &self;
        } else {
            *slot = e->next;
            free(e);
            e = NULL;
            active_senders--;
        }
    }
    pthread_mutex_unlock(&gate_lock);
    if (!next)
        return 1;
    next->wake(next); /* outside the lock: it takes the waiter's worker's inbox lock */
    pthread_mutex_lock(&gate_lock);
    struct hand_over **link = &hand_overs;
    while (*link != &self)
        link = &(*link)->next;
    *link = self.next;
    pthread_cond_broadcast(&hand_over_done);
    pthread_mutex_unlock(&gate_lock);
    return 1;
}

void sender_gate_leave(const char *sender) { leave(sender, SENDER_GATE_NOTHING, NULL); }

void sender_gate_leave_handing(const char *sender, int handed) { leave(sender, handed, NULL); }

int sender_gate_leave_to_unnumbered(const char *sender, int handed, unsigned long long *first_seq)
{
    return leave(sender, handed, first_seq);
}

int sender_gate_cancel(const char *sender, struct gate_waiter *w)
{
    int removed = 0;
    pthread_mutex_lock(&gate_lock);
    struct gate_entry *e = *find_slot(sender);
    if (e) {
        struct gate_waiter *prev = NULL;
        for (struct gate_waiter *it = e->head; it; prev = it, it = it->next) {
            if (it != w)
                continue;
            if (prev)
                prev->next = it->next;
            else
                e->head = it->next;
            if (e->tail == it)
                e->tail = prev;
            removed = 1;
            break;
        }
    }
    /* Handed the gate already: return once its wake has (see struct hand_over). */
    while (!removed && handing_over(w))
        pthread_cond_wait(&hand_over_done, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return removed;
}

void sender_gate_set_seq(const char *sender, struct gate_waiter *w, unsigned long long seq)
{
    pthread_mutex_lock(&gate_lock);
    struct gate_entry *e = *find_slot(sender);
    for (struct gate_waiter *it = e ? e->head : NULL; it; it = it->next)
        if (it == w)
            it->seq = seq;
    pthread_mutex_unlock(&gate_lock);
}

unsigned long sender_gate_active(void)
{
    pthread_mutex_lock(&gate_lock);
    unsigned long n = active_senders;
    pthread_mutex_unlock(&gate_lock);
    return n;
}
