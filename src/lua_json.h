/* lua_json: sb.json, lua-cjson with the fixes JSON passing through the host needs.
 *
 * lua-cjson 2.1.0 decodes [] and {} to the same empty table, escapes "/" as "\/" and writes
 * numbers with 14 significant digits. Here an empty JSON array decodes to an empty table marked
 * as an array (sb.json.array), a marked table encodes as [] at any depth, "/" is written plainly
 * and every number is written exactly (integers in full, floats in the shortest form that reads
 * back the same). Decoding still gives floats, so integers beyond 2^53 lose digits.
 * Uses: lua-cjson, Lua. */
#ifndef SB_LUA_JSON_H
#define SB_LUA_JSON_H

#include <lua.h>
#include <stddef.h>

/* Push the sb.json table (and register what the functions below need). */
void lua_json_open(lua_State *L);
/* Push the JSON text of the value at idx; raises on values JSON cannot hold. */
void sb_json_encode(lua_State *L, int idx);
/* Decode JSON text: pushes the value and returns 0, or pushes an error message and returns -1. */
int sb_json_decode(lua_State *L, const char *text, size_t len);

#endif
