/* SPDX-License-Identifier: MIT */
/* lua_request: see lua_request.h. */
#include "lua_request.h"

#include "http.h"
#include "lua_sb.h"
#include "router.h"

#include <lauxlib.h>
#include <string.h>

#define REQUEST_MT "switchboard.request"

struct lua_request {
    struct http_exchange *x;       /* NULL for a request made without a connection */
    const struct http_request *r;  /* NULL once invalidated */
};

struct lua_request *lua_request_push(lua_State *L, struct http_exchange *x,
                                     const struct http_request *r)
{
    struct lua_request *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->x = NULL; /* valid only once fully built */
    u->r = NULL;
    lua_createtable(L, 0, 4); /* cache of built fields: json, headers, query, ... */
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, REQUEST_MT);
    u->x = x;
    u->r = r;
    return u;
}

void lua_request_set_params(lua_State *L, int idx, const struct route_match *m)
{
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, (int)m->param_count);
    for (size_t i = 0; i < m->param_count; i++) {
        const struct route_param *p = &m->params[i];
        luaL_Buffer b;
        lua_pushlstring(L, p->name, p->name_len);
        char *out = luaL_buffinitsize(L, &b, p->value_len);
        luaL_pushresultsize(&b, route_decode(p->value, p->value_len, out));
        lua_rawset(L, -3);
    }
    lua_getiuservalue(L, idx, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "params");
    lua_pop(L, 1);
}

void lua_request_invalidate(struct lua_request *u)
{
    if (!u)
        return;
    u->x = NULL;
    u->r = NULL;
}

static void add_first_value(void *ctx, const char *name, const char *value)
{
    lua_State *L = ctx;
    if (lua_getfield(L, -1, name) == LUA_TNIL) {
        lua_pushstring(L, value);
        lua_setfield(L, -3, name);
    }
    lua_pop(L, 1);
}

/* A header sent more than once reads as its values joined with ", " (RFC 9110 §5.3). The name
 * is interned once and used for both the lookup and the store. */
static void add_header(void *ctx, const char *name, const char *value)
{
    lua_State *L = ctx;
    lua_pushstring(L, name);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushstring(L, value);
    } else {
        lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), value);
        lua_remove(L, -2);
    }
    lua_rawset(L, -3);
}

/* application/x-www-form-urlencoded: first value per name, like the query. */
static void push_form(lua_State *L, const char *body, size_t len)
{
    lua_newtable(L);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *name_end = eq ? eq : pair_end;
        if (name_end > p) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            sb_urldecode_into(&b, p, (size_t)(name_end - p));
            luaL_pushresult(&b);
            if (lua_rawget(L, -2) == LUA_TNIL) { /* first value wins */
                lua_pop(L, 1);
                luaL_buffinit(L, &b);
                sb_urldecode_into(&b, p, (size_t)(name_end - p));
                luaL_pushresult(&b);
                luaL_buffinit(L, &b);
                if (eq)
                    sb_urldecode_into(&b, eq + 1, (size_t)(pair_end - eq - 1));
                luaL_pushresult(&b);
                lua_rawset(L, -3);
            } else {
                lua_pop(L, 1);
            }
        }
        p = pair_end + 1;
    }
}

static void push_json(lua_State *L, const struct http_request *r)
{
    size_t skip = 0;
    while (skip < r->body_len && strchr(" \t\r\n", r->body[skip]))
        skip++;
    if (skip == r->body_len)
        sb_raise_http_error(L, 400, "invalid_json", "the request body is empty; expected JSON");
    if (sb_json_decode(L, r->body, r->body_len) != 0) {
        /* The decoder says "invalid JSON at character 12: ..."; keep the part after its lead. */
        const char *why = lua_tostring(L, -1);
        if (why && strncmp(why, "invalid JSON ", 13) == 0)
            why += 13;
        sb_raise_http_error(L, 400, "invalid_json", "the request body is not valid JSON (%s)",
                            why ? why : "unreadable");
    }
}

/* Build field `key` of the request; pushes nil for unknown names. The fields every webhook
 * reads come first. */
static void build_field(lua_State *L, struct lua_request *u, const char *key)
{
    const struct http_request *r = u->r;
    if (strcmp(key, "json") == 0) {
        push_json(L, r);
    } else if (strcmp(key, "query") == 0) {
        lua_createtable(L, 0, 2);
        if (r->query)
            for (size_t i = 0; i < r->query_count; i++)
                add_first_value(L, r->query[i].name, r->query[i].value);
        else
            http_each_query_arg(u->x, add_first_value, L);
    } else if (strcmp(key, "headers") == 0) {
        lua_createtable(L, 0, 8);
        if (r->headers)
            for (size_t i = 0; i < r->header_count; i++)
                add_header(L, r->headers[i].name, r->headers[i].value);
        else
            http_each_header(u->x, add_header, L);
    } else if (strcmp(key, "body") == 0) {
        lua_pushlstring(L, r->body, r->body_len);
    } else if (strcmp(key, "id") == 0) {
        lua_pushstring(L, r->id);
    } else if (strcmp(key, "method") == 0) {
        lua_pushstring(L, r->method);
    } else if (strcmp(key, "path") == 0) {
        lua_pushstring(L, r->path);
    } else if (strcmp(key, "remote_addr") == 0) {
        lua_pushstring(L, r->remote_addr);
    } else if (strcmp(key, "url") == 0) {
        lua_pushfstring(L, "%s://%s%s", r->scheme, r->host, r->raw_uri);
    } else if (strcmp(key, "form") == 0) {
        push_form(L, r->body, r->body_len);
    } else if (strcmp(key, "params") == 0) {
        lua_createtable(L, 0, 0); /* no parameters: set by lua_request_set_params otherwise */
    } else {
        lua_pushnil(L);
    }
}

/* req.<field>  [-0,+1,e]. Only req objects reach it: scripts cannot get the metatable. The
 * built fields are cached in the uservalue table under the key string the script used. */
static int l_request_index(lua_State *L)
{
    struct lua_request *u = lua_touserdata(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (!u || !u->r)
        return luaL_error(L, "req.%s: the request object is no longer valid (it belongs to a "
                             "call that has finished)", key);
    lua_settop(L, 2);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, 3) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    build_field(L, u, key);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 3);
    return 1;
}

static int l_request_newindex(lua_State *L)
{
    return luaL_error(L, "req is read-only (tried to set req.%s)", luaL_optstring(L, 2, "?"));
}

static int l_request_tostring(lua_State *L)
{
    struct lua_request *u = luaL_checkudata(L, 1, REQUEST_MT);
    if (u->r)
        lua_pushfstring(L, "request %s %s [%s]", u->r->method, u->r->path, u->r->id);
    else
        lua_pushliteral(L, "request (finished)");
    return 1;
}

void lua_request_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__index", l_request_index},
        {"__newindex", l_request_newindex},
        {"__tostring", l_request_tostring},
        {"__metatable", NULL}, /* false: scripts can neither read nor replace it */
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, REQUEST_MT))
        luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
}
