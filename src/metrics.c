/* SPDX-License-Identifier: MIT */
/* metrics: see metrics.h.
 *
 * A shard holds every counter a worker writes; histograms keep one count per bucket (not
 * cumulative) and their sum in nanoseconds, so an observation is two atomic adds. Shards are
 * allocated when a worker binds and kept for the life of the process (counters never go back).
 * Interned label values are published with a release store of the table's count: a reader that
 * loads the count with acquire sees every name below it, with no lock. */
#include "metrics.h"

#include "buffer.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds, from a quick answer to the response timeout's range. */
static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,  5,     10,   30,  60};
#define N_BOUNDS (sizeof latency_bounds / sizeof latency_bounds[0])

#define CHANNEL_SLOTS (METRICS_MAX_CHANNELS + 2) /* 0: none, then the names, then "other" */
#define HOST_SLOTS (METRICS_MAX_HOSTS + 1)       /* the names, then "other" */
#define STATUS_CLASSES 6                         /* [1..5]: 1xx..5xx; [0]: anything else */
#define OUTBOUND_CLASSES 7                       /* as above, and [6]: no answer */
#define OUTBOUND_NO_ANSWER 6

struct histogram {
    atomic_ulong buckets[N_BOUNDS + 1]; /* the last one is +Inf */
    atomic_ulong sum_ns;
};

struct shard {
    atomic_ulong requests[CHANNEL_SLOTS][STATUS_CLASSES];
    struct histogram request_seconds[CHANNEL_SLOTS];
    struct histogram message_seconds;
    atomic_ulong bot_failures[BOT_FAILURE_KINDS];
    atomic_long requests_in_flight, messages_in_flight, connections, websockets;
    atomic_ulong outbound[HOST_SLOTS][OUTBOUND_CLASSES];
};

static struct shard shared_shard;
static _Atomic(struct shard *) worker_shards[METRICS_MAX_WORKERS];
static _Thread_local struct shard *my_shard;

static atomic_ulong reloads[2][2]; /* [trigger][ok] */
static atomic_ulong order_events[ORDER_EVENTS]; /* rare: one shared counter each */
static atomic_ulong inbox_events[INBOX_EVENTS]; /* once per async message: shared, uncontended
                                                  * enough next to a Redis round trip */
static atomic_long inbox_pending;

static struct {
    atomic_uint generation;
    atomic_size_t bytes;
} lua_memory[METRICS_MAX_WORKERS][METRICS_STATE_SLOTS];

/* ---- interned label values ---------------------------------------------------------------- */

struct intern {
    pthread_mutex_t lock;
    atomic_size_t count;
    char *names[METRICS_MAX_HOSTS > METRICS_MAX_CHANNELS ? METRICS_MAX_HOSTS
                                                          : METRICS_MAX_CHANNELS];
    size_t capacity;
};

static struct intern channels = {PTHREAD_MUTEX_INITIALIZER, 0, {0}, METRICS_MAX_CHANNELS};
static struct intern hosts = {PTHREAD_MUTEX_INITIALIZER, 0, {0}, METRICS_MAX_HOSTS};

/* The index of name in t, adding it when there is room; t->capacity when the table is full
 * (or out of memory). */
static size_t intern(struct intern *t, const char *name)
{
    size_t n = atomic_load_explicit(&t->count, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(t->names[i], name) == 0)
            return i;
    if (n >= t->capacity)
        return t->capacity;
    pthread_mutex_lock(&t->lock);
    size_t i = 0;
    n = atomic_load_explicit(&t->count, memory_order_relaxed);
    for (; i < n && strcmp(t->names[i], name) != 0; i++)
        ;
    if (i == n && n < t->capacity) {
        t->names[n] = strdup(name);
        if (t->names[n])
            atomic_store_explicit(&t->count, n + 1, memory_order_release);
        else
            i = t->capacity;
    }
    pthread_mutex_unlock(&t->lock);
    return i;
}

int metrics_channel_id(const char *name)
{
    if (!name || !*name)
        return 0;
    return (int)intern(&channels, name) + 1;
}

const char *metrics_channel_name(int id)
{
    if (id <= 0)
        return "";
    size_t n = atomic_load_explicit(&channels.count, memory_order_acquire);
    return (size_t)id - 1 < n ? channels.names[id - 1] : "other";
}

static const char *const failure_names[BOT_FAILURE_KINDS] = {
    "refused", "timeout", "bad_status", "bad_json", "script_error", "deadline", "other"};

enum metrics_bot_failure metrics_bot_failure_kind(const char *name)
{
    for (int k = 0; name && k < BOT_FAILURE_OTHER; k++)
        if (strcmp(name, failure_names[k]) == 0)
            return (enum metrics_bot_failure)k;
    return BOT_FAILURE_OTHER;
}

/* ---- recording ------------------------------------------------------------------------------ */

static struct shard *shard(void) { return my_shard ? my_shard : &shared_shard; }

void metrics_bind_worker(unsigned index)
{
    if (index >= METRICS_MAX_WORKERS)
        return;
    struct shard *s = atomic_load(&worker_shards[index]);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return; /* the shared shard serves */
        struct shard *expected = NULL;
        if (!atomic_compare_exchange_strong(&worker_shards[index], &expected, s)) {
            free(s);
            s = expected;
        }
    }
    my_shard = s;
}

static void add(atomic_ulong *c, unsigned long n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

size_t metrics_bucket_index(const double *bounds, size_t n, double value)
{
    size_t i = 0;
    while (i < n && !(value <= bounds[i]))
        i++;
    return i;
}

static void observe(struct histogram *h, double seconds)
{
    if (!(seconds >= 0))
        seconds = 0;
    add(&h->buckets[metrics_bucket_index(latency_bounds, N_BOUNDS, seconds)], 1);
    add(&h->sum_ns, (unsigned long)(seconds * 1e9 + 0.5));
}

static int status_class(long status) { return status >= 100 && status < 600 ? (int)(status / 100) : 0; }

void metrics_request(int channel_id, int status, double seconds)
{
    if (channel_id < 0 || channel_id >= CHANNEL_SLOTS)
        channel_id = CHANNEL_SLOTS - 1;
    struct shard *s = shard();
    add(&s->requests[channel_id][status_class(status)], 1);
    observe(&s->request_seconds[channel_id], seconds);
}

void metrics_requests_in_flight_add(int delta)
{
    atomic_fetch_add_explicit(&shard()->requests_in_flight, delta, memory_order_relaxed);
}

void metrics_connections_add(int delta)
{
    atomic_fetch_add_explicit(&shard()->connections, delta, memory_order_relaxed);
}

void metrics_websocket_connections_add(int delta)
{
    atomic_fetch_add_explicit(&shard()->websockets, delta, memory_order_relaxed);
}

void metrics_message_begin(void)
{
    atomic_fetch_add_explicit(&shard()->messages_in_flight, 1, memory_order_relaxed);
}

void metrics_message_end(double seconds)
{
    struct shard *s = shard();
    atomic_fetch_sub_explicit(&s->messages_in_flight, 1, memory_order_relaxed);
    if (seconds >= 0)
        observe(&s->message_seconds, seconds);
}

void metrics_bot_failure(enum metrics_bot_failure kind)
{
    if ((int)kind < 0 || kind >= BOT_FAILURE_KINDS)
        kind = BOT_FAILURE_OTHER;
    add(&shard()->bot_failures[kind], 1);
}

void metrics_outbound(const char *host, long status)
{
    size_t slot = intern(&hosts, host && *host ? host : "other");
    int cls = status == 0 ? OUTBOUND_NO_ANSWER : status_class(status);
    add(&shard()->outbound[slot][cls], 1);
}

void metrics_reload(enum metrics_reload_trigger trigger, int ok)
{
    add(&reloads[trigger == RELOAD_SIGHUP][ok ? 1 : 0], 1);
}

void metrics_lua_memory(unsigned worker, unsigned slot, unsigned generation, size_t bytes)
{
    if (worker >= METRICS_MAX_WORKERS || slot >= METRICS_STATE_SLOTS)
        return;
    atomic_store_explicit(&lua_memory[worker][slot].bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&lua_memory[worker][slot].generation, generation, memory_order_relaxed);
}

/* ---- exposition ------------------------------------------------------------------------------ */

/* Shard i of the scrape: 0 the shared one, i > 0 worker i - 1's (NULL when it has none). */
static struct shard *shard_at(size_t i)
{
    return i == 0 ? &shared_shard : atomic_load(&worker_shards[i - 1]);
}

#define EACH_SHARD(s, i) \
    for (size_t i = 0; i <= METRICS_MAX_WORKERS; i++) \
        if (((s) = shard_at(i)) != NULL)

static unsigned long load(atomic_ulong *c) { return atomic_load_explicit(c, memory_order_relaxed); }

__attribute__((format(printf, 2, 3))) static int appendf(struct buffer *out, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    return buffer_append(out, text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

static int append(struct buffer *out, const char *text)
{
    return buffer_append(out, text, strlen(text));
}

int metrics_escape_label(struct buffer *out, const char *value)
{
    int rc = 0;
    for (const char *p = value; *p && rc == 0; p++) {
        if (*p == '\\')
            rc = append(out, "\\\\");
        else if (*p == '"')
            rc = append(out, "\\\"");
        else if (*p == '\n')
            rc = append(out, "\\n");
        else
            rc = buffer_append(out, p, 1);
    }
    return rc;
}

void metrics_format_double(char *out, size_t size, double v)
{
    if (isnan(v))
        snprintf(out, size, "NaN");
    else if (isinf(v))
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
    else
        snprintf(out, size, "%.10g", v);
}

static int family(struct buffer *out, const char *name, const char *type, const char *help)
{
    return appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels} value: `labels` is text already escaped ("" for none). */
static int sample(struct buffer *out, const char *name, const char *labels, const char *value)
{
    if (*labels)
        return appendf(out, "%s{%s} %s\n", name, labels, value);
    return appendf(out, "%s %s\n", name, value);
}

/* One label `key="value"` with the value escaped, into a fixed buffer (truncated values are
 * still well formed: the escape is never cut in half). */
static void label(char *out, size_t size, const char *key, const char *value)
{
    struct buffer b = {0};
    if (metrics_escape_label(&b, value) != 0 || b.len > size / 2) {
        buffer_free(&b);
        snprintf(out, size, "%s=\"other\"", key);
        return;
    }
    snprintf(out, size, "%s=\"%s\"", key, b.data ? b.data : "");
    buffer_free(&b);
}

static int counter_value(struct buffer *out, const char *name, const char *labels,
                         unsigned long v)
{
    char text[32];
    snprintf(text, sizeof text, "%lu", v);
    return sample(out, name, labels, text);
}

/* The histogram summed over the shards; `pick` selects it in a shard. */
static int histogram_samples(struct buffer *out, const char *name, const char *labels,
                             struct histogram *(*pick)(struct shard *, size_t), size_t arg)
{
    unsigned long counts[N_BOUNDS + 1] = {0}, sum_ns = 0;
    struct shard *s;
    EACH_SHARD(s, i) {
        struct histogram *h = pick(s, arg);
        for (size_t b = 0; b <= N_BOUNDS; b++)
            counts[b] += load(&h->buckets[b]);
        sum_ns += load(&h->sum_ns);
    }
    char series[768], bucket_name[160], le[32];
    unsigned long cumulative = 0;
    snprintf(bucket_name, sizeof bucket_name, "%s_bucket", name);
    int rc = 0;
    for (size_t b = 0; b <= N_BOUNDS && rc == 0; b++) {
        cumulative += counts[b];
        metrics_format_double(le, sizeof le, b < N_BOUNDS ? latency_bounds[b] : INFINITY);
        snprintf(series, sizeof series, "%s%sle=\"%s\"", labels, *labels ? "," : "", le);
        rc = counter_value(out, bucket_name, series, cumulative);
    }
    char value[48], sub[160];
    metrics_format_double(value, sizeof value, (double)sum_ns / 1e9);
    snprintf(sub, sizeof sub, "%s_sum", name);
    if (rc == 0)
        rc = sample(out, sub, labels, value);
    snprintf(sub, sizeof sub, "%s_count", name);
    if (rc == 0)
        rc = counter_value(out, sub, labels, cumulative);
    return rc;
}

static struct histogram *pick_request(struct shard *s, size_t channel)
{
    return &s->request_seconds[channel];
}

static struct histogram *pick_message(struct shard *s, size_t unused)
{
    (void)unused;
    return &s->message_seconds;
}

/* The channel slots to show: no channel, every interned name, "other" when it counted. */
static int channel_slot_shown(size_t slot, size_t named)
{
    if (slot <= named)
        return 1;
    if (slot != CHANNEL_SLOTS - 1)
        return 0;
    struct shard *s;
    EACH_SHARD(s, i) {
        for (int c = 0; c < STATUS_CLASSES; c++)
            if (load(&s->requests[slot][c]))
                return 1;
    }
    return 0;
}

static const char *const class_names[OUTBOUND_CLASSES] = {"other", "1xx", "2xx", "3xx",
                                                          "4xx",   "5xx", "error"};

static int write_requests(struct buffer *out)
{
    size_t named = atomic_load_explicit(&channels.count, memory_order_acquire);
    int rc = family(out, "switchboard_http_requests_total", "counter",
                    "Requests answered, by channel (empty: no channel) and status class.");
    for (size_t slot = 0; slot < CHANNEL_SLOTS && rc == 0; slot++) {
        if (!channel_slot_shown(slot, named))
            continue;
        char ch[400];
        label(ch, sizeof ch, "channel", metrics_channel_name((int)slot));
        for (int c = 0; c < STATUS_CLASSES && rc == 0; c++) {
            unsigned long total = 0;
            struct shard *s;
            EACH_SHARD(s, i) total += load(&s->requests[slot][c]);
            if (c == 0 && total == 0)
                continue; /* statuses outside 100-599 never happen in practice */
            char labels[480];
            snprintf(labels, sizeof labels, "%s,class=\"%s\"", ch, class_names[c]);
            rc = counter_value(out, "switchboard_http_requests_total", labels, total);
        }
    }
    if (rc == 0)
        rc = family(out, "switchboard_http_request_duration_seconds", "histogram",
                    "Seconds from a request's arrival to its answer (for a stream, to its start), "
                    "by channel.");
    for (size_t slot = 0; slot < CHANNEL_SLOTS && rc == 0; slot++) {
        if (!channel_slot_shown(slot, named))
            continue;
        char ch[400];
        label(ch, sizeof ch, "channel", metrics_channel_name((int)slot));
        rc = histogram_samples(out, "switchboard_http_request_duration_seconds", ch, pick_request,
                               slot);
    }
    return rc;
}

static int gauge_sum(struct buffer *out, const char *name, const char *help, size_t offset)
{
    long total = 0;
    struct shard *s;
    EACH_SHARD(s, i) total += atomic_load_explicit((atomic_long *)((char *)s + offset),
                                                   memory_order_relaxed);
    char value[32];
    snprintf(value, sizeof value, "%ld", total < 0 ? 0 : total);
    int rc = family(out, name, "gauge", help);
    return rc ? rc : sample(out, name, "", value);
}

int metrics_write_store(struct buffer *out, const struct metrics_store *st)
{
    static const struct {
        const char *name, *type, *help;
    } rows[] = {
        {"switchboard_store_keys", "gauge", "Keys in sb.store (the embedded store)."},
        {"switchboard_store_bytes", "gauge", "Bytes the keys of sb.store count against its cap."},
        {"switchboard_store_max_bytes", "gauge", "The cap of sb.store (server.store_max_bytes)."},
        {"switchboard_store_evictions_total", "counter",
         "Keys sb.store removed to make room before their expiry."},
        {"switchboard_store_expirations_total", "counter", "Expired keys sb.store removed."},
    };
    const unsigned long long values[] = {st->keys, st->bytes, st->max_bytes, st->evictions,
                                         st->expirations};
    int rc = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && rc == 0; i++) {
        char value[32];
        snprintf(value, sizeof value, "%llu", values[i]);
        rc = family(out, rows[i].name, rows[i].type, rows[i].help);
        if (rc == 0)
            rc = sample(out, rows[i].name, "", value);
    }
    return rc;
}

int metrics_write_store_redis(struct buffer *out, int up, unsigned long long reconnects)
{
    char value[32];
    int rc = family(out, "switchboard_store_redis_up", "gauge",
                    "1 when every worker is connected to the Redis of sb.store, else 0.");
    if (rc == 0)
        rc = sample(out, "switchboard_store_redis_up", "", up ? "1" : "0");
    if (rc == 0)
        rc = family(out, "switchboard_store_redis_reconnects_total", "counter",
                    "Connections to the Redis of sb.store made again after one was lost or "
                    "refused.");
    snprintf(value, sizeof value, "%llu", reconnects);
    if (rc == 0)
        rc = sample(out, "switchboard_store_redis_reconnects_total", "", value);
    static const struct {
        const char *name, *help;
    } order_rows[ORDER_EVENTS] = {
        {"switchboard_order_fallbacks_total",
         "Messages handled in their sender's turn on this host only, Redis being unreachable."},
        {"switchboard_order_leases_lost_total",
         "Senders' turns this host held whose lease ran out before the message ended."},
        {"switchboard_order_leases_expired_total",
         "Senders' turns taken over from a holder whose lease ran out (a host gone)."},
    };
    for (int i = 0; i < ORDER_EVENTS && rc == 0; i++) {
        snprintf(value, sizeof value, "%lu",
                 atomic_load_explicit(&order_events[i], memory_order_relaxed));
        rc = family(out, order_rows[i].name, "counter", order_rows[i].help);
        if (rc == 0)
            rc = sample(out, order_rows[i].name, "", value);
    }
    static const struct {
        const char *name, *help;
    } inbox_rows[INBOX_EVENTS] = {
        {"switchboard_inbox_appended_total",
         "Messages of async channels kept in the inbox stream before their answer."},
        {"switchboard_inbox_claimed_total",
         "Inbox entries this host claimed from a host that stopped renewing them."},
        {"switchboard_inbox_acked_total", "Inbox entries acknowledged once processed."},
        {"switchboard_inbox_unprotected_total",
         "Messages of async channels processed without the inbox, Redis being unreachable."},
        {"switchboard_inbox_dropped_total",
         "Inbox entries dropped unprocessed after too many deliveries."},
        {"switchboard_inbox_taken_over_total",
         "Inbox entries this host ran that another host claimed meanwhile."},
    };
    for (int i = 0; i < INBOX_EVENTS && rc == 0; i++) {
        snprintf(value, sizeof value, "%lu",
                 atomic_load_explicit(&inbox_events[i], memory_order_relaxed));
        rc = family(out, inbox_rows[i].name, "counter", inbox_rows[i].help);
        if (rc == 0)
            rc = sample(out, inbox_rows[i].name, "", value);
    }
    long pending = atomic_load_explicit(&inbox_pending, memory_order_relaxed);
    snprintf(value, sizeof value, "%ld", pending > 0 ? pending : 0);
    if (rc == 0)
        rc = family(out, "switchboard_inbox_pending", "gauge",
                    "Inbox entries this host holds and has not acknowledged yet.");
    if (rc == 0)
        rc = sample(out, "switchboard_inbox_pending", "", value);
    return rc;
}

void metrics_inbox(enum metrics_inbox_event event, unsigned long n)
{
    if (event >= 0 && event < INBOX_EVENTS)
        atomic_fetch_add_explicit(&inbox_events[event], n, memory_order_relaxed);
}

void metrics_inbox_pending_add(long delta)
{
    atomic_fetch_add_explicit(&inbox_pending, delta, memory_order_relaxed);
}

void metrics_order(enum metrics_order_event event)
{
    if (event >= 0 && event < ORDER_EVENTS)
        atomic_fetch_add_explicit(&order_events[event], 1, memory_order_relaxed);
}

static int write_bot(struct buffer *out)
{
    int rc = family(out, "switchboard_bot_message_duration_seconds", "histogram",
                    "Seconds one message spent in the bot (host.message_begin to message_end).");
    if (rc == 0)
        rc = histogram_samples(out, "switchboard_bot_message_duration_seconds", "", pick_message,
                               0);
    if (rc == 0)
        rc = family(out, "switchboard_bot_failures_total", "counter",
                    "Messages the bot failed on, by kind.");
    for (int k = 0; k < BOT_FAILURE_KINDS && rc == 0; k++) {
        unsigned long total = 0;
        struct shard *s;
        EACH_SHARD(s, i) total += load(&s->bot_failures[k]);
        char labels[64];
        snprintf(labels, sizeof labels, "kind=\"%s\"", failure_names[k]);
        rc = counter_value(out, "switchboard_bot_failures_total", labels, total);
    }
    return rc;
}

static int write_outbound(struct buffer *out)
{
    size_t named = atomic_load_explicit(&hosts.count, memory_order_acquire);
    int rc = family(out, "switchboard_outbound_requests_total", "counter",
                    "Outbound HTTP calls (sb.http.request, the HTTP bot), by host and status "
                    "class (error: no answer).");
    for (size_t slot = 0; slot < HOST_SLOTS && rc == 0; slot++) {
        if (slot >= named && slot != HOST_SLOTS - 1)
            continue;
        char host[400];
        label(host, sizeof host, "host", slot < named ? hosts.names[slot] : "other");
        for (int c = 0; c < OUTBOUND_CLASSES && rc == 0; c++) {
            unsigned long total = 0;
            struct shard *s;
            EACH_SHARD(s, i) total += load(&s->outbound[slot][c]);
            if (total == 0)
                continue;
            char labels[480];
            snprintf(labels, sizeof labels, "%s,class=\"%s\"", host, class_names[c]);
            rc = counter_value(out, "switchboard_outbound_requests_total", labels, total);
        }
    }
    return rc;
}

static int write_reloads(struct buffer *out)
{
    static const char *const triggers[2] = {"file_change", "sighup"};
    int rc = family(out, "switchboard_reloads_total", "counter",
                    "Reloads, by trigger and outcome.");
    for (int t = 0; t < 2 && rc == 0; t++) {
        for (int ok = 1; ok >= 0 && rc == 0; ok--) {
            char labels[64];
            snprintf(labels, sizeof labels, "trigger=\"%s\",outcome=\"%s\"", triggers[t],
                     ok ? "ok" : "rejected");
            rc = counter_value(out, "switchboard_reloads_total", labels, load(&reloads[t][ok]));
        }
    }
    return rc;
}

static int write_lua_memory(struct buffer *out)
{
    int rc = family(out, "switchboard_lua_memory_bytes", "gauge",
                    "Bytes in use by each Lua state, by worker and generation.");
    for (unsigned w = 0; w < METRICS_MAX_WORKERS && rc == 0; w++) {
        unsigned shown[METRICS_STATE_SLOTS];
        size_t n = 0;
        for (unsigned slot = 0; slot < METRICS_STATE_SLOTS && rc == 0; slot++) {
            unsigned gen = atomic_load_explicit(&lua_memory[w][slot].generation,
                                                memory_order_relaxed);
            size_t bytes = atomic_load_explicit(&lua_memory[w][slot].bytes, memory_order_relaxed);
            int seen = gen == 0;
            for (size_t k = 0; k < n && !seen; k++)
                seen = shown[k] == gen; /* a slot being rewritten: one series per label set */
            if (seen)
                continue;
            shown[n++] = gen;
            char labels[64], value[32];
            snprintf(labels, sizeof labels, "worker=\"%u\",generation=\"%u\"", w, gen);
            snprintf(value, sizeof value, "%zu", bytes);
            rc = sample(out, "switchboard_lua_memory_bytes", labels, value);
        }
    }
    return rc;
}

int metrics_write(struct buffer *out)
{
    int rc = write_requests(out);
    if (rc == 0)
        rc = gauge_sum(out, "switchboard_http_requests_in_flight",
                       "Requests handed to the engine and not answered yet.",
                       offsetof(struct shard, requests_in_flight));
    if (rc == 0)
        rc = gauge_sum(out, "switchboard_http_connections_open", "Open client connections.",
                       offsetof(struct shard, connections));
    if (rc == 0)
        rc = gauge_sum(out, "switchboard_websocket_connections_open",
                       "Open WebSocket connections.",
                       offsetof(struct shard, websockets));
    if (rc == 0)
        rc = gauge_sum(out, "switchboard_bot_messages_in_flight",
                       "Messages in the bot now (between host.message_begin and message_end).",
                       offsetof(struct shard, messages_in_flight));
    if (rc == 0)
        rc = write_bot(out);
    if (rc == 0)
        rc = write_outbound(out);
    if (rc == 0)
        rc = write_reloads(out);
    if (rc == 0)
        rc = write_lua_memory(out);
    return rc;
}
