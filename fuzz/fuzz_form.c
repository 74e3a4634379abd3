/* SPDX-License-Identifier: MIT */
/* fuzz_form: the application/x-www-form-urlencoded parser behind req.form (push_form in
 * src/lua_request.c, a static function: the file is included here, as the unit tests do).
 *
 * The input is a request body. Checked besides memory errors, against a reference written here
 * from the rules in docs/lua-api.md (pairs split at '&', name and value at the first '=', '+' is
 * a space, %XX a byte, anything else as it is, the first value of a name wins, an empty name is
 * skipped): the table has exactly the names the reference finds, each with the reference's
 * value. Uses: lua_request (push_form), lua_sb (sb_urldecode_into). */
#include "../src/lua_request.c"

#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static lua_State *S;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_form: %s\n", what);
        abort();
    }
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The reference decoder: out gets at most len bytes. Returns the decoded length. */
static size_t reference_decode(const char *s, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[n++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && hex_digit(s[i + 1]) >= 0 &&
                   hex_digit(s[i + 2]) >= 0) {
            out[n++] = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    S = luaL_newstate();
    check(S != NULL, "no Lua state");
    return 0;
}

/* push_form as the request does it: in a protected call, since it may raise (out of memory). */
static int call_push_form(lua_State *L)
{
    push_form(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    lua_settop(S, 0);
    lua_pushcfunction(S, call_push_form);
    lua_pushlightuserdata(S, (void *)body);
    lua_pushinteger(S, (lua_Integer)size);
    check(lua_pcall(S, 2, 1, 0) == LUA_OK, "push_form raised");
    check(lua_type(S, 1) == LUA_TTABLE, "push_form gave no table");

    /* Walk the pairs as the reference does; names seen go into a table of their own. */
    char *name = malloc(size + 1), *value = malloc(size + 1);
    check(name && value, "out of memory");
    lua_newtable(S); /* 2: names the reference found */
    size_t names = 0;
    const char *p = body, *end = body + size;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *name_end = eq ? eq : pair_end;
        if (name_end > p) {
            size_t name_len = reference_decode(p, (size_t)(name_end - p), name);
            size_t value_len = eq ? reference_decode(eq + 1, (size_t)(pair_end - eq - 1), value) : 0;
            lua_pushlstring(S, name, name_len);
            if (lua_rawget(S, 2) == LUA_TNIL) { /* the first value of a name is the one kept */
                names++;
                lua_pushlstring(S, name, name_len);
                lua_pushboolean(S, 1);
                lua_rawset(S, 2);
                lua_pushlstring(S, name, name_len);
                lua_rawget(S, 1);
                size_t got_len;
                const char *got = lua_tolstring(S, -1, &got_len);
                check(got != NULL, "a name missing from the form");
                check(got_len == value_len && memcmp(got, value, value_len) == 0,
                      "a value that differs from the reference");
                lua_pop(S, 1);
            }
            lua_pop(S, 1);
        }
        p = pair_end + 1;
    }
    size_t in_form = 0;
    lua_pushnil(S);
    while (lua_next(S, 1)) {
        check(lua_type(S, -2) == LUA_TSTRING && lua_type(S, -1) == LUA_TSTRING,
              "a name or value that is not a string");
        in_form++;
        lua_pop(S, 1);
    }
    check(in_form == names, "the form has names the reference does not");
    free(name);
    free(value);
    lua_settop(S, 0);
    return 0;
}
