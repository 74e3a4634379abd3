/* SPDX-License-Identifier: MIT */
/* lua_crypto: see lua_crypto.h. */
#include "lua_crypto.h"

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static const EVP_MD *digest_by_name(lua_State *L, int arg)
{
    static const char *const names[] = {"sha1", "sha256", "sha512", "md5", NULL};
    switch (luaL_checkoption(L, arg, NULL, names)) {
    case 0:
        return EVP_sha1();
    case 1:
        return EVP_sha256();
    case 2:
        return EVP_sha512();
    default:
        return EVP_md5();
    }
}

/* sb.hmac(alg, key, data) -> raw bytes; alg "sha1", "sha256", "sha512" or "md5"  [-0,+1,v] */
static int l_hmac(lua_State *L)
{
    const EVP_MD *md = digest_by_name(L, 1);
    size_t key_len, data_len;
    const char *key = luaL_checklstring(L, 2, &key_len);
    const char *data = luaL_checklstring(L, 3, &data_len);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int out_len = 0;
    if (!HMAC(md, key, (int)key_len, (const unsigned char *)data, data_len, out, &out_len))
        return luaL_error(L, "sb.hmac: HMAC failed");
    lua_pushlstring(L, (const char *)out, out_len);
    return 1;
}

/* sb.digest(alg, data) -> raw bytes  [-0,+1,v] */
static int l_digest(lua_State *L)
{
    const EVP_MD *md = digest_by_name(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int out_len = 0;
    if (!EVP_Digest(data, len, out, &out_len, md, NULL))
        return luaL_error(L, "sb.digest: digest failed");
    lua_pushlstring(L, (const char *)out, out_len);
    return 1;
}

/* sb.hex(bytes) -> lower-case hex  [-0,+1,v] */
static int l_hex(lua_State *L)
{
    static const char digits[] = "0123456789abcdef";
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len * 2);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 15];
    }
    luaL_pushresultsize(&b, len * 2);
    return 1;
}

/* sb.base64(bytes) -> standard base64 with padding  [-0,+1,v] */
static int l_base64(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    size_t out_len = 4 * ((len + 2) / 3);
    char *out = luaL_buffinitsize(L, &b, out_len + 1);
    EVP_EncodeBlock((unsigned char *)out, s, (int)len);
    luaL_pushresultsize(&b, out_len);
    return 1;
}

static int is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* sb.base64_decode(s) -> bytes | nil, message (standard or URL-safe alphabet, padding
 * optional, white space ignored)  [-0,+(1|2),v] */
static int l_base64_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    /* Normalise to the standard alphabet without white space, checking every character. */
    luaL_Buffer clean;
    luaL_buffinit(L, &clean);
    size_t data = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        c = c == '-' ? '+' : c == '_' ? '/' : c;
        if (pad > 0 || !is_base64_char(c)) /* nothing may follow padding */
            goto invalid;
        luaL_addchar(&clean, c);
        data++;
    }
    if (data % 4 == 1 || pad > 2 || (pad && (data + pad) % 4 != 0))
        goto invalid;
    for (size_t missing = (4 - data % 4) % 4; missing > 0; missing--)
        luaL_addchar(&clean, '=');
    luaL_pushresult(&clean);
    size_t n;
    const char *text = lua_tolstring(L, -1, &n);
    size_t padding = n - data;
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3 + 1);
    int decoded = n ? EVP_DecodeBlock(out, (const unsigned char *)text, (int)n) : 0;
    if (decoded < 0)
        goto invalid;
    luaL_pushresultsize(&b, (size_t)decoded - padding);
    return 1;
invalid:
    lua_pushnil(L);
    lua_pushliteral(L, "invalid base64");
    return 2;
}

/* sb.secure_compare(a, b) -> boolean, in time that depends on the lengths only  [-0,+1,v] */
static int l_secure_compare(lua_State *L)
{
    size_t a_len, b_len;
    const char *a = luaL_checklstring(L, 1, &a_len);
    const char *b = luaL_checklstring(L, 2, &b_len);
    int equal = a_len == b_len && CRYPTO_memcmp(a, b, a_len) == 0;
    lua_pushboolean(L, equal);
    return 1;
}

void lua_crypto_register(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"hmac", l_hmac},
        {"digest", l_digest},
        {"hex", l_hex},
        {"base64", l_base64},
        {"base64_decode", l_base64_decode},
        {"secure_compare", l_secure_compare},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
