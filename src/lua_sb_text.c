/* SPDX-License-Identifier: MIT */
/* lua_sb_text: the text family of the switchboard module (docs/lua-api.md): sb.strip (white
 * space as Rasa strips it), sb.urlencode and sb.urldecode (form and query encoding).
 * Uses: Lua. */
#include "lua_sb.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

/* Length of the white-space character at s (UTF-8), or 0: ASCII white space and the Unicode
 * spaces Python's str.isspace() accepts, so sb.strip matches Rasa's text.strip(). */
static size_t space_at(const unsigned char *s, size_t len)
{
    if (len >= 1 && ((s[0] >= 0x09 && s[0] <= 0x0d) || s[0] == ' ' ||
                     (s[0] >= 0x1c && s[0] <= 0x1f)))
        return 1;
    if (len >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2;
    if (len >= 3) {
        if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) /* U+1680 */
            return 3;
        if (s[0] == 0xe2 && s[1] == 0x80 &&
            (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf) && s[2] >= 0x80)
            return 3; /* U+2000-200A, U+2028, U+2029, U+202F */
        if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) /* U+205F */
            return 3;
        if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80) /* U+3000 */
            return 3;
    }
    return 0;
}

/* Length of the white-space character ending at s[len - 1], or 0. */
static size_t space_before(const unsigned char *s, size_t len)
{
    for (size_t n = 1; n <= 3 && n <= len; n++)
        if (space_at(s + len - n, n) == n)
            return n;
    return 0;
}

/* The part of text[0..*len) without leading and trailing white space: its start, and its length
 * in *len. */
static const char *stripped_span(const char *text, size_t *len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t left = *len, n;
    while (left > 0 && (n = space_at(s, left)) > 0)
        s += n, left -= n;
    while (left > 0 && (n = space_before(s, left)) > 0)
        left -= n;
    *len = left;
    return (const char *)s;
}

void sb_push_stripped(lua_State *L, int idx)
{
    size_t len;
    const char *text = lua_tolstring(L, idx, &len);
    size_t kept = len;
    const char *s = stripped_span(text, &kept);
    if (s == text && kept == len)
        lua_pushvalue(L, idx); /* nothing to strip: the same string, not a copy to intern */
    else
        lua_pushlstring(L, s, kept);
}

/* sb.strip(s) -> s without leading and trailing white space (ASCII and Unicode)  [-0,+1,v] */
static int l_strip(lua_State *L)
{
    luaL_checkstring(L, 1);
    sb_push_stripped(L, 1);
    return 1;
}

/* ---- URL encoding --------------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void sb_urldecode_into(luaL_Buffer *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            luaL_addchar(b, ' ');
        } else if (s[i] == '%' && i + 2 < len && hex_value(s[i + 1]) >= 0 &&
                   hex_value(s[i + 2]) >= 0) {
            luaL_addchar(b, (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else {
            luaL_addchar(b, s[i]);
        }
    }
}

static void urlencode_into(luaL_Buffer *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            luaL_addchar(b, (char)c);
        } else if (c == ' ') {
            luaL_addchar(b, '+');
        } else {
            luaL_addchar(b, '%');
            luaL_addchar(b, hex[c >> 4]);
            luaL_addchar(b, hex[c & 15]);
        }
    }
}

/* Append name=value (value converted with tostring) to the form being built. */
static void add_pair(lua_State *L, luaL_Buffer *b, int *first, const char *name, size_t name_len,
                     int value_idx)
{
    size_t len;
    const char *value = luaL_tolstring(L, value_idx, &len);
    char *copy = malloc(len ? len : 1);
    if (!copy)
        luaL_error(L, "out of memory");
    memcpy(copy, value, len);
    lua_pop(L, 1); /* the buffer may need the stack top */
    if (!*first)
        luaL_addchar(b, '&');
    *first = 0;
    urlencode_into(b, name, name_len);
    luaL_addchar(b, '=');
    urlencode_into(b, copy, len);
    free(copy);
}

/* sb.urlencode(string) -> percent-encoded string (space as +);
 * sb.urlencode(table) -> "a=1&b=x+y" with keys sorted; an array value repeats its key  [-0,+1,e] */
static int l_urlencode(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TTABLE) {
        size_t len;
        const char *s = luaL_checklstring(L, 1, &len);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        urlencode_into(&b, s, len);
        luaL_pushresult(&b);
        return 1;
    }
    /* Sorted keys make the output stable (signatures, tests). */
    lua_settop(L, 1);
    lua_newtable(L); /* 2: keys */
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "sb.urlencode: keys must be strings");
        lua_pushvalue(L, -1);
        lua_rawseti(L, 2, ++n);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 0);
    lua_pop(L, 1);

    luaL_Buffer b;
    int first = 1;
    lua_pushliteral(L, ""); /* 3: the result so far */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);          /* 4: key */
        lua_pushvalue(L, 4);
        lua_gettable(L, 1);            /* 5: value */
        luaL_buffinit(L, &b);          /* the buffer sits above 5 */
        lua_pushvalue(L, 3);
        luaL_addvalue(&b);
        size_t name_len;
        const char *name = lua_tolstring(L, 4, &name_len);
        if (lua_type(L, 5) == LUA_TTABLE) {
            for (lua_Integer j = 1;; j++) {
                lua_rawgeti(L, 5, j);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
                int item = lua_gettop(L);
                add_pair(L, &b, &first, name, name_len, item);
                lua_remove(L, item);
            }
        } else {
            add_pair(L, &b, &first, name, name_len, 5);
        }
        luaL_pushresult(&b);
        lua_replace(L, 3);
        lua_settop(L, 3);
    }
    return 1;
}

/* sb.urldecode(s) -> decoded string (+ is space)  [-0,+1,e] */
static int l_urldecode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    sb_urldecode_into(&b, s, len);
    luaL_pushresult(&b);
    return 1;
}

void sb_push_urlencoded(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, l_urlencode);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
}

void lua_sb_text_register(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"strip", l_strip},
        {"urlencode", l_urlencode},
        {"urldecode", l_urldecode},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
