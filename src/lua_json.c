/* SPDX-License-Identifier: MIT */
/* lua_json: see lua_json.h. */
#include "lua_json.h"

#include <float.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deepest nesting of arrays and objects, both ways: bounds the C recursion, and ends cycles. */
#define MAX_DEPTH 1000
#define STR_(x) #x
#define STR(x) STR_(x)

/* Registry key of the array metatable (the address of this variable). */
static char key_array_mt;

static int is_array_marked(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_array_mt);
    int marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
}

/* ---- encoding ------------------------------------------------------------------------------- */

/* The keys of the objects being written, outermost first: each object sorts its own keys, so
 * the same value always encodes to the same text whatever order `next` gives. A string key's
 * text stays valid while its table, which is on the stack, holds it: nothing changes the table
 * meanwhile (weak tables are written from a strong copy; scripts cannot set __gc, so no
 * finalizer runs script code). */
enum { KEY_STRING, KEY_INTEGER, KEY_FLOAT };
struct key_entry {
    int kind;
    int slot;   /* the stack slot of its value, kept from the traversal; 0: look it up */
    size_t len; /* KEY_STRING */
    union {
        const char *s;
        lua_Integer i;
        lua_Number n;
    } v;
};

#define INLINE_TEXT 1024
#define INLINE_KEYS 64
/* An object keeps at most this many of its values on the stack while its keys are sorted; the
 * values of a bigger one are looked up again by key. */
#define KEPT_VALUES 32

/* The text and the key stack start in C arrays; when one is outgrown it moves to a Lua
 * userdata held in its stack slot, so a raised error leaks nothing and the memory cap applies. */
struct encoder {
    lua_State *L;
    char *text;
    size_t len, cap;
    struct key_entry *keys;
    size_t nkeys, keys_cap;
    int text_slot, keys_slot;
    char inline_text[INLINE_TEXT];
    struct key_entry inline_keys[INLINE_KEYS];
};

/* Copy `used` units of `old` into a new userdata of at least `need` units stored at `slot`. */
static void *grow(lua_State *L, int slot, const void *old, size_t used, size_t *cap, size_t need,
                  size_t unit)
{
    size_t n = *cap;
    while (n < need) {
        if (n > SIZE_MAX / 2 / unit)
            luaL_error(L, "not enough memory");
        n *= 2;
    }
    void *p = lua_newuserdatauv(L, n * unit, 0);
    memcpy(p, old, used * unit);
    lua_replace(L, slot);
    *cap = n;
    return p;
}

static inline void reserve(struct encoder *e, size_t n)
{
    if (e->cap - e->len < n) {
        if (n > SIZE_MAX - e->len)
            luaL_error(e->L, "not enough memory");
        e->text = grow(e->L, e->text_slot, e->text, e->len, &e->cap, e->len + n, 1);
    }
}

static inline void put(struct encoder *e, const char *s, size_t n)
{
    reserve(e, n);
    memcpy(e->text + e->len, s, n);
    e->len += n;
}

static inline void put_char(struct encoder *e, char c)
{
    reserve(e, 1);
    e->text[e->len++] = c;
}

/* What follows the backslash for bytes that need escaping ('u': \u00XX), 0 for the others. */
static const char escape_of[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    ['"'] = '"', ['\\'] = '\\', [0x7f] = 'u', /* DEL too, as lua-cjson did */
};
static const char hex_digit[] = "0123456789abcdef";

/* The bytes go out as they are (UTF-8 or not); only '"', '\' and control characters (DEL
 * included) are escaped. */
static void encode_string(struct encoder *e, const char *s, size_t len)
{
    reserve(e, len + 2);
    e->text[e->len++] = '"';
    size_t i = 0;
    for (;;) {
        size_t start = i;
        while (i < len && !escape_of[(unsigned char)s[i]])
            i++;
        memcpy(e->text + e->len, s + start, i - start);
        e->len += i - start;
        if (i == len)
            break;
        unsigned char c = (unsigned char)s[i++];
        reserve(e, 6 + (len - i) + 1); /* this escape, the rest, the closing quote */
        char *out = e->text + e->len;
        out[0] = '\\';
        out[1] = escape_of[c];
        if (out[1] == 'u') {
            out[2] = '0';
            out[3] = '0';
            out[4] = hex_digit[c >> 4];
            out[5] = hex_digit[c & 15];
            e->len += 6;
        } else {
            e->len += 2;
        }
    }
    e->text[e->len++] = '"';
}

/* Decimal text of v into out (at least 21 bytes); returns its length. */
static size_t format_integer(char *out, lua_Integer v)
{
    char digits[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = digits[--n];
    return len;
}

/* The shortest text that reads back as d, into out (at least 32 bytes); returns its length.
 * Up to 15 significant digits every decimal survives a trip through a normal double, so when
 * 15 read back the same no shorter text exists; subnormals hold fewer digits and are searched.
 * Integral values have no ".0" (1.0 is written 1), as lua-cjson did. */
static size_t format_float(lua_State *L, char *out, double d)
{
    if (isnan(d) || isinf(d))
        luaL_error(L, "Cannot serialise number: must not be NaN or Inf");
    int n = snprintf(out, 32, "%.15g", d);
    if (strtod(out, NULL) == d) {
        if (d != 0 && fabs(d) < DBL_MIN) {
            for (int precision = 1; precision < 15; precision++) {
                char shorter[32];
                int m = snprintf(shorter, sizeof shorter, "%.*g", precision, d);
                if (strtod(shorter, NULL) == d) {
                    memcpy(out, shorter, (size_t)m + 1);
                    return (size_t)m;
                }
            }
        }
        return (size_t)n;
    }
    n = snprintf(out, 32, "%.16g", d);
    if (strtod(out, NULL) != d)
        n = snprintf(out, 32, "%.17g", d);
    return (size_t)n;
}

static void encode_number(struct encoder *e, int idx)
{
    char text[32];
    size_t n;
    if (lua_isinteger(e->L, idx))
        n = format_integer(text, lua_tointeger(e->L, idx));
    else
        n = format_float(e->L, text, lua_tonumber(e->L, idx));
    put(e, text, n);
}

static void push_key(struct encoder *e, const struct key_entry *k)
{
    if (e->nkeys == e->keys_cap)
        e->keys = grow(e->L, e->keys_slot, e->keys, e->nkeys, &e->keys_cap, e->nkeys + 1,
                       sizeof *e->keys);
    e->keys[e->nkeys++] = *k;
}

/* Numbers first (by value), then strings (by bytes). */
static int key_compare(const void *a, const void *b)
{
    const struct key_entry *x = a, *y = b;
    if ((x->kind == KEY_STRING) != (y->kind == KEY_STRING))
        return x->kind == KEY_STRING ? 1 : -1;
    if (x->kind == KEY_STRING) {
        int c = memcmp(x->v.s, y->v.s, x->len < y->len ? x->len : y->len);
        if (c)
            return c;
        return (x->len > y->len) - (x->len < y->len);
    }
    if (x->kind == KEY_INTEGER && y->kind == KEY_INTEGER)
        return (x->v.i > y->v.i) - (x->v.i < y->v.i);
    lua_Number p = x->kind == KEY_INTEGER ? (lua_Number)x->v.i : x->v.n;
    lua_Number q = y->kind == KEY_INTEGER ? (lua_Number)y->v.i : y->v.n;
    return (p > q) - (p < q);
}

static void sort_keys(struct key_entry *keys, size_t n)
{
    if (n > 16) {
        qsort(keys, n, sizeof *keys, key_compare);
        return;
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort: objects are mostly small */
        struct key_entry k = keys[i];
        size_t j = i;
        for (; j > 0 && key_compare(&keys[j - 1], &k) > 0; j--)
            keys[j] = keys[j - 1];
        keys[j] = k;
    }
}

static void encode_value(struct encoder *e, int idx, int depth);

static void encode_array(struct encoder *e, int t, lua_Integer n, int depth)
{
    lua_State *L = e->L;
    put_char(e, '[');
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1)
            put_char(e, ',');
        lua_rawgeti(L, t, i);
        encode_value(e, lua_gettop(L), depth);
        lua_pop(L, 1);
    }
    put_char(e, ']');
}

/* The keys [first, e->nkeys) of the table at t, sorted, with their values. */
static void encode_object(struct encoder *e, int t, size_t first, int depth)
{
    lua_State *L = e->L;
    sort_keys(e->keys + first, e->nkeys - first);
    put_char(e, '{');
    for (size_t i = first; i < e->nkeys; i++) {
        struct key_entry k = e->keys[i]; /* a copy: nested values may move the key stack */
        if (i > first)
            put_char(e, ',');
        if (k.kind == KEY_STRING) {
            encode_string(e, k.v.s, k.len);
        } else {
            char text[32];
            size_t n = k.kind == KEY_INTEGER ? format_integer(text, k.v.i)
                                             : format_float(L, text, k.v.n);
            put_char(e, '"');
            put(e, text, n);
            put_char(e, '"');
        }
        put_char(e, ':');
        if (k.slot) {
            lua_pushvalue(L, k.slot);
        } else {
            if (k.kind == KEY_STRING)
                lua_pushlstring(L, k.v.s, k.len);
            else if (k.kind == KEY_INTEGER)
                lua_pushinteger(L, k.v.i);
            else
                lua_pushnumber(L, k.v.n);
            lua_rawget(L, t);
        }
        encode_value(e, lua_gettop(L), depth);
        lua_pop(L, 1);
    }
    put_char(e, '}');
}

/* 1 when the table at t has a __mode: the collector may clear its entries (and free their
 * keys) while the table is written. */
static int is_weak(lua_State *L, int t)
{
    if (!lua_getmetatable(L, t))
        return 0;
    lua_pushliteral(L, "__mode");
    int weak = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return weak;
}

static void encode_table(struct encoder *e, int t, int depth);

/* Write a weak table from a strong copy, so no key is freed under the key stack. */
static void encode_weak_table(struct encoder *e, int t, int depth)
{
    lua_State *L = e->L;
    lua_newtable(L);
    int copy = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, copy);
    }
    encode_table(e, copy, depth);
    lua_pop(L, 1);
}

/* A table is an array when all its keys are positive integers and it is not excessively
 * sparse (lua-cjson's rule: at most twice as many slots as items, or at most 10 slots);
 * keys are collected on the same pass in case it is an object. */
static void encode_table(struct encoder *e, int t, int depth)
{
    lua_State *L = e->L;
    if (depth > MAX_DEPTH)
        luaL_error(L, "Cannot serialise table: nested deeper than " STR(MAX_DEPTH)
                      " levels (or a cycle)");
    luaL_checkstack(L, 4, "JSON value nested too deeply");
    if (is_weak(L, t)) {
        encode_weak_table(e, t, depth);
        return;
    }
    size_t first = e->nkeys;
    int base = lua_gettop(L);
    lua_Number max = 0;
    size_t items = 0, kept = 0;
    int array = 1;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        struct key_entry k;
        if (kept < KEPT_VALUES) { /* key, value stay; a copy of the key goes on */
            luaL_checkstack(L, 2, "JSON value nested too deeply");
            k.slot = lua_gettop(L);
            lua_pushvalue(L, -2);
            kept++;
        } else {
            k.slot = 0;
            lua_pop(L, 1);
        }
        int type = lua_type(L, -1);
        if (type == LUA_TSTRING) {
            k.kind = KEY_STRING;
            k.v.s = lua_tolstring(L, -1, &k.len);
            array = 0;
        } else if (type == LUA_TNUMBER && lua_isinteger(L, -1)) {
            k.kind = KEY_INTEGER;
            k.v.i = lua_tointeger(L, -1);
            if (k.v.i >= 1) {
                items++;
                if ((lua_Number)k.v.i > max)
                    max = (lua_Number)k.v.i;
            } else {
                array = 0;
            }
        } else if (type == LUA_TNUMBER) {
            k.kind = KEY_FLOAT;
            k.v.n = lua_tonumber(L, -1);
            /* Lua stores integral floats that fit an integer as integers: this one is beyond */
            if (k.v.n >= 1 && floor(k.v.n) == k.v.n) {
                items++;
                if (k.v.n > max)
                    max = k.v.n;
            } else {
                array = 0;
            }
        } else {
            luaL_error(L, "Cannot serialise %s: table key must be a number or string",
                       luaL_typename(L, -1));
            return;
        }
        push_key(e, &k);
    }
    if (!array) {
        encode_object(e, t, first, depth);
    } else if (items > 0) {
        if (max > (lua_Number)items * 2 && max > 10)
            luaL_error(L, "Cannot serialise table: excessively sparse array");
        encode_array(e, t, (lua_Integer)max, depth);
    } else if (is_array_marked(L, t)) {
        put(e, "[]", 2);
    } else {
        put(e, "{}", 2);
    }
    lua_settop(L, base);
    e->nkeys = first;
}

static void encode_value(struct encoder *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        encode_string(e, s, len);
        return;
    }
    case LUA_TNUMBER:
        encode_number(e, idx);
        return;
    case LUA_TTABLE:
        encode_table(e, idx, depth + 1);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put(e, "true", 4);
        else
            put(e, "false", 5);
        return;
    case LUA_TNIL:
        put(e, "null", 4);
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* sb.json.null */
            put(e, "null", 4);
            return;
        }
        break;
    }
    luaL_error(L, "Cannot serialise %s: type not supported", luaL_typename(L, idx));
}

void sb_json_encode(lua_State *L, int idx)
{
    struct encoder e;
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 4, "JSON value nested too deeply");
    e.L = L;
    e.text = e.inline_text;
    e.len = 0;
    e.cap = sizeof e.inline_text;
    e.keys = e.inline_keys;
    e.nkeys = 0;
    e.keys_cap = INLINE_KEYS;
    lua_pushnil(L);
    e.text_slot = lua_gettop(L);
    lua_pushnil(L);
    e.keys_slot = lua_gettop(L);
    encode_value(&e, idx, 0);
    lua_pushlstring(L, e.text, e.len);
    lua_replace(L, e.text_slot);
    lua_settop(L, e.text_slot);
}

/* ---- decoding ------------------------------------------------------------------------------- */

/* A recursive descent parser of RFC 8259. Each parse_* pushes one value and returns 0, or
 * records where and why the text is invalid and returns -1 (leaving whatever it pushed, which
 * sb_json_decode drops). */
struct decoder {
    lua_State *L;
    const char *p, *end;
    const char *err_at;
    const char *err;
    int depth;
};

static int fail(struct decoder *d, const char *at, const char *why)
{
    d->err_at = at;
    d->err = why;
    return -1;
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline void skip_space(struct decoder *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
        d->p++;
}

static int parse_value(struct decoder *d);

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* \uXXXX at q (the backslash), and its low surrogate when it is a high one: the code point as
 * UTF-8 into out; returns the number of bytes, or -1. Moves *next past the escape(s). */
static int unicode_escape(struct decoder *d, const char *q, const char **next, char *out)
{
    if (d->end - q < 6 || hex4(q + 2) < 0)
        return fail(d, q, "invalid \\u escape: expected 4 hex digits");
    long cp = hex4(q + 2);
    q += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(d, q - 6, "invalid \\u escape: a low surrogate without a high one");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int low = d->end - q >= 6 && q[0] == '\\' && q[1] == 'u' ? hex4(q + 2) : -1;
        if (low < 0xDC00 || low > 0xDFFF)
            return fail(d, q - 6, "invalid \\u escape: a high surrogate without a low one");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        q += 6;
    }
    *next = q;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Bytes that end a run of plain string content: '"', '\' and control characters. Bytes from
 * 0x80 up pass through unchecked, as lua-cjson did. */
static const unsigned char special_in_string[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
};

static inline int string_special(unsigned char c)
{
    return special_in_string[c];
}

/* Escapes never decode to more bytes than they take, so a string's text bounds its value. The
 * value is built in a C array or, when longer, in a plain userdata on the stack: no luaL_Buffer,
 * whose to-be-closed box Lua 5.4.4's lua_settop mishandles when an error drops it. */
static int parse_string(struct decoder *d)
{
    lua_State *L = d->L;
    const char *s = ++d->p, *q = s;
    while (q < d->end && !string_special((unsigned char)*q))
        q++;
    if (q < d->end && *q == '"') { /* no escapes: the common case */
        lua_pushlstring(L, s, (size_t)(q - s));
        d->p = q + 1;
        return 0;
    }
    const char *r = q; /* the closing quote, or the end */
    while (r < d->end && *r != '"')
        r += *r == '\\' && r + 1 < d->end ? 2 : 1;
    char local[256];
    size_t cap = (size_t)(r - s);
    char *out = cap <= sizeof local ? local : lua_newuserdatauv(L, cap, 0);
    size_t n = 0;
    for (;;) {
        memcpy(out + n, s, (size_t)(q - s));
        n += (size_t)(q - s);
        if (q == d->end)
            return fail(d, q, "expected '\"' to end the string");
        if (*q == '"')
            break;
        if (*q != '\\')
            return fail(d, q, "control character in a string (it must be escaped)");
        if (d->end - q < 2)
            return fail(d, d->end, "expected an escape after '\\'");
        const char *next = q + 2;
        switch (q[1]) {
        case '"':
        case '\\':
        case '/':
            out[n++] = q[1];
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'u': {
            int len = unicode_escape(d, q, &next, out + n);
            if (len < 0)
                return -1;
            n += (size_t)len;
            break;
        }
        default:
            return fail(d, q, "invalid escape (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
        }
        s = q = next;
        while (q < d->end && !string_special((unsigned char)*q))
            q++;
    }
    lua_pushlstring(L, out, n);
    if (out != local)
        lua_remove(L, -2);
    d->p = q + 1;
    return 0;
}

static int parse_number(struct decoder *d)
{
    lua_State *L = d->L;
    const char *s = d->p, *q = s;
    int negative = *q == '-';
    q += negative;
    if (q == d->end || !is_digit(*q))
        return fail(d, q, "expected a digit");
    if (*q == '0') {
        q++;
        if (q < d->end && is_digit(*q))
            return fail(d, q, "leading zeros are not allowed");
    } else {
        while (q < d->end && is_digit(*q))
            q++;
    }
    int integral = 1;
    if (q < d->end && *q == '.') {
        q++;
        if (q == d->end || !is_digit(*q))
            return fail(d, q, "expected a digit after '.'");
        while (q < d->end && is_digit(*q))
            q++;
        integral = 0;
    }
    if (q < d->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < d->end && (*q == '+' || *q == '-'))
            q++;
        if (q == d->end || !is_digit(*q))
            return fail(d, q, "expected a digit in the exponent");
        while (q < d->end && is_digit(*q))
            q++;
        integral = 0;
    }
    d->p = q;
    if (integral) {
        uint64_t u = 0;
        const char *r = s + negative;
        for (; r < q; r++) {
            unsigned digit = (unsigned)(*r - '0');
            if (u > (UINT64_MAX - digit) / 10)
                break;
            u = u * 10 + digit;
        }
        if (r == q) { /* no overflow */
            if (!negative && u <= (uint64_t)LUA_MAXINTEGER) {
                lua_pushinteger(L, (lua_Integer)u);
                return 0;
            }
            if (negative && u == 0) { /* -0 keeps its sign as a float */
                lua_pushnumber(L, -0.0);
                return 0;
            }
            if (negative && u <= (uint64_t)LUA_MAXINTEGER) {
                lua_pushinteger(L, -(lua_Integer)u);
                return 0;
            }
            if (negative && u == (uint64_t)LUA_MAXINTEGER + 1) {
                lua_pushinteger(L, LUA_MININTEGER);
                return 0;
            }
        }
    }
    /* strtod wants a terminated string; the text is validated, so it reads all of it */
    char local[64];
    size_t n = (size_t)(q - s);
    char *copy = n < sizeof local ? local : malloc(n + 1);
    if (!copy)
        luaL_error(L, "not enough memory");
    memcpy(copy, s, n);
    copy[n] = '\0';
    double v = strtod(copy, NULL);
    if (copy != local) {
        free(copy);
        copy = NULL;
    }
    if (isinf(v))
        return fail(d, s, "number out of range");
    lua_pushnumber(L, v);
    return 0;
}

static int parse_literal(struct decoder *d, const char *word, size_t len)
{
    if ((size_t)(d->end - d->p) < len || memcmp(d->p, word, len) != 0)
        return fail(d, d->p, "expected a value");
    d->p += len;
    return 0;
}

static int enter(struct decoder *d)
{
    if (++d->depth > MAX_DEPTH)
        return fail(d, d->p, "nested deeper than " STR(MAX_DEPTH) " levels");
    luaL_checkstack(d->L, 4, "JSON text nested too deeply");
    d->p++;
    skip_space(d);
    return 0;
}

static int parse_array(struct decoder *d)
{
    lua_State *L = d->L;
    if (enter(d))
        return -1;
    lua_createtable(L, 4, 0); /* room for a short array without growing it item by item */
    if (d->p < d->end && *d->p == ']') { /* [] stays an array: marked */
        d->p++;
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_array_mt);
        lua_setmetatable(L, -2);
        d->depth--;
        return 0;
    }
    for (lua_Integer n = 1;; n++) {
        if (parse_value(d))
            return -1;
        lua_rawseti(L, -2, n);
        skip_space(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_space(d);
        } else if (d->p < d->end && *d->p == ']') {
            d->p++;
            break;
        } else {
            return fail(d, d->p, "expected ',' or ']'");
        }
    }
    d->depth--;
    return 0;
}

static int parse_object(struct decoder *d)
{
    lua_State *L = d->L;
    if (enter(d))
        return -1;
    lua_createtable(L, 0, 4); /* room for a small object's keys without rehashing */
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        if (d->p == d->end || *d->p != '"')
            return fail(d, d->p, "expected a string key");
        if (parse_string(d))
            return -1;
        skip_space(d);
        if (d->p == d->end || *d->p != ':')
            return fail(d, d->p, "expected ':'");
        d->p++;
        skip_space(d);
        if (parse_value(d))
            return -1;
        lua_rawset(L, -3);
        skip_space(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_space(d);
        } else if (d->p < d->end && *d->p == '}') {
            d->p++;
            break;
        } else {
            return fail(d, d->p, "expected ',' or '}'");
        }
    }
    d->depth--;
    return 0;
}

/* One value at d->p (white space before it already skipped). */
static int parse_value(struct decoder *d)
{
    if (d->p == d->end)
        return fail(d, d->p, "expected a value");
    switch (*d->p) {
    case '{':
        return parse_object(d);
    case '[':
        return parse_array(d);
    case '"':
        return parse_string(d);
    case 't':
        if (parse_literal(d, "true", 4))
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (parse_literal(d, "false", 5))
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (parse_literal(d, "null", 4))
            return -1;
        lua_pushlightuserdata(d->L, NULL);
        return 0;
    default:
        if (*d->p == '-' || is_digit(*d->p))
            return parse_number(d);
        return fail(d, d->p, "expected a value");
    }
}

int sb_json_decode(lua_State *L, const char *text, size_t len)
{
    struct decoder d = {L, text, text + len, NULL, NULL, 0};
    int base = lua_gettop(L);
    luaL_checkstack(L, 3, "JSON text nested too deeply");
    skip_space(&d);
    int rc = parse_value(&d);
    if (rc == 0) {
        skip_space(&d);
        if (d.p != d.end)
            rc = fail(&d, d.p, "unexpected text after the value");
    }
    if (rc == 0)
        return 0;
    lua_settop(L, base);
    lua_Integer at = (lua_Integer)(d.err_at - text) + 1;
    if (d.err_at == d.end)
        lua_pushfstring(L, "invalid JSON at character %I: %s, but the text ends", at, d.err);
    else
        lua_pushfstring(L, "invalid JSON at character %I: %s", at, d.err);
    return -1;
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
void sb_json_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_array_mt);
    lua_setmetatable(L, idx);
}

/* sb.json.array([t]) -> t marked as an array  [-0,+1,-] */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    else
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    sb_json_mark_array(L, 1);
    return 1;
}

void lua_json_open(lua_State *L)
{
    /* One array metatable per state, so marks made before a second open still count. */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_array_mt) != LUA_TTABLE) {
        lua_newtable(L);
        lua_pushliteral(L, "array");
        lua_setfield(L, -2, "__jsontype");
        lua_rawsetp(L, LUA_REGISTRYINDEX, &key_array_mt);
    }
    lua_pop(L, 1);

    static const luaL_Reg functions[] = {
        {"encode", l_encode},
        {"decode", l_decode},
        {"array", l_array},
        {NULL, NULL},
    };
    luaL_newlib(L, functions);
    lua_pushlightuserdata(L, NULL); /* lua-cjson's null too: cjson.null == sb.json.null */
    lua_setfield(L, -2, "null");
}
