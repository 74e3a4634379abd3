/* config: reads credentials.yml and endpoints.yml into plain C data.
 *
 * Provides a YAML tree with positions (cfg_value), `${VAR}` expansion of scalars, the channel
 * entries of credentials.yml in file order, and the bot and server sections of endpoints.yml.
 * Every error is one line "FILE:LINE:COLUMN: reason" naming the key or variable at fault.
 * Uses: libyaml (this is the only file that includes <yaml.h>). Knows nothing of Lua or HTTP. */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stddef.h>

typedef enum {
    CFG_NULL,   /* empty value, ~, null */
    CFG_STRING, /* quoted scalars, plain scalars that are not one of the others, expanded ${VAR} */
    CFG_BOOL,   /* plain true/false (any case, YAML 1.2 core schema) */
    CFG_INT,    /* plain decimal, 0x hex, 0o octal integers that fit in long long */
    CFG_FLOAT,  /* plain decimal floats, .inf, -.inf, .nan */
    CFG_MAP,
    CFG_SEQ
} cfg_type;

typedef struct cfg_value {
    cfg_type type;
    int line, column;        /* 1-based position of the value in its file */
    char *text;              /* scalars: the text after ${VAR} expansion (owned); NULL otherwise */
    int boolean;             /* CFG_BOOL */
    long long integer;       /* CFG_INT */
    double number;           /* CFG_FLOAT (also set for CFG_INT) */
    size_t count;            /* CFG_MAP: number of pairs; CFG_SEQ: number of items */
    char **keys;             /* CFG_MAP: keys in file order (owned) */
    struct cfg_pos {
        int line, column;    /* 1-based */
    } *key_pos;              /* CFG_MAP: position of each key, parallel to keys (owned); may be
                              * NULL in a map built by hand */
    struct cfg_value *items; /* CFG_MAP: values, parallel to keys; CFG_SEQ: items (owned) */
} cfg_value;

/* Parse YAML text. `name` is used in error messages. Returns 0 and a tree the caller owns (an empty
 * document gives a CFG_NULL value), or -1 with "NAME:LINE:COLUMN: reason" in err. Scalars holding
 * ${VAR} are expanded from the environment; an unset variable is an error naming it. */
int cfg_parse_string(const char *name, const char *text, size_t len, cfg_value **out, char *err,
                     size_t errlen);
/* Same for a file; an unreadable file is "PATH: cannot read: <strerror>". */
int cfg_parse_file(const char *path, cfg_value **out, char *err, size_t errlen);
void cfg_free(cfg_value *v);
/* The value under `key` in a map, or NULL (also when `map` is not a map). Borrowed. */
const cfg_value *cfg_map_get(const cfg_value *map, const char *key);

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

struct endpoints {
    char *path;                  /* NULL when no endpoints file was used */
    char *dir;                   /* its folder, absolute */
    struct bot_config bot;
    struct server_limits server;
    cfg_value *root;             /* owned, NULL when no file */
};

/* Fill defaults: demo bot, the server limits above, path/dir/root NULL. */
void endpoints_defaults(struct endpoints *e);
/* Load endpoints.yml over the defaults. `bot:` needs exactly one of `url` or `script`; unknown keys
 * in `server:` are errors (they are typos); other top-level sections (Rasa's tracker_store,
 * action_endpoint, ...) are ignored. Errors as for credentials_load. */
int endpoints_load(const char *path, struct endpoints *out, char *err, size_t errlen);
void endpoints_free(struct endpoints *e);

#endif
