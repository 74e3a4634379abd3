/* SPDX-License-Identifier: MIT */
/* channel_hooks: see channel_hooks.h. */
#include "channel_hooks.h"

#include <lauxlib.h>
#include <string.h>

/* In the order the docs list them (docs/lua-api.md). */
const struct channel_hook channel_hooks[] = {
    {"init", LUA_TFUNCTION, HOOK_LIFECYCLE},
    {"startup", LUA_TFUNCTION, HOOK_LIFECYCLE},
    {"derived_secrets", LUA_TFUNCTION, HOOK_LIFECYCLE},
    {"verify", LUA_TFUNCTION, HOOK_REQUEST},
    {"reject", LUA_TFUNCTION, HOOK_REQUEST},
    {"receive", LUA_TFUNCTION, HOOK_REQUEST},
    {"sender", LUA_TFUNCTION, HOOK_FIELD},
    {"message", LUA_TFUNCTION, HOOK_FIELD},
    {"input_channel", LUA_TFUNCTION, HOOK_FIELD},
    {"metadata", LUA_TFUNCTION, HOOK_FIELD},
    {"message_id", LUA_TFUNCTION, HOOK_FIELD},
    {"before_message", LUA_TFUNCTION, HOOK_REQUEST},
    {"after_message", LUA_TFUNCTION, HOOK_REQUEST},
    {"on_bot_error", LUA_TFUNCTION, HOOK_REQUEST},
    {"respond", LUA_TFUNCTION, HOOK_REQUEST},
    {"stream", LUA_TFUNCTION, HOOK_REQUEST},
    {"ack", LUA_TFUNCTION, HOOK_REQUEST},
    {"on_open", LUA_TFUNCTION, HOOK_REQUEST},
    {"on_message", LUA_TFUNCTION, HOOK_REQUEST},
    {"on_close", LUA_TFUNCTION, HOOK_REQUEST},
    {"send_response", LUA_TFUNCTION, HOOK_SENDER},
    {"send_text_message", LUA_TFUNCTION, HOOK_SENDER},
    {"send_image_url", LUA_TFUNCTION, HOOK_SENDER},
    {"send_attachment", LUA_TFUNCTION, HOOK_SENDER},
    {"send_text_with_buttons", LUA_TFUNCTION, HOOK_SENDER},
    {"send_quick_replies", LUA_TFUNCTION, HOOK_SENDER},
    {"send_elements", LUA_TFUNCTION, HOOK_SENDER},
    {"send_custom_json", LUA_TFUNCTION, HOOK_SENDER},
    {"routes", LUA_TTABLE, HOOK_SETTING},
    {"websocket", LUA_TSTRING, HOOK_SETTING},
    {"mount", LUA_TSTRING, HOOK_SETTING},
    {"async", LUA_TBOOLEAN, HOOK_SETTING},
    {"parameters", LUA_TTABLE, HOOK_SETTING},
};

const size_t channel_hook_count = sizeof channel_hooks / sizeof channel_hooks[0];

/* The readers of switchboard.channel (Params:string, ...), one per type. */
const char *const channel_parameter_types[] = {"string", "url",  "base_url", "flag",
                                               "number", "seconds", "list", "map"};
const size_t channel_parameter_type_count =
    sizeof channel_parameter_types / sizeof channel_parameter_types[0];

/* Push the names of one kind as a sequence, in registry order. */
static void push_names(lua_State *L, enum hook_kind kind, const char *skip)
{
    lua_newtable(L);
    lua_Integer n = 0;
    for (size_t i = 0; i < channel_hook_count; i++) {
        if (channel_hooks[i].kind != kind || (skip && strcmp(channel_hooks[i].name, skip) == 0))
            continue;
        lua_pushstring(L, channel_hooks[i].name);
        lua_rawseti(L, -2, ++n);
    }
}

int channel_hooks_open(lua_State *L)
{
    static const char *const kind_names[] = {"lifecycle", "request", "field", "sender",
                                             "setting"};
    lua_createtable(L, 0, 4);
    push_names(L, HOOK_FIELD, NULL);
    lua_setfield(L, -2, "fields");
    /* The per-kind senders; send_response handles a whole message and is not one of them. */
    push_names(L, HOOK_SENDER, "send_response");
    lua_setfield(L, -2, "senders");
    lua_createtable(L, 0, (int)channel_hook_count);
    for (size_t i = 0; i < channel_hook_count; i++) {
        lua_pushstring(L, kind_names[channel_hooks[i].kind]);
        lua_setfield(L, -2, channel_hooks[i].name);
    }
    lua_setfield(L, -2, "kinds");
    lua_createtable(L, (int)channel_parameter_type_count, 0);
    for (size_t i = 0; i < channel_parameter_type_count; i++) {
        lua_pushstring(L, channel_parameter_types[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "parameter_types");
    return 1;
}
