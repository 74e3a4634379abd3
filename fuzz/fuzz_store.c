/* SPDX-License-Identifier: MIT */
/* fuzz_store: the embedded store (src/store.c) against a reference model, on byte-coded sequences
 * of operations with a fake clock.
 *
 * The first byte picks the cap (none, or 200 to about 6 KB); every following operation is an
 * opcode byte and its arguments (a key of 32: "k0".."k29", one of STORE_MAX_KEY bytes and one a
 * byte longer; values of up to 64 bytes; TTLs of 0-254 ms or one that saturates the clock). The
 * model is a plain array of keys searched linearly; it implements the documented behaviour on its
 * own (lazy expiry, ttl boundary, incr's integers, eviction: keys with a TTL by soonest expiry,
 * then when the TTL was given, then keys without by least recent use; the costs come from
 * store_*_cost) and every result, every value read, every wake (which waiter, which value) and
 * the stats after every operation must agree. Waiters are woken on this thread, inside the push.
 * Uses: store. */
#include "store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS 32        /* slots 0-29 short keys, 30 the longest key, 31 one byte too long */
#define MAXV 64         /* value bytes */
#define MAXITEMS 256    /* list values the model keeps per key (pushes beyond are skipped) */
#define NWAITERS 4

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_store: %s\n", what);
        abort();
    }
}

/* ---- input ---------------------------------------------------------------------------------- */

static const uint8_t *in;
static size_t in_left;

static uint8_t next(void)
{
    if (!in_left)
        return 0;
    in_left--;
    return *in++;
}

struct value {
    size_t len;
    unsigned char data[MAXV];
};

static void read_value(struct value *v)
{
    v->len = next() % (MAXV + 1);
    for (size_t i = 0; i < v->len; i++)
        v->data[i] = next();
}

static uint64_t read_ttl(void)
{
    uint8_t b = next();
    return b == 255 ? UINT64_MAX - 3 : b;
}

/* ---- keys ----------------------------------------------------------------------------------- */

static char keys[NKEYS][STORE_MAX_KEY + 2];
static size_t key_lens[NKEYS];

static void make_keys(void)
{
    if (key_lens[1])
        return;
    for (int i = 0; i < 30; i++)
        key_lens[i] = (size_t)snprintf(keys[i], sizeof keys[i], "k%d", i);
    memset(keys[30], 'L', STORE_MAX_KEY);
    keys[30][STORE_MAX_KEY] = '\0';
    key_lens[30] = STORE_MAX_KEY;
    memset(keys[31], 'L', STORE_MAX_KEY + 1);
    keys[31][STORE_MAX_KEY + 1] = '\0';
    key_lens[31] = STORE_MAX_KEY + 1;
}

static int bad_key(int k)
{
    return key_lens[k] > STORE_MAX_KEY;
}

/* ---- the model ------------------------------------------------------------------------------ */

struct mentry {
    int present; /* held by the store (maybe expired, not yet removed) */
    int is_list;
    struct value str;
    struct value items[MAXITEMS];
    size_t n; /* items */
    uint64_t expires_at; /* 0: none */
    uint64_t ttl_seq;    /* when the TTL was given */
    uint64_t used;       /* without a TTL: when last used */
    size_t cost;
};

static struct mentry model[NKEYS];
static uint64_t now, stamp, ttl_seq, queue_seq;
static size_t cap, bytes;
static uint64_t evictions, expirations;

struct fwaiter {
    struct store_waiter w;
    int key;         /* waits for it; -1 not waiting */
    uint64_t queued; /* queue order */
};
static struct fwaiter waiters[NWAITERS];
static int woken = -1, wakes;
static struct value woken_value;

static void on_wake(struct store_waiter *w, const char *value, size_t len)
{
    woken = (int)((struct fwaiter *)w - waiters);
    wakes++;
    check(len <= MAXV, "a wake with a value longer than any pushed");
    woken_value.len = len;
    memcpy(woken_value.data, value, len);
}

static int is_expired(const struct mentry *e)
{
    return e->expires_at && e->expires_at <= now;
}

static void m_remove(int k)
{
    bytes -= model[k].cost;
    model[k].present = 0;
    model[k].n = 0;
    model[k].cost = 0;
}

/* The live entry of key k or NULL; an expired one is removed (counted). */
static struct mentry *m_lookup(int k)
{
    struct mentry *e = &model[k];
    if (!e->present)
        return NULL;
    if (is_expired(e)) {
        m_remove(k);
        expirations++;
        return NULL;
    }
    return e;
}

static void m_touch(struct mentry *e)
{
    if (!e->expires_at)
        e->used = ++stamp;
}

static void m_set_ttl(struct mentry *e, uint64_t ttl)
{
    if (!ttl) {
        e->expires_at = 0;
        e->used = ++stamp;
        return;
    }
    e->expires_at = now > UINT64_MAX - ttl ? UINT64_MAX : now + ttl;
    e->ttl_seq = ++ttl_seq;
}

/* Evict other keys than `pinned` until extra more bytes fit. */
static void m_evict(size_t extra, int pinned)
{
    while (cap && bytes + extra > cap) {
        int victim = -1;
        for (int k = 0; k < NKEYS; k++) {
            const struct mentry *e = &model[k];
            if (!e->present || k == pinned || !e->expires_at)
                continue;
            if (victim < 0 || e->expires_at < model[victim].expires_at ||
                (e->expires_at == model[victim].expires_at && e->ttl_seq < model[victim].ttl_seq))
                victim = k;
        }
        if (victim < 0) {
            for (int k = 0; k < NKEYS; k++) {
                const struct mentry *e = &model[k];
                if (!e->present || k == pinned)
                    continue;
                if (victim < 0 || e->used < model[victim].used)
                    victim = k;
            }
        }
        if (victim < 0)
            break;
        if (is_expired(&model[victim]))
            expirations++;
        else
            evictions++;
        m_remove(victim);
    }
}

/* Key k holds the string v now; its TTL fields are left as they were. */
static void m_write_string(int k, const struct value *v, size_t cost)
{
    struct mentry *e = &model[k];
    if (e->present)
        bytes -= e->cost;
    e->present = 1;
    e->is_list = 0;
    e->n = 0;
    e->str = *v;
    e->cost = cost;
    bytes += cost;
}

/* An optional '-' and digits within int64, computed without the store's method. */
static int m_parse(const struct value *v, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (v->len && v->data[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == v->len)
        return 0;
    __int128 acc = 0;
    for (; i < v->len; i++) {
        if (v->data[i] < '0' || v->data[i] > '9')
            return 0;
        acc = acc * 10 + (v->data[i] - '0');
        if (acc > (__int128)INT64_MAX + 1)
            return 0;
    }
    if (neg)
        acc = -acc;
    if (acc > INT64_MAX || acc < INT64_MIN)
        return 0;
    *out = (int64_t)acc;
    return 1;
}

static int same(const struct buffer *b, const struct value *v)
{
    return b->len == v->len && (v->len == 0 || memcmp(b->data, v->data, v->len) == 0);
}

static int oldest_waiter(int k)
{
    int best = -1;
    for (int i = 0; i < NWAITERS; i++)
        if (waiters[i].key == k && (best < 0 || waiters[i].queued < waiters[best].queued))
            best = i;
    return best;
}

/* ---- operations ------------------------------------------------------------------------------ */

static const char *const numbers[] = {
    "0", "5", "-5", "007", "-0", "9223372036854775807", "-9223372036854775808",
    "9223372036854775808", "", "+1", "1 ", "x", "-", "9223372036854775806",
};
static const int64_t increments[] = {1, -1, 0, 7, -100, INT64_MAX, INT64_MIN, 1000000007};

static void op_get(struct store *s, int k, struct buffer *b)
{
    b->len = 0;
    int rc = store_get(s, keys[k], now, b);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "get: a long key not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    if (!e) {
        check(rc == 0, "get: found an absent key");
    } else if (e->is_list) {
        check(rc == STORE_WRONGTYPE, "get: a list not refused");
    } else {
        check(rc == 1, "get: a string not found");
        check(same(b, &e->str), "get: another value");
        m_touch(e);
    }
}

static void op_set(struct store *s, int k, const struct value *v, uint64_t ttl, int nx)
{
    int rc = store_set(s, keys[k], v->data, v->len, ttl, nx, now);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "set: a long key not refused");
        return;
    }
    size_t cost = store_string_cost(key_lens[k], v->len);
    if (cap && cost > cap) {
        check(rc == STORE_TOOBIG, "set: a value over the cap not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    if (e && nx) {
        check(rc == 0, "add: an existing key set");
        return;
    }
    check(rc == 1, "set: not set");
    m_evict(e && e->cost >= cost ? 0 : cost - (e ? e->cost : 0), k);
    m_write_string(k, v, cost);
    m_set_ttl(&model[k], ttl);
}

static void op_incr(struct store *s, int k, int64_t by)
{
    int64_t result = 0x5eed;
    int rc = store_incr(s, keys[k], by, now, &result);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "incr: a long key not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    int64_t cur = 0, sum;
    if (e && (e->is_list || !m_parse(&e->str, &cur))) {
        check(rc == STORE_WRONGTYPE, "incr: not an integer, not refused");
        return;
    }
    if (__builtin_add_overflow(cur, by, &sum)) {
        check(rc == STORE_WRONGTYPE, "incr: an overflow not refused");
        return;
    }
    struct value text;
    text.len = (size_t)snprintf((char *)text.data, sizeof text.data, "%lld", (long long)sum);
    size_t cost = store_string_cost(key_lens[k], text.len);
    if (cap && cost > cap) {
        check(rc == STORE_TOOBIG, "incr: over the cap not refused");
        return;
    }
    check(rc == 0, "incr: failed");
    check(result == sum, "incr: another sum");
    m_evict(e && e->cost >= cost ? 0 : cost - (e ? e->cost : 0), k);
    int had = e != NULL;
    m_write_string(k, &text, cost);
    if (!had)
        model[k].expires_at = 0;
    if (!model[k].expires_at)
        model[k].used = ++stamp;
}

static void op_del(struct store *s, int k)
{
    int rc = store_del(s, keys[k], now);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "del: a long key not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    check(rc == (e ? 1 : 0), "del: another result");
    if (e)
        m_remove(k);
}

static void op_expire(struct store *s, int k, uint64_t ttl)
{
    int rc = store_expire(s, keys[k], ttl, now);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "expire: a long key not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    check(rc == (e ? 1 : 0), "expire: another result");
    if (e)
        m_set_ttl(e, ttl);
}

static void op_ttl(struct store *s, int k)
{
    int64_t left = 0x5eed;
    int rc = store_ttl(s, keys[k], now, &left);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "ttl: a long key not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    check(rc == (e ? 1 : 0), "ttl: another result");
    if (!e)
        return;
    if (!e->expires_at) {
        check(left == -1, "ttl: not -1 without a TTL");
    } else {
        uint64_t l = e->expires_at - now;
        check(left == (l > INT64_MAX ? INT64_MAX : (int64_t)l), "ttl: another time left");
        check(left >= 1, "ttl: an alive key with no time left");
    }
    m_touch(e);
}

static void op_push(struct store *s, int k, const struct value *v)
{
    if (model[k].present && model[k].is_list && model[k].n == MAXITEMS)
        return; /* beyond what the model keeps */
    int before = wakes;
    int rc = store_push(s, keys[k], v->data, v->len, now);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "push: a long key not refused");
        return;
    }
    size_t icost = store_item_cost(v->len), base = store_list_cost(key_lens[k]);
    if (cap && base + icost > cap) {
        check(rc == STORE_TOOBIG, "push: a value over the cap not refused");
        check(wakes == before, "push: a refused value woke a waiter");
        return;
    }
    struct mentry *e = m_lookup(k);
    if (e && !e->is_list) {
        check(rc == STORE_WRONGTYPE, "push: a string not refused");
        return;
    }
    int w = e ? -1 : oldest_waiter(k);
    if (w >= 0) {
        check(rc == 0, "push: a waiter not handed the value");
        check(wakes == before + 1 && woken == w, "push: another waiter woken");
        check(woken_value.len == v->len && memcmp(woken_value.data, v->data, v->len) == 0,
              "push: a waiter woken with another value");
        waiters[w].key = -1;
        return;
    }
    check(wakes == before, "push: a waiter woken while none waits");
    if (e && cap && e->cost + icost > cap) {
        check(rc == STORE_TOOBIG, "push: a list over the cap not refused");
        return;
    }
    m_evict(icost + (e ? 0 : base), k);
    if (!e) {
        e = &model[k];
        e->present = 1;
        e->is_list = 1;
        e->n = 0;
        e->expires_at = 0;
        e->cost = base;
        bytes += base;
    }
    e->items[e->n++] = *v;
    e->cost += icost;
    bytes += icost;
    if (!e->expires_at)
        e->used = ++stamp;
    check(rc == (int)e->n, "push: another length");
}

static void op_pop(struct store *s, int k, int w, struct buffer *b)
{
    if (w >= 0 && waiters[w].key >= 0)
        return; /* a waiter waits for one key at a time */
    b->len = 0;
    int rc = store_pop(s, keys[k], now, b, w >= 0 ? &waiters[w].w : NULL);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "pop: a long key not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    if (e && !e->is_list) {
        check(rc == STORE_WRONGTYPE, "pop: a string not refused");
    } else if (e) {
        check(rc == 1, "pop: a list's value not popped");
        check(same(b, &e->items[0]), "pop: not the first value");
        size_t icost = store_item_cost(e->items[0].len);
        memmove(&e->items[0], &e->items[1], (e->n - 1) * sizeof e->items[0]);
        e->n--;
        e->cost -= icost;
        bytes -= icost;
        if (!e->n)
            m_remove(k);
        else
            m_touch(e);
    } else {
        check(rc == 0, "pop: a value from an absent list");
        if (w >= 0) {
            waiters[w].key = k;
            waiters[w].queued = ++queue_seq;
        }
    }
}

static void op_cancel(struct store *s, int w)
{
    int rc = store_cancel_wait(s, &waiters[w].w);
    check(rc == (waiters[w].key >= 0 ? 1 : 0), "cancel: another result");
    waiters[w].key = -1;
}

static void op_length(struct store *s, int k)
{
    int rc = store_list_length(s, keys[k], now);
    if (bad_key(k)) {
        check(rc == STORE_BADKEY, "list_length: a long key not refused");
        return;
    }
    struct mentry *e = m_lookup(k);
    if (!e) {
        check(rc == 0, "list_length: not 0 for an absent key");
    } else if (!e->is_list) {
        check(rc == STORE_WRONGTYPE, "list_length: a string not refused");
    } else {
        check(rc == (int)e->n, "list_length: another length");
        m_touch(e);
    }
}

static void op_sweep(struct store *s, unsigned budget)
{
    unsigned rc = store_sweep(s, now, budget), n = 0;
    while (n < budget) {
        int victim = -1;
        for (int k = 0; k < NKEYS; k++) {
            const struct mentry *e = &model[k];
            if (!e->present || !e->expires_at)
                continue;
            if (victim < 0 || e->expires_at < model[victim].expires_at ||
                (e->expires_at == model[victim].expires_at && e->ttl_seq < model[victim].ttl_seq))
                victim = k;
        }
        if (victim < 0 || !is_expired(&model[victim]))
            break;
        m_remove(victim);
        expirations++;
        n++;
    }
    check(rc == n, "sweep: another count");
}

static void check_stats(struct store *s)
{
    struct store_stats st;
    store_stats(s, &st);
    size_t keys_held = 0, waiting = 0;
    for (int k = 0; k < NKEYS; k++)
        keys_held += model[k].present != 0;
    for (int i = 0; i < NWAITERS; i++)
        waiting += waiters[i].key >= 0;
    check(st.keys == keys_held, "stats: another key count");
    check(st.bytes == bytes, "stats: other bytes");
    check(!cap || st.bytes <= cap, "stats: over the cap");
    check(st.max_bytes == cap, "stats: another cap");
    check(st.waiters == waiting, "stats: another waiter count");
    check(st.evictions == evictions, "stats: other evictions");
    check(st.expirations == expirations, "stats: other expirations");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_keys();
    in = data;
    in_left = size;
    memset(model, 0, sizeof model);
    now = 1000;
    stamp = ttl_seq = queue_seq = 0;
    bytes = 0;
    evictions = expirations = 0;
    wakes = 0;
    woken = -1;
    for (int i = 0; i < NWAITERS; i++)
        waiters[i] = (struct fwaiter){.w = {.wake = on_wake}, .key = -1};

    uint8_t c = next();
    cap = c < 128 ? 0 : 200 + (size_t)(c - 128) * 48;
    struct store_limits lim = {cap};
    struct store *s = store_create(&lim);
    check(s != NULL, "out of memory");
    struct buffer b = {0};
    struct value v;

    while (in_left) {
        uint8_t op = next();
        uint8_t kb = next();
        int k = kb & 31;
        switch (op % 16) {
        case 0: op_get(s, k, &b); break;
        case 1: read_value(&v); op_set(s, k, &v, read_ttl(), 0); break;
        case 2: read_value(&v); op_set(s, k, &v, read_ttl(), 1); break;
        case 3: op_incr(s, k, increments[next() % 8]); break;
        case 4: op_del(s, k); break;
        case 5: op_expire(s, k, read_ttl()); break;
        case 6: op_ttl(s, k); break;
        case 7: read_value(&v); op_push(s, k, &v); break;
        case 8: op_pop(s, k, -1, &b); break;
        case 9: op_pop(s, k, next() % NWAITERS, &b); break;
        case 10: op_cancel(s, kb % NWAITERS); break;
        case 11: op_length(s, k); break;
        case 12: now += kb == 255 ? 1000000 : kb; break;
        case 13: op_sweep(s, kb % 5); break;
        case 14: {
            const char *t = numbers[next() % (sizeof numbers / sizeof numbers[0])];
            v.len = strlen(t);
            memcpy(v.data, t, v.len);
            op_set(s, k, &v, read_ttl(), 0);
            break;
        }
        case 15: now += 1; op_get(s, k, &b); break;
        }
        check_stats(s);
    }

    for (int i = 0; i < NWAITERS; i++)
        if (waiters[i].key >= 0)
            check(store_cancel_wait(s, &waiters[i].w) == 1, "a waiter lost at the end");
    struct store_stats st;
    store_stats(s, &st);
    check(st.waiters == 0, "waiters left after cancelling them all");
    buffer_free(&b);
    store_destroy(s);
    return 0;
}
