/* SPDX-License-Identifier: MIT */
/* test_store: the embedded backend of sb.store (src/store.c) through its real functions, with a
 * fake clock: strings, add, incr, TTL and its boundary, lists, waiters (FIFO, hand-over, cancel,
 * and cancel racing a push on another thread), eviction order under the cap, the accounting,
 * sweep, a table of many keys, and a small benchmark that prints numbers (asserts none).
 * STORE_BENCH_KEYS=n sets the benchmark's key count (default 100000). Runs threads: meant for the
 * TSan and ASan builds too. */
#include "../../src/store.h"
#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

static struct buffer got;

/* got, emptied: the out buffer of a call whose result is checked next */
static struct buffer *fresh(void)
{
    got.len = 0;
    return &got;
}

/* The string at key as text, or NULL when get did not return 1. */
static const char *get(struct store *s, const char *key, uint64_t now)
{
    got.len = 0;
    if (store_get(s, key, now, fresh()) != 1)
        return NULL;
    return got.data ? got.data : "";
}

static const char *pop(struct store *s, const char *key, uint64_t now)
{
    got.len = 0;
    if (store_pop(s, key, now, fresh(), NULL) != 1)
        return NULL;
    return got.data ? got.data : "";
}

static int set(struct store *s, const char *key, const char *v, uint64_t ttl, uint64_t now)
{
    return store_set(s, key, v, strlen(v), ttl, 0, now);
}

static int push(struct store *s, const char *key, const char *v, uint64_t now)
{
    return store_push(s, key, v, strlen(v), now);
}

static struct store_stats stats(struct store *s)
{
    struct store_stats st;
    store_stats(s, &st);
    return st;
}

/* ---- strings -------------------------------------------------------------------------------- */

static void test_strings(void)
{
    struct store *s = store_create(NULL);
    CHECK(get(s, "a", 0) == NULL);
    CHECK_EQ(store_get(s, "a", 0, fresh()), 0);
    CHECK_EQ(set(s, "a", "one", 0, 0), 1);
    CHECK_STR(get(s, "a", 0), "one");
    CHECK_EQ(set(s, "a", "two!", 0, 0), 1); /* overwrite */
    CHECK_STR(get(s, "a", 0), "two!");
    CHECK_EQ(stats(s).keys, 1);

    /* bytes, NULs included; get appends */
    CHECK_EQ(store_set(s, "bin", "x\0y", 3, 0, 0, 0), 1);
    struct buffer b = {0};
    buffer_append(&b, "pre", 3);
    CHECK_EQ(store_get(s, "bin", 0, &b), 1);
    CHECK_EQ(b.len, 6);
    CHECK(memcmp(b.data, "prex\0y", 6) == 0);
    buffer_free(&b);

    /* the empty value and the empty key */
    CHECK_EQ(store_set(s, "", "", 0, 0, 0, 0), 1);
    CHECK_STR(get(s, "", 0), "");
    CHECK_EQ(store_get(s, "", 0, fresh()), 1);
    CHECK_EQ(got.len, 0);
    CHECK_EQ(stats(s).keys, 3);

    /* a string where a list is wanted */
    CHECK_EQ(push(s, "a", "x", 0), STORE_WRONGTYPE);
    CHECK_EQ(store_pop(s, "a", 0, fresh(), NULL), STORE_WRONGTYPE);
    CHECK_EQ(store_list_length(s, "a", 0), STORE_WRONGTYPE);
    CHECK_STR(get(s, "a", 0), "two!"); /* untouched */
    store_destroy(s);
}

static void test_add(void)
{
    struct store *s = store_create(NULL);
    CHECK_EQ(store_set(s, "k", "1", 1, 0, 1, 0), 1); /* absent: set */
    CHECK_EQ(store_set(s, "k", "2", 1, 0, 1, 0), 0); /* exists: not set */
    CHECK_STR(get(s, "k", 0), "1");
    CHECK_EQ(store_set(s, "k", "3", 1, 50, 0, 0), 1); /* a plain set with a TTL */
    CHECK_EQ(store_set(s, "k", "4", 1, 0, 1, 49), 0); /* still alive at 49 */
    CHECK_EQ(store_set(s, "k", "5", 1, 0, 1, 50), 1); /* expired at 50: absent, so added */
    CHECK_STR(get(s, "k", 1000), "5");                /* without a TTL */
    CHECK_EQ(stats(s).expirations, 1);
    /* add over a list: it exists */
    CHECK(push(s, "l", "x", 0) == 1);
    CHECK_EQ(store_set(s, "l", "v", 1, 0, 1, 0), 0);
    CHECK_EQ(store_list_length(s, "l", 0), 1);
    store_destroy(s);
}

static void test_key_limits(void)
{
    struct store *s = store_create(NULL);
    char key[STORE_MAX_KEY + 2];
    memset(key, 'k', STORE_MAX_KEY);
    key[STORE_MAX_KEY] = '\0'; /* 1024 bytes: fine */
    CHECK_EQ(set(s, key, "v", 0, 0), 1);
    CHECK_STR(get(s, key, 0), "v");
    CHECK_EQ(stats(s).bytes, store_string_cost(STORE_MAX_KEY, 1));
    CHECK_EQ(store_del(s, key, 0), 1);

    key[STORE_MAX_KEY] = 'k';
    key[STORE_MAX_KEY + 1] = '\0'; /* 1025 bytes: every call refuses it */
    int64_t n = 7, left = 7;
    struct store_waiter w = {0};
    CHECK_EQ(store_get(s, key, 0, fresh()), STORE_BADKEY);
    CHECK_EQ(set(s, key, "v", 0, 0), STORE_BADKEY);
    CHECK_EQ(store_incr(s, key, 1, 0, &n), STORE_BADKEY);
    CHECK_EQ(n, 7);
    CHECK_EQ(store_del(s, key, 0), STORE_BADKEY);
    CHECK_EQ(store_expire(s, key, 10, 0), STORE_BADKEY);
    CHECK_EQ(store_ttl(s, key, 0, &left), STORE_BADKEY);
    CHECK_EQ(left, 7);
    CHECK_EQ(push(s, key, "v", 0), STORE_BADKEY);
    CHECK_EQ(store_pop(s, key, 0, fresh(), &w), STORE_BADKEY);
    CHECK_EQ(store_cancel_wait(s, &w), 0); /* not waiting */
    CHECK_EQ(store_list_length(s, key, 0), STORE_BADKEY);
    CHECK_EQ(stats(s).keys, 0);
    CHECK_EQ(stats(s).bytes, 0);
    CHECK_EQ(stats(s).waiters, 0);
    store_destroy(s);
}

static void test_value_limits(void)
{
    struct store *s = store_create(NULL);
    char *big = calloc(1, STORE_MAX_VALUE + 1);
    CHECK(big != NULL);
    CHECK_EQ(store_set(s, "big", big, STORE_MAX_VALUE + 1, 0, 0, 0), STORE_TOOBIG);
    CHECK_EQ(store_push(s, "big", big, STORE_MAX_VALUE + 1, 0), STORE_TOOBIG);
    CHECK_EQ(stats(s).keys, 0);
    CHECK_EQ(store_set(s, "big", big, STORE_MAX_VALUE, 0, 0, 0), 1); /* the limit itself */
    CHECK_EQ(store_get(s, "big", 0, fresh()), 1);
    CHECK_EQ(got.len, STORE_MAX_VALUE);
    CHECK_EQ(store_push(s, "list", big, STORE_MAX_VALUE, 0), 1);
    CHECK_EQ(stats(s).bytes, store_string_cost(3, STORE_MAX_VALUE) + store_list_cost(4) +
                                 store_item_cost(STORE_MAX_VALUE));
    free(big);
    buffer_free(&got);
    store_destroy(s);
}

/* ---- time ----------------------------------------------------------------------------------- */

static void test_ttl(void)
{
    struct store *s = store_create(NULL);
    int64_t left = 0;

    /* ttl 100 set at t=0: alive up to t=99, gone at t=100 */
    CHECK_EQ(set(s, "k", "v", 100, 0), 1);
    CHECK_EQ(store_ttl(s, "k", 0, &left), 1);
    CHECK_EQ(left, 100);
    CHECK_EQ(store_ttl(s, "k", 99, &left), 1);
    CHECK_EQ(left, 1);
    CHECK_STR(get(s, "k", 99), "v");
    CHECK(get(s, "k", 100) == NULL);
    CHECK_EQ(stats(s).keys, 0); /* removed on that access */
    CHECK_EQ(stats(s).expirations, 1);
    CHECK_EQ(store_ttl(s, "k", 100, &left), 0);

    /* every call sees an expired key as absent */
    const char *fns[] = {"get", "del", "expire", "ttl", "len", "incr", "pop", "push", "add"};
    for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        uint64_t t0 = 1000 * (i + 1);
        CHECK_EQ(set(s, "e", "41", 10, t0), 1);
        uint64_t t = t0 + 10;
        int64_t n = 0;
        if (i == 0)
            CHECK_EQ(store_get(s, "e", t, fresh()), 0);
        if (i == 1)
            CHECK_EQ(store_del(s, "e", t), 0);
        if (i == 2)
            CHECK_EQ(store_expire(s, "e", 100, t), 0);
        if (i == 3)
            CHECK_EQ(store_ttl(s, "e", t, &left), 0);
        if (i == 4)
            CHECK_EQ(store_list_length(s, "e", t), 0);
        if (i == 5) {
            CHECK_EQ(store_incr(s, "e", 1, t, &n), 0);
            CHECK_EQ(n, 1); /* from 0, not 41 */
            CHECK_EQ(store_ttl(s, "e", t, &left), 1);
            CHECK_EQ(left, -1); /* a new key: no TTL */
            CHECK_EQ(store_del(s, "e", t), 1);
        }
        if (i == 6)
            CHECK_EQ(store_pop(s, "e", t, fresh(), NULL), 0);
        if (i == 7) {
            CHECK_EQ(push(s, "e", "x", t), 1); /* a list now, not a string */
            CHECK_EQ(store_del(s, "e", t), 1);
        }
        if (i == 8) {
            CHECK_EQ(store_set(s, "e", "y", 1, 0, 1, t), 1);
            CHECK_EQ(store_del(s, "e", t), 1);
        }
        CHECK_EQ(stats(s).keys, 0);
    }
    CHECK_EQ(stats(s).expirations, 1 + 9);

    /* no TTL: -1; expire gives one, expire 0 takes it away; expire on an absent key: 0 */
    CHECK_EQ(set(s, "p", "v", 0, 0), 1);
    CHECK_EQ(store_ttl(s, "p", 0, &left), 1);
    CHECK_EQ(left, -1);
    CHECK_EQ(store_expire(s, "p", 30, 10), 1);
    CHECK_EQ(store_ttl(s, "p", 15, &left), 1);
    CHECK_EQ(left, 25);
    CHECK_EQ(store_expire(s, "p", 0, 20), 1);
    CHECK_EQ(store_ttl(s, "p", 1000000, &left), 1);
    CHECK_EQ(left, -1);
    CHECK_EQ(store_expire(s, "nope", 30, 10), 0);
    CHECK_EQ(store_expire(s, "nope", 0, 10), 0);

    /* set replaces the TTL (ttl 0: none); incr keeps it */
    CHECK_EQ(set(s, "q", "1", 50, 0), 1);
    CHECK_EQ(set(s, "q", "2", 0, 10), 1);
    CHECK_EQ(store_ttl(s, "q", 100, &left), 1);
    CHECK_EQ(left, -1);
    CHECK_EQ(set(s, "q", "5", 50, 100), 1);
    int64_t n = 0;
    CHECK_EQ(store_incr(s, "q", 2, 120, &n), 0);
    CHECK_EQ(n, 7);
    CHECK_EQ(store_ttl(s, "q", 120, &left), 1);
    CHECK_EQ(left, 30);
    CHECK(get(s, "q", 150) == NULL);

    /* a list expires like a string */
    CHECK_EQ(push(s, "l", "a", 0), 1);
    CHECK_EQ(store_expire(s, "l", 5, 0), 1);
    CHECK_EQ(push(s, "l", "b", 4), 2);
    CHECK_EQ(store_list_length(s, "l", 4), 2);
    CHECK_EQ(store_list_length(s, "l", 5), 0);

    /* a TTL beyond the clock's range saturates */
    CHECK_EQ(set(s, "far", "v", UINT64_MAX - 5, 10), 1);
    CHECK_EQ(store_ttl(s, "far", 10, &left), 1);
    CHECK_EQ(left, INT64_MAX);
    CHECK_STR(get(s, "far", UINT64_MAX - 1), "v");
    CHECK(get(s, "far", UINT64_MAX) == NULL);
    store_destroy(s);
}

static void test_sweep(void)
{
    struct store *s = store_create(NULL);
    for (int i = 0; i < 10; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_EQ(set(s, key, "v", (uint64_t)(10 + i), 0), 1); /* k0 expires at 10, k9 at 19 */
    }
    CHECK_EQ(set(s, "keep", "v", 0, 0), 1);
    CHECK_EQ(store_sweep(s, 9, 100), 0);  /* nothing expired yet */
    CHECK_EQ(store_sweep(s, 14, 3), 3);   /* k0..k4 expired; budget 3: soonest first */
    CHECK_EQ(stats(s).keys, 8);
    CHECK(get(s, "k2", 0) == NULL);       /* swept (asked at an earlier time: it is gone) */
    CHECK_STR(get(s, "k3", 0), "v");      /* not swept yet */
    CHECK_EQ(store_sweep(s, 14, 100), 2); /* k3, k4 */
    CHECK_EQ(store_sweep(s, 1000, 0), 0);
    CHECK_EQ(store_sweep(s, 1000, 100), 5);
    CHECK_EQ(stats(s).keys, 1);
    CHECK_EQ(stats(s).expirations, 10);
    CHECK_EQ(stats(s).bytes, store_string_cost(4, 1));
    store_destroy(s);
}

/* ---- incr, del ------------------------------------------------------------------------------ */

static void test_incr(void)
{
    struct store *s = store_create(NULL);
    int64_t n = 0;
    CHECK_EQ(store_incr(s, "c", 5, 0, &n), 0); /* absent counts as 0 */
    CHECK_EQ(n, 5);
    CHECK_EQ(store_incr(s, "c", -7, 0, &n), 0);
    CHECK_EQ(n, -2);
    CHECK_STR(get(s, "c", 0), "-2"); /* stored as text */
    CHECK_EQ(store_incr(s, "c", 0, 0, &n), 0);
    CHECK_EQ(n, -2);
    CHECK_EQ(stats(s).bytes, store_string_cost(1, 2));

    /* what counts as an integer */
    struct {
        const char *text;
        int ok;
        int64_t value;
    } cases[] = {
        {"0", 1, 0}, {"007", 1, 7}, {"-0", 1, 0}, {"-12", 1, -12},
        {"9223372036854775807", 1, INT64_MAX}, {"-9223372036854775808", 1, INT64_MIN},
        {"9223372036854775808", 0, 0}, {"-9223372036854775809", 0, 0},
        {"99999999999999999999999", 0, 0}, {"", 0, 0}, {"-", 0, 0}, {"+1", 0, 0},
        {" 1", 0, 0}, {"1 ", 0, 0}, {"1.5", 0, 0}, {"abc", 0, 0}, {"0x10", 0, 0},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ(set(s, "n", cases[i].text, 0, 0), 1);
        n = 12345;
        int rc = store_incr(s, "n", 0, 0, &n);
        if (cases[i].ok) {
            CHECK_EQ(rc, 0);
            CHECK_EQ(n, cases[i].value);
        } else {
            CHECK_EQ(rc, STORE_WRONGTYPE);
            CHECK_EQ(n, 12345);
            CHECK_STR(get(s, "n", 0), cases[i].text); /* unchanged */
        }
    }
    CHECK_EQ(store_set(s, "nul", "1\0", 2, 0, 0, 0), 1);
    CHECK_EQ(store_incr(s, "nul", 1, 0, &n), STORE_WRONGTYPE);

    /* overflow both ways: nothing changes */
    CHECK_EQ(set(s, "max", "9223372036854775806", 0, 0), 1);
    CHECK_EQ(store_incr(s, "max", 1, 0, &n), 0);
    CHECK_EQ(n, INT64_MAX);
    CHECK_EQ(store_incr(s, "max", 1, 0, &n), STORE_WRONGTYPE);
    CHECK_STR(get(s, "max", 0), "9223372036854775807");
    CHECK_EQ(store_incr(s, "min", INT64_MIN, 0, &n), 0);
    CHECK_EQ(store_incr(s, "min", -1, 0, &n), STORE_WRONGTYPE);
    CHECK_STR(get(s, "min", 0), "-9223372036854775808");
    CHECK_EQ(store_incr(s, "min", INT64_MAX, 0, &n), 0);
    CHECK_EQ(n, -1);

    /* a list */
    CHECK_EQ(push(s, "l", "1", 0), 1);
    CHECK_EQ(store_incr(s, "l", 1, 0, &n), STORE_WRONGTYPE);
    CHECK_EQ(store_list_length(s, "l", 0), 1);
    store_destroy(s);
}

static void test_del(void)
{
    struct store *s = store_create(NULL);
    CHECK_EQ(store_del(s, "a", 0), 0);
    CHECK_EQ(set(s, "a", "v", 0, 0), 1);
    CHECK_EQ(push(s, "l", "1", 0), 1);
    CHECK_EQ(push(s, "l", "2", 0), 2);
    CHECK_EQ(store_del(s, "a", 0), 1);
    CHECK_EQ(store_del(s, "a", 0), 0);
    CHECK_EQ(store_del(s, "l", 0), 1); /* the whole list */
    CHECK_EQ(store_list_length(s, "l", 0), 0);
    CHECK_EQ(stats(s).keys, 0);
    CHECK_EQ(stats(s).bytes, 0);
    store_destroy(s);
}

/* ---- lists ---------------------------------------------------------------------------------- */

static void test_lists(void)
{
    struct store *s = store_create(NULL);
    CHECK_EQ(store_list_length(s, "q", 0), 0);
    CHECK(pop(s, "q", 0) == NULL);
    CHECK_EQ(push(s, "q", "a", 0), 1);
    CHECK_EQ(push(s, "q", "b", 0), 2);
    CHECK_EQ(store_push(s, "q", "c\0d", 3, 0), 3);
    CHECK_EQ(push(s, "q", "", 0), 4);
    CHECK_EQ(store_list_length(s, "q", 0), 4);
    CHECK_EQ(stats(s).bytes, store_list_cost(1) + store_item_cost(1) * 2 + store_item_cost(3) +
                                 store_item_cost(0));
    CHECK_STR(pop(s, "q", 0), "a"); /* first in, first out */
    CHECK_STR(pop(s, "q", 0), "b");
    CHECK_EQ(store_pop(s, "q", 0, fresh(), NULL), 1);
    CHECK_EQ(got.len, 3);
    CHECK(memcmp(got.data, "c\0d", 3) == 0);
    CHECK_EQ(store_list_length(s, "q", 0), 1);
    CHECK_STR(pop(s, "q", 0), "");
    CHECK_EQ(stats(s).keys, 0); /* an emptied list is gone */
    CHECK_EQ(stats(s).bytes, 0);
    CHECK(pop(s, "q", 0) == NULL);

    /* a list where a string is wanted; set replaces a list */
    CHECK_EQ(push(s, "q", "x", 0), 1);
    CHECK_EQ(store_get(s, "q", 0, fresh()), STORE_WRONGTYPE);
    int64_t n;
    CHECK_EQ(store_incr(s, "q", 1, 0, &n), STORE_WRONGTYPE);
    CHECK_EQ(set(s, "q", "str", 0, 0), 1);
    CHECK_STR(get(s, "q", 0), "str");
    CHECK_EQ(stats(s).bytes, store_string_cost(1, 3));

    /* pop appends to out */
    CHECK_EQ(push(s, "r", "tail", 0), 1);
    struct buffer b = {0};
    buffer_append(&b, "head-", 5);
    CHECK_EQ(store_pop(s, "r", 0, &b, NULL), 1);
    CHECK_STR(b.data, "head-tail");
    buffer_free(&b);
    store_destroy(s);
}

/* ---- waiters, one thread -------------------------------------------------------------------- */

struct test_waiter {
    struct store_waiter w;
    int id;
    int wakes;
    char value[64];
};

static int wake_order[16], nwakes;

static void record_wake(struct store_waiter *w, const char *value, size_t len)
{
    struct test_waiter *t = container_of(w, struct test_waiter, w);
    t->wakes++;
    if (len >= sizeof t->value)
        len = sizeof t->value - 1;
    memcpy(t->value, value, len);
    t->value[len] = '\0';
    if (nwakes < 16)
        wake_order[nwakes] = t->id;
    nwakes++;
}

static void test_waiters(void)
{
    struct store *s = store_create(NULL);
    struct test_waiter ws[4];
    for (int i = 0; i < 4; i++)
        ws[i] = (struct test_waiter){.w = {.wake = record_wake}, .id = i};
    nwakes = 0;

    /* three wait, in order; a push wakes exactly one, the oldest */
    for (int i = 0; i < 3; i++)
        CHECK_EQ(store_pop(s, "q", 0, fresh(), &ws[i].w), 0);
    CHECK_EQ(stats(s).waiters, 3);
    CHECK_EQ(stats(s).keys, 0); /* waiting stores nothing */
    CHECK_EQ(stats(s).bytes, 0);
    CHECK_EQ(push(s, "q", "v1", 0), 0); /* taken by a waiter */
    CHECK_EQ(nwakes, 1);
    CHECK_EQ(wake_order[0], 0);
    CHECK_STR(ws[0].value, "v1");
    CHECK_EQ(store_list_length(s, "q", 0), 0); /* not stored */
    CHECK_EQ(stats(s).waiters, 2);

    /* a cancelled waiter is skipped and never woken */
    CHECK_EQ(store_cancel_wait(s, &ws[1].w), 1);
    CHECK_EQ(store_cancel_wait(s, &ws[1].w), 0); /* not waiting any more */
    CHECK_EQ(push(s, "q", "v2", 0), 0);
    CHECK_EQ(nwakes, 2);
    CHECK_EQ(wake_order[1], 2);
    CHECK_STR(ws[2].value, "v2");
    CHECK_EQ(ws[1].wakes, 0);
    /* handed over already (the wake ran on this thread): cancel says 0 */
    CHECK_EQ(store_cancel_wait(s, &ws[2].w), 0);
    CHECK_EQ(stats(s).waiters, 0);

    /* no waiter left: the value is queued, and the next pop takes it without waiting */
    CHECK_EQ(push(s, "q", "v3", 0), 1);
    CHECK_EQ(store_pop(s, "q", 0, fresh(), &ws[3].w), 1);
    CHECK_STR(got.data, "v3");
    CHECK_EQ(stats(s).waiters, 0);
    CHECK_EQ(store_cancel_wait(s, &ws[3].w), 0);
    CHECK_EQ(nwakes, 2);

    /* waiters of different keys do not mix */
    CHECK_EQ(store_pop(s, "a", 0, fresh(), &ws[0].w), 0);
    CHECK_EQ(store_pop(s, "b", 0, fresh(), &ws[1].w), 0);
    CHECK_EQ(push(s, "b", "to-b", 0), 0);
    CHECK_EQ(nwakes, 3);
    CHECK_STR(ws[1].value, "to-b");
    CHECK_EQ(store_cancel_wait(s, &ws[0].w), 1);

    /* a string at the key: the pop fails and does not wait; a push there fails too */
    CHECK_EQ(set(s, "str", "v", 0, 0), 1);
    CHECK_EQ(store_pop(s, "str", 0, fresh(), &ws[0].w), STORE_WRONGTYPE);
    CHECK_EQ(stats(s).waiters, 0);
    CHECK_EQ(store_cancel_wait(s, &ws[0].w), 0);
    /* a waiter that waits while a string is set stays waiting until the key holds no string */
    CHECK_EQ(store_pop(s, "later", 0, fresh(), &ws[0].w), 0);
    CHECK_EQ(set(s, "later", "s", 0, 0), 1);
    CHECK_EQ(push(s, "later", "x", 0), STORE_WRONGTYPE);
    CHECK_EQ(store_del(s, "later", 0), 1);
    CHECK_EQ(push(s, "later", "x", 0), 0);
    CHECK_STR(ws[0].value, "x");
    CHECK_EQ(stats(s).waiters, 0);

    /* an expired list is absent: the pop waits */
    CHECK_EQ(push(s, "exp", "old", 0), 1);
    CHECK_EQ(store_expire(s, "exp", 10, 0), 1);
    CHECK_EQ(store_pop(s, "exp", 10, fresh(), &ws[2].w), 0);
    CHECK_EQ(push(s, "exp", "new", 11), 0);
    CHECK_STR(ws[2].value, "new");

    /* a waiter left queued at destroy is forgotten (no wake, no leak) */
    int before = nwakes;
    CHECK_EQ(store_pop(s, "gone", 0, fresh(), &ws[3].w), 0);
    store_destroy(s);
    CHECK_EQ(nwakes, before);
}

/* ---- eviction ------------------------------------------------------------------------------- */

static void test_eviction(void)
{
    /* Keys of one letter with 10-byte values all cost the same: the cap holds four. */
    size_t one = store_string_cost(1, 10);
    struct store_limits lim = {4 * one};
    struct store *s = store_create(&lim);
    const char *ten = "0123456789";
    CHECK_EQ(stats(s).max_bytes, 4 * one);

    /* least recently used first; a get is a use */
    CHECK_EQ(set(s, "a", ten, 0, 0), 1);
    CHECK_EQ(set(s, "b", ten, 0, 0), 1);
    CHECK_EQ(set(s, "c", ten, 0, 0), 1);
    CHECK_EQ(set(s, "d", ten, 0, 0), 1);
    CHECK_EQ(stats(s).bytes, 4 * one);
    CHECK(get(s, "a", 0) != NULL); /* a is now the most recently used: b is the oldest */
    CHECK_EQ(set(s, "e", ten, 0, 0), 1);
    CHECK(get(s, "b", 0) == NULL);
    CHECK_EQ(stats(s).evictions, 1);
    CHECK_EQ(stats(s).bytes, 4 * one);
    int64_t left;
    CHECK_EQ(store_ttl(s, "c", 0, &left), 1); /* ttl is a use too: d is the oldest now */
    CHECK_EQ(set(s, "f", ten, 0, 0), 1);
    CHECK(get(s, "d", 0) == NULL);
    CHECK_EQ(stats(s).evictions, 2);
    /* now, oldest first: a e c f */

    /* keys with a TTL go before any key without, soonest expiry first */
    CHECK_EQ(set(s, "t", ten, 500, 0), 1); /* evicts a (LRU) to fit */
    CHECK(get(s, "a", 0) == NULL);
    CHECK_EQ(set(s, "u", ten, 100, 0), 1); /* t has a TTL: it goes, not e, the LRU key */
    CHECK(get(s, "t", 0) == NULL);
    CHECK_STR(get(s, "e", 0), ten);
    CHECK_EQ(stats(s).evictions, 4);
    CHECK_EQ(set(s, "v", ten, 50, 0), 1); /* u (expires at 100) goes */
    CHECK(get(s, "u", 0) == NULL);
    CHECK_EQ(set(s, "w", ten, 50, 0), 1); /* v: soonest of v(50) */
    CHECK(get(s, "v", 0) == NULL);
    CHECK_EQ(stats(s).evictions, 6);
    CHECK_EQ(stats(s).expirations, 0);

    /* expired keys count as expirations, not evictions */
    CHECK_EQ(set(s, "x", ten, 0, 60), 1); /* w expired at 50: it goes */
    CHECK_EQ(stats(s).evictions, 6);
    CHECK_EQ(stats(s).expirations, 1);
    CHECK_EQ(stats(s).keys, 4); /* c e f x */

    /* equal expiry: the TTL given first goes first */
    CHECK_EQ(store_expire(s, "f", 1000, 100), 1);
    CHECK_EQ(store_expire(s, "e", 1000, 100), 1);
    CHECK_EQ(store_expire(s, "c", 1000, 100), 1);
    CHECK_EQ(set(s, "y", ten, 0, 100), 1);
    CHECK(get(s, "f", 100) == NULL);
    CHECK_EQ(set(s, "z", ten, 0, 100), 1);
    CHECK(get(s, "e", 100) == NULL);
    CHECK_STR(get(s, "c", 100), ten);
    CHECK_EQ(stats(s).evictions, 8);

    /* a value too big for the cap fails and evicts nothing */
    size_t n_before = stats(s).keys, ev_before = stats(s).evictions;
    char big[4096];
    memset(big, 'x', sizeof big);
    size_t too_big = 4 * one; /* its cost is over the cap by itself */
    CHECK_EQ(store_set(s, "big", big, too_big, 0, 0, 100), STORE_TOOBIG);
    CHECK_EQ(store_push(s, "big", big, too_big, 100), STORE_TOOBIG);
    CHECK_EQ(stats(s).keys, n_before);
    CHECK_EQ(stats(s).evictions, ev_before);

    /* the key being written is never evicted for itself: grow c (the oldest) to fill the cap */
    size_t fill = 4 * one - store_string_cost(1, 0) - 1;
    CHECK_EQ(store_set(s, "c", big, fill, 0, 0, 100), 1);
    CHECK_EQ(store_get(s, "c", 100, fresh()), 1);
    CHECK_EQ(got.len, fill);
    CHECK_EQ(stats(s).keys, 1); /* everyone else had to go */
    CHECK(stats(s).bytes <= 4 * one);
    store_destroy(s);
}

static void test_eviction_lists(void)
{
    size_t item = store_item_cost(8), base = store_list_cost(1);
    struct store_limits lim = {2 * base + 5 * item};
    struct store *s = store_create(&lim);
    /* a list is written to: it is the most recently used, another list goes */
    for (int i = 0; i < 2; i++)
        CHECK_EQ(push(s, "p", "12345678", 0), i + 1);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(push(s, "q", "12345678", 0), i + 1);
    CHECK_EQ(stats(s).bytes, 2 * base + 5 * item);
    CHECK_EQ(push(s, "q", "12345678", 0), 4); /* p is the least recently used */
    CHECK_EQ(store_list_length(s, "p", 0), 0);
    CHECK_EQ(stats(s).evictions, 1);
    /* a list cannot outgrow the cap: the push that would fails, nothing is evicted */
    CHECK_EQ(set(s, "s", "", 0, 0), 1);
    size_t room = (lim.max_bytes - base) / item; /* q alone holds that many */
    for (size_t i = 5; i <= room; i++)
        CHECK_EQ(push(s, "q", "12345678", 0), (int)i); /* evicts s on the way */
    CHECK_EQ(store_list_length(s, "s", 0), 0);
    uint64_t ev = stats(s).evictions;
    CHECK_EQ(push(s, "q", "12345678", 0), STORE_TOOBIG);
    CHECK_EQ(store_list_length(s, "q", 0), (int)room);
    CHECK_EQ(stats(s).evictions, ev);
    CHECK_EQ(stats(s).bytes, base + room * item);

    /* waiters are never evicted: a waiter on w survives a store churned full many times */
    struct test_waiter tw = {.w = {.wake = record_wake}, .id = 9};
    nwakes = 0;
    CHECK_EQ(store_pop(s, "w", 0, fresh(), &tw.w), 0);
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_EQ(set(s, key, "12345678", 0, 0), 1);
    }
    CHECK_EQ(stats(s).waiters, 1);
    CHECK_EQ(push(s, "w", "still", 0), 0);
    CHECK_EQ(nwakes, 1);
    CHECK_STR(tw.value, "still");
    store_destroy(s);
}

/* ---- accounting ----------------------------------------------------------------------------- */

static void test_accounting(void)
{
    struct store *s = store_create(NULL);
    /* exact costs */
    CHECK_EQ(set(s, "key", "value", 0, 0), 1);
    CHECK_EQ(stats(s).bytes, store_string_cost(3, 5));
    CHECK_EQ(set(s, "key", "a much longer value than before", 0, 0), 1);
    CHECK_EQ(stats(s).bytes, store_string_cost(3, 31));
    CHECK_EQ(push(s, "list", "abc", 0), 1);
    CHECK_EQ(stats(s).bytes, store_string_cost(3, 31) + store_list_cost(4) + store_item_cost(3));
    /* the costs are honest: they cover the key, the value and a real structure */
    CHECK(store_string_cost(3, 1000) > 1000 + 3 + 48);
    CHECK(store_item_cost(1000) > 1000);
    CHECK(store_string_cost(0, 0) >= 64);

    /* many kinds of writes, then everything deleted, expired, popped or swept: back to 0 */
    int64_t n;
    for (int i = 0; i < 2000; i++) {
        char key[16], val[64];
        snprintf(key, sizeof key, "k%d", i % 300);
        snprintf(val, sizeof val, "%0*d", i % 50, i);
        switch (i % 7) {
        case 0: set(s, key, val, 0, 0); break;
        case 1: set(s, key, val, (uint64_t)(i % 13) + 1, (uint64_t)i); break;
        case 2: store_incr(s, key, i, (uint64_t)i, &n); break;
        case 3: push(s, key, val, (uint64_t)i); break;
        case 4: pop(s, key, (uint64_t)i); break;
        case 5: store_expire(s, key, (uint64_t)(i % 5), (uint64_t)i); break;
        case 6: store_set(s, key, val, strlen(val), 0, 1, (uint64_t)i); break;
        }
    }
    CHECK(stats(s).keys > 0);
    CHECK(stats(s).bytes > 0);
    CHECK(store_sweep(s, 2000, 100000) > 0);
    for (int i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        if (i % 2) {
            store_del(s, key, 2000);
        } else {
            while (pop(s, key, 2000))
                ;
            store_del(s, key, 2000);
        }
    }
    store_del(s, "key", 0);
    store_del(s, "list", 0);
    CHECK_EQ(stats(s).keys, 0);
    CHECK_EQ(stats(s).bytes, 0);
    store_destroy(s);
}

/* ---- many keys: the table grows and shrinks, every key stays reachable ---------------------- */

static size_t bench_keys(void)
{
    const char *e = getenv("STORE_BENCH_KEYS");
    long n = e ? atol(e) : 0;
    return n > 0 ? (size_t)n : 100000;
}

static void test_many_keys(void)
{
    struct store *s = store_create(NULL);
    const size_t n = 100000;
    char key[32];
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "user:%zu", i);
        if (store_set(s, key, key, strlen(key), 0, 0, 0) != 1)
            bad++;
    }
    CHECK_EQ(stats(s).keys, n);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "user:%zu", i);
        const char *v = get(s, key, 0);
        if (!v || strcmp(v, key) != 0)
            bad++;
    }
    /* delete all but a few; the table shrinks under them and they stay reachable */
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "user:%zu", i);
        if (i % 10000 != 7 && store_del(s, key, 0) != 1)
            bad++;
    }
    CHECK_EQ(stats(s).keys, 10);
    for (size_t i = 7; i < n; i += 10000) {
        snprintf(key, sizeof key, "user:%zu", i);
        if (!get(s, key, 0))
            bad++;
        store_del(s, key, 0);
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(stats(s).keys, 0);
    CHECK_EQ(stats(s).bytes, 0);
    store_destroy(s);
}

/* ---- waiters across threads ----------------------------------------------------------------- */

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

/* Tells the test it started, then gives a cancel up to 300 ms to return (a correct cancel
 * cannot return before this wake has, so the wait runs out). */
static void slow_wake(struct store_waiter *w, const char *value, size_t len)
{
    struct test_waiter *t = container_of(w, struct test_waiter, w);
    memcpy(t->value, value, len < sizeof t->value ? len : sizeof t->value - 1);
    pthread_mutex_lock(&mu);
    wake_started = 1;
    pthread_cond_broadcast(&cv);
    wait_flag(&cancel_returned, 300);
    pthread_mutex_unlock(&mu);
    atomic_store(&wake_done, 1);
}

static struct store *shared;
static int pushed_rc; /* of push_hello, read after the join */

static void *push_hello(void *arg)
{
    (void)arg;
    pushed_rc = push(shared, "q", "hello", 0);
    return NULL;
}

static void test_cancel_waits_for_the_wake(void)
{
    shared = store_create(NULL);
    struct test_waiter t = {.w = {.wake = slow_wake}};
    CHECK_EQ(store_pop(shared, "q", 0, fresh(), &t.w), 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, push_hello, NULL) == 0);
    pthread_mutex_lock(&mu);
    CHECK(wait_flag(&wake_started, 10000)); /* taken off the queue, wake running */
    pthread_mutex_unlock(&mu);

    CHECK_EQ(store_cancel_wait(shared, &t.w), 0); /* too late: it was handed the value */
    int done_when_cancel_returned = atomic_load(&wake_done);
    pthread_mutex_lock(&mu);
    cancel_returned = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    /* Returning 0 while the wake still ran would let the owner look for the value too early,
     * or free the waiter under it. */
    CHECK(done_when_cancel_returned == 1);
    CHECK_STR(t.value, "hello");
    pthread_join(th, NULL);
    CHECK_EQ(pushed_rc, 0);                         /* handed, not queued */
    CHECK_EQ(store_list_length(shared, "q", 0), 0);
    store_destroy(shared);
    shared = NULL;
}

/* Stress: one thread pops with a waiter and cancels after a varying delay, another pushes one
 * numbered value per round. Every value must end up exactly once: popped directly, handed to a
 * waiter (whose cancel then said 0), or left in the list. The waiter is freed right after its
 * cancel, so a wake after that is a use after free (ASan) or a race (TSan). */
struct owned_waiter {
    struct store_waiter w;
    atomic_int wakes;
    int value;
};

static void owned_wake(struct store_waiter *w, const char *value, size_t len)
{
    struct owned_waiter *o = container_of(w, struct owned_waiter, w);
    for (int i = 0; i < 20; i++)
        sched_yield(); /* widen the window between the hand-over and the wake's end */
    char text[16] = {0};
    memcpy(text, value, len < sizeof text - 1 ? len : sizeof text - 1);
    o->value = atoi(text);
    atomic_fetch_add(&o->wakes, 1);
}

/* Rounds start and end on two counters the threads spin on (yielding): a barrier's futex
 * wake-up would let the pusher run first nearly every time. */
static atomic_int round_started, round_pushed;
static int stress_rounds;
static int push_failures; /* of the pusher, read after the join */

static void spin_until(atomic_int *counter, int value)
{
    while (atomic_load(counter) < value)
        sched_yield();
}

static void *pusher(void *arg)
{
    (void)arg;
    for (int i = 0; i < stress_rounds; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        spin_until(&round_started, i + 1);
        for (int k = 0; k < (i * 7) % 23; k++)
            sched_yield();
        if (push(shared, "q", v, 0) < 0)
            push_failures++;
        atomic_store(&round_pushed, i + 1);
    }
    return NULL;
}

static void test_handover_stress(void)
{
    const char *e = getenv("STORE_STRESS_ROUNDS");
    stress_rounds = e && atoi(e) > 0 ? atoi(e) : 3000;
    shared = store_create(NULL);
    int *seen = calloc((size_t)stress_rounds, sizeof *seen);
    int popped = 0, handed = 0, raced = 0, cancelled = 0, left = 0, bad = 0;
    struct buffer b = {0};
    pthread_t th;
    atomic_store(&round_started, 0);
    atomic_store(&round_pushed, 0);
    CHECK(pthread_create(&th, NULL, pusher, NULL) == 0);
    for (int i = 0; i < stress_rounds; i++) {
        struct owned_waiter *o = calloc(1, sizeof *o);
        o->w.wake = owned_wake;
        atomic_store(&round_started, i + 1);
        if (i % 7 == 0)
            for (int k = 0; k < 15; k++)
                sched_yield(); /* now and then the push comes first */
        b.len = 0;
        int rc = store_pop(shared, "q", 0, &b, &o->w);
        if (rc == 1) {
            popped++;
            seen[atoi(b.data)]++;
        } else if (rc == 0) {
            for (int k = 0; k < (i * 3) % 29; k++)
                sched_yield();
            int woken_before = atomic_load(&o->wakes);
            if (store_cancel_wait(shared, &o->w)) {
                cancelled++;
                if (atomic_load(&o->wakes) != 0)
                    bad++;
            } else {
                handed++;
                raced += woken_before == 0; /* the wake was still to finish when cancel began */
                if (atomic_load(&o->wakes) != 1)
                    bad++; /* told "handed" before the wake had returned */
                else
                    seen[o->value]++;
            }
        } else {
            bad++;
        }
        free(o);
        o = NULL;
        spin_until(&round_pushed, i + 1); /* this round's push has returned */
        for (;;) { /* a value that went to the list: each round starts with an empty one */
            b.len = 0;
            if (store_pop(shared, "q", 0, &b, NULL) != 1)
                break;
            seen[atoi(b.data)]++;
            left++;
        }
    }
    pthread_join(th, NULL);
    int lost = 0, doubled = 0;
    for (int i = 0; i < stress_rounds; i++) {
        lost += seen[i] == 0;
        doubled += seen[i] > 1;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(push_failures, 0);
    CHECK_EQ(lost, 0);
    CHECK_EQ(doubled, 0);
    CHECK_EQ(popped + handed + left, stress_rounds);
    CHECK_EQ(stats(shared).waiters, 0);
    CHECK_EQ(stats(shared).keys, 0);
    fprintf(stderr, "stress: %d rounds: %d popped, %d handed to a waiter (%d with the cancel "
                    "racing the wake), %d cancelled in the queue, %d left in the list\n",
            stress_rounds, popped, handed, raced, cancelled, left);
    buffer_free(&b);
    free(seen);
    store_destroy(shared);
    shared = NULL;
}

/* ---- numbers (printed, not asserted) -------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct bench_arg {
    int id;
    size_t ops;
};

static void *bench_thread(void *p)
{
    struct bench_arg *a = p;
    struct buffer b = {0};
    char key[32];
    for (size_t i = 0; i < a->ops; i++) {
        snprintf(key, sizeof key, "t%d:%zu", a->id, i % 50000);
        if (i % 4 == 0)
            store_set(shared, key, "value-of-some-size", 18, 0, 0, 0);
        else {
            b.len = 0;
            store_get(shared, key, 0, &b);
        }
    }
    buffer_free(&b);
    return NULL;
}

static void bench(void)
{
    size_t n = bench_keys();
    char (*keys)[32] = malloc(n * sizeof *keys);
    for (size_t i = 0; i < n; i++)
        snprintf(keys[i], sizeof keys[i], "session:%zu", i);
    /* what malloc hands out, to compare with what the store counts (glibc; 0 under ASan) */
    struct mallinfo2 m0 = mallinfo2();
    struct store *s = store_create(NULL);
    double worst = 0, t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        double a = (i & 1023) == 0 || (i & (i - 1)) == 0 || ((i + 1) & i) == 0 ? now_s() : 0;
        store_set(s, keys[i], "value-of-some-size", 18, 0, 0, 0);
        if (a > 0 && now_s() - a > worst)
            worst = now_s() - a;
    }
    double t1 = now_s();
    struct buffer b = {0};
    for (size_t i = 0; i < n; i++) {
        b.len = 0;
        store_get(s, keys[(i * 7919) % n], 0, &b);
    }
    double t2 = now_s();
    struct store_stats st;
    store_stats(s, &st);
    struct mallinfo2 m1 = mallinfo2();
    double used = (double)(m1.uordblks + m1.hblkhd) - (double)(m0.uordblks + m0.hblkhd);
    fprintf(stderr, "bench: %zu keys, one thread: set %.0f ops/s, get %.0f ops/s; %zu bytes "
                    "counted (%.0f per key), malloc'ed %.0f (%.0f per key); slowest sampled set "
                    "%.3f ms\n",
            n, (double)n / (t1 - t0), (double)n / (t2 - t1), st.bytes, (double)st.bytes / (double)n,
            used, used / (double)n, worst * 1e3);
    buffer_free(&b);
    free(keys);
    store_destroy(s);

    /* contention: 1 then 2 threads, 1 set : 3 gets, on one store */
    for (int threads = 1; threads <= 2; threads++) {
        shared = store_create(NULL);
        pthread_t th[2];
        struct bench_arg args[2] = {{0, n}, {1, n}};
        double a = now_s();
        for (int i = 0; i < threads; i++)
            pthread_create(&th[i], NULL, bench_thread, &args[i]);
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        double d = now_s() - a;
        fprintf(stderr, "bench: %d thread(s), 1 set : 3 gets: %.0f ops/s in all\n", threads,
                (double)n * threads / d);
        store_destroy(shared);
        shared = NULL;
    }
}

int main(void)
{
    test_strings();
    test_add();
    test_key_limits();
    test_value_limits();
    test_ttl();
    test_sweep();
    test_incr();
    test_del();
    test_lists();
    test_waiters();
    test_eviction();
    test_eviction_lists();
    test_accounting();
    test_many_keys();
    test_cancel_waits_for_the_wake();
    test_handover_stress();
    bench();
    buffer_free(&got);
    return CHECK_DONE();
}
