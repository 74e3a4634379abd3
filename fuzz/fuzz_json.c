/* SPDX-License-Identifier: MIT */
/* fuzz_json: libFuzzer target for sb.json (src/lua_json.c). Decodes the input; when it decodes,
 * encodes the value, decodes that text and encodes again: the encoding of a decoded value must
 * decode, and the two encodings must be the same text (the encoder's output is canonical).
 * Any difference, a raised error after a successful decode, or an unbalanced stack aborts.
 * Uses: lua_json, Lua. */
#include "lua_json.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lua_State *state;

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_json: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* (text) -> nothing when it does not decode, else first encoding, second encoding  [-0,+2,e] */
static int l_round_trip(lua_State *L)
{
    size_t len;
    const char *text = lua_tolstring(L, 1, &len);
    if (sb_json_decode(L, text, len) != 0) {
        if (lua_gettop(L) != 2 || !lua_isstring(L, 2))
            fail("a failed decode did not leave exactly its message", NULL);
        return 0;
    }
    if (lua_gettop(L) != 2)
        fail("a decode left the stack unbalanced", NULL);
    sb_json_encode(L, 2); /* 3: first encoding */
    size_t first_len;
    const char *first = lua_tolstring(L, 3, &first_len);
    if (sb_json_decode(L, first, first_len) != 0) /* 4 */
        fail("the encoding of a decoded value does not decode", lua_tostring(L, -1));
    sb_json_encode(L, 4); /* 5: second encoding */
    if (lua_gettop(L) != 5)
        fail("an encode left the stack unbalanced", NULL);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 5);
    return 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state) {
        state = luaL_newstate();
        if (!state)
            return 0;
        lua_json_open(state); /* registers the array mark */
        lua_setglobal(state, "json");
    }
    lua_State *L = state;
    lua_pushcfunction(L, l_round_trip);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK)
        fail("raised", lua_tostring(L, -1));
    if (lua_gettop(L) == 2) {
        size_t first_len, second_len;
        const char *first = lua_tolstring(L, 1, &first_len);
        const char *second = lua_tolstring(L, 2, &second_len);
        if (first_len != second_len || memcmp(first, second, first_len) != 0) {
            fprintf(stderr, "first:  %.*s\nsecond: %.*s\n", (int)first_len, first,
                    (int)second_len, second);
            fail("the second encoding differs from the first", NULL);
        }
    } else if (lua_gettop(L) != 0) {
        fail("the stack is unbalanced after a call", NULL);
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
