/* SPDX-License-Identifier: MIT */
/* test_json: sb.json (src/lua_json.c) in a plain Lua state: encoding, decoding, round trips,
 * every error message, strings that look like the markers an older sb.json used, wide
 * integers, floats, nesting limits, and that neither function unbalances the stack. */
#include "check.h"
#include "lua_json.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdlib.h>

/* Like CHECK_STR, for texts that may hold NUL bytes: prints both as escaped Lua strings. */
#define CHECK_BYTES(a, alen, b, blen)                                                         \
    do {                                                                                    \
        check_count++;                                                                      \
        if ((alen) != (blen) || memcmp((a), (b), (alen)) != 0) {                            \
            check_failures++;                                                               \
            fprintf(stderr, "%s:%d: %s is ", __FILE__, __LINE__, #a);                       \
            print_bytes((a), (alen));                                                       \
            fprintf(stderr, ", expected ");                                                 \
            print_bytes((b), (blen));                                                       \
            fprintf(stderr, "\n");                                                          \
        }                                                                                   \
    } while (0)

static lua_State *L;

static void print_bytes(const char *s, size_t len)
{
    fputc('"', stderr);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputc('"', stderr);
}

/* (value) -> text; checks that sb_json_encode pushed exactly one value */
static int run_encode(lua_State *L)
{
    int top = lua_gettop(L);
    sb_json_encode(L, 1);
    if (lua_gettop(L) != top + 1)
        return luaL_error(L, "sb_json_encode changed the stack by %d", lua_gettop(L) - top);
    return 1;
}

/* (text) -> value or message, ok; checks that sb_json_decode pushed exactly one value */
static int run_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    int top = lua_gettop(L);
    int rc = sb_json_decode(L, text, len);
    if (lua_gettop(L) != top + 1)
        return luaL_error(L, "sb_json_decode changed the stack by %d", lua_gettop(L) - top);
    if (rc != 0 && rc != -1)
        return luaL_error(L, "sb_json_decode returned %d", rc);
    lua_pushboolean(L, rc == 0);
    return 2;
}

static char out[1 << 16];
static size_t out_len;

static const char *keep(const char *prefix, const char *s, size_t len)
{
    size_t p = strlen(prefix);
    if (p + len >= sizeof out)
        len = sizeof out - p - 1;
    memcpy(out, prefix, p);
    memcpy(out + p, s, len);
    out_len = p + len;
    out[out_len] = '\0';
    return out;
}

/* The JSON text of the value the Lua chunk returns, or "error: <message>". */
static const char *encode_lua(const char *chunk)
{
    int base = lua_gettop(L);
    lua_pushcfunction(L, run_encode);
    if (luaL_loadstring(L, chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        keep("lua: ", lua_tostring(L, -1), strlen(lua_tostring(L, -1)));
    } else {
        int rc = lua_pcall(L, 1, 1, 0);
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        keep(rc == LUA_OK ? "" : "error: ", s, len);
    }
    lua_settop(L, base);
    return out;
}

/* Decode text and leave the value (or the message) on the stack; returns 1 when it decoded. */
static int decode_push(const char *text, size_t len)
{
    lua_pushcfunction(L, run_decode);
    lua_pushlstring(L, text, len);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
        fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
        lua_pushboolean(L, 0);
    }
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return ok;
}

/* The decoder's message for text, or "decoded" when it decodes. */
static const char *decode_error_n(const char *text, size_t len)
{
    int base = lua_gettop(L);
    if (decode_push(text, len))
        keep("", "decoded", 7);
    else
        keep("", lua_tostring(L, -1), strlen(lua_tostring(L, -1)));
    lua_settop(L, base);
    return out;
}
#define decode_error(text) decode_error_n((text), strlen(text))

/* encode(decode(text)), or "decode: <message>" / "encode: <message>". */
static const char *round_trip_n(const char *text, size_t len)
{
    int base = lua_gettop(L);
    if (!decode_push(text, len)) {
        keep("decode: ", lua_tostring(L, -1), strlen(lua_tostring(L, -1)));
    } else {
        lua_pushcfunction(L, run_encode);
        lua_insert(L, -2);
        int rc = lua_pcall(L, 1, 1, 0);
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        keep(rc == LUA_OK ? "" : "encode: ", s, n);
    }
    lua_settop(L, base);
    return out;
}
#define round_trip(text) round_trip_n((text), strlen(text))

/* 1 when text decodes and the Lua expression `expr` over the value `v` is true. */
static int decoded_is(const char *text, const char *expr)
{
    int base = lua_gettop(L);
    int result = 0;
    if (decode_push(text, strlen(text))) {
        char chunk[1024];
        snprintf(chunk, sizeof chunk, "local v = ...; return %s", expr);
        if (luaL_loadstring(L, chunk) != LUA_OK) {
            fprintf(stderr, "bad expression %s: %s\n", expr, lua_tostring(L, -1));
        } else {
            lua_insert(L, -2);
            if (lua_pcall(L, 1, 1, 0) == LUA_OK)
                result = lua_toboolean(L, -1);
            else
                fprintf(stderr, "expression %s raised: %s\n", expr, lua_tostring(L, -1));
        }
    } else {
        fprintf(stderr, "%s did not decode: %s\n", text, lua_tostring(L, -1));
    }
    lua_settop(L, base);
    return result;
}

static int run_lua(const char *chunk)
{
    if (luaL_dostring(L, chunk) != LUA_OK) {
        fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return ok;
}

static void test_encode_scalars(void)
{
    CHECK_STR(encode_lua("return nil"), "null");
    CHECK_STR(encode_lua("return json.null"), "null");
    CHECK_STR(encode_lua("return true"), "true");
    CHECK_STR(encode_lua("return false"), "false");
    CHECK_STR(encode_lua("return 0"), "0");
    CHECK_STR(encode_lua("return -1"), "-1");
    CHECK_STR(encode_lua("return 12345678901234567"), "12345678901234567");
    CHECK_STR(encode_lua("return math.maxinteger"), "9223372036854775807");
    CHECK_STR(encode_lua("return math.mininteger"), "-9223372036854775808");
    CHECK_STR(encode_lua("return 'hi'"), "\"hi\"");
    CHECK_STR(encode_lua("return ''"), "\"\"");
}

static void test_encode_floats(void)
{
    CHECK_STR(encode_lua("return 0.1"), "0.1");
    CHECK_STR(encode_lua("return 1.5"), "1.5");
    CHECK_STR(encode_lua("return -2.25"), "-2.25");
    CHECK_STR(encode_lua("return 1e300"), "1e+300");
    CHECK_STR(encode_lua("return -0.0"), "-0");
    CHECK_STR(encode_lua("return 0.0"), "0");
    CHECK_STR(encode_lua("return 5e-324"), "5e-324");
    CHECK_STR(encode_lua("return 2.2250738585072014e-308"), "2.2250738585072014e-308");
    CHECK_STR(encode_lua("return 1.0"), "1"); /* as lua-cjson wrote it */
    CHECK_STR(encode_lua("return 2^53"), "9007199254740992");
    CHECK_STR(encode_lua("return 1e15"), "1e+15");
    CHECK_STR(encode_lua("return 3.14159265358979"), "3.14159265358979");
    CHECK_STR(encode_lua("return 0.1 + 0.2"), "0.30000000000000004");
    CHECK_STR(encode_lua("return 1/3"), "0.3333333333333333");
    CHECK_STR(encode_lua("return 1.7976931348623157e308"), "1.7976931348623157e+308");
    CHECK_STR(encode_lua("return 2^63"), "9.223372036854776e+18");
    /* every float reads back as the same double */
    CHECK(run_lua("for _, x in ipairs({0.1, 1/3, 2/3, 1e-300, 123.456, 5e-324, 4.9e-322, "
                  "1.7976931348623157e308, 2^-1074 * 3, 9007199254740993.0, math.pi}) do "
                  "  local back = load('return ' .. json.encode(x))() "
                  "  if back ~= x then return false end "
                  "end return true"));
}

static void test_encode_errors(void)
{
    const char *nan_inf = "error: Cannot serialise number: must not be NaN or Inf";
    CHECK_STR(encode_lua("return 0/0"), nan_inf);
    CHECK_STR(encode_lua("return math.huge"), nan_inf);
    CHECK_STR(encode_lua("return {x = -math.huge}"), nan_inf);
    CHECK_STR(encode_lua("return {[math.huge] = 1, a = 1}"), nan_inf);
    CHECK_STR(encode_lua("return print"), "error: Cannot serialise function: type not supported");
    CHECK_STR(encode_lua("return {f = coroutine.create(print)}"),
              "error: Cannot serialise thread: type not supported");
    CHECK_STR(encode_lua("return {io.stdout}"),
              "error: Cannot serialise userdata: type not supported");
    CHECK_STR(encode_lua("return {[true] = 1}"),
              "error: Cannot serialise boolean: table key must be a number or string");
    CHECK_STR(encode_lua("return {[{}] = 1}"),
              "error: Cannot serialise table: table key must be a number or string");
    CHECK_STR(encode_lua("return {[1] = 1, [20] = 2}"),
              "error: Cannot serialise table: excessively sparse array");
    CHECK_STR(encode_lua("return {[11] = 1}"),
              "error: Cannot serialise table: excessively sparse array");
    CHECK_STR(encode_lua("return {[2^70] = 1}"),
              "error: Cannot serialise table: excessively sparse array");
    CHECK_STR(encode_lua("return setmetatable({}, {__index = function() error('no') end})"), "{}");
}

static void test_encode_tables(void)
{
    CHECK_STR(encode_lua("return {}"), "{}");
    CHECK_STR(encode_lua("return json.array()"), "[]");
    CHECK_STR(encode_lua("return json.array({})"), "[]");
    CHECK_STR(encode_lua("return json.array({1, 2})"), "[1,2]");
    CHECK_STR(encode_lua("return json.array({a = 1})"), "{\"a\":1}");
    CHECK_STR(encode_lua("return {1, 'two', true, json.null}"), "[1,\"two\",true,null]");
    CHECK_STR(encode_lua("return {[1] = 1, [3] = 3}"), "[1,null,3]");
    CHECK_STR(encode_lua("return {[10] = 1}"), "[null,null,null,null,null,null,null,null,null,1]");
    CHECK_STR(encode_lua("return {a = 1}"), "{\"a\":1}");
    CHECK_STR(encode_lua("return {b = 1, a = 2, c = {}, [''] = 0}"),
              "{\"\":0,\"a\":2,\"b\":1,\"c\":{}}");
    CHECK_STR(encode_lua("return {1, 2, x = 3}"), "{\"1\":1,\"2\":2,\"x\":3}");
    CHECK_STR(encode_lua("return {[0] = 'z'}"), "{\"0\":\"z\"}");
    CHECK_STR(encode_lua("return {[-1] = 'm', [1.5] = 'f', [2] = 't'}"),
              "{\"-1\":\"m\",\"1.5\":\"f\",\"2\":\"t\"}");
    CHECK_STR(encode_lua("return {a = {b = {json.array(), {}, json.array({json.array()})}}}"),
              "{\"a\":{\"b\":[[],{},[[]]]}}");
    CHECK_STR(encode_lua("return setmetatable({}, {})"), "{}");
    /* a key that looks like the sentinel is a key */
    CHECK_STR(encode_lua("return {['\\1sb-empty-array\\1'] = {'\\2true\\2'}}"),
              "{\"\\u0001sb-empty-array\\u0001\":[\"\\u0002true\\u0002\"]}");
    /* the same keys in any insertion order give the same text */
    CHECK(run_lua("local a, b = {}, {} "
                  "for i = 1, 200 do a['k' .. i] = i end "
                  "for i = 200, 1, -1 do b['k' .. i] = i end "
                  "b.extra = 1; b.extra = nil "
                  "return json.encode(a) == json.encode(b)"));
    /* many keys and long text: the key stack and the text grow past their first size */
    CHECK(run_lua("local t = {} for i = 1, 1000 do t[('%04d'):format(i)] = {x = ('y'):rep(i)} end "
                  "local text = json.encode({list = {t, t}}) "
                  "return #text > 1000000 and text:sub(1, 20) == '{\"list\":[{\"0001\":{\"x'"));
}

/* A table with weak values loses entries when the collector runs, which encoding may cause:
 * the text must still be valid JSON, with no read of a freed key (ASan builds check that). */
static void test_encode_weak_tables(void)
{
    CHECK(run_lua("collectgarbage('incremental') collectgarbage('setpause', 0) "
                  "for round = 1, 20 do "
                  "  local t = setmetatable({}, {__mode = 'v'}) "
                  "  for i = 1, 300 do t[('key %d %s'):format(i, ('x'):rep(60))] = {('v'):rep(100)} end "
                  "  local back = json.decode(json.encode({t, t})) "
                  "  for k, v in pairs(back[1]) do "
                  "    if type(k) ~= 'string' or type(v) ~= 'table' or v[1] ~= ('v'):rep(100) then "
                  "      return false end "
                  "  end "
                  "end "
                  "collectgarbage('generational') return true"));
    CHECK_STR(encode_lua("local keep = {1} "
                         "return setmetatable({a = keep, b = 'x'}, {__mode = 'k'})"),
              "{\"a\":[1],\"b\":\"x\"}");
}

static void test_encode_strings(void)
{
    CHECK_STR(encode_lua("return 'a\"b\\\\c/d'"), "\"a\\\"b\\\\c/d\"");
    CHECK_STR(encode_lua("return '\\n\\r\\t\\b\\f'"), "\"\\n\\r\\t\\b\\f\"");
    CHECK_STR(encode_lua("return '\\0\\1\\31\\127'"), "\"\\u0000\\u0001\\u001f\\u007f\"");
    CHECK_STR(encode_lua("return 'caf\\u{e9} \\u{1F600}'"), "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    CHECK_STR(encode_lua("return '\\xff\\xfe\\xc3'"), "\"\xff\xfe\xc3\""); /* invalid UTF-8 */
    CHECK_STR(encode_lua("return 'https://a/b'"), "\"https://a/b\"");
    CHECK_STR(encode_lua("return '\\2true\\2'"), "\"\\u0002true\\u0002\"");
    CHECK_STR(encode_lua("return '\\2'"), "\"\\u0002\"");
    CHECK_STR(encode_lua("return '\\1sb-empty-array\\1'"), "\"\\u0001sb-empty-array\\u0001\"");
    CHECK_STR(encode_lua("return {'\\1sb-empty-array\\1'}"), "[\"\\u0001sb-empty-array\\u0001\"]");
    CHECK_STR(encode_lua("return {'\\2', '12\\2'}"), "[\"\\u0002\",\"12\\u0002\"]");
    /* escapes spread through a long string */
    CHECK(run_lua("local s = ('ab\\n'):rep(5000) "
                  "local text = json.encode(s) "
                  "return #text == 2 + 5000 * 4 and json.decode(text) == s"));
}

static void test_depth(void)
{
    CHECK(run_lua("local t = {} local inner = t for i = 2, 1000 do inner[1] = {} inner = inner[1] end "
                  "return #json.encode(t) == 2 * 1000 - 1 + 1"));
    CHECK_STR(encode_lua("local t = {} local inner = t "
                         "for i = 2, 1001 do inner[1] = {} inner = inner[1] end return t"),
              "error: Cannot serialise table: nested deeper than 1000 levels (or a cycle)");
    CHECK_STR(encode_lua("local t = {} t.self = t return t"),
              "error: Cannot serialise table: nested deeper than 1000 levels (or a cycle)");
    CHECK_STR(encode_lua("local t = {} t[1] = t return t"),
              "error: Cannot serialise table: nested deeper than 1000 levels (or a cycle)");

    char deep[2 * 1001 + 1];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    deep[2000] = '\0';
    const char *back = round_trip(deep);
    CHECK_BYTES(back, out_len, deep, strlen(deep));
    memset(deep, '[', 1001);
    memset(deep + 1001, ']', 1001);
    deep[2002] = '\0';
    CHECK_STR(decode_error(deep), "invalid JSON at character 1001: nested deeper than 1000 levels");
    char objects[6 * 1001 + 1001 + 1];
    size_t n = 0;
    for (int i = 0; i < 1001; i++) {
        memcpy(objects + n, "{\"a\":", 5);
        n += 5;
    }
    objects[n++] = '1';
    memset(objects + n, '}', 1001);
    objects[n + 1001] = '\0';
    CHECK_STR(decode_error(objects), "invalid JSON at character 5001: nested deeper than 1000 levels");
    /* far deeper than the limit: stops at the limit, no crash */
    size_t big = 1000000;
    char *huge = malloc(big);
    memset(huge, '[', big);
    CHECK_STR(decode_error_n(huge, big), "invalid JSON at character 1001: nested deeper than 1000 levels");
    free(huge);
    huge = NULL;
}

static void test_decode_values(void)
{
    CHECK(decoded_is("null", "v == json.null and v == cjson.null and type(v) == 'userdata'"));
    CHECK(decoded_is("true", "v == true"));
    CHECK(decoded_is("false", "v == false"));
    CHECK(decoded_is(" \t\r\n\"x\" \n", "v == 'x'"));
    CHECK(decoded_is("[]", "next(v) == nil and getmetatable(v) == ARRAY_MT"));
    CHECK(decoded_is("{}", "next(v) == nil and getmetatable(v) == nil"));
    CHECK(decoded_is("[1,2,3]", "#v == 3 and v[3] == 3 and getmetatable(v) == nil"));
    CHECK(decoded_is("{\"a\":[],\"b\":{},\"c\":[[]]}",
                     "getmetatable(v.a) == ARRAY_MT and getmetatable(v.b) == nil "
                     "and getmetatable(v.c) == nil and getmetatable(v.c[1]) == ARRAY_MT"));
    CHECK(decoded_is("{\"a\":1,\"a\":2}", "v.a == 2"));
    CHECK(decoded_is("[null]", "#v == 1 and v[1] == json.null"));
    /* markers are plain strings */
    CHECK(decoded_is("\"\\u0002true\\u0002\"", "v == '\\2true\\2'"));
    CHECK(decoded_is("\"\\u0002\"", "v == '\\2'"));
    CHECK(decoded_is("[\"\\u0001sb-empty-array\\u0001\"]",
                     "#v == 1 and v[1] == '\\1sb-empty-array\\1' and getmetatable(v) == nil"));
    CHECK(decoded_is("{\"message\":\"\\u0002true\\u0002\",\"metadata\":{\"a\":[]}}",
                     "v.message == '\\2true\\2' and getmetatable(v.metadata.a) == ARRAY_MT"));
}

static void test_decode_numbers(void)
{
    CHECK(decoded_is("0", "math.type(v) == 'integer' and v == 0"));
    CHECK(decoded_is("-12", "math.type(v) == 'integer' and v == -12"));
    CHECK(decoded_is("12345678901234567", "math.type(v) == 'integer' and v == 12345678901234567"));
    CHECK(decoded_is("9223372036854775807", "v == math.maxinteger"));
    CHECK(decoded_is("-9223372036854775808", "v == math.mininteger"));
    CHECK(decoded_is("9223372036854775808", "math.type(v) == 'float' and v == 2^63"));
    CHECK(decoded_is("-9223372036854775809", "math.type(v) == 'float' and v == -2^63"));
    CHECK(decoded_is("123456789012345678901234567890", "math.type(v) == 'float' and v == 1.2345678901234568e29"));
    CHECK(decoded_is("1.0", "math.type(v) == 'float' and v == 1"));
    CHECK(decoded_is("1e2", "math.type(v) == 'float' and v == 100"));
    CHECK(decoded_is("1E+2", "v == 100.0"));
    CHECK(decoded_is("-1.5e-3", "v == -0.0015"));
    CHECK(decoded_is("0.1", "v == 0.1"));
    CHECK(decoded_is("1e300", "v == 1e300"));
    CHECK(decoded_is("5e-324", "v == 5e-324 and v > 0"));
    CHECK(decoded_is("1e-400", "v == 0"));
    CHECK(decoded_is("-0", "math.type(v) == 'float' and 1/v == -math.huge"));
    CHECK(decoded_is("-0.0", "math.type(v) == 'float' and 1/v == -math.huge"));
    CHECK(decoded_is("[0.000000000000000000000000000000000000000000000000000000000000000001]",
                     "v[1] == 1e-66"));
}

static void test_decode_strings(void)
{
    CHECK(decoded_is("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "v == 'a\"b\\\\c/d\\b\\f\\n\\r\\t'"));
    CHECK(decoded_is("\"\\u0041\\u00e9\\u20AC\"", "v == 'A\\u{e9}\\u{20ac}'"));
    CHECK(decoded_is("\"\\u0000x\"", "v == '\\0x' and #v == 2"));
    CHECK(decoded_is("\"\\ud83d\\ude00\"", "v == '\\u{1F600}' and v == '\\xf0\\x9f\\x98\\x80'"));
    CHECK(decoded_is("\"\\uDBFF\\uDFFF\"", "v == '\\u{10FFFF}'"));
    CHECK(decoded_is("\"\xff\xfe\xc3\"", "v == '\\xff\\xfe\\xc3'")); /* invalid UTF-8 kept */
    CHECK(decoded_is("\"caf\xc3\xa9\"", "v == 'caf\\u{e9}'"));
    CHECK(decoded_is("\"\x7f\"", "v == '\\127'"));
}

static void test_decode_errors(void)
{
    CHECK_STR(decode_error(""), "invalid JSON at character 1: expected a value, but the text ends");
    CHECK_STR(decode_error("   "), "invalid JSON at character 4: expected a value, but the text ends");
    CHECK_STR(decode_error("{\"a\":\"bcd\" 1}"), "invalid JSON at character 12: expected ',' or '}'");
    CHECK_STR(decode_error("{\"a\":1"), "invalid JSON at character 7: expected ',' or '}', but the text ends");
    CHECK_STR(decode_error("[1 2]"), "invalid JSON at character 4: expected ',' or ']'");
    CHECK_STR(decode_error("[1,]"), "invalid JSON at character 4: expected a value");
    CHECK_STR(decode_error("[,1]"), "invalid JSON at character 2: expected a value");
    CHECK_STR(decode_error("{\"a\":1,}"), "invalid JSON at character 8: expected a string key");
    CHECK_STR(decode_error("{a:1}"), "invalid JSON at character 2: expected a string key");
    CHECK_STR(decode_error("{1:1}"), "invalid JSON at character 2: expected a string key");
    CHECK_STR(decode_error("{\"a\" 1}"), "invalid JSON at character 6: expected ':'");
    CHECK_STR(decode_error("{\"a\":}"), "invalid JSON at character 6: expected a value");
    CHECK_STR(decode_error("1 2"), "invalid JSON at character 3: unexpected text after the value");
    CHECK_STR(decode_error("{} x"), "invalid JSON at character 4: unexpected text after the value");
    CHECK_STR(decode_error("\f1"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("tru"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("nul"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("True"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("NaN"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("Infinity"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("'a'"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("truex"), "invalid JSON at character 5: unexpected text after the value");
    /* numbers */
    CHECK_STR(decode_error("01"), "invalid JSON at character 2: leading zeros are not allowed");
    CHECK_STR(decode_error("-01"), "invalid JSON at character 3: leading zeros are not allowed");
    CHECK_STR(decode_error("-"), "invalid JSON at character 2: expected a digit, but the text ends");
    CHECK_STR(decode_error("-a"), "invalid JSON at character 2: expected a digit");
    CHECK_STR(decode_error("+1"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error(".5"), "invalid JSON at character 1: expected a value");
    CHECK_STR(decode_error("1."), "invalid JSON at character 3: expected a digit after '.', but the text ends");
    CHECK_STR(decode_error("1.e5"), "invalid JSON at character 3: expected a digit after '.'");
    CHECK_STR(decode_error("1e"), "invalid JSON at character 3: expected a digit in the exponent, but the text ends");
    CHECK_STR(decode_error("1e+"), "invalid JSON at character 4: expected a digit in the exponent, but the text ends");
    CHECK_STR(decode_error("[1e400]"), "invalid JSON at character 2: number out of range");
    CHECK_STR(decode_error("-1e400"), "invalid JSON at character 1: number out of range");
    CHECK_STR(decode_error("0x10"), "invalid JSON at character 2: unexpected text after the value");
    /* strings */
    CHECK_STR(decode_error("\"abc"), "invalid JSON at character 5: expected '\"' to end the string, but the text ends");
    CHECK_STR(decode_error("\"a\\n"), "invalid JSON at character 5: expected '\"' to end the string, but the text ends");
    CHECK_STR(decode_error("\"a\\"), "invalid JSON at character 4: expected an escape after '\\', but the text ends");
    CHECK_STR(decode_error("\"a\x01\""), "invalid JSON at character 3: control character in a string (it must be escaped)");
    CHECK_STR(decode_error("\"a\nb\""), "invalid JSON at character 3: control character in a string (it must be escaped)");
    CHECK_STR(decode_error("\"\\x\""), "invalid JSON at character 2: invalid escape (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
    CHECK_STR(decode_error("\"\\'\""), "invalid JSON at character 2: invalid escape (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
    CHECK_STR(decode_error("\"\\u12\""), "invalid JSON at character 2: invalid \\u escape: expected 4 hex digits");
    CHECK_STR(decode_error("\"\\u12g4\""), "invalid JSON at character 2: invalid \\u escape: expected 4 hex digits");
    CHECK_STR(decode_error("\"ab\\udc00\""), "invalid JSON at character 4: invalid \\u escape: a low surrogate without a high one");
    CHECK_STR(decode_error("\"\\ud800\""), "invalid JSON at character 2: invalid \\u escape: a high surrogate without a low one");
    CHECK_STR(decode_error("\"\\ud800\\u0041\""), "invalid JSON at character 2: invalid \\u escape: a high surrogate without a low one");
    CHECK_STR(decode_error("\"\\ud800\\ud800\""), "invalid JSON at character 2: invalid \\u escape: a high surrogate without a low one");
    CHECK_STR(decode_error("\"\\ud800x\""), "invalid JSON at character 2: invalid \\u escape: a high surrogate without a low one");
    CHECK_STR(decode_error_n("\"a\0b\"", 5), "invalid JSON at character 3: control character in a string (it must be escaped)");
    CHECK_STR(decode_error_n("1\0", 2), "invalid JSON at character 2: unexpected text after the value");
    /* an error late in a long escaped string, at any depth, leaves just the message (run_decode
     * checks the stack; a luaL_Buffer dropped by the error once corrupted it) */
    for (int depth = 0; depth < 40; depth++) {
        char text[4096];
        size_t n = 0;
        memset(text, '[', (size_t)depth);
        n += (size_t)depth;
        text[n++] = '"';
        for (int i = 0; i < 1500; i++) {
            text[n++] = '\\';
            text[n++] = 'n';
        }
        memcpy(text + n, "\\x\"", 3);
        n += 3;
        char expected[128];
        snprintf(expected, sizeof expected, "invalid JSON at character %d: invalid escape "
                 "(expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)", depth + 2 + 3000);
        CHECK_STR(decode_error_n(text, n), expected);
        text[n - 2] = 'n';
        memset(text + n, ']', (size_t)depth);
        CHECK(strncmp(round_trip_n(text, n + (size_t)depth), "[", depth ? 1 : 0) == 0 &&
              out_len == n + 1 + (size_t)depth - 1);
    }
    /* the same with a long plain run after the escapes and no closing quote (found by fuzzing:
     * this corrupted the stack at some depths when a luaL_Buffer held the string) */
    for (int depth = 0; depth < 400; depth++) {
        char text[2048];
        size_t n = 0;
        memset(text, '[', (size_t)depth);
        n += (size_t)depth;
        memcpy(text + n, "\"\\n\\n", 5);
        n += 5;
        memset(text + n, 'x', 1100);
        n += 1100;
        char expected[128];
        snprintf(expected, sizeof expected, "invalid JSON at character %zu: expected '\"' to end "
                 "the string, but the text ends", n + 1);
        CHECK_STR(decode_error_n(text, n), expected);
    }
    /* sb.json.decode raises the same message */
    CHECK(run_lua("local ok, err = pcall(json.decode, '[1,]') "
                  "return not ok and err == \"invalid JSON at character 4: expected a value\""));
}

static void test_round_trips(void)
{
    static const char *same[] = {
        "{\"a\":[]}", "[[],[[]],{\"x\":[]}]", "[]", "{}", "[{}]", "null", "[null,true,false]",
        "\"\\u0002true\\u0002\"", "\"\\u0001sb-empty-array\\u0001\"", "\"\\u0002\"",
        "[\"\\u0001sb-empty-array\\u0001\"]", "{\"a\":[\"\\u0001sb-empty-array\\u0001\"]}",
        "{\"message\":\"\\u0002true\\u0002\",\"metadata\":{\"a\":[]}}",
        "12345678901234567", "-9223372036854775808", "9223372036854775807",
        "0.1", "1e+300", "-0", "5e-324", "1.5", "[1,2.5,-3]", "\"a/b\"",
        "{\"a\":{\"b\":{\"c\":[1,{\"d\":[]}]}}}", "\"\xff\"",
        "{\"1\":1,\"2\":2}",
    };
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        CHECK_STR(round_trip(same[i]), same[i]);
    CHECK_STR(round_trip(" { \"b\" : 1 , \"a\" : [ ] } "), "{\"a\":[],\"b\":1}");
    CHECK_STR(round_trip("\"\\u00e9\\/\""), "\"\xc3\xa9/\"");
    CHECK_STR(round_trip("\"\\ud83d\\ude00\""), "\"\xf0\x9f\x98\x80\"");
    CHECK_STR(round_trip("1.0"), "1");
    CHECK_STR(round_trip("1E2"), "100");
    CHECK_STR(round_trip("-0.0"), "-0");
    CHECK_STR(round_trip("0.30000000000000004"), "0.30000000000000004");
    CHECK_STR(round_trip("9223372036854775808"), "9.223372036854776e+18");
    CHECK_STR(round_trip("\"\\u001f\x7f\""), "\"\\u001f\\u007f\"");
    /* a typical Rasa REST body */
    CHECK_STR(round_trip("{\"sender\":\"user-1\",\"message\":\"hello there\",\"metadata\":"
                         "{\"chat_id\":123456789012345678,\"tags\":[],\"score\":0.87}}"),
              "{\"message\":\"hello there\",\"metadata\":{\"chat_id\":123456789012345678,"
              "\"score\":0.87,\"tags\":[]},\"sender\":\"user-1\"}");
    /* the stack is left as it was: the helpers raise otherwise, and nothing leaks here */
    CHECK_EQ(lua_gettop(L), 0);
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_json_open(L);
    lua_setglobal(L, "json");
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_setglobal(L, "cjson");
    CHECK(luaL_dostring(L, "ARRAY_MT = getmetatable(json.array())") == LUA_OK);
    CHECK_EQ(lua_gettop(L), 0);

    test_encode_scalars();
    test_encode_floats();
    test_encode_errors();
    test_encode_tables();
    test_encode_strings();
    test_encode_weak_tables();
    test_depth();
    test_decode_values();
    test_decode_numbers();
    test_decode_strings();
    test_decode_errors();
    test_round_trips();

    /* a second open keeps the same array mark */
    CHECK(run_lua("local before = json.array() return true"));
    lua_json_open(L);
    lua_setglobal(L, "json2");
    CHECK(run_lua("return getmetatable(json2.array()) == ARRAY_MT and json2.encode(json.array()) == '[]'"));
    CHECK_EQ(lua_gettop(L), 0);

    lua_close(L);
    L = NULL;
    return CHECK_DONE();
}
