/* SPDX-License-Identifier: MIT */
/* router: maps a request's method and path to what answers it (docs/contract.md §2): the root, the
 * status page, the metrics, the proactive messages route, a channel's health check, its webhook,
 * an extra route it declares (with {name} parameters, §3.6), or 404/405.
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
    ROUTE_METHOD_NOT_ALLOWED, /* the path exists, the method does not: see `allow` */
    ROUTE_PROACTIVE           /* POST /conversations/<sender_id>/messages: params[0] is the
                                 sender; whether the route exists (server.push_token) is the
                                 caller's decision, and so is its 405 */
};

/* Parameters one declared route may have; segments of a path that can match. */
#define ROUTE_MAX_PARAMS 8
#define ROUTE_MAX_SEGMENTS 64

/* One "METHOD /path" a channel declares. `path` is below /webhooks/<name>, starts with '/' and
 * has no trailing slash ("/" for the channel's root); a segment "{name}" is a parameter.
 * `spec` is the key exactly as the channel wrote it in channel.routes: the pipeline looks the
 * handler up by it, so the syntax is parsed here only. */
struct route {
    char method[16];
    char *path;
    char *spec;
    unsigned param_count;
};

struct route_channel {
    char *name;
    char *mount;              /* channel.mount: its routes are below this path, or NULL */
    size_t count;
    struct route *routes;
};

struct route_table {
    size_t count;
    struct route_channel *channels;
};

/* A parameter's value as it stands in the matched path: still percent-encoded (route_decode).
 * Both point into the route's path and the path given to router_match. */
struct route_param {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct route_match {
    enum route_kind kind;
    int channel;              /* index into the table, or -1 */
    const struct route *route;/* ROUTE_CUSTOM: the declared route (borrowed) */
    char allow[128];          /* ROUTE_METHOD_NOT_ALLOWED: value of the Allow header */
    size_t param_count;       /* ROUTE_CUSTOM, ROUTE_PROACTIVE */
    struct route_param params[ROUTE_MAX_PARAMS];
};

/* Parse "POST /webhook" (any amount of space, trailing slashes optional) into a route.
 * Returns 0, or -1 when the text is not "METHOD /path" or a parameter is malformed (out then owns
 * nothing); `why` (may be NULL) gets the reason, e.g. "parameter 2 ('{}') has no name".
 * The route's path and spec are malloc'ed: route_free frees them. */
int route_parse_why(const char *spec, struct route *out, char *why, size_t why_len);
/* route_parse_why without the reason. */
int route_parse(const char *spec, struct route *out);
void route_free(struct route *r);
void route_table_free(struct route_table *t);

/* `path` is the request's path without the query, percent-encoded as sent or already decoded:
 * each segment is decoded before it is compared, so an encoded '/' (%2F) stays inside its
 * segment. HEAD matches like GET. A trailing slash is optional everywhere. Among the declared
 * routes of the request's method, the most specific wins: at the first segment where two
 * matching routes differ, a literal beats a parameter; the host's GET / and POST /webhook count
 * as literal routes (a declared route with exactly their path replaces them); between routes of
 * the same shape, the key that sorts first (strcmp) wins. */
void router_match(const struct route_table *t, const char *method, const char *path,
                  struct route_match *m);

/* Percent-decode len bytes of `in` into `out` (room for len bytes; no NUL added): "%2F" is '/',
 * '+' stays '+', a '%' not followed by two hex digits stays as it is. Returns the length. */
size_t route_decode(const char *in, size_t len, char *out);

#endif
