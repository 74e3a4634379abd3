/* SPDX-License-Identifier: MIT */
/* config: reads credentials.yml and endpoints.yml into plain C data: the channel entries of
 * credentials.yml in file order, and the bot and server sections of endpoints.yml, with their
 * defaults and ranges. Every error is one line "FILE:LINE:COLUMN: reason" naming the key at fault.
 * Uses: cfg_tree. Knows nothing of Lua or HTTP. */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stddef.h>

#include "cfg_tree.h"

/* ---- credentials.yml ------------------------------------------------------------------------ */

struct channel_entry {
    char *key;                /* the key as written: "rest", "mypackage.myio", "channels/x.lua" */
    const cfg_value *params;  /* the map under the key, or NULL when empty; borrowed from root */
    int line, column;         /* position of the key */
};

struct credentials {
    char *path;               /* the file as given */
    char *dir;                /* its folder, absolute, no trailing slash */
    size_t count;
    struct channel_entry *channels; /* file order */
    cfg_value *root;          /* owned */
};

/* Load credentials.yml. An empty file means no channels. The top level must be a map; each value a
 * map or empty. Errors: "PATH:LINE:COL: reason" (e.g. "channel 'slack': parameters must be a map"). */
int credentials_load(const char *path, struct credentials *out, char *err, size_t errlen);
/* The same from a tree already parsed (a case file's `credentials:`), which `out` takes over;
 * `name` stands for the file in messages, `dir` is where relative channel keys are found. */
int credentials_from_tree(cfg_value *root, const char *name, const char *dir,
                          struct credentials *out, char *err, size_t errlen);
void credentials_free(struct credentials *c);

/* ---- endpoints.yml -------------------------------------------------------------------------- */

/* The host's limits: the `server:` section. Defaults are set by endpoints_defaults(). */
struct server_limits {
    size_t max_body_size;        /* max_body_size, bytes: 1048576 */
    unsigned connection_timeout; /* connection_timeout, seconds an idle connection is kept: 30 */
    unsigned connection_limit;   /* connection_limit, concurrent connections: 10000 */
    double header_timeout;       /* header_timeout, seconds a client has to send a request's
                                    line and headers: 10 */
    double lua_cpu_budget;       /* lua_cpu_budget, seconds of Lua per call: 1.0 (max 3600) */
    size_t lua_memory_limit;     /* lua_memory_limit, bytes per Lua state: 268435456 (256 MiB) */
    unsigned workers;            /* workers, engine threads; 0 = one per CPU the process may use */
    int trust_forwarded_headers; /* trust_forwarded_headers: req.url from X-Forwarded-Proto/Host,
                                    for hosts behind a TLS proxy: true */
    char admin_token[256];       /* admin_token: the bearer token /status and /metrics ask for;
                                    "" (the default): they answer loopback clients only */
    size_t store_max_bytes;      /* store_max_bytes, what sb.store may hold (embedded): 64 MiB */
    size_t websocket_max_message; /* websocket_max_message, bytes of one message from a client:
                                     1048576 (over it: close 1009) */
    size_t websocket_send_queue; /* websocket_send_queue, bytes waiting to be written to one
                                    client before it is cut: 4194304 */
    double websocket_ping_interval; /* websocket_ping_interval, seconds of silence before a ping
                                       (and again before the client is dropped): 25 */
    char push_token[256];        /* push_token: the bearer token of POST
                                    /conversations/<sender>/messages (proactive messages);
                                    "" (the default): that route does not exist */
};

enum bot_kind { BOT_DEMO, BOT_SCRIPT, BOT_HTTP };

struct bot_config {
    enum bot_kind kind;          /* BOT_DEMO when there is no `bot:` section */
    char *script;                /* BOT_SCRIPT: absolute path (relative ones resolved from dir) */
    char *url;                   /* BOT_HTTP */
    double timeout;              /* BOT_HTTP: seconds, default 10 */
    const cfg_value *headers;    /* BOT_HTTP: map of header -> value, or NULL; borrowed */
    const cfg_value *params;     /* the whole `bot:` map (given to a Lua bot's init), or NULL */
    int line, column;            /* position of the `bot:` key (0 when absent) */
};

/* The `store:` section: the Redis backend of sb.store (docs/configuration.md#store). Without
 * it (redis 0) sb.store is the embedded store. Fixed arrays, so a copy compares with memcmp. */
struct store_config {
    int redis;                   /* 1: `store:` names a Redis server */
    char host[256];              /* from url: a name, an IPv4 address or an IPv6 one (no []) */
    unsigned port;               /* from url: 6379 */
    unsigned db;                 /* from url's path: 0 */
    char username[128];          /* url's user or `username`: "" (AUTH with the password only) */
    char password[256];          /* url's password or `password`: "" (no AUTH) */
    char prefix[128];            /* prefix: put before every key: "switchboard:" */
    double connect_timeout;      /* connect_timeout, seconds: 2 */
    double command_timeout;      /* command_timeout, seconds a call waits for Redis: 5 */
    int order;                   /* order: each sender's turn kept across hosts in Redis: 1 */
    double order_lease;          /* order_lease, seconds a host holds a turn unrenewed: 10 */
    int inbox;                   /* inbox: async messages kept in a Redis stream until done: 1 */
    double claim_interval;       /* claim_interval, seconds between claim rounds: 30 */
    double claim_idle;           /* claim_idle, seconds an entry's holder may stay silent before
                                  * another host claims it: 0 = the response timeout + 10 s */
    char url_shown[448];         /* the URL without its password, for /status and the log */
    int line, column;            /* position of the `store:` key (0 when absent) */
};

struct endpoints {
    char *path;                  /* NULL when no endpoints file was used */
    char *dir;                   /* its folder, absolute */
    struct bot_config bot;
    struct server_limits server;
    struct store_config store;
    cfg_value *root;             /* owned, NULL when no file */
};

/* Fill defaults: demo bot, the server limits above, path/dir/root NULL. */
void endpoints_defaults(struct endpoints *e);
/* Load endpoints.yml over the defaults. `bot:` needs exactly one of `url` or `script`; unknown keys
 * in `server:` and `store:` are errors (they are typos); other top-level sections (Rasa's tracker_store,
 * action_endpoint, ...) are ignored. Errors as for credentials_load. */
int endpoints_load(const char *path, struct endpoints *out, char *err, size_t errlen);
void endpoints_free(struct endpoints *e);

#endif
