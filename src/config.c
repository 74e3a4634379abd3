/* SPDX-License-Identifier: MIT */
/* config: credentials.yml and endpoints.yml into plain C data (interface in config.h), read
 * through the YAML tree of cfg_tree.c. Error texts name keys, types and positions, never the
 * value of a scalar: values are often secrets. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared by the loaders ------------------------------------------------------------------ */

/* The absolute folder of `path` (which must exist), without a trailing slash except for "/". */
static int folder_of(const char *path, char **dir, char *err, size_t errlen)
{
    char *abs = realpath(path, NULL);
    char *slash;

    if (!abs)
        return cfg_error(err, errlen, path, 0, 0, "cannot resolve its folder: %s", strerror(errno));
    slash = strrchr(abs, '/');
    if (slash == abs)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    *dir = abs;
    return 0;
}

/* Parses the file and fills path, dir and root, the fields both loaders share. */
static int load_root(const char *path, char **out_path, char **dir, cfg_value **root, char *err,
                     size_t errlen)
{
    if (cfg_parse_file(path, root, err, errlen) < 0)
        return -1;
    if (folder_of(path, dir, err, errlen) < 0)
        return -1;
    if (!(*out_path = strdup(path)))
        return cfg_error(err, errlen, path, 0, 0, "out of memory");
    return 0;
}

/* ---- credentials.yml ------------------------------------------------------------------------ */

/* Entries borrow the key text and the parameters from c->root. */
static int read_channels(struct credentials *c, char *err, size_t errlen)
{
    const cfg_value *root = c->root;
    size_t i;

    if (root->count == 0)
        return 0;
    if (!(c->channels = calloc(root->count, sizeof *c->channels)))
        return cfg_error(err, errlen, c->path, 0, 0, "out of memory");
    for (i = 0; i < root->count; i++) {
        const cfg_value *params = &root->items[i];
        struct channel_entry *ch = &c->channels[i];

        if (params->type != CFG_MAP && params->type != CFG_NULL)
            return cfg_value_error(err, errlen, c->path, params,
                                   "channel '%s': parameters must be a map, not %s", root->keys[i],
                                   cfg_type_name(params->type));
        ch->key = root->keys[i];
        ch->params = params->type == CFG_MAP ? params : NULL;
        ch->line = root->key_pos[i].line;
        ch->column = root->key_pos[i].column;
        c->count = i + 1;
    }
    return 0;
}

/* The channels of out->root, once path, dir and root are set. */
static int credentials_read(struct credentials *out, char *err, size_t errlen)
{
    if (out->root->type == CFG_NULL)
        return 0;
    if (out->root->type != CFG_MAP)
        return cfg_value_error(err, errlen, out->path, out->root,
                               "the top level must be a map of channel names to their parameters");
    return read_channels(out, err, errlen);
}

int credentials_load(const char *path, struct credentials *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (load_root(path, &out->path, &out->dir, &out->root, err, errlen) < 0 ||
        credentials_read(out, err, errlen) < 0) {
        credentials_free(out);
        return -1;
    }
    return 0;
}

int credentials_from_tree(cfg_value *root, const char *name, const char *dir,
                          struct credentials *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->root = root;
    out->path = strdup(name);
    out->dir = strdup(dir);
    if (!out->path || !out->dir) {
        credentials_free(out);
        return cfg_error(err, errlen, name, 0, 0, "out of memory");
    }
    if (credentials_read(out, err, errlen) < 0) {
        credentials_free(out);
        return -1;
    }
    return 0;
}

void credentials_free(struct credentials *c)
{
    if (!c)
        return;
    free(c->path); c->path = NULL;
    free(c->dir); c->dir = NULL;
    free(c->channels); c->channels = NULL;
    cfg_free(c->root); c->root = NULL;
    c->count = 0;
}

/* ---- endpoints.yml -------------------------------------------------------------------------- */

void endpoints_defaults(struct endpoints *e)
{
    memset(e, 0, sizeof *e);
    e->bot.kind = BOT_DEMO;
    e->bot.timeout = 10;
    e->server.max_body_size = 1048576;
    e->server.connection_timeout = 30;
    e->server.connection_limit = 10000;
    e->server.header_timeout = 10;
    e->server.trust_forwarded_headers = 1;
    e->server.lua_cpu_budget = 1.0;
    e->server.lua_memory_limit = 268435456;
    e->server.workers = 0;
    e->server.store_max_bytes = 64u * 1024 * 1024;
    e->server.websocket_max_message = 1048576;
    e->server.websocket_send_queue = 4194304;
    e->server.websocket_ping_interval = 25;
    e->store.port = 6379;
    snprintf(e->store.prefix, sizeof e->store.prefix, "switchboard:");
    e->store.connect_timeout = 2;
    e->store.command_timeout = 5;
    e->store.order = 1;
    e->store.order_lease = 10;
    e->store.inbox = 1;
    e->store.claim_interval = 30;
    e->store.claim_idle = 0; /* the engine makes it the response timeout + 10 s */
}

/* The value as a number. A string whose text reads as a number counts as one, because ${VAR}
 * expansion always yields a string and `workers: ${WORKERS}` should work. */
static cfg_value numeric_view(const cfg_value *v)
{
    cfg_value n = *v;

    if (v->type == CFG_STRING && v->text)
        cfg_resolve_plain(&n); /* only retypes; n.text still belongs to v */
    return n;
}

static int need_string(const struct endpoints *e, const cfg_value *v, const char *key, char *err,
                       size_t errlen)
{
    if (v->type != CFG_STRING)
        return cfg_value_error(err, errlen, e->path, v, "bot: '%s' must be a string, not %s", key,
                               cfg_type_name(v->type));
    if (!*v->text)
        return cfg_value_error(err, errlen, e->path, v, "bot: '%s' must not be empty", key);
    return 0;
}

static int read_headers(struct endpoints *e, const cfg_value *h, char *err, size_t errlen)
{
    size_t i;

    if (h->type == CFG_NULL)
        return 0;
    if (h->type != CFG_MAP)
        return cfg_value_error(err, errlen, e->path, h, "bot: 'headers' must be a map, not %s",
                               cfg_type_name(h->type));
    for (i = 0; i < h->count; i++) {
        const cfg_value *v = &h->items[i];

        if (v->type == CFG_NULL || v->type == CFG_MAP || v->type == CFG_SEQ)
            return cfg_value_error(err, errlen, e->path, v,
                                   "bot: header '%s' must have a scalar value, not %s", h->keys[i],
                                   cfg_type_name(v->type));
    }
    e->bot.headers = h;
    return 0;
}

static int read_http_bot(struct endpoints *e, const cfg_value *bot, const cfg_value *url,
                         char *err, size_t errlen)
{
    const cfg_value *timeout = cfg_map_get(bot, "timeout");
    const cfg_value *headers = cfg_map_get(bot, "headers");

    if (need_string(e, url, "url", err, errlen) < 0)
        return -1;
    if (timeout) {
        cfg_value n = numeric_view(timeout);

        if (n.type != CFG_INT && n.type != CFG_FLOAT)
            return cfg_value_error(err, errlen, e->path, timeout,
                                   "bot: 'timeout' must be a number of seconds, not %s",
                                   cfg_type_name(timeout->type));
        if (!(n.number > 0) || !(n.number <= 86400))
            return cfg_value_error(err, errlen, e->path, timeout,
                                   "bot: 'timeout' must be a number of seconds greater than 0 and "
                                   "at most 86400");
        e->bot.timeout = n.number;
    }
    if (headers && read_headers(e, headers, err, errlen) < 0)
        return -1;
    if (!(e->bot.url = strdup(url->text)))
        return cfg_error(err, errlen, e->path, 0, 0, "out of memory");
    e->bot.kind = BOT_HTTP;
    return 0;
}

/* The script path is resolved against the file's folder but not checked: the bot loader reports a
 * missing script with the rest of its errors. */
static int read_script_bot(struct endpoints *e, const cfg_value *script, char *err, size_t errlen)
{
    const char *sep = strcmp(e->dir, "/") == 0 ? "" : "/";

    if (need_string(e, script, "script", err, errlen) < 0)
        return -1;
    if (script->text[0] == '/')
        e->bot.script = strdup(script->text);
    else if (asprintf(&e->bot.script, "%s%s%s", e->dir, sep, script->text) < 0)
        e->bot.script = NULL;
    if (!e->bot.script)
        return cfg_error(err, errlen, e->path, 0, 0, "out of memory");
    e->bot.kind = BOT_SCRIPT;
    return 0;
}

static int read_bot(struct endpoints *e, char *err, size_t errlen)
{
    const cfg_value *bot, *url, *script;
    size_t i;

    if (!cfg_map_find(e->root, "bot", &i))
        return 0;
    bot = &e->root->items[i];
    e->bot.line = e->root->key_pos[i].line;
    e->bot.column = e->root->key_pos[i].column;
    if (bot->type == CFG_NULL)
        return 0;
    if (bot->type != CFG_MAP)
        return cfg_value_error(err, errlen, e->path, bot,
                               "'bot' must be a map with 'url' or 'script', not %s",
                               cfg_type_name(bot->type));
    url = cfg_map_get(bot, "url");
    script = cfg_map_get(bot, "script");
    if (!url == !script)
        return cfg_error(err, errlen, e->path, e->bot.line, e->bot.column,
                         url ? "bot: give either 'url' or 'script', not both"
                             : "bot: needs 'url' (an HTTP bot) or 'script' (a Lua bot)");
    e->bot.params = bot;
    return url ? read_http_bot(e, bot, url, err, errlen) : read_script_bot(e, script, err, errlen);
}

enum limit_kind { LIMIT_SIZE, LIMIT_UNSIGNED, LIMIT_SECONDS, LIMIT_FLAG, LIMIT_TOKEN };

static const struct server_key {
    const char *name;
    enum limit_kind kind;
    long long min;          /* integer kinds */
    unsigned long long max; /* integer kinds: what the field holds; LIMIT_SECONDS: seconds */
    size_t offset;          /* in struct server_limits */
    const char *expect;
} server_keys[] = {
    {"max_body_size", LIMIT_SIZE, 1, SIZE_MAX, offsetof(struct server_limits, max_body_size),
     "a positive integer (bytes)"},
    {"connection_timeout", LIMIT_UNSIGNED, 1, UINT_MAX,
     offsetof(struct server_limits, connection_timeout), "an integer of at least 1 (seconds)"},
    {"connection_limit", LIMIT_UNSIGNED, 1, UINT_MAX,
     offsetof(struct server_limits, connection_limit), "an integer of at least 1 (connections)"},
    {"lua_cpu_budget", LIMIT_SECONDS, 0, 3600, offsetof(struct server_limits, lua_cpu_budget),
     "a number of seconds greater than 0 and at most 3600"},
    {"header_timeout", LIMIT_SECONDS, 0, 3600, offsetof(struct server_limits, header_timeout),
     "a number of seconds greater than 0 and at most 3600"},
    {"lua_memory_limit", LIMIT_SIZE, 1048576, SIZE_MAX,
     offsetof(struct server_limits, lua_memory_limit), "an integer of at least 1048576 (bytes)"},
    {"workers", LIMIT_UNSIGNED, 0, UINT_MAX, offsetof(struct server_limits, workers),
     "an integer of at least 0 (0 = one per CPU)"},
    {"trust_forwarded_headers", LIMIT_FLAG, 0, 0,
     offsetof(struct server_limits, trust_forwarded_headers), "true or false"},
    {"admin_token", LIMIT_TOKEN, 0, sizeof(((struct server_limits *)0)->admin_token) - 1,
     offsetof(struct server_limits, admin_token), "a string"},
    {"push_token", LIMIT_TOKEN, 0, sizeof(((struct server_limits *)0)->push_token) - 1,
     offsetof(struct server_limits, push_token), "a string"},
    {"store_max_bytes", LIMIT_SIZE, 65536, SIZE_MAX,
     offsetof(struct server_limits, store_max_bytes), "an integer of at least 65536 (bytes)"},
    {"websocket_max_message", LIMIT_SIZE, 125, SIZE_MAX,
     offsetof(struct server_limits, websocket_max_message), "an integer of at least 125 (bytes)"},
    {"websocket_send_queue", LIMIT_SIZE, 65536, SIZE_MAX,
     offsetof(struct server_limits, websocket_send_queue),
     "an integer of at least 65536 (bytes)"},
    {"websocket_ping_interval", LIMIT_SECONDS, 0, 3600,
     offsetof(struct server_limits, websocket_ping_interval),
     "a number of seconds greater than 0 and at most 3600"},
};

#define N_SERVER_KEYS (sizeof server_keys / sizeof server_keys[0])

static int read_limit(struct endpoints *e, const struct server_key *k, const cfg_value *v,
                      char *err, size_t errlen)
{
    char *field = (char *)&e->server + k->offset;
    if (k->kind == LIMIT_TOKEN) {
        /* A string (${VAR} expands to one); kept in the struct itself, so copies of the server
         * section stay valid and comparable. */
        if (!v->text || (v->type != CFG_STRING && v->type != CFG_INT && v->type != CFG_FLOAT))
            return cfg_value_error(err, errlen, e->path, v, "server: '%s' must be %s, not %s",
                                   k->name, k->expect, cfg_type_name(v->type));
        size_t len = strlen(v->text);
        if (len == 0 || len > k->max)
            return cfg_value_error(err, errlen, e->path, v,
                                   "server: '%s' must have 1 to %llu characters", k->name, k->max);
        memcpy(field, v->text, len + 1);
        return 0;
    }
    if (k->kind == LIMIT_FLAG) {
        if (v->type != CFG_BOOL)
            return cfg_value_error(err, errlen, e->path, v, "server: '%s' must be %s, not %s",
                                   k->name, k->expect, cfg_type_name(v->type));
        *(int *)field = v->boolean;
        return 0;
    }
    cfg_value n = numeric_view(v);
    int is_number = n.type == CFG_INT || (k->kind == LIMIT_SECONDS && n.type == CFG_FLOAT);

    if (!is_number)
        return cfg_value_error(err, errlen, e->path, v, "server: '%s' must be %s, not %s", k->name,
                               k->expect, cfg_type_name(v->type));
    if (k->kind == LIMIT_SECONDS) {
        if (!(n.number > 0) || !(n.number <= (double)k->max))
            return cfg_value_error(err, errlen, e->path, v, "server: '%s' must be %s", k->name,
                                   k->expect);
        *(double *)field = n.number;
        return 0;
    }
    if (n.integer < k->min)
        return cfg_value_error(err, errlen, e->path, v, "server: '%s' must be %s", k->name,
                               k->expect);
    if ((unsigned long long)n.integer > k->max)
        return cfg_value_error(err, errlen, e->path, v, "server: '%s' is too large", k->name);
    if (k->kind == LIMIT_SIZE)
        *(size_t *)field = (size_t)n.integer;
    else
        *(unsigned *)field = (unsigned)n.integer;
    return 0;
}

static int unknown_server_key(const struct endpoints *e, const cfg_value *server, size_t i,
                              char *err, size_t errlen)
{
    char known[256] = "";
    size_t k, used = 0;

    for (k = 0; k < N_SERVER_KEYS && used < sizeof known; k++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", k ? ", " : "",
                                 server_keys[k].name);
    return cfg_error(err, errlen, e->path, server->key_pos[i].line, server->key_pos[i].column,
                     "server: unknown key '%s' (known keys: %s)", server->keys[i], known);
}

static int read_server(struct endpoints *e, char *err, size_t errlen)
{
    const cfg_value *server = cfg_map_get(e->root, "server");
    size_t i, k;

    if (!server || server->type == CFG_NULL)
        return 0;
    if (server->type != CFG_MAP)
        return cfg_value_error(err, errlen, e->path, server, "'server' must be a map, not %s",
                               cfg_type_name(server->type));
    for (i = 0; i < server->count; i++) {
        for (k = 0; k < N_SERVER_KEYS && strcmp(server->keys[i], server_keys[k].name); k++)
            ;
        if (k == N_SERVER_KEYS)
            return unknown_server_key(e, server, i, err, errlen);
        if (read_limit(e, &server_keys[k], &server->items[i], err, errlen) < 0)
            return -1;
    }
    return 0;
}


/* ---- store: ---------------------------------------------------------------------------------- */

static const char *const store_keys[] = {"url",   "password",        "username",
                                         "prefix", "tls",           "connect_timeout",
                                         "command_timeout", "order", "order_lease",
                                         "inbox", "claim_interval", "claim_idle"};
#define N_STORE_KEYS (sizeof store_keys / sizeof store_keys[0])

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Copy s[0..len) into out, %XX decoded (a user or password in a URL). -1: too long, a bad %XX or
 * a NUL byte. */
static int url_decode_part(const char *s, size_t len, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (n + 1 >= size)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

/* redis://[[user][:password]@]host[:port][/db] into the store section. NULL when it holds, else
 * what is wrong (never quoting the value: it may hold a password). */
static const char *parse_redis_url(const char *url, struct store_config *sc)
{
    if (strncmp(url, "rediss://", 9) == 0)
        return "rediss:// (Redis over TLS) is not supported: the hiredis of Debian 12 (0.14) has "
               "no TLS; reach Redis over a private network or through a TLS tunnel (see "
               "docs/multi-host.md)";
    if (strncmp(url, "redis://", 8) != 0)
        return "must be a URL redis://[user:password@]host[:port][/db]";
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?#");
    if (*end == '?' || *end == '#')
        return "takes no query or fragment (use the keys of store: for options)";
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t user_len = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (url_decode_part(p, user_len, sc->username, sizeof sc->username) != 0)
            return "has a user name that is too long or badly %-encoded";
        if (colon && url_decode_part(colon + 1, (size_t)(at - colon - 1), sc->password,
                                     sizeof sc->password) != 0)
            return "has a password that is too long or badly %-encoded";
        p = at + 1;
    }
    const char *host_end;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return "has an IPv6 address without its closing ]";
        if ((size_t)(close - p - 1) >= sizeof sc->host || close == p + 1)
            return "has an empty or too long host";
        memcpy(sc->host, p + 1, (size_t)(close - p - 1));
        sc->host[close - p - 1] = '\0';
        host_end = close + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        if (host_end > end)
            host_end = end;
        if (host_end == p || (size_t)(host_end - p) >= sizeof sc->host)
            return "has an empty or too long host";
        memcpy(sc->host, p, (size_t)(host_end - p));
        sc->host[host_end - p] = '\0';
    }
    if (host_end < end && *host_end == ':') {
        char *num_end;
        errno = 0;
        long port = strtol(host_end + 1, &num_end, 10);
        if (num_end == host_end + 1 || num_end != end || errno || port < 1 || port > 65535)
            return "has a port that is not a number from 1 to 65535";
        sc->port = (unsigned)port;
    } else if (host_end != end) {
        return "has something after the host that is not :port";
    }
    if (*end == '/' && end[1]) {
        char *num_end;
        errno = 0;
        long db = strtol(end + 1, &num_end, 10);
        if (*num_end || errno || db < 0 || db > 1000000 || !(end[1] >= '0' && end[1] <= '9'))
            return "has a path that is not a database number (/0, /1, ...)";
        sc->db = (unsigned)db;
    }
    return NULL;
}

/* A string (or a number, which ${VAR} may give) of 0..size-1 characters into out. */
static int store_string(const struct endpoints *e, const cfg_value *v, const char *key,
                        int allow_empty, char *out, size_t size, char *err, size_t errlen)
{
    if (!v->text || (v->type != CFG_STRING && v->type != CFG_INT && v->type != CFG_FLOAT))
        return cfg_value_error(err, errlen, e->path, v, "store: '%s' must be a string, not %s",
                               key, cfg_type_name(v->type));
    size_t len = strlen(v->text);
    if ((!allow_empty && len == 0) || len >= size)
        return cfg_value_error(err, errlen, e->path, v,
                               "store: '%s' must have %d to %zu characters", key, !allow_empty,
                               size - 1);
    memcpy(out, v->text, len + 1);
    return 0;
}

static int store_seconds(const struct endpoints *e, const cfg_value *v, const char *key,
                         double *out, char *err, size_t errlen)
{
    cfg_value n = numeric_view(v);
    if ((n.type != CFG_INT && n.type != CFG_FLOAT) || !(n.number > 0) || !(n.number <= 3600))
        return cfg_value_error(err, errlen, e->path, v,
                               "store: '%s' must be a number of seconds greater than 0 and at "
                               "most 3600",
                               key);
    *out = n.number;
    return 0;
}

static int read_store(struct endpoints *e, char *err, size_t errlen)
{
    struct store_config *sc = &e->store;
    size_t at;
    if (!cfg_map_find(e->root, "store", &at))
        return 0;
    const cfg_value *store = &e->root->items[at];
    sc->line = e->root->key_pos ? e->root->key_pos[at].line : 0;
    sc->column = e->root->key_pos ? e->root->key_pos[at].column : 0;
    if (store->type == CFG_NULL)
        return 0; /* `store:` alone: the embedded store */
    if (store->type != CFG_MAP)
        return cfg_value_error(err, errlen, e->path, store,
                               "'store' must be a map with 'url' (redis://host:port/db), not %s",
                               cfg_type_name(store->type));
    for (size_t i = 0; i < store->count; i++) {
        size_t k;
        for (k = 0; k < N_STORE_KEYS && strcmp(store->keys[i], store_keys[k]); k++)
            ;
        if (k == N_STORE_KEYS)
            return cfg_error(err, errlen, e->path, store->key_pos[i].line,
                             store->key_pos[i].column,
                             "store: unknown key '%s' (known keys: url, password, username, "
                             "prefix, tls, connect_timeout, command_timeout, order, order_lease, "
                             "inbox, claim_interval, claim_idle)",
                             store->keys[i]);
    }
    const cfg_value *url = cfg_map_get(store, "url");
    if (!url)
        return cfg_error(err, errlen, e->path, sc->line, sc->column,
                         "store: needs 'url' (redis://host:port/db)");
    if (url->type != CFG_STRING || !url->text)
        return cfg_value_error(err, errlen, e->path, url, "store: 'url' must be a string, not %s",
                               cfg_type_name(url->type));
    const char *problem = parse_redis_url(url->text, sc);
    if (problem)
        return cfg_value_error(err, errlen, e->path, url, "store: 'url' %s", problem);
    const cfg_value *v;
    if ((v = cfg_map_get(store, "tls")) != NULL) {
        if (v->type != CFG_BOOL)
            return cfg_value_error(err, errlen, e->path, v, "store: 'tls' must be true or false, "
                                   "not %s", cfg_type_name(v->type));
        if (v->boolean)
            return cfg_value_error(err, errlen, e->path, v,
                                   "store: 'tls: true' is not supported: the hiredis of Debian 12 "
                                   "(0.14) has no TLS; reach Redis over a private network or "
                                   "through a TLS tunnel (see docs/multi-host.md)");
    }
    if ((v = cfg_map_get(store, "password")) != NULL) {
        if (sc->password[0])
            return cfg_value_error(err, errlen, e->path, v,
                                   "store: the password is given twice (in 'url' and in "
                                   "'password')");
        if (store_string(e, v, "password", 0, sc->password, sizeof sc->password, err, errlen))
            return -1;
    }
    if ((v = cfg_map_get(store, "username")) != NULL) {
        if (sc->username[0])
            return cfg_value_error(err, errlen, e->path, v,
                                   "store: the user name is given twice (in 'url' and in "
                                   "'username')");
        if (store_string(e, v, "username", 0, sc->username, sizeof sc->username, err, errlen))
            return -1;
    }
    if (sc->username[0] && !sc->password[0])
        return cfg_value_error(err, errlen, e->path, url,
                               "store: a user name needs a password (in 'url' or 'password')");
    if ((v = cfg_map_get(store, "prefix")) != NULL &&
        store_string(e, v, "prefix", 1, sc->prefix, sizeof sc->prefix, err, errlen))
        return -1;
    if ((v = cfg_map_get(store, "connect_timeout")) != NULL &&
        store_seconds(e, v, "connect_timeout", &sc->connect_timeout, err, errlen))
        return -1;
    if ((v = cfg_map_get(store, "command_timeout")) != NULL &&
        store_seconds(e, v, "command_timeout", &sc->command_timeout, err, errlen))
        return -1;
    if ((v = cfg_map_get(store, "order")) != NULL) {
        if (v->type != CFG_BOOL)
            return cfg_value_error(err, errlen, e->path, v, "store: 'order' must be true or "
                                   "false, not %s", cfg_type_name(v->type));
        sc->order = v->boolean;
    }
    if ((v = cfg_map_get(store, "order_lease")) != NULL) {
        if (store_seconds(e, v, "order_lease", &sc->order_lease, err, errlen))
            return -1;
        if (sc->order_lease < 0.1)
            return cfg_value_error(err, errlen, e->path, v,
                                   "store: 'order_lease' must be at least 0.1 seconds");
    }
    if ((v = cfg_map_get(store, "inbox")) != NULL) {
        if (v->type != CFG_BOOL)
            return cfg_value_error(err, errlen, e->path, v, "store: 'inbox' must be true or "
                                   "false, not %s", cfg_type_name(v->type));
        sc->inbox = v->boolean;
    }
    static const struct {
        const char *key;
        size_t at;
    } claim_keys[] = {{"claim_interval", offsetof(struct store_config, claim_interval)},
                      {"claim_idle", offsetof(struct store_config, claim_idle)}};
    for (size_t i = 0; i < sizeof claim_keys / sizeof claim_keys[0]; i++) {
        double *out = (double *)((char *)sc + claim_keys[i].at);
        if ((v = cfg_map_get(store, claim_keys[i].key)) == NULL)
            continue;
        if (store_seconds(e, v, claim_keys[i].key, out, err, errlen))
            return -1;
        if (*out < 0.1)
            return cfg_value_error(err, errlen, e->path, v,
                                   "store: '%s' must be at least 0.1 seconds", claim_keys[i].key);
    }
    int ipv6 = strchr(sc->host, ':') != NULL;
    snprintf(sc->url_shown, sizeof sc->url_shown, "redis://%s%s%s%s%s:%u/%u", sc->username,
             sc->username[0] ? "@" : "", ipv6 ? "[" : "", sc->host, ipv6 ? "]" : "", sc->port,
             sc->db);
    sc->redis = 1;
    return 0;
}

int endpoints_load(const char *path, struct endpoints *out, char *err, size_t errlen)
{
    endpoints_defaults(out);
    if (load_root(path, &out->path, &out->dir, &out->root, err, errlen) < 0)
        goto fail;
    if (out->root->type == CFG_NULL)
        return 0;
    if (out->root->type != CFG_MAP) {
        cfg_value_error(err, errlen, path, out->root,
                        "the top level must be a map of sections (bot, server, ...)");
        goto fail;
    }
    if (read_bot(out, err, errlen) < 0 || read_server(out, err, errlen) < 0 ||
        read_store(out, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    endpoints_free(out);
    return -1;
}

/* Frees what the load allocated and leaves the defaults, so the struct is usable again. */
void endpoints_free(struct endpoints *e)
{
    if (!e)
        return;
    free(e->path); e->path = NULL;
    free(e->dir); e->dir = NULL;
    free(e->bot.script); e->bot.script = NULL;
    free(e->bot.url); e->bot.url = NULL;
    cfg_free(e->root); e->root = NULL;
    endpoints_defaults(e);
}
