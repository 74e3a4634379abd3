/* SPDX-License-Identifier: MIT */
/* store: the embedded backend of sb.store (docs/lua-api.md, "sb.store"): one key-value store in
 * the host's memory, shared by every worker thread under one mutex. Keys name strings of bytes
 * or lists of them (queues); keys may expire; the total size may be capped, with eviction; a pop
 * from an empty list may wait for the next push. No Lua and no engine here: the caller passes
 * its clock in and is told about a pushed value through a callback.
 *
 * Keys: NUL-terminated, at most STORE_MAX_KEY bytes (the empty key is a key). Values: any bytes,
 * at most STORE_MAX_VALUE each.
 *
 * Time: now_ms is the caller's monotonic clock (timers_now_ms in the host), passed in so tests
 * control time. A key set with ttl_ms at time t is alive while now_ms < t + ttl_ms: a key with
 * ttl 100 set at t=0 is alive at t=99 and gone at t=100. TTL 0 means no expiry. Expired keys are
 * removed lazily, when a call names them, by store_sweep, or to make room under the cap; until
 * then they still count in the stats' keys and bytes.
 *
 * Size cap (store_limits.max_bytes): every key counts what store_string_cost / store_list_cost
 * plus store_item_cost per list value say: key and value bytes, the entry's own structure, the
 * allocator's per-block overhead (glibc's chunk sizes) and its share of the hash table and the
 * expiry heap. When a write would take the total over the cap, other keys are evicted first:
 *   1. keys with a TTL, soonest expiry first (so expired keys go first of all; they count as
 *      expirations, the others as evictions); equal expiry: the TTL given first goes first;
 *   2. then keys without a TTL, least recently used first.
 * Each eviction is O(log n) (a min-heap on expiry) or O(1) (an LRU list). "Used" means a call
 * that found the key alive and succeeded (get, set, incr, expire, ttl, push, pop, list_length);
 * it matters only for keys without a TTL. A short key with a short value counts about 190 bytes
 * on 64 bits (what malloc really takes, measured: about 185).
 * The key being written is never evicted to make room for itself. A write whose key alone would
 * be larger than the cap (or whose value is larger than STORE_MAX_VALUE) fails with
 * STORE_TOOBIG and evicts nothing. Waiters are not stored values: a key that has waiters holds
 * no list values (a push hands its value over instead), so nothing a waiter waits on is ever
 * evicted, and the waiters' queues do not count against the cap.
 *
 * Waiting (store_pop with a waiter, store_push, store_cancel_wait): see store_pop. The store's
 * lock is never held while a waiter's wake runs.
 *
 * Time under the lock: O(1) per call (the hash table grows and shrinks a few buckets per call,
 * never all at once) plus O(log n) per key evicted or expired on the way; values are copied in
 * (set, push) before the lock is taken, but out (get, pop) under it; replacing or deleting a
 * list frees its values under it.
 *
 * Uses: buffer, pthreads. */
#ifndef SB_STORE_H
#define SB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

#define STORE_MAX_KEY 1024u                 /* bytes, without the NUL */
#define STORE_MAX_VALUE (16u * 1024 * 1024) /* bytes of one value (a string or a list item) */

/* Failures, the same number for the same meaning in every call. After any, the key holds what it
 * held before (an expired key may have been removed on the way). */
/* A list where a string was wanted or the reverse; incr: not an integer, or the sum overflows. */
#define STORE_WRONGTYPE (-1)
/* malloc failed. */
#define STORE_NOMEM (-2)
/* The key is longer than STORE_MAX_KEY. */
#define STORE_BADKEY (-3)
/* The value is larger than STORE_MAX_VALUE, or the key with it would be larger than the cap on
 * its own: nothing is evicted. */
#define STORE_TOOBIG (-4)

struct store;

struct store_limits {
    size_t max_bytes; /* what the keys count (see above) at most; 0: no cap */
};

/* limits may be NULL (no cap). Returns NULL when out of memory. */
struct store *store_create(const struct store_limits *limits);
/* Frees every key. Wakes no waiter: cancel every waiter first (a waiter still queued is simply
 * forgotten), and no call may be running. */
void store_destroy(struct store *s);

/* ---- strings ------------------------------------------------------------------------------- */

/* 1: found, the value appended to out; 0: absent; STORE_WRONGTYPE (a list), STORE_NOMEM (out could
 * not grow), STORE_BADKEY. */
int store_get(struct store *s, const char *key, uint64_t now_ms, struct buffer *out);
/* Set key to the len bytes at v, replacing what it held (a list too) and its TTL (ttl_ms 0: none).
 * only_if_absent: only when the key is absent (an expired key is absent). 1: set; 0: not set (it
 * existed); STORE_NOMEM, STORE_BADKEY, STORE_TOOBIG. */
int store_set(struct store *s, const char *key, const void *v, size_t len, uint64_t ttl_ms,
              int only_if_absent, uint64_t now_ms);
/* Add `by` to the integer the key holds, store the sum as decimal text and put it in *result.
 * The value must be an optional '-' and decimal digits, within int64 ("007" and "-0" count;
 * "+1", " 1", "1.0" do not); an absent key counts as 0 and is created without a TTL; an
 * existing key keeps its TTL. 0: done; STORE_WRONGTYPE (a list, not an integer, or the sum
 * overflows: nothing changed), STORE_NOMEM, STORE_BADKEY, STORE_TOOBIG (only under a cap
 * smaller than one key). */
int store_incr(struct store *s, const char *key, int64_t by, uint64_t now_ms, int64_t *result);
/* 1: deleted (a string or a whole list); 0: absent; STORE_BADKEY. */
int store_del(struct store *s, const char *key, uint64_t now_ms);
/* Give the key a TTL of ttl_ms from now (0: remove its TTL). 1: done; 0: absent; STORE_NOMEM (the
 * expiry heap could not grow), STORE_BADKEY. */
int store_expire(struct store *s, const char *key, uint64_t ttl_ms, uint64_t now_ms);
/* 1: alive, *ms_left = milliseconds until it expires (at least 1; INT64_MAX at most), or -1 when it
 * has no TTL; 0: absent; STORE_BADKEY. */
int store_ttl(struct store *s, const char *key, uint64_t now_ms, int64_t *ms_left);

/* ---- lists (queues: a long-polling transport keeps a session's outgoing packets in one) ----- */

struct store_waiter {
    /* Called when a push hands this waiter a value: on the pushing thread, WITHOUT the store's
     * lock, possibly before the store_pop that queued the waiter has returned to its caller.
     * value is valid only during the call (copy it). wake may call the store, but must not
     * cancel its own waiter. After wake returns the store never touches the waiter again. */
    void (*wake)(struct store_waiter *w, const char *value, size_t len);
    /* private to the store */
    struct store_waiter *prev_, *next_;
    struct store_waitq *queue_; /* the queue it waits in; NULL when not waiting */
};

/* Append a value to the list at key (created when absent). When the key has waiters, the oldest
 * is removed from the queue and handed the value instead (its wake is called before push
 * returns); nothing is stored then. Returns the list's length after the push, 0 when a waiter
 * took the value; STORE_WRONGTYPE (the key holds a string), STORE_NOMEM, STORE_BADKEY,
 * STORE_TOOBIG (the list with this value would be larger than the cap: nothing evicted). */
int store_push(struct store *s, const char *key, const void *v, size_t len, uint64_t now_ms);
/* Remove the first value of the list at key and append it to out: 1 (a list left empty is
 * deleted). When the key holds no list (absent or expired) and w is NULL: 0. When w is not NULL,
 * w is queued, after the key's earlier waiters, and 0 is returned: the next push to that key
 * calls w->wake with its value (which may happen on another thread before this call returns).
 * While a string is set at the key, pushes to it fail and its waiters keep waiting. A waiter
 * waits for one key at a time; every other result leaves w not waiting. STORE_WRONGTYPE
 * (the key holds a string; w does not wait), STORE_NOMEM (out could not grow: the value stays
 * first; or the queue could not be made), STORE_BADKEY. */
int store_pop(struct store *s, const char *key, uint64_t now_ms, struct buffer *out,
              struct store_waiter *w);
/* Stop waiting (a timeout, a cancelled job). w must have been passed to store_pop (or zeroed).
 * 1: w was still queued; it is removed and will never be woken.
 * 0: w is not queued: it was handed a value, or store_pop did not queue it. In the first case
 *    cancel returns only after w's wake call has returned, so the value is already wherever wake
 *    put it: the caller must take it from there (it is not in the list any more). After either
 *    result the caller may free w. Do not call this while holding a lock that wake takes. */
int store_cancel_wait(struct store *s, struct store_waiter *w);
/* Number of values in the list at key: 0 when absent; STORE_WRONGTYPE, STORE_BADKEY. */
int store_list_length(struct store *s, const char *key, uint64_t now_ms);

/* ---- upkeep -------------------------------------------------------------------------------- */

/* Remove up to budget expired keys, soonest expiry first; returns how many. O(log n) each. The
 * host calls it now and then; nothing else depends on it. */
unsigned store_sweep(struct store *s, uint64_t now_ms, unsigned budget);

struct store_stats {
    size_t keys;          /* keys held, expired ones not yet removed included */
    size_t bytes;         /* what they count against the cap */
    size_t max_bytes;     /* the cap; 0: none */
    size_t waiters;       /* waiters queued */
    uint64_t evictions;   /* keys removed to make room (before their expiry) */
    uint64_t expirations; /* expired keys removed (on access, by store_sweep, or to make room) */
};
void store_stats(struct store *s, struct store_stats *out);

/* What a key counts against the cap: a string of value_len bytes; a list (key and structure)
 * plus store_item_cost for each of its values. key_len without the NUL. */
size_t store_string_cost(size_t key_len, size_t value_len);
size_t store_list_cost(size_t key_len);
size_t store_item_cost(size_t value_len);

#endif
