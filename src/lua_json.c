/* lua_json: see lua_json.h. */
#include "lua_json.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registry keys (addresses of these variables). */
static char key_encode, key_decode, key_array_mt;

/* An empty array travels through lua-cjson as a one-element array holding this string. */
#define EMPTY_ARRAY_SENTINEL "\001sb-empty-array\001"
#define EMPTY_ARRAY_JSON "\"\\u0001sb-empty-array\\u0001\""
/* lua-cjson writes numbers with 14 significant digits; a number that needs more travels as a
 * string "\002<exact digits>\002" and is put back as a number after encoding. */
#define NUMBER_MARK '\002'
#define NUMBER_JSON_OPEN "\"\\u0002"
#define NUMBER_JSON_CLOSE "\\u0002\""
#define MAX_DEPTH 200

static int is_array_marked(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_array_mt);
    int marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
}

static int is_marked_empty_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || !is_array_marked(L, idx))
        return 0;
    lua_pushnil(L);
    if (lua_next(L, idx)) {
        lua_pop(L, 2);
        return 0;
    }
    return 1;
}

/* ---- encoding ------------------------------------------------------------------------------- */

/* 1 when lua-cjson's 14 significant digits would change the number at idx. */
static int is_wide_number(lua_State *L, int idx)
{
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        return i > 99999999999999LL || i < -99999999999999LL;
    }
    double d = lua_tonumber(L, idx);
    if (d != d || d - d != 0) /* NaN and infinities: lua-cjson's own rules apply */
        return 0;
    char text[32];
    snprintf(text, sizeof text, "%.14g", d);
    return strtod(text, NULL) != d;
}

/* Push the exact text of the number at idx: integers in full, floats in the shortest form
 * that reads back to the same double. */
static void push_exact_number(lua_State *L, int idx)
{
    char text[40];
    if (lua_isinteger(L, idx)) {
        snprintf(text, sizeof text, "%c%lld%c", NUMBER_MARK, (long long)lua_tointeger(L, idx),
                 NUMBER_MARK);
    } else {
        double d = lua_tonumber(L, idx);
        int precision = 15;
        char digits[32];
        do
            snprintf(digits, sizeof digits, "%.*g", precision++, d);
        while (strtod(digits, NULL) != d && precision <= 17);
        snprintf(text, sizeof text, "%c%s%c", NUMBER_MARK, digits, NUMBER_MARK);
    }
    lua_pushstring(L, text);
}

/* 1 when the value at idx holds, at any depth, something lua-cjson would get wrong: a marked
 * empty array or a number wider than 14 digits. */
static int needs_sentinels(lua_State *L, int idx, int depth)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        return is_wide_number(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || depth > MAX_DEPTH || !lua_checkstack(L, 4))
        return 0;
    idx = lua_absindex(L, idx);
    if (is_marked_empty_array(L, idx))
        return 1;
    int found = 0;
    lua_pushnil(L);
    while (!found && lua_next(L, idx)) {
        found = needs_sentinels(L, -1, depth + 1);
        lua_pop(L, 1);
    }
    if (found)
        lua_pop(L, 1); /* the key left by the interrupted lua_next */
    return found;
}

/* Push a copy of the value at idx with the sentinels in place. */
static void push_with_sentinels(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER && is_wide_number(L, idx)) {
        push_exact_number(L, idx);
        return;
    }
    if (is_marked_empty_array(L, idx)) {
        lua_pushliteral(L, EMPTY_ARRAY_SENTINEL);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE || depth > MAX_DEPTH) {
        lua_pushvalue(L, idx);
        return;
    }
    luaL_checkstack(L, 6, "JSON value nested too deeply");
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        push_with_sentinels(L, -2, depth + 1);
        lua_rawset(L, -5);
        lua_pop(L, 1);
    }
}

static int starts_with(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/* Rewrite lua-cjson's output on the stack top: "\/" becomes "/", and (when `sentinels`) the
 * sentinels become [] and numbers again. Escapes are two-character units, so scanning them
 * pairwise never mistakes the "\\" of an escaped backslash for the start of "\/". */
static void rewrite_encoded(lua_State *L, int sentinels)
{
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (!sentinels && !memchr(s, '/', len))
        return;
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (sentinels && s[i] == '"' && starts_with(s + i, len - i, EMPTY_ARRAY_JSON)) {
            out[n++] = '[';
            out[n++] = ']';
            i += strlen(EMPTY_ARRAY_JSON);
        } else if (sentinels && s[i] == '"' && starts_with(s + i, len - i, NUMBER_JSON_OPEN)) {
            i += strlen(NUMBER_JSON_OPEN);
            while (i < len && !starts_with(s + i, len - i, NUMBER_JSON_CLOSE))
                out[n++] = s[i++];
            i += strlen(NUMBER_JSON_CLOSE);
        } else if (s[i] == '\\' && i + 1 < len) {
            if (s[i + 1] != '/')
                out[n++] = '\\';
            out[n++] = s[i + 1];
            i += 2;
        } else {
            out[n++] = s[i++];
        }
    }
    luaL_pushresultsize(&b, n);
    lua_remove(L, -2);
}

void sb_json_encode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (is_marked_empty_array(L, idx)) {
        lua_pushliteral(L, "[]");
        return;
    }
    int sentinels = needs_sentinels(L, idx, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_encode);
    if (sentinels)
        push_with_sentinels(L, idx, 0);
    else
        lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    rewrite_encoded(L, sentinels);
}

/* ---- decoding ------------------------------------------------------------------------------- */

/* Position of the first "[" whose next non-blank character is "]", outside strings; or len. */
static size_t next_empty_array(const char *s, size_t len, size_t from, int *in_string)
{
    for (size_t i = from; i < len; i++) {
        char c = s[i];
        if (*in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                *in_string = 0;
        } else if (c == '"') {
            *in_string = 1;
        } else if (c == '[') {
            size_t j = i + 1;
            while (j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'))
                j++;
            if (j < len && s[j] == ']')
                return i;
        }
    }
    return len;
}

/* Push the text with every empty array replaced by [sentinel]; returns 0 when there was none
 * (nothing pushed). */
static int push_marked_text(lua_State *L, const char *s, size_t len)
{
    int in_string = 0;
    size_t at = next_empty_array(s, len, 0, &in_string);
    if (at == len)
        return 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t from = 0;
    while (at < len) {
        luaL_addlstring(&b, s + from, at - from);
        luaL_addstring(&b, "[" EMPTY_ARRAY_JSON "]");
        from = (size_t)((const char *)memchr(s + at, ']', len - at) - s) + 1;
        at = next_empty_array(s, len, from, &in_string);
    }
    luaL_addlstring(&b, s + from, len - from);
    luaL_pushresult(&b);
    return 1;
}

/* Turn every table holding just the sentinel into an empty marked array, in place. */
static void restore_empty_arrays(lua_State *L, int idx, int depth)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 4))
        return;
    idx = lua_absindex(L, idx);
    if (lua_rawlen(L, idx) == 1 && lua_rawgeti(L, idx, 1) == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), EMPTY_ARRAY_SENTINEL) == 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawseti(L, idx, 1);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_array_mt);
        lua_setmetatable(L, idx);
        return;
    }
    lua_settop(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -1) == LUA_TTABLE)
            restore_empty_arrays(L, -1, depth + 1);
        lua_pop(L, 1);
    }
}

int sb_json_decode(lua_State *L, const char *text, size_t len)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_decode);
    int marked = push_marked_text(L, text, len);
    if (!marked)
        lua_pushlstring(L, text, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return -1;
    if (marked && lua_type(L, -1) == LUA_TTABLE)
        restore_empty_arrays(L, -1, 0);
    return 0;
}

/* ---- sb.json -------------------------------------------------------------------------------- */

/* sb.json.encode(value) -> string  [-0,+1,e] */
static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    sb_json_encode(L, 1);
    return 1;
}

/* sb.json.decode(text) -> value; raises on invalid JSON  [-0,+1,e] */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    if (sb_json_decode(L, text, len) != 0)
        return lua_error(L);
    return 1;
}

/* sb.json.array([t]) -> t marked as a JSON array (a new empty one without argument)  [-0,+1,-] */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    else
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_array_mt);
    lua_setmetatable(L, 1);
    return 1;
}

void lua_json_open(lua_State *L)
{
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_getfield(L, -1, "encode");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_encode);
    lua_getfield(L, -1, "decode");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_decode);

    lua_newtable(L); /* the array marker metatable */
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_array_mt);

    static const luaL_Reg functions[] = {
        {"encode", l_encode},
        {"decode", l_decode},
        {"array", l_array},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
    lua_getfield(L, -2, "null");
    lua_setfield(L, -2, "null");
    lua_remove(L, -2); /* cjson */
}
