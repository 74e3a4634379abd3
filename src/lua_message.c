/* SPDX-License-Identifier: MIT */
/* lua_message: see lua_message.h. */
#include "lua_message.h"

#include "lua_sb.h"

#include <lauxlib.h>
#include <math.h>

/* nil and JSON null (sb.json.null, a NULL light userdata) are both "absent". */
static int absent(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    return t == LUA_TNIL || (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL);
}

/* Python's truthiness, which Rasa's `value or default` relies on: nil, null, false, 0, "" and an
 * empty table are false. */
static int falsy(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return 1;
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, idx) == NULL;
    case LUA_TBOOLEAN:
        return !lua_toboolean(L, idx);
    case LUA_TNUMBER:
        return lua_tonumber(L, idx) == 0;
    case LUA_TSTRING:
        return lua_rawlen(L, idx) == 0;
    case LUA_TTABLE:
        lua_pushnil(L);
        if (lua_next(L, idx)) {
            lua_pop(L, 2);
            return 0;
        }
        return 1;
    default:
        return 0;
    }
}

/* Replace the value at idx by its id string: 123 (or the float 123.0) -> "123", a boolean ->
 * "true"/"false"; anything but a string, number or boolean is a 400. */
static void to_id_string(lua_State *L, int idx, const char *field)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx)) {
            lua_Number d = lua_tonumber(L, idx);
            if (d == floor(d) && d > -0x1p63 && d < 0x1p63) {
                lua_pushinteger(L, (lua_Integer)d);
                lua_tostring(L, -1);
                lua_replace(L, idx);
                return;
            }
        }
        lua_pushvalue(L, idx);
        lua_tostring(L, -1);
        lua_replace(L, idx);
        return;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        lua_replace(L, idx);
        return;
    default:
        sb_raise_http_error(L, 400, "invalid_message", "%s must be a string or a number, not a %s",
                            field, luaL_typename(L, idx));
    }
}

/* normalize(m, channel_name, headers) -> the UserMessage the bot gets from message table m of
 * channel channel_name, whose request headers are `headers`. Raises the 400 invalid_message
 * errors in the order the fields are listed in docs/contract.md §3.5.  [-0,+1,v] */
static int l_normalize(lua_State *L)
{
    enum { M = 1, CHANNEL, HEADERS, TEXT, INPUT, METADATA, SENDER, ID, PARSE, MSG };
    lua_settop(L, HEADERS);
    if (!lua_istable(L, M))
        return luaL_error(L, "channel.receive must return an array of message tables; an "
                             "element is a %s",
                          luaL_typename(L, M));
    lua_getfield(L, M, "text");
    if (absent(L, TEXT)) {
        lua_pushnil(L);
        lua_replace(L, TEXT);
    } else if (lua_type(L, TEXT) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, TEXT, &len);
        sb_push_stripped(L, s, len);
        lua_replace(L, TEXT);
    } else {
        sb_raise_http_error(L, 400, "invalid_message", "the message text must be a string, not a %s",
                            luaL_typename(L, TEXT));
    }
    lua_getfield(L, M, "input_channel");
    if (falsy(L, INPUT)) {
        lua_pushvalue(L, CHANNEL);
        lua_replace(L, INPUT);
    } else {
        to_id_string(L, INPUT, "input_channel");
    }
    lua_getfield(L, M, "metadata");
    if (absent(L, METADATA)) {
        lua_pushnil(L);
        lua_replace(L, METADATA);
    }
    lua_getfield(L, M, "sender_id");
    if (absent(L, SENDER)) {
        lua_pushliteral(L, "default");
        lua_replace(L, SENDER);
    } else {
        to_id_string(L, SENDER, "sender_id");
    }
    lua_getfield(L, M, "message_id");
    if (absent(L, ID)) {
        sb_push_uuid(L);
        lua_replace(L, ID);
    } else {
        to_id_string(L, ID, "message_id");
    }
    lua_getfield(L, M, "parse_data");

    lua_createtable(L, 0, 7);
    static const struct {
        int slot;
        const char *name;
    } fields[] = {{TEXT, "text"},         {SENDER, "sender_id"},    {ID, "message_id"},
                  {INPUT, "input_channel"}, {METADATA, "metadata"}, {PARSE, "parse_data"},
                  {HEADERS, "headers"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (!lua_isnil(L, fields[i].slot)) {
            lua_pushvalue(L, fields[i].slot);
            lua_setfield(L, MSG, fields[i].name);
        }
    }
    return 1;
}

int lua_message_open(lua_State *L)
{
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_normalize);
    lua_setfield(L, -2, "normalize");
    return 1;
}
