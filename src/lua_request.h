/* SPDX-License-Identifier: MIT */
/* lua_request: the read-only `req` object scripts receive (docs/contract.md §3.3): method, path,
 * url, query, headers, body, json, form, remote_addr, id, and params (the {name} segments of the
 * declared route it matched, §3.6; empty otherwise). Fields are built on first use and cached;
 * `json` and `form` decode the body on first use, and a body that is not JSON raises the host's
 * 400 invalid_json error. The object is valid during the call it was passed to; afterwards every
 * access raises. Uses: Lua, lua_sb, http (plain request data and header iteration only), router
 * (a match's parameters and their decoding). */
#ifndef SB_LUA_REQUEST_H
#define SB_LUA_REQUEST_H

#include <lua.h>

struct http_exchange;
struct http_request;
struct route_match;

/* Register the req metatable in a state (once, when the state is created). */
void lua_request_open(lua_State *L);
struct lua_request;

/* Push a new req object over the request (borrowed: both must stay valid until invalidated).
 * Returns the object's handle for lua_request_invalidate. Allocates: call it in a protected call. */
struct lua_request *lua_request_push(lua_State *L, struct http_exchange *x,
                                     const struct http_request *r);
/* Set req.params of the req object at idx from a route match: each parameter's name and its
 * percent-decoded value. Allocates: call it in a protected call. */
void lua_request_set_params(lua_State *L, int idx, const struct route_match *m);
/* Detach a req object from its request: later accesses raise. Touches no Lua state, so it never
 * raises, whatever a script did to the object (its metatable, for one). */
void lua_request_invalidate(struct lua_request *u);

#endif
