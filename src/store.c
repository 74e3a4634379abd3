/* SPDX-License-Identifier: MIT */
/* store: see store.h.
 *
 * Layout: a hash table of entries (chained, power-of-two buckets, resized incrementally so no
 * single call pays for rehashing a million keys); each entry is also on exactly one eviction
 * structure: the min-heap of keys with a TTL (ordered by expiry, then by when the TTL was given)
 * or the LRU list of keys without one. Waiters live in a second, separate hash table of queues,
 * one per key that has waiters; it holds no values and is never evicted. */
#include "store.h"

#include "list.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- hash table with incremental resizing ------------------------------------------------- */

struct hnode {
    struct hnode *next;
    uint64_t hash;
    const char *key; /* the owner's copy */
    size_t klen;
};

struct htable {
    struct hnode **b;
    size_t size; /* a power of two; 0 when unallocated */
    size_t used;
};

/* While t[1] is allocated the table is being resized: buckets of t[0] below `moved` are empty,
 * their nodes now in t[1]; new nodes go to t[1]. Every call moves a few buckets on. */
struct hmap {
    struct htable t[2];
    size_t moved;
};

#define HMAP_MIN 16u
#define STEP_BUCKETS 8u  /* non-empty buckets moved per step */
#define STEP_VISITS 64u  /* buckets looked at per step at most */

static int htable_alloc(struct htable *t, size_t size)
{
    t->b = calloc(size, sizeof *t->b);
    if (!t->b)
        return -1;
    t->size = size;
    t->used = 0;
    return 0;
}

static size_t hmap_count(const struct hmap *h)
{
    return h->t[0].used + h->t[1].used;
}

static void hmap_step(struct hmap *h)
{
    struct htable *from = &h->t[0], *to = &h->t[1];
    if (!to->b)
        return;
    unsigned moves = STEP_BUCKETS, visits = STEP_VISITS;
    while (h->moved < from->size && moves && visits--) {
        struct hnode *n = from->b[h->moved];
        from->b[h->moved++] = NULL;
        if (n)
            moves--;
        while (n) {
            struct hnode *next = n->next;
            size_t i = n->hash & (to->size - 1);
            n->next = to->b[i];
            to->b[i] = n;
            from->used--;
            to->used++;
            n = next;
        }
    }
    if (h->moved == from->size) {
        free(from->b);
        *from = *to;
        *to = (struct htable){NULL, 0, 0};
        h->moved = 0;
    }
}

/* Start moving to `size` buckets; without memory the table just stays as it is. */
static void hmap_resize(struct hmap *h, size_t size)
{
    if (h->t[1].b || size == h->t[0].size || htable_alloc(&h->t[1], size) != 0)
        return;
    h->moved = 0;
}

static struct hnode *hmap_find(struct hmap *h, uint64_t hash, const char *key, size_t klen)
{
    hmap_step(h);
    for (int i = 0; i < 2 && h->t[i].b; i++)
        for (struct hnode *n = h->t[i].b[hash & (h->t[i].size - 1)]; n; n = n->next)
            if (n->hash == hash && n->klen == klen && memcmp(n->key, key, klen) == 0)
                return n;
    return NULL;
}

static void hmap_insert(struct hmap *h, struct hnode *n)
{
    struct htable *t = h->t[1].b ? &h->t[1] : &h->t[0];
    size_t i = n->hash & (t->size - 1);
    n->next = t->b[i];
    t->b[i] = n;
    t->used++;
    if (!h->t[1].b && hmap_count(h) >= h->t[0].size)
        hmap_resize(h, h->t[0].size * 2);
    hmap_step(h);
}

static void hmap_remove(struct hmap *h, struct hnode *n)
{
    for (int i = 0; i < 2 && h->t[i].b; i++) {
        struct hnode **link = &h->t[i].b[n->hash & (h->t[i].size - 1)];
        while (*link && *link != n)
            link = &(*link)->next;
        if (*link) {
            *link = n->next;
            h->t[i].used--;
            break;
        }
    }
    size_t count = hmap_count(h);
    if (!h->t[1].b && h->t[0].size > HMAP_MIN && count < h->t[0].size / 8) {
        size_t size = HMAP_MIN;
        while (size < count * 2)
            size *= 2;
        hmap_resize(h, size);
    }
    hmap_step(h);
}

static void hmap_free(struct hmap *h, void (*free_node)(struct hnode *n))
{
    for (int i = 0; i < 2; i++) {
        for (size_t b = 0; b < h->t[i].size; b++) {
            struct hnode *n = h->t[i].b[b];
            while (n) {
                struct hnode *next = n->next;
                free_node(n);
                n = next;
            }
        }
        free(h->t[i].b);
        h->t[i] = (struct htable){NULL, 0, 0};
    }
}

/* SipHash-1-3 with a random key per store: keys often come from outside (sender ids), and a
 * keyed hash keeps anyone from choosing keys that all land in one bucket. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                               \
    do {                                                                                       \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                             \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                 \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                 \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                             \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash13(const uint64_t k[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ull ^ k[0], v1 = 0x646f72616e646f6dull ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ k[0], v3 = 0x7465646279746573ull ^ k[1];
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = whole; i < len; i++)
        last |= (uint64_t)p[i] << (8 * (i - whole));
    v3 ^= last;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- entries, waiters, the store ------------------------------------------------------------ */

enum { T_STRING, T_LIST };

struct item {
    struct item *next;
    size_t len;
    char data[];
};

#define HEAP_NONE SIZE_MAX

struct entry {
    struct hnode node;
    struct entry *lru_prev, *lru_next; /* without a TTL: towards the most / least recently used */
    uint64_t expires_at;               /* 0: no TTL */
    uint64_t seq;                      /* when the TTL was given: orders equal expiries */
    size_t heap_slot;                  /* with a TTL: its index in the heap */
    size_t cost;                       /* what it counts against the cap, values included */
    int type;
    union {
        struct {
            char *data; /* len bytes and a NUL (incr parses it) */
            size_t len;
        } s;
        struct {
            struct item *head, *tail;
            size_t n;
        } l;
    } v;
    char key[];
};

struct store_waitq {
    struct hnode node;
    struct store_waiter *head, *tail;
    char key[];
};

/* A hand-over in flight: a waiter taken off its queue whose wake has not returned yet. It lives
 * on the pushing thread's stack, listed under the lock while that thread calls wake without it.
 * A cancel that no longer finds its waiter queued waits until the waiter is on no such list. */
struct hand_over {
    const struct store_waiter *waiter;
    struct hand_over *next;
};

struct store {
    pthread_mutex_t lock;
    pthread_cond_t hand_over_done;
    uint64_t hash_key[2];
    struct hmap keys;  /* of struct entry */
    struct hmap waits; /* of struct store_waitq */
    struct entry **heap;
    size_t heap_n, heap_cap;
    struct entry *lru_head, *lru_tail;
    uint64_t seq;
    size_t bytes, max_bytes, waiters;
    uint64_t evictions, expirations;
    struct hand_over *hand_overs;
};

/* ---- costs ---------------------------------------------------------------------------------- */

/* What malloc(n) takes (glibc on 64 bits: an 8-byte header, 16-byte granules, 32 at least). */
static size_t alloc_cost(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

/* A key's share of the tables: its bucket slot (the load stays at most 1) and a heap slot. */
#define TABLE_SHARE (2 * sizeof(void *))

size_t store_list_cost(size_t key_len)
{
    return alloc_cost(sizeof(struct entry) + key_len + 1) + TABLE_SHARE;
}

size_t store_string_cost(size_t key_len, size_t value_len)
{
    return store_list_cost(key_len) + alloc_cost(value_len + 1);
}

size_t store_item_cost(size_t value_len)
{
    return alloc_cost(sizeof(struct item) + value_len);
}

/* ---- the expiry heap and the LRU list ------------------------------------------------------ */

static int heap_before(const struct entry *a, const struct entry *b)
{
    return a->expires_at < b->expires_at || (a->expires_at == b->expires_at && a->seq < b->seq);
}

static void heap_put(struct store *s, size_t i, struct entry *e)
{
    s->heap[i] = e;
    e->heap_slot = i;
}

static void heap_up(struct store *s, size_t i)
{
    struct entry *e = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(e, s->heap[parent]))
            break;
        heap_put(s, i, s->heap[parent]);
        i = parent;
    }
    heap_put(s, i, e);
}

static void heap_down(struct store *s, size_t i)
{
    struct entry *e = s->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->heap_n)
            break;
        if (child + 1 < s->heap_n && heap_before(s->heap[child + 1], s->heap[child]))
            child++;
        if (!heap_before(s->heap[child], e))
            break;
        heap_put(s, i, s->heap[child]);
        i = child;
    }
    heap_put(s, i, e);
}

/* Room for one more key with a TTL. 0, or -1 when out of memory. */
static int heap_reserve(struct store *s)
{
    if (s->heap_n < s->heap_cap)
        return 0;
    size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
    struct entry **heap = realloc(s->heap, cap * sizeof *heap);
    if (!heap)
        return -1;
    s->heap = heap;
    s->heap_cap = cap;
    return 0;
}

static void heap_remove(struct store *s, struct entry *e)
{
    size_t i = e->heap_slot;
    struct entry *last = s->heap[--s->heap_n];
    e->heap_slot = HEAP_NONE;
    if (last != e) {
        heap_put(s, i, last);
        heap_down(s, i);
        heap_up(s, last->heap_slot);
    }
    if (s->heap_cap > 64 && s->heap_n < s->heap_cap / 4) {
        struct entry **heap = realloc(s->heap, s->heap_cap / 2 * sizeof *heap);
        if (heap) {
            s->heap = heap;
            s->heap_cap /= 2;
        }
    }
}

/* Put e on its eviction structure: the heap when it has a TTL (heap_reserve first), else the
 * LRU list as the most recently used. */
static void attach(struct store *s, struct entry *e)
{
    if (e->expires_at) {
        heap_put(s, s->heap_n++, e);
        heap_up(s, e->heap_slot);
        return;
    }
    LIST_PUSH(s->lru_head, e, lru_prev, lru_next);
    if (!s->lru_tail)
        s->lru_tail = e;
}

static void detach(struct store *s, struct entry *e)
{
    if (e->expires_at) {
        heap_remove(s, e);
        return;
    }
    LIST_UNLINK_TAIL(s->lru_head, s->lru_tail, e, lru_prev, lru_next);
}

/* A successful use: a key without a TTL becomes the most recently used. */
static void touch(struct store *s, struct entry *e)
{
    if (!e->expires_at && s->lru_head != e) {
        detach(s, e);
        attach(s, e);
    }
}

/* Set e's expiry (not on any structure now): ttl 0 none, else now + ttl (saturating). */
static void set_expiry(struct store *s, struct entry *e, uint64_t ttl_ms, uint64_t now_ms)
{
    if (!ttl_ms) {
        e->expires_at = 0;
        return;
    }
    e->expires_at = now_ms > UINT64_MAX - ttl_ms ? UINT64_MAX : now_ms + ttl_ms;
    e->seq = ++s->seq;
}

/* ---- entries -------------------------------------------------------------------------------- */

static void free_value(struct entry *e)
{
    if (e->type == T_STRING) {
        free(e->v.s.data);
        e->v.s.data = NULL;
        return;
    }
    struct item *it = e->v.l.head;
    while (it) {
        struct item *next = it->next;
        free(it);
        it = next;
    }
    e->v.l.head = e->v.l.tail = NULL;
    e->v.l.n = 0;
}

static void free_entry_node(struct hnode *n)
{
    struct entry *e = (struct entry *)n;
    free_value(e);
    free(e);
}

static void free_waitq_node(struct hnode *n)
{
    free(n);
}

/* A new entry of no type yet, not in the table. NULL when out of memory. */
static struct entry *entry_new(const char *key, size_t klen, uint64_t hash)
{
    struct entry *e = calloc(1, sizeof *e + klen + 1);
    if (!e)
        return NULL;
    memcpy(e->key, key, klen + 1);
    e->node.hash = hash;
    e->node.key = e->key;
    e->node.klen = klen;
    e->heap_slot = HEAP_NONE;
    e->type = T_STRING;
    return e;
}

static void entry_remove(struct store *s, struct entry *e)
{
    hmap_remove(&s->keys, &e->node);
    detach(s, e);
    s->bytes -= e->cost;
    free_entry_node(&e->node);
}

static int expired(const struct entry *e, uint64_t now_ms)
{
    return e->expires_at && e->expires_at <= now_ms;
}

/* The live entry for key, removing it when it has expired. */
static struct entry *lookup(struct store *s, const char *key, size_t klen, uint64_t hash,
                            uint64_t now_ms)
{
    struct entry *e = (struct entry *)hmap_find(&s->keys, hash, key, klen);
    if (e && expired(e, now_ms)) {
        entry_remove(s, e);
        s->expirations++;
        e = NULL;
    }
    return e;
}

/* Evict until `extra` more bytes fit under the cap. The key being written is detached (on no
 * eviction structure), so it is never chosen; the caller checked that it fits on its own. */
static void make_room(struct store *s, size_t extra, uint64_t now_ms)
{
    while (s->max_bytes && s->bytes + extra > s->max_bytes) {
        struct entry *victim = s->heap_n ? s->heap[0] : s->lru_tail;
        if (!victim)
            break;
        if (expired(victim, now_ms))
            s->expirations++;
        else
            s->evictions++;
        entry_remove(s, victim);
    }
}

/* Bytes `to` adds over `from` (0 when it shrinks). */
static size_t growth(size_t from, size_t to)
{
    return to > from ? to - from : 0;
}

/* The key's length, or -1 when it is too long. */
static long key_length(const char *key)
{
    size_t n = strnlen(key, STORE_MAX_KEY + 1);
    return n > STORE_MAX_KEY ? -1 : (long)n;
}

static uint64_t key_hash(const struct store *s, const char *key, size_t klen)
{
    return siphash13(s->hash_key, key, klen);
}

/* ---- the store ------------------------------------------------------------------------------ */

struct store *store_create(const struct store_limits *limits)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (htable_alloc(&s->keys.t[0], HMAP_MIN) != 0 || htable_alloc(&s->waits.t[0], HMAP_MIN) != 0) {
        free(s->keys.t[0].b);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->hand_over_done, NULL);
    if (getrandom(s->hash_key, sizeof s->hash_key, GRND_NONBLOCK) != (ssize_t)sizeof s->hash_key) {
        /* No entropy yet (early boot): a weaker key is still a key. */
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        s->hash_key[0] = (uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)s;
        s->hash_key[1] = (uint64_t)t.tv_sec * 0xc2b2ae3d27d4eb4full ^ (uint64_t)(uintptr_t)&t;
    }
    s->max_bytes = limits ? limits->max_bytes : 0;
    return s;
}

void store_destroy(struct store *s)
{
    if (!s)
        return;
    hmap_free(&s->keys, free_entry_node);
    hmap_free(&s->waits, free_waitq_node);
    free(s->heap);
    s->heap = NULL;
    pthread_cond_destroy(&s->hand_over_done);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int store_get(struct store *s, const char *key, uint64_t now_ms, struct buffer *out)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (!e)
        rc = 0;
    else if (e->type != T_STRING)
        rc = STORE_WRONGTYPE;
    else if (buffer_append(out, e->v.s.data, e->v.s.len) != 0)
        rc = STORE_NOMEM;
    else {
        touch(s, e);
        rc = 1;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Replace e's value (or fill a fresh entry) with the string data/len it now owns. The entry
 * is detached; the caller attaches it. */
static void install_string(struct store *s, struct entry *e, char *data, size_t len, size_t cost)
{
    s->bytes -= e->cost;
    free_value(e);
    e->type = T_STRING;
    e->v.s.data = data;
    e->v.s.len = len;
    e->cost = cost;
    s->bytes += cost;
}

/* The common end of set and incr: e (existing, detached) or fresh (new) gets data; room is made
 * first. Returns the entry, detached. */
static struct entry *write_string(struct store *s, struct entry *e, struct entry *fresh,
                                  char *data, size_t len, size_t cost, uint64_t now_ms)
{
    make_room(s, growth(e ? e->cost : 0, cost), now_ms);
    if (!e) {
        e = fresh;
        hmap_insert(&s->keys, &e->node);
    }
    install_string(s, e, data, len, cost);
    return e;
}

int store_set(struct store *s, const char *key, const void *v, size_t len, uint64_t ttl_ms,
              int only_if_absent, uint64_t now_ms)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    if (len > STORE_MAX_VALUE)
        return STORE_TOOBIG;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    size_t cost = store_string_cost((size_t)klen, len);
    if (s->max_bytes && cost > s->max_bytes)
        return STORE_TOOBIG; /* max_bytes never changes: no lock needed */

    /* The copy is made before the lock: a big value is not copied while others wait. */
    char *data = malloc(len + 1);
    if (!data)
        return STORE_NOMEM;
    if (len)
        memcpy(data, v, len);
    data[len] = '\0';

    int rc = 1;
    struct entry *fresh = NULL;
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (e && only_if_absent) {
        rc = 0;
    } else if (!e && !(fresh = entry_new(key, (size_t)klen, hash))) {
        rc = STORE_NOMEM;
    } else if (ttl_ms && heap_reserve(s) != 0) {
        rc = STORE_NOMEM;
    } else {
        if (e)
            detach(s, e);
        e = write_string(s, e, fresh, data, len, cost, now_ms);
        data = NULL;
        fresh = NULL;
        set_expiry(s, e, ttl_ms, now_ms);
        attach(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    free(fresh);
    free(data);
    return rc;
}

/* An optional '-' and decimal digits, within int64. */
static int parse_int64(const char *p, size_t len, int64_t *out)
{
    int neg = len > 0 && p[0] == '-';
    size_t i = (size_t)neg;
    if (i == len)
        return -1;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    /* -(v) without overflow for v == 2^63 */
    *out = neg ? (v ? -(int64_t)(v - 1) - 1 : 0) : (int64_t)v;
    return 0;
}

int store_incr(struct store *s, const char *key, int64_t by, uint64_t now_ms, int64_t *result)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    int rc = 0;
    int64_t cur = 0, sum = 0;
    char text[24];
    struct entry *fresh = NULL;
    char *data = NULL;
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (e && (e->type != T_STRING || parse_int64(e->v.s.data, e->v.s.len, &cur) != 0)) {
        rc = STORE_WRONGTYPE;
        goto out;
    }
    if (__builtin_add_overflow(cur, by, &sum)) {
        rc = STORE_WRONGTYPE;
        goto out;
    }
    size_t len = (size_t)snprintf(text, sizeof text, "%" PRId64, sum);
    size_t cost = store_string_cost((size_t)klen, len);
    if (s->max_bytes && cost > s->max_bytes) {
        rc = STORE_TOOBIG;
        goto out;
    }
    data = malloc(len + 1);
    if (!data || (!e && !(fresh = entry_new(key, (size_t)klen, hash)))) {
        rc = STORE_NOMEM;
        goto out;
    }
    memcpy(data, text, len + 1);
    if (e)
        detach(s, e); /* its TTL is kept; attach puts it back where it was */
    e = write_string(s, e, fresh, data, len, cost, now_ms);
    data = NULL;
    fresh = NULL;
    attach(s, e);
    *result = sum;
out:
    pthread_mutex_unlock(&s->lock);
    free(fresh);
    free(data);
    return rc;
}

int store_del(struct store *s, const char *key, uint64_t now_ms)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (e)
        entry_remove(s, e);
    pthread_mutex_unlock(&s->lock);
    return e ? 1 : 0;
}

int store_expire(struct store *s, const char *key, uint64_t ttl_ms, uint64_t now_ms)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (!e) {
        rc = 0;
    } else if (ttl_ms && !e->expires_at && heap_reserve(s) != 0) {
        rc = STORE_NOMEM;
    } else {
        detach(s, e);
        set_expiry(s, e, ttl_ms, now_ms);
        attach(s, e);
        rc = 1;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int store_ttl(struct store *s, const char *key, uint64_t now_ms, int64_t *ms_left)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (e) {
        uint64_t left = e->expires_at ? e->expires_at - now_ms : 0;
        *ms_left = !e->expires_at ? -1 : left > INT64_MAX ? INT64_MAX : (int64_t)left;
        touch(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    return e ? 1 : 0;
}

/* ---- lists and waiters ---------------------------------------------------------------------- */

static void waiter_unlink(struct store *s, struct store_waiter *w)
{
    struct store_waitq *q = w->queue_;
    LIST_UNLINK_TAIL(q->head, q->tail, w, prev_, next_);
    w->queue_ = NULL;
    s->waiters--;
    if (!q->head) {
        hmap_remove(&s->waits, &q->node);
        free(q);
    }
}

static int handing_over(const struct store *s, const struct store_waiter *w)
{
    for (const struct hand_over *h = s->hand_overs; h; h = h->next)
        if (h->waiter == w)
            return 1;
    return 0;
}

int store_push(struct store *s, const char *key, const void *v, size_t len, uint64_t now_ms)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    if (len > STORE_MAX_VALUE)
        return STORE_TOOBIG;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    size_t item_cost = store_item_cost(len), base = store_list_cost((size_t)klen);
    if (s->max_bytes && base + item_cost > s->max_bytes)
        return STORE_TOOBIG;

    /* The copy is made before the lock; a waiter may make it unneeded. */
    struct item *it = malloc(sizeof *it + len);
    if (!it)
        return STORE_NOMEM;
    it->next = NULL;
    it->len = len;
    if (len)
        memcpy(it->data, v, len);

    int rc;
    struct entry *fresh = NULL;
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    struct store_waitq *q = NULL;
    if (e && e->type != T_LIST) {
        rc = STORE_WRONGTYPE;
    } else if (!e && (q = (struct store_waitq *)hmap_find(&s->waits, hash, key, (size_t)klen))) {
        /* Hand the value to the oldest waiter (a key with waiters holds no list). */
        struct store_waiter *w = q->head;
        waiter_unlink(s, w);
        struct hand_over self = {w, s->hand_overs};
        s->hand_overs = &self;
        pthread_mutex_unlock(&s->lock);
        w->wake(w, it->data, len); /* outside the lock: it takes its worker's locks */
        pthread_mutex_lock(&s->lock);
        struct hand_over **link = &s->hand_overs;
        while (*link != &self)
            link = &(*link)->next;
        *link = self.next;
        pthread_cond_broadcast(&s->hand_over_done);
        rc = 0;
    } else if (e && s->max_bytes && e->cost + item_cost > s->max_bytes) {
        rc = STORE_TOOBIG;
    } else if (e && e->v.l.n >= INT_MAX) {
        rc = STORE_NOMEM; /* the length could not be returned */
    } else if (!e && !(fresh = entry_new(key, (size_t)klen, hash))) {
        rc = STORE_NOMEM;
    } else {
        if (e)
            detach(s, e);
        make_room(s, item_cost + (e ? 0 : base), now_ms);
        if (!e) {
            e = fresh;
            fresh = NULL;
            e->type = T_LIST;
            e->cost = base;
            s->bytes += base;
            hmap_insert(&s->keys, &e->node);
        }
        if (e->v.l.tail)
            e->v.l.tail->next = it;
        else
            e->v.l.head = it;
        e->v.l.tail = it;
        e->v.l.n++;
        e->cost += item_cost;
        s->bytes += item_cost;
        it = NULL;
        attach(s, e);
        rc = (int)e->v.l.n;
    }
    pthread_mutex_unlock(&s->lock);
    free(fresh);
    free(it);
    return rc;
}

int store_pop(struct store *s, const char *key, uint64_t now_ms, struct buffer *out,
              struct store_waiter *w)
{
    long klen = key_length(key);
    if (klen < 0) {
        if (w)
            w->queue_ = NULL; /* not waiting: a cancel answers 0 */
        return STORE_BADKEY;
    }
    uint64_t hash = key_hash(s, key, (size_t)klen);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (w)
        w->queue_ = NULL;
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (e && e->type != T_LIST) {
        rc = STORE_WRONGTYPE;
    } else if (e) {
        struct item *it = e->v.l.head;
        if (buffer_append(out, it->data, it->len) != 0) {
            rc = STORE_NOMEM;
        } else {
            e->v.l.head = it->next;
            if (!e->v.l.head)
                e->v.l.tail = NULL;
            e->v.l.n--;
            size_t c = store_item_cost(it->len);
            e->cost -= c;
            s->bytes -= c;
            free(it);
            if (e->v.l.n == 0)
                entry_remove(s, e);
            else
                touch(s, e);
            rc = 1;
        }
    } else if (w) {
        struct store_waitq *q = (struct store_waitq *)hmap_find(&s->waits, hash, key, (size_t)klen);
        if (!q && (q = calloc(1, sizeof *q + (size_t)klen + 1))) {
            memcpy(q->key, key, (size_t)klen + 1);
            q->node.hash = hash;
            q->node.key = q->key;
            q->node.klen = (size_t)klen;
            hmap_insert(&s->waits, &q->node);
        }
        if (!q) {
            rc = STORE_NOMEM;
        } else {
            LIST_APPEND(q->head, q->tail, w, prev_, next_);
            w->queue_ = q;
            s->waiters++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int store_cancel_wait(struct store *s, struct store_waiter *w)
{
    int removed = 0;
    pthread_mutex_lock(&s->lock);
    if (w->queue_) {
        waiter_unlink(s, w);
        removed = 1;
    }
    /* Handed a value already: return once its wake has (see struct hand_over). */
    while (!removed && handing_over(s, w))
        pthread_cond_wait(&s->hand_over_done, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return removed;
}

int store_list_length(struct store *s, const char *key, uint64_t now_ms)
{
    long klen = key_length(key);
    if (klen < 0)
        return STORE_BADKEY;
    uint64_t hash = key_hash(s, key, (size_t)klen);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    struct entry *e = lookup(s, key, (size_t)klen, hash, now_ms);
    if (e && e->type != T_LIST) {
        rc = STORE_WRONGTYPE;
    } else if (e) {
        rc = (int)e->v.l.n;
        touch(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- upkeep --------------------------------------------------------------------------------- */

unsigned store_sweep(struct store *s, uint64_t now_ms, unsigned budget)
{
    unsigned n = 0;
    pthread_mutex_lock(&s->lock);
    while (n < budget && s->heap_n && expired(s->heap[0], now_ms)) {
        entry_remove(s, s->heap[0]);
        s->expirations++;
        n++;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void store_stats(struct store *s, struct store_stats *out)
{
    pthread_mutex_lock(&s->lock);
    out->keys = hmap_count(&s->keys);
    out->bytes = s->bytes;
    out->max_bytes = s->max_bytes;
    out->waiters = s->waiters;
    out->evictions = s->evictions;
    out->expirations = s->expirations;
    pthread_mutex_unlock(&s->lock);
}
