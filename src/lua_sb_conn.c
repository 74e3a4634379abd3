/* SPDX-License-Identifier: MIT */
/* lua_sb_conn: the `conn` object a connection channel's hooks get, and sb.connections
 * (docs/lua-api.md, "Connections"). A conn holds its connection's id; every call goes through the
 * running task's operations, which find the connection on the task's worker (it may be gone:
 * then a send returns nil and a message). Each state keeps one object per connection, so
 * conn.data lasts from on_open to on_close. Uses: Lua, lua_sb (struct lua_task). */
#include "lua_sb.h"

#include "lua_json.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define CONN_MT "switchboard.connection"
#define ID_SIZE 33

static char key_objects; /* registry: id -> conn object, per state */

struct lua_conn {
    char id[ID_SIZE];
};

static struct lua_conn *check_conn(lua_State *L)
{
    struct lua_conn *c = luaL_testudata(L, 1, CONN_MT);
    if (!c)
        luaL_argerror(L, 1, "a connection expected (call it as conn:method(...))");
    return c;
}

/* The task whose worker owns the connections, or an error naming the call. */
static struct lua_task *connection_task(lua_State *L, const char *what)
{
    struct lua_task *t = lua_task_of(L);
    if (!t || !t->ops || !t->ops->conn_send)
        luaL_error(L, "%s can only be called while the host serves requests (not in init, not "
                      "offline)", what);
    return t;
}

/* Text, or binary when asked: a string either way. */
static const char *check_data(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_argerror(L, idx, lua_type(L, idx) == LUA_TTABLE
                                  ? "a string expected (encode a table with sb.json.encode)"
                                  : "a string expected");
    return lua_tolstring(L, idx, len);
}

/* conn:send(data[, binary]) -> true | nil, "the connection is closed"  [-0,+1|2,e] */
static int l_conn_send(lua_State *L)
{
    struct lua_conn *c = check_conn(L);
    size_t len;
    const char *data = check_data(L, 2, &len);
    int binary = lua_toboolean(L, 3);
    struct lua_task *t = connection_task(L, "conn:send");
    if (t->ops->conn_send(t, c->id, binary, data, len) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "the connection is closed");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:close([code[, reason]]): the close handshake starts; on_close follows  [-0,+0,e] */
static int l_conn_close(lua_State *L)
{
    struct lua_conn *c = check_conn(L);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    const char *reason = luaL_optstring(L, 3, "");
    if (!(code == 1000 || (code >= 3000 && code <= 4999)))
        luaL_argerror(L, 2, "a close code is 1000, or 3000 to 4999 for an application's own");
    struct lua_task *t = connection_task(L, "conn:close");
    t->ops->conn_close(t, c->id, (int)code, reason);
    return 0;
}

/* conn:bind(sender_id): sends to sender_id (sb.connections.send, a channel's senders) reach
 * this connection from then on, until it closes  [-0,+1,e] */
static int l_conn_bind(lua_State *L)
{
    struct lua_conn *c = check_conn(L);
    const char *sender = luaL_checkstring(L, 2);
    struct lua_task *t = connection_task(L, "conn:bind");
    lua_pushboolean(L, t->ops->conn_bind(t, c->id, sender) == 0);
    return 1;
}

/* conn:keepalive(seconds, text): send text every `seconds` while the connection is open (an
 * application's own ping, such as Engine.IO's "2"); 0 stops it  [-0,+0,e] */
static int l_conn_keepalive(lua_State *L)
{
    struct lua_conn *c = check_conn(L);
    double seconds = luaL_checknumber(L, 2);
    size_t len = 0;
    const char *text = luaL_optlstring(L, 3, "", &len);
    if (!(seconds >= 0) || seconds > 3600)
        luaL_argerror(L, 2, "seconds from 0 (stop) to 3600");
    struct lua_task *t = connection_task(L, "conn:keepalive");
    t->ops->conn_keepalive(t, c->id, seconds, text, len);
    return 0;
}

/* conn.id, conn.data, and the methods.  [-0,+1,-] */
static int l_conn_index(lua_State *L)
{
    struct lua_conn *c = check_conn(L);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "id") == 0) {
        lua_pushstring(L, c->id);
        return 1;
    }
    if (key && strcmp(key, "data") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int l_conn_newindex(lua_State *L)
{
    return luaL_error(L, "a connection's fields cannot be set: keep your own values in conn.data");
}

static int l_conn_tostring(lua_State *L)
{
    struct lua_conn *c = check_conn(L);
    lua_pushfstring(L, "connection %s", c->id);
    return 1;
}

/* sb.connections.send(sender_id, data[, binary]) -> the number of this host's connections it
 * went to (with the Redis store the other hosts' get it too, uncounted: connections.c)
 * [-0,+1,e] */
static int l_send_to_sender(lua_State *L)
{
    const char *sender = luaL_checkstring(L, 1);
    size_t len;
    const char *data = check_data(L, 2, &len);
    int binary = lua_toboolean(L, 3);
    struct lua_task *t = connection_task(L, "sb.connections.send");
    lua_pushinteger(L, t->ops->send_to_sender(t, sender, binary, data, len));
    return 1;
}

void lua_sb_push_connection(lua_State *L, const char *id)
{
    luaL_checkstack(L, 4, "a connection");
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_objects) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &key_objects);
    }
    if (lua_getfield(L, -1, id) == LUA_TUSERDATA) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    struct lua_conn *c = lua_newuserdatauv(L, sizeof *c, 1);
    memset(c, 0, sizeof *c);
    strncpy(c->id, id, ID_SIZE - 1);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, CONN_MT);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, id);
    lua_remove(L, -2);
}

/* [-0,+0,m] */
static int l_forget(lua_State *L)
{
    const char *id = lua_touserdata(L, 1);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_objects) == LUA_TTABLE) {
        lua_pushnil(L);
        lua_setfield(L, -2, id);
    }
    return 0;
}

void lua_sb_forget_connection(lua_State *L, const char *id)
{
    if (!L || !lua_checkstack(L, 3))
        return;
    lua_pushcfunction(L, l_forget);
    lua_pushlightuserdata(L, (void *)id);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        lua_pop(L, 1); /* out of memory: the object stays until the state closes */
}

/* ---- conn.data across a reload --------------------------------------------------------------- */

struct data_copy {
    const char *id;
    char *json; /* malloc'ed */
    size_t len;
};

/* The JSON of conn.data in this state, when the object exists.  [-0,+0,e] */
static int l_data_out(lua_State *L)
{
    struct data_copy *copy = lua_touserdata(L, 1);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_objects) != LUA_TTABLE ||
        lua_getfield(L, -1, copy->id) != LUA_TUSERDATA)
        return 0;
    lua_getiuservalue(L, -1, 1);
    if (!lua_istable(L, -1))
        return 0;
    lua_pushnil(L);
    if (lua_next(L, -2) == 0)
        return 0; /* an empty table: nothing to carry */
    lua_pop(L, 2);
    sb_json_encode(L, lua_gettop(L));
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    copy->json = malloc(len + 1);
    if (!copy->json)
        return luaL_error(L, "out of memory");
    memcpy(copy->json, text, len + 1);
    copy->len = len;
    return 0;
}

/* conn.data in this state becomes the decoded copy.  [-0,+0,e] */
static int l_data_in(lua_State *L)
{
    struct data_copy *copy = lua_touserdata(L, 1);
    lua_sb_push_connection(L, copy->id);
    if (sb_json_decode(L, copy->json, copy->len) != 0 || !lua_istable(L, -1))
        return luaL_error(L, "not a table");
    lua_setiuservalue(L, -2, 1);
    return 0;
}

int lua_sb_carry_connection_data(lua_State *from, lua_State *to, const char *id, char *err,
                                 size_t errlen)
{
    struct data_copy copy = {id, NULL, 0};
    lua_pushcfunction(from, l_data_out);
    lua_pushlightuserdata(from, &copy);
    int rc = 0;
    if (lua_pcall(from, 1, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_type(from, -1) == LUA_TSTRING ? lua_tostring(from, -1)
                                                                      : "an error");
        lua_pop(from, 1);
        return -1;
    }
    if (!copy.json)
        return 0;
    lua_pushcfunction(to, l_data_in);
    lua_pushlightuserdata(to, &copy);
    if (lua_pcall(to, 1, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_type(to, -1) == LUA_TSTRING ? lua_tostring(to, -1)
                                                                    : "an error");
        lua_pop(to, 1);
        rc = -1;
    }
    free(copy.json);
    return rc;
}

void lua_sb_conn_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"send", l_conn_send},
        {"close", l_conn_close},
        {"bind", l_conn_bind},
        {"keepalive", l_conn_keepalive},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__index", l_conn_index},
        {"__newindex", l_conn_newindex},
        {"__tostring", l_conn_tostring},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, CONN_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "methods");
        lua_pushliteral(L, CONN_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    static const luaL_Reg functions[] = {
        {"send", l_send_to_sender},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
}
