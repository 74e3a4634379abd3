/* SPDX-License-Identifier: MIT */
/* lua_message: see lua_message.h. */
#include "lua_message.h"

#include "lua_sb.h"

#include <lauxlib.h>
#include <limits.h>
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

/* Push the UserMessage the bot gets from the message table at index m of channel channel_name,
 * whose request headers are at `headers` (absolute indices). Raises the 400 invalid_message
 * errors in the order the fields are listed in docs/contract.md §3.5.  [-0,+1,v] */
static void push_user_message(lua_State *L, int m, int channel, int headers)
{
    luaL_checkstack(L, 12, NULL);
    const int base = lua_gettop(L);
    const int TEXT = base + 1, INPUT = base + 2, METADATA = base + 3, SENDER = base + 4,
              ID = base + 5, PARSE = base + 6, MSG = base + 7;
    if (!lua_istable(L, m))
        luaL_error(L, "channel.receive must return an array of message tables; an element is a %s",
                   luaL_typename(L, m));
    lua_getfield(L, m, "text");
    if (absent(L, TEXT)) {
        lua_pushnil(L);
        lua_replace(L, TEXT);
    } else if (lua_type(L, TEXT) == LUA_TSTRING) {
        sb_push_stripped(L, TEXT);
        lua_replace(L, TEXT);
    } else {
        sb_raise_http_error(L, 400, "invalid_message", "the message text must be a string, not a %s",
                            luaL_typename(L, TEXT));
    }
    lua_getfield(L, m, "input_channel");
    if (falsy(L, INPUT)) {
        lua_pushvalue(L, channel);
        lua_replace(L, INPUT);
    } else {
        to_id_string(L, INPUT, "input_channel");
    }
    lua_getfield(L, m, "metadata");
    if (absent(L, METADATA)) {
        lua_pushnil(L);
        lua_replace(L, METADATA);
    }
    lua_getfield(L, m, "sender_id");
    if (absent(L, SENDER)) {
        lua_pushliteral(L, "default");
        lua_replace(L, SENDER);
    } else {
        to_id_string(L, SENDER, "sender_id");
    }
    lua_getfield(L, m, "message_id");
    if (absent(L, ID)) {
        sb_push_uuid(L);
        lua_replace(L, ID);
    } else {
        to_id_string(L, ID, "message_id");
    }
    lua_getfield(L, m, "parse_data");

    lua_createtable(L, 0, 7);
    const struct {
        int slot;
        const char *name;
    } fields[] = {{TEXT, "text"},         {SENDER, "sender_id"},    {ID, "message_id"},
                  {INPUT, "input_channel"}, {METADATA, "metadata"}, {PARSE, "parse_data"},
                  {headers, "headers"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (!lua_isnil(L, fields[i].slot)) {
            lua_pushvalue(L, fields[i].slot);
            lua_setfield(L, MSG, fields[i].name);
        }
    }
    lua_replace(L, TEXT);
    lua_settop(L, TEXT);
}

/* normalize_all(list, channel_name, headers) -> an array of the UserMessages of list's elements,
 * up to its first nil as ipairs goes: all are checked before the caller runs any. One call and
 * a presized array, since it runs for every request and every message on a connection. */
static int l_normalize_all(lua_State *L)
{
    enum { LIST = 1, CHANNEL, HEADERS, OUT };
    lua_settop(L, HEADERS);
    luaL_checktype(L, LIST, LUA_TTABLE);
    lua_Integer count = 0;
    while (lua_geti(L, LIST, count + 1) != LUA_TNIL) {
        lua_pop(L, 1);
        count++;
    }
    lua_pop(L, 1);
    lua_createtable(L, count < INT_MAX ? (int)count : 0, 0);
    for (lua_Integer i = 1; i <= count; i++) {
        lua_geti(L, LIST, i);
        push_user_message(L, OUT + 1, CHANNEL, HEADERS);
        lua_rawseti(L, OUT, i);
        lua_pop(L, 1);
    }
    return 1;
}

int lua_message_open(lua_State *L)
{
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_normalize_all);
    lua_setfield(L, -2, "normalize_all");
    return 1;
}
