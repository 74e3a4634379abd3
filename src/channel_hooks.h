/* SPDX-License-Identifier: MIT */
/* channel_hooks: the one list of the fields a channel table may have (its hooks, senders and
 * settings) with the Lua type each must have. channel.c checks channel tables against it, and
 * every Lua state gets it as the module "switchboard.hooks", so the pipeline never spells the
 * names again. Uses: Lua. */
#ifndef SB_CHANNEL_HOOKS_H
#define SB_CHANNEL_HOOKS_H

#include <lua.h>
#include <stddef.h>

enum hook_kind {
    HOOK_LIFECYCLE, /* init, startup, derived_secrets */
    HOOK_REQUEST,   /* verify, reject, receive, respond, stream, ack, before/after_message,
                     * on_bot_error */
    HOOK_FIELD,     /* the per-field hooks the default receive calls */
    HOOK_SENDER,    /* push senders (docs/lua-api.md, "Push") */
    HOOK_SETTING    /* not a function: routes, async, parameters */
};

struct channel_hook {
    const char *name;
    int type;            /* LUA_TFUNCTION, LUA_TTABLE, LUA_TBOOLEAN */
    enum hook_kind kind;
};

extern const struct channel_hook channel_hooks[];
extern const size_t channel_hook_count;

/* The types a `parameters` declaration may give (docs/lua-api.md, "parameters"): the readers of
 * switchboard.channel, in the order messages list them. */
extern const char *const channel_parameter_types[];
extern const size_t channel_parameter_type_count;

/* The module "switchboard.hooks": {fields = {...}, senders = {...}, kinds = {name = "lifecycle"|
 * "request"|"field"|"sender"|"setting"}, parameter_types = {...}}, the names in registry order.
 * [-0,+1,m] */
int channel_hooks_open(lua_State *L);

#endif
