/* SPDX-License-Identifier: MIT */
/* lua_json: sb.json, the host's own JSON codec (docs/lua-api.md, sb.json).
 *
 * One pass each way, straight between JSON text and Lua values: no intermediate copies, no
 * marker strings, no rewriting of text. Encoding: tables (arrays by lua-cjson's rule, or marked
 * with sb.json.array, which makes an empty one []), strings, numbers (integers in full, floats
 * in the shortest form that reads back the same), booleans and sb.json.null; object keys in
 * byte order, so the same value always gives the same text. Decoding: strict RFC 8259; integers
 * that fit a lua_Integer become Lua integers, other numbers floats; an empty array becomes an
 * empty table marked as an array. Both stop at 1000 levels of nesting.
 * Uses: Lua. */
#ifndef SB_LUA_JSON_H
#define SB_LUA_JSON_H

#include <lua.h>
#include <stddef.h>

/* Push the sb.json table (and register what the functions below need). */
void lua_json_open(lua_State *L);
/* Push the JSON text of the value at idx; raises a Lua error on values JSON cannot hold (and
 * may raise memory errors). */
void sb_json_encode(lua_State *L, int idx);
/* Mark the table at idx as a JSON array (what sb.json.array does).  [-0,+0,-] */
void sb_json_mark_array(lua_State *L, int idx);
/* Decode JSON text: pushes the value and returns 0, or pushes an error message and returns -1.
 * May raise memory errors. */
int sb_json_decode(lua_State *L, const char *text, size_t len);

#endif
