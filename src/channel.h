/* SPDX-License-Identifier: MIT */
/* channel: finding, loading and validating channel scripts (docs/contract.md §3.1, §3.2, §3.6).
 *
 * Resolves each credentials.yml key to a script (a bundled name, a Lua module path searched in
 * the credentials file's folder then in the bundled channels/, or a .lua file; an unknown key
 * gets the nearest name), loads it in text mode into a worker's Lua state, checks the table it
 * returns (name, hook types, hook names one slip away from a hook, routes, the `parameters`
 * declaration), checks the channel's credentials.yml keys against that declaration, and runs its
 * init(config) (for an undeclared channel, noting the names init looked for and did not find, to
 * warn about near misses once per load). Every failure is one line naming the file, the key and
 * the reason. Uses: config (plain data), cfg_tree (key positions), lua_state, router (route
 * parsing), channel_hooks, log (the warnings). */
#ifndef SB_CHANNEL_H
#define SB_CHANNEL_H

#include <lua.h>
#include <stddef.h>

#include "router.h"

struct credentials;
struct cfg_value;

struct channel_def {
    char *key;                       /* the credentials key */
    char *script;                    /* absolute path of the script */
    const struct cfg_value *params;  /* borrowed from the credentials tree; NULL when empty */
    char *name;                      /* the script's `name`, known after the first load */
    int line, column;                /* position of the key in credentials.yml */
};

/* The spec of the route a channel's `websocket` path declares (never "METHOD /path", so no
 * channel.routes key can be it). */
#define CHANNEL_WEBSOCKET_ROUTE "websocket"

struct channel_set {
    char *source;                    /* credentials file as given, or "(no credentials)" */
    size_t count;
    struct channel_def *defs;        /* file order */
};

/* Resolve every key of `cred` (NULL: the rest channel alone). Returns 0 or -1 with err. */
int channel_resolve(const struct credentials *cred, const char *data_dir, struct channel_set *out,
                    char *err, size_t errlen);

/* Load every channel into L: refs[i] receives a registry reference to channel i's table.
 * The first load of a set (names not yet known) records names and fills `routes` (which may be
 * NULL on later loads); it refuses two channels with the same name. Returns 0 or -1 with err. */
int channel_load_all(lua_State *L, struct channel_set *set, int *refs, struct route_table *routes,
                     char *err, size_t errlen);

/* Keep only the channel whose key or name is `connector` (docs/contract.md §1 --connector). Call
 * after the first load. Returns 0, or -1 when no channel matches. */
int channel_filter(struct channel_set *set, const char *connector, char *err, size_t errlen);

void channel_set_free(struct channel_set *set);


#endif
