/* lua_sb: see lua_sb.h. */
#include "lua_sb.h"

#include "log.h"
#include "lua_crypto.h"
#include "lua_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

/* Registry keys (addresses of these variables). */
static char key_error_mt, key_format;

/* ---- HTTP errors ---------------------------------------------------------------------------- */

static void push_http_error(lua_State *L, int status, const char *code, const char *message)
{
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, code);
    lua_setfield(L, -2, "error");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_error_mt);
    lua_setmetatable(L, -2);
}

int sb_raise_http_error(lua_State *L, int status, const char *code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    push_http_error(L, status, code, message);
    return lua_error(L);
}

/* sb.http_error(status, code, message): raises; the request is answered with that status and
 * {"error": code, "message": message}  [-0,+0,v] */
static int l_http_error(lua_State *L)
{
    lua_Integer status = luaL_checkinteger(L, 1);
    luaL_argcheck(L, status >= 400 && status <= 599, 1, "status must be 400-599");
    push_http_error(L, (int)status, luaL_checkstring(L, 2), luaL_optstring(L, 3, ""));
    return lua_error(L);
}

/* sb.is_http_error(v) -> boolean  [-0,+1,-] */
static int l_is_http_error(lua_State *L)
{
    int yes = 0;
    if (lua_getmetatable(L, 1)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_error_mt);
        yes = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    lua_pushboolean(L, yes);
    return 1;
}

/* __tostring of an HTTP error: "400 invalid_json: message" */
static int l_http_error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "status");
    lua_getfield(L, 1, "error");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s %s: %s", lua_tostring(L, -3), lua_tostring(L, -2), lua_tostring(L, -1));
    return 1;
}

/* ---- log ------------------------------------------------------------------------------------ */

/* sb.log.<level>(fmt, ...): string.format(fmt, ...) into the host log with the request id;
 * a lone argument is converted with tostring  [-0,+0,e] */
static int l_log(lua_State *L)
{
    enum log_level level = (enum log_level)lua_tointeger(L, lua_upvalueindex(1));
    if (!log_enabled(level))
        return 0;
    const char *text;
    if (lua_gettop(L) <= 1) {
        text = luaL_tolstring(L, 1, NULL);
    } else {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_format);
        lua_insert(L, 1);
        lua_call(L, lua_gettop(L) - 1, 1);
        text = lua_tostring(L, -1);
    }
    struct lua_task *t = lua_task_of(L);
    log_msg(level, t ? t->request_id : NULL, "%s", text ? text : "");
    return 0;
}

static void open_log(lua_State *L)
{
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "format");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_format);
    lua_pop(L, 1);
    static const struct { const char *name; enum log_level level; } levels[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARNING},
        {"warning", LOG_WARNING}, {"error", LOG_ERROR},
    };
    lua_createtable(L, 0, 5);
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        lua_pushinteger(L, levels[i].level);
        lua_pushcclosure(L, l_log, 1);
        lua_setfield(L, -2, levels[i].name);
    }
}

/* ---- time, ids, sleeping -------------------------------------------------------------------- */

/* sb.now() -> seconds since the epoch, as a float  [-0,+1,-] */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

/* uuid4 ids are made for every message: a per-thread xoshiro256** generator seeded from the
 * kernel keeps that off the system call path. */
static _Thread_local uint64_t rng_state[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void)
{
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* sb.uuid() -> 32 lower-case hex characters of a random (version 4) uuid  [-0,+1,e] */
static int l_uuid(lua_State *L)
{
    static const char digits[] = "0123456789abcdef";
    if (!rng_seeded) {
        if (getrandom(rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state)
            return luaL_error(L, "sb.uuid: no randomness available");
        rng_seeded = 1;
    }
    unsigned char b[16];
    uint64_t hi = rng_next(), lo = rng_next();
    memcpy(b, &hi, 8);
    memcpy(b + 8, &lo, 8);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[32];
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[b[i] >> 4];
        hex[2 * i + 1] = digits[b[i] & 15];
    }
    lua_pushlstring(L, hex, 32);
    return 1;
}

/* Continuation of every wait: return what the engine resumed with, or raise the cancellation. */
static int after_wait(lua_State *L, int status, lua_KContext base)
{
    (void)status;
    struct lua_task *t = lua_task_of(L);
    if (t && t->cancelled) {
        lua_pushstring(L, t->cancelled);
        return lua_error(L);
    }
    return lua_gettop(L) - (int)base;
}

int sb_yield_wait(lua_State *L)
{
    return lua_yieldk(L, 0, lua_gettop(L), after_wait);
}

/* The task of the running coroutine when it may wait, else raises naming `what`. */
static struct lua_task *waiting_task(lua_State *L, const char *what)
{
    struct lua_task *t = lua_task_of(L);
    if (!t || t->co != L || !lua_isyieldable(L))
        luaL_error(L, "%s can only be called while handling a request, from the request's own "
                      "coroutine (not in init, not in a coroutine the script made)%s", what,
                   strcmp(what, "sb.http.request") == 0 ? ", or in a channel's startup hook" : "");
    if (t->cancelled)
        luaL_error(L, "%s", t->cancelled);
    return t;
}

/* sb.sleep(seconds): parks the request's coroutine, never the worker  [-0,+0,e] */
static int l_sleep(lua_State *L)
{
    lua_Number seconds = luaL_checknumber(L, 1);
    luaL_argcheck(L, seconds >= 0 && seconds == seconds, 1, "must be a number >= 0");
    struct lua_task *t = waiting_task(L, "sb.sleep");
    lua_settop(L, 0);
    t->ops->sleep(t, seconds);
    return sb_yield_wait(L);
}

#define MAX_REQUEST_HEADERS 64
#define MAX_HTTP_TIMEOUT 86400 /* seconds: a day; larger values would overflow libcurl's ms */

/* Read opts.headers (at idx) into hs; returns the count. Values are converted with tostring and
 * kept alive in the table at keep_idx. */
static size_t read_request_headers(lua_State *L, int idx, int keep_idx, struct outbound_header *hs)
{
    size_t n = 0;
    if (lua_isnil(L, idx))
        return 0;
    luaL_argexpected(L, lua_istable(L, idx), 1, "headers as a table of name = value");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (n == MAX_REQUEST_HEADERS)
            luaL_error(L, "sb.http.request: more than %d headers", MAX_REQUEST_HEADERS);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "sb.http.request: header names must be strings");
        luaL_tolstring(L, -1, NULL);
        hs[n].name = lua_tostring(L, -3);
        hs[n].value = lua_tostring(L, -1);
        lua_rawseti(L, keep_idx, (lua_Integer)n + 1);
        lua_pop(L, 1);
        n++;
    }
    return n;
}

static int has_header(const struct outbound_header *hs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(hs[i].name, name) == 0)
            return 1;
    return 0;
}

static int l_urlencode(lua_State *L);

static _Thread_local int blocking_allowed;

void lua_sb_allow_blocking(int allowed) { blocking_allowed = allowed; }

struct blocking_call {
    lua_State *L;
    int results;
};

static void blocking_done(void *ctx, const struct outbound_result *result)
{
    struct blocking_call *call = ctx;
    call->results = sb_push_http_result(call->L, result);
}

/* sb.http.request{method=, url=, headers=, body=, json=, form=, timeout=, ca_file=}
 *   -> {status=, headers=, body=, json=} | nil, error   [-0,+(1|2),e]
 * Waits without blocking the worker; outside the workers (startup hooks) it blocks. */
static int l_http_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* In a channel's startup hook (the main thread, once per load) the call may simply wait;
     * everywhere else it must park its request's coroutine. */
    struct lua_task *t = NULL;
    int blocking = blocking_allowed && !lua_task_of(L);
    if (!blocking)
        t = waiting_task(L, "sb.http.request");
    lua_newtable(L); /* 2: keeps converted strings alive until the request is started */
    lua_getfield(L, 1, "url");       /* 3 */
    lua_getfield(L, 1, "method");    /* 4 */
    lua_getfield(L, 1, "headers");   /* 5 */
    lua_getfield(L, 1, "body");      /* 6 */
    lua_getfield(L, 1, "json");      /* 7 */
    lua_getfield(L, 1, "form");      /* 8 */
    lua_getfield(L, 1, "timeout");   /* 9 */
    lua_getfield(L, 1, "ca_file");   /* 10 */

    struct outbound_request req = {0};
    struct outbound_header headers[MAX_REQUEST_HEADERS + 1];
    if (lua_type(L, 3) != LUA_TSTRING)
        return luaL_error(L, "sb.http.request: url must be a string");
    req.url = lua_tostring(L, 3);
    if (!lua_isnil(L, 5) && !lua_istable(L, 5))
        return luaL_error(L, "sb.http.request: headers must be a table of name = value");
    if (!lua_isnil(L, 9) && !lua_isnumber(L, 9))
        return luaL_error(L, "sb.http.request: timeout must be a number of seconds");
    int bodies = !lua_isnil(L, 6) + !lua_isnil(L, 7) + !lua_isnil(L, 8);
    if (bodies > 1)
        return luaL_error(L, "sb.http.request: give one of body, json or form");
    size_t n = read_request_headers(L, 5, 2, headers);
    const char *content_type = NULL;
    if (!lua_isnil(L, 6)) {
        if (lua_type(L, 6) != LUA_TSTRING)
            return luaL_error(L, "sb.http.request: body must be a string");
        req.body = lua_tolstring(L, 6, &req.body_len);
    } else if (!lua_isnil(L, 7)) {
        sb_json_encode(L, 7);
        lua_replace(L, 7);
        req.body = lua_tolstring(L, 7, &req.body_len);
        content_type = "application/json";
    } else if (!lua_isnil(L, 8)) {
        lua_pushcfunction(L, l_urlencode);
        lua_pushvalue(L, 8);
        lua_call(L, 1, 1);
        lua_replace(L, 8);
        req.body = lua_tolstring(L, 8, &req.body_len);
        content_type = "application/x-www-form-urlencoded";
    }
    if (content_type && !has_header(headers, n, "Content-Type"))
        headers[n++] = (struct outbound_header){"Content-Type", content_type};
    req.headers = headers;
    req.header_count = n;
    req.method = lua_isnil(L, 4) ? (req.body ? "POST" : "GET") : luaL_checkstring(L, 4);
    req.timeout = luaL_optnumber(L, 9, 30);
    if (!(req.timeout > 0) || !(req.timeout <= MAX_HTTP_TIMEOUT))
        return luaL_error(L, "sb.http.request: timeout must be a number of seconds > 0 and at "
                             "most %d", MAX_HTTP_TIMEOUT);
    req.ca_file = luaL_optstring(L, 10, NULL);
    req.request_id = t ? t->request_id : NULL;

    char err[256];
    if (blocking) {
        struct blocking_call call = {L, 0};
        if (outbound_perform_blocking(&req, blocking_done, &call, err, sizeof err) == 0)
            return call.results;
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    if (t->ops->http(t, &req, err, sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_settop(L, 0);
    return sb_yield_wait(L);
}

int sb_push_http_result(lua_State *L, const struct outbound_result *r)
{
    if (!r->ok) {
        lua_pushnil(L);
        lua_pushstring(L, r->error ? r->error : "request failed");
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, r->body, r->body_len);
    lua_setfield(L, -2, "body");
    lua_createtable(L, 0, (int)r->header_count);
    const char *content_type = NULL;
    for (size_t i = 0; i < r->header_count; i++) {
        /* A repeated header reads as its values joined with ", ". */
        if (lua_getfield(L, -1, r->headers[i].name) == LUA_TSTRING) {
            lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), r->headers[i].value);
            lua_remove(L, -2);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, r->headers[i].value);
        }
        lua_setfield(L, -2, r->headers[i].name);
        if (strcmp(r->headers[i].name, "content-type") == 0)
            content_type = r->headers[i].value;
    }
    lua_setfield(L, -2, "headers");
    /* json: the decoded body when the server says it is JSON and it decodes. */
    if (content_type && strstr(content_type, "json") && r->body_len > 0) {
        if (sb_json_decode(L, r->body, r->body_len) == 0)
            lua_setfield(L, -2, "json");
        else
            lua_pop(L, 1);
    }
    return 1;
}

/* ---- text ----------------------------------------------------------------------------------- */

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

/* sb.strip(s) -> s without leading and trailing white space (ASCII and Unicode)  [-0,+1,v] */
static int l_strip(lua_State *L)
{
    size_t len, n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    while (len > 0 && (n = space_at(s, len)) > 0)
        s += n, len -= n;
    while (len > 0 && (n = space_before(s, len)) > 0)
        len -= n;
    lua_pushlstring(L, (const char *)s, len);
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

/* ---- the module ----------------------------------------------------------------------------- */

int luaopen_switchboard(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"now", l_now},
        {"uuid", l_uuid},
        {"sleep", l_sleep},
        {"urlencode", l_urlencode},
        {"urldecode", l_urldecode},
        {"strip", l_strip},
        {"http_error", l_http_error},
        {"is_http_error", l_is_http_error},
        {NULL, NULL},
    };
    lua_newtable(L); /* the metatable of HTTP errors */
    lua_pushcfunction(L, l_http_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_error_mt);

    luaL_newlib(L, functions);
    lua_crypto_register(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_http_request);
    lua_setfield(L, -2, "request");
    lua_setfield(L, -2, "http");
    lua_json_open(L);
    lua_setfield(L, -2, "json");
    open_log(L);
    lua_setfield(L, -2, "log");
    lua_pushliteral(L, SB_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
