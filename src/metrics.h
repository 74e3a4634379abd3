/* SPDX-License-Identifier: MIT */
/* metrics: the host's counters, gauges and histograms, and their text in the Prometheus
 * exposition format 0.0.4 for GET /metrics (docs/operations.md).
 *
 * One registry per process. Each engine worker writes into a shard of its own (bound with
 * metrics_bind_worker); every other thread (the main thread: reloads, startup hooks) writes into
 * a shared shard. A shard's fields are relaxed atomics, so a write is one uncontended atomic add
 * and takes no lock; a scrape sums the shards. Label values that are not known in advance
 * (channel names, outbound hosts) are interned into a bounded table each: past its capacity
 * they count as "other". Plain C: nothing of Lua or HTTP libraries.
 * Uses: buffer. */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buffer;

/* Distinct channel names and outbound hosts kept as label values; others count as "other". */
#define METRICS_MAX_CHANNELS 64
#define METRICS_MAX_HOSTS 64
/* Workers with a shard of their own (more share the shared shard: still correct, only slower). */
#define METRICS_MAX_WORKERS 256

/* The kinds of bot failure host.bot_failure(kind) counts. */
enum metrics_bot_failure {
    BOT_FAILURE_REFUSED,
    BOT_FAILURE_TIMEOUT,
    BOT_FAILURE_BAD_STATUS,
    BOT_FAILURE_BAD_JSON,
    BOT_FAILURE_SCRIPT_ERROR,
    BOT_FAILURE_DEADLINE,
    BOT_FAILURE_OTHER,
    BOT_FAILURE_KINDS
};

enum metrics_reload_trigger { RELOAD_FILE_CHANGE, RELOAD_SIGHUP };

/* ---- label values ----------------------------------------------------------------------------- */

/* The id of a channel name for metrics_request (1..METRICS_MAX_CHANNELS; METRICS_MAX_CHANNELS + 1
 * is "other"); 0 is "no channel" (NULL or ""). Lock-free for names seen before. */
int metrics_channel_id(const char *name);
/* The name of a channel id ("" for 0, "other" past the table). */
const char *metrics_channel_name(int id);
/* "refused", "timeout", ... -> its kind; anything else is BOT_FAILURE_OTHER. */
enum metrics_bot_failure metrics_bot_failure_kind(const char *name);

/* ---- recording (any thread) ------------------------------------------------------------------- */

/* This thread is engine worker `index`: it writes into a shard of its own from now on. */
void metrics_bind_worker(unsigned index);

/* An answered request: its channel id, status and seconds from arrival to the answer. */
void metrics_request(int channel_id, int status, double seconds);
/* Requests handed to the engine and not answered yet (+1 / -1). */
void metrics_requests_in_flight_add(int delta);
/* Open client connections (+1 / -1). */
void metrics_connections_add(int delta);
void metrics_websocket_connections_add(int delta);

/* The store's numbers, written after metrics_write (the engine reads them from the store). */
struct metrics_store {
    unsigned long long keys, bytes, max_bytes, evictions, expirations;
};
int metrics_write_store(struct buffer *out, const struct metrics_store *st);
/* The Redis backend of sb.store, written after metrics_write when the host uses it: up (1 when
 * every worker's connections are up) and the connections made again after a loss. */
int metrics_write_store_redis(struct buffer *out, int up, unsigned long long reconnects);
/* Events of the order across hosts (docs/multi-host.md), written with the Redis metrics: a
 * message handled without it (Redis unreachable), a turn this host held whose lease ran out
 * before its message ended, a turn taken over from a holder whose lease ran out. */
enum metrics_order_event { ORDER_FALLBACK, ORDER_LEASE_LOST, ORDER_LEASE_EXPIRED, ORDER_EVENTS };
void metrics_order(enum metrics_order_event event);
/* Events of the inbox stream (docs/multi-host.md "Nothing acked is lost"), written with the Redis
 * metrics: messages of async channels appended before their answer, entries claimed from a
 * silent host, entries acknowledged once processed, async messages processed without the inbox
 * (Redis unreachable), entries dropped after too many deliveries, and entries this host ran
 * that another host claimed meanwhile (they may have run twice). */
enum metrics_inbox_event { INBOX_APPENDED, INBOX_CLAIMED, INBOX_ACKED, INBOX_UNPROTECTED,
                           INBOX_DROPPED, INBOX_TAKEN_OVER, INBOX_EVENTS };
void metrics_inbox(enum metrics_inbox_event event, unsigned long n);
/* Entries this host holds in the inbox and has not acknowledged yet (+n / -n). */
void metrics_inbox_pending_add(long delta);
/* A message went into the bot (host.message_begin) / came back (host.message_end, or its job
 * ended first: seconds < 0 then, nothing is observed). */
void metrics_message_begin(void);
void metrics_message_end(double seconds);
void metrics_bot_failure(enum metrics_bot_failure kind);
/* An outbound call finished: the host it went to (as in the URL, no userinfo, no port) and its
 * HTTP status, or status 0 when no answer came (refused, timed out). */
void metrics_outbound(const char *host, long status);
void metrics_reload(enum metrics_reload_trigger trigger, int ok);
/* The memory of worker `worker`'s Lua states, published by that worker: slot 0 its current
 * state, the others retired ones still finishing requests; generation 0 empties a slot. */
#define METRICS_STATE_SLOTS 8
void metrics_lua_memory(unsigned worker, unsigned slot, unsigned generation, size_t bytes);

/* ---- exposition --------------------------------------------------------------------------------- */

/* Append every metric to out in the text format. Returns 0, or -1 when out of memory. */
int metrics_write(struct buffer *out);

/* Helpers of the text format, exposed for the unit test. */
/* Append `value` escaped as a label value (backslash, double quote, newline). */
int metrics_escape_label(struct buffer *out, const char *value);
/* The bucket `value` falls in among the upper bounds bounds[0..n) (ascending): the first i with
 * value <= bounds[i], or n for +Inf. */
size_t metrics_bucket_index(const double *bounds, size_t n, double value);
/* A float as the text format writes it ("0.005", "1", "+Inf", "NaN"). */
void metrics_format_double(char *out, size_t size, double v);

#endif
