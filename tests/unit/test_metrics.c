/* SPDX-License-Identifier: MIT */
/* test_metrics: the metrics registry (docs/operations.md): histogram buckets, the exposition
 * text (families, cumulative buckets, sums and counts summed over worker shards), label
 * escaping, the bounded label tables, bot failure kinds. */
#include "../../src/buffer.h"
#include "../../src/metrics.h"
#include "check.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static char *scrape(void)
{
    struct buffer b = {0};
    CHECK(metrics_write(&b) == 0);
    return b.data;
}

/* The value of the sample line that starts with `series ` in text, or -1. */
static double value_of(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, len) == 0 && p[len] == ' ')
            return strtod(p + len + 1, NULL);
    }
    return -1;
}

static int count_lines_starting(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, len) == 0;
    return n;
}

static void test_buckets(void)
{
    static const double b[] = {0.005, 0.01, 0.1, 1};
    CHECK_EQ(metrics_bucket_index(b, 4, 0), 0);
    CHECK_EQ(metrics_bucket_index(b, 4, 0.005), 0); /* le: upper bounds are inclusive */
    CHECK_EQ(metrics_bucket_index(b, 4, 0.0051), 1);
    CHECK_EQ(metrics_bucket_index(b, 4, 0.1), 2);
    CHECK_EQ(metrics_bucket_index(b, 4, 1.5), 4);   /* +Inf */
    char text[32];
    metrics_format_double(text, sizeof text, 0.005);
    CHECK_STR(text, "0.005");
    metrics_format_double(text, sizeof text, 1.0 / 0.0);
    CHECK_STR(text, "+Inf");
    metrics_format_double(text, sizeof text, 2.5);
    CHECK_STR(text, "2.5");
}

static void test_escaping(void)
{
    struct buffer b = {0};
    CHECK(metrics_escape_label(&b, "a\\b\"c\nd") == 0);
    CHECK_STR(b.data, "a\\\\b\\\"c\\nd");
    buffer_free(&b);
}

static void *worker_thread(void *arg)
{
    metrics_bind_worker((unsigned)(size_t)arg);
    int rest = metrics_channel_id("rest");
    for (int i = 0; i < 1000; i++)
        metrics_request(rest, 200, 0.02);
    metrics_request(rest, 503, 2.0);
    metrics_message_begin();
    metrics_message_end(0.3);
    metrics_bot_failure(metrics_bot_failure_kind("timeout"));
    metrics_outbound("api.example.com", 200);
    metrics_outbound("api.example.com", 0);
    return NULL;
}

static void test_exposition(void)
{
    /* Two workers and the shared shard (this thread) write; a scrape sums them. */
    pthread_t t[2];
    for (size_t i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker_thread, (void *)i);
    for (size_t i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    metrics_request(metrics_channel_id(NULL), 404, 0.001);
    metrics_request(metrics_channel_id("we\"ird\\name\n"), 200, 0.001);
    metrics_bot_failure(metrics_bot_failure_kind("no such kind"));
    metrics_reload(RELOAD_SIGHUP, 0);
    metrics_reload(RELOAD_FILE_CHANGE, 1);
    metrics_reload(RELOAD_FILE_CHANGE, 1);
    metrics_lua_memory(1, 0, 3, 123456);
    metrics_connections_add(2);
    metrics_connections_add(-1);

    char *text = scrape();
    CHECK(text != NULL);
    if (!text)
        return;
    CHECK(strstr(text, "# HELP switchboard_http_requests_total ") != NULL);
    CHECK(strstr(text, "# TYPE switchboard_http_requests_total counter\n") != NULL);
    CHECK(strstr(text, "# TYPE switchboard_http_request_duration_seconds histogram\n") != NULL);
    CHECK(value_of(text, "switchboard_http_requests_total{channel=\"rest\",class=\"2xx\"}") == 2000);
    CHECK(value_of(text, "switchboard_http_requests_total{channel=\"rest\",class=\"5xx\"}") == 2);
    CHECK(value_of(text, "switchboard_http_requests_total{channel=\"rest\",class=\"4xx\"}") == 0);
    CHECK(value_of(text, "switchboard_http_requests_total{channel=\"\",class=\"4xx\"}") == 1);
    /* Escaped label values. */
    CHECK(value_of(text, "switchboard_http_requests_total{channel=\"we\\\"ird\\\\name\\n\","
                         "class=\"2xx\"}") == 1);
    /* Cumulative buckets: 0.02 falls in le=0.025, 2.0 in le=2.5. */
    const char *h = "switchboard_http_request_duration_seconds";
    char series[200];
    snprintf(series, sizeof series, "%s_bucket{channel=\"rest\",le=\"0.01\"}", h);
    CHECK(value_of(text, series) == 0);
    snprintf(series, sizeof series, "%s_bucket{channel=\"rest\",le=\"0.025\"}", h);
    CHECK(value_of(text, series) == 2000);
    snprintf(series, sizeof series, "%s_bucket{channel=\"rest\",le=\"1\"}", h);
    CHECK(value_of(text, series) == 2000);
    snprintf(series, sizeof series, "%s_bucket{channel=\"rest\",le=\"2.5\"}", h);
    CHECK(value_of(text, series) == 2002);
    snprintf(series, sizeof series, "%s_bucket{channel=\"rest\",le=\"+Inf\"}", h);
    CHECK(value_of(text, series) == 2002);
    snprintf(series, sizeof series, "%s_count{channel=\"rest\"}", h);
    CHECK(value_of(text, series) == 2002);
    snprintf(series, sizeof series, "%s_sum{channel=\"rest\"}", h);
    double sum = value_of(text, series);
    CHECK(sum > 43.99 && sum < 44.01); /* 2000 × 0.02 + 2 × 2.0 */
    /* One bucket line per bound and +Inf for each channel shown (none, rest, the weird one). */
    snprintf(series, sizeof series, "%s_bucket{", h);
    CHECK_EQ(count_lines_starting(text, series), 3 * 14);

    CHECK(value_of(text, "switchboard_bot_message_duration_seconds_count") == 2);
    CHECK(value_of(text, "switchboard_bot_message_duration_seconds_bucket{le=\"0.5\"}") == 2);
    CHECK(value_of(text, "switchboard_bot_messages_in_flight") == 0);
    CHECK(value_of(text, "switchboard_bot_failures_total{kind=\"timeout\"}") == 2);
    CHECK(value_of(text, "switchboard_bot_failures_total{kind=\"other\"}") == 1);
    CHECK(value_of(text, "switchboard_bot_failures_total{kind=\"refused\"}") == 0);
    CHECK(value_of(text, "switchboard_outbound_requests_total{host=\"api.example.com\","
                         "class=\"2xx\"}") == 2);
    CHECK(value_of(text, "switchboard_outbound_requests_total{host=\"api.example.com\","
                         "class=\"error\"}") == 2);
    CHECK(value_of(text, "switchboard_reloads_total{trigger=\"sighup\",outcome=\"rejected\"}") == 1);
    CHECK(value_of(text, "switchboard_reloads_total{trigger=\"sighup\",outcome=\"ok\"}") == 0);
    CHECK(value_of(text, "switchboard_reloads_total{trigger=\"file_change\",outcome=\"ok\"}") == 2);
    CHECK(value_of(text, "switchboard_lua_memory_bytes{worker=\"1\",generation=\"3\"}") == 123456);
    CHECK(value_of(text, "switchboard_http_connections_open") == 1);
    CHECK(text[strlen(text) - 1] == '\n');
    free(text);
}

static void test_bounded_tables(void)
{
    /* Past the table's capacity, new hosts count as "other". */
    char name[32];
    for (int i = 0; i < METRICS_MAX_HOSTS + 10; i++) {
        snprintf(name, sizeof name, "h%d.example", i);
        metrics_outbound(name, 204);
    }
    char *text = scrape();
    if (!text)
        return;
    CHECK(value_of(text, "switchboard_outbound_requests_total{host=\"other\",class=\"2xx\"}") >= 10);
    CHECK(strstr(text, "h70.example") == NULL);
    free(text);
    CHECK(metrics_bot_failure_kind("refused") == BOT_FAILURE_REFUSED);
    CHECK(metrics_bot_failure_kind("bad_json") == BOT_FAILURE_BAD_JSON);
    CHECK(metrics_bot_failure_kind("script_error") == BOT_FAILURE_SCRIPT_ERROR);
    CHECK(metrics_bot_failure_kind("deadline") == BOT_FAILURE_DEADLINE);
    CHECK(metrics_bot_failure_kind(NULL) == BOT_FAILURE_OTHER);
    CHECK_STR(metrics_channel_name(0), "");
    CHECK_STR(metrics_channel_name(metrics_channel_id("rest")), "rest");
}

int main(void)
{
    test_buckets();
    test_escaping();
    test_exposition();
    test_bounded_tables();
    return CHECK_DONE();
}
