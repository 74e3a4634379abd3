/* SPDX-License-Identifier: MIT */
/* router: maps a request's method and path to what answers it (docs/contract.md §2): the root, the
 * status page, the metrics, a channel's health check, its webhook, an extra route it declares, or 404/405.
 * Plain data in and out: it knows channel names and their declared routes, nothing of HTTP
 * libraries or Lua. Uses: nothing. */
#ifndef SB_ROUTER_H
#define SB_ROUTER_H

#include <stddef.h>

enum route_kind {
    ROUTE_ROOT,               /* GET / */
    ROUTE_STATUS,             /* GET /status */
    ROUTE_METRICS,            /* GET /metrics */
    ROUTE_HEALTH,             /* GET /webhooks/<name>/ */
    ROUTE_WEBHOOK,            /* POST /webhooks/<name>/webhook */
    ROUTE_CUSTOM,             /* a route the channel declares in channel.routes */
    ROUTE_NOT_FOUND,
    ROUTE_METHOD_NOT_ALLOWED  /* the path exists, the method does not: see `allow` */
};

/* One "METHOD /path" a channel declares. `path` is below /webhooks/<name>, starts with '/' and
 * has no trailing slash ("/" for the channel's root). `spec` is the key exactly as the channel
 * wrote it in channel.routes: the pipeline looks the handler up by it, so the syntax is parsed
 * here only. */
struct route {
    char method[16];
    char *path;
    char *spec;
};

struct route_channel {
    char *name;
    size_t count;
    struct route *routes;
};

struct route_table {
    size_t count;
    struct route_channel *channels;
};

struct route_match {
    enum route_kind kind;
    int channel;              /* index into the table, or -1 */
    const struct route *route;/* ROUTE_CUSTOM: the declared route (borrowed) */
    char allow[128];          /* ROUTE_METHOD_NOT_ALLOWED: value of the Allow header */
};

/* Parse "POST /webhook" (any amount of space, trailing slashes optional) into a route.
 * Returns 0, or -1 when the text is not "METHOD /path" (out then owns nothing). The route's path
 * and spec are malloc'ed: route_free frees them. */
int route_parse(const char *spec, struct route *out);
void route_free(struct route *r);
void route_table_free(struct route_table *t);

/* HEAD matches like GET. A trailing slash is optional everywhere. */
void router_match(const struct route_table *t, const char *method, const char *path,
                  struct route_match *m);

#endif
