/* lua_request: the read-only `req` object scripts receive (SPEC §3.3): method, path, url, query,
 * headers, body, json, form, remote_addr, id. Fields are built on first use and cached; `json`
 * and `form` decode the body on first use, and a body that is not JSON raises the host's
 * 400 invalid_json error. The object is valid during the call it was passed to; afterwards every
 * access raises. Uses: Lua, lua_sb, http (plain request data and header iteration only). */
#ifndef SB_LUA_REQUEST_H
#define SB_LUA_REQUEST_H

#include <lua.h>

struct http_exchange;
struct http_request;

/* Register the req metatable in a state (once, when the state is created). */
void lua_request_open(lua_State *L);
/* Push a new req object over the request (borrowed: both must stay valid until invalidated). */
void lua_request_push(lua_State *L, struct http_exchange *x, const struct http_request *r);
/* Detach the req object at idx from its request: later accesses raise. */
void lua_request_invalidate(lua_State *L, int idx);

#endif
