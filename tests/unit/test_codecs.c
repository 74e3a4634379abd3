/* SPDX-License-Identifier: MIT */
/* Unit tests of the codecs and crypto helpers of the switchboard module (docs/lua-api.md):
 * sb.hmac and sb.digest against the RFC 2202 / RFC 4231 vectors, sb.hex, sb.base64 and the
 * strict sb.base64_decode against RFC 4648, sb.secure_compare, sb.urlencode and sb.urldecode.
 * Each case is a Lua expression that must be true, run in a plain state holding just these
 * functions (lua_crypto.c, lua_sb_text.c). */
#include "../../src/lua_crypto.h"
#include "../../src/lua_sb.h"
#include "check.h"

#include <lauxlib.h>
#include <lualib.h>

static lua_State *L;

/* Evaluate `expr` (a Lua expression) and check that it is true; on an error or false, print it. */
#define CHECK_LUA(expr) check_lua(__FILE__, __LINE__, (expr))

static void check_lua(const char *file, int line, const char *expr)
{
    check_count++;
    lua_settop(L, 0);
    lua_pushfstring(L, "return %s", expr);
    if (luaL_loadstring(L, lua_tostring(L, -1)) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        check_failures++;
        fprintf(stderr, "%s:%d: %s raised: %s\n", file, line, expr, lua_tostring(L, -1));
        return;
    }
    if (!lua_toboolean(L, -1)) {
        check_failures++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
    }
}

static void test_digests(void)
{
    /* RFC 4231, test cases 1 and 2. */
    CHECK_LUA("sb.hex(sb.hmac('sha256', ('\\11'):rep(20), 'Hi There')) == "
              "'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'");
    CHECK_LUA("sb.hex(sb.hmac('sha256', 'Jefe', 'what do ya want for nothing?')) == "
              "'5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'");
    CHECK_LUA("sb.hex(sb.hmac('sha512', ('\\11'):rep(20), 'Hi There')) == "
              "'87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
              "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854'");
    /* RFC 2202 (HMAC-SHA1) and RFC 2104 (HMAC-MD5). */
    CHECK_LUA("sb.hex(sb.hmac('sha1', ('\\11'):rep(20), 'Hi There')) == "
              "'b617318655057264e28bc0b6fb378c8ef146be00'");
    CHECK_LUA("sb.hex(sb.hmac('sha1', 'Jefe', 'what do ya want for nothing?')) == "
              "'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79'");
    CHECK_LUA("sb.hex(sb.hmac('md5', 'Jefe', 'what do ya want for nothing?')) == "
              "'750c783e6ab0b503eaa86e310a5db738'");
    /* FIPS 180 "abc", and the empty string. */
    CHECK_LUA("sb.hex(sb.digest('sha256', 'abc')) == "
              "'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'");
    CHECK_LUA("sb.hex(sb.digest('sha1', 'abc')) == 'a9993e364706816aba3e25717850c26c9cd0d89d'");
    CHECK_LUA("sb.hex(sb.digest('sha512', 'abc')):sub(1, 32) == 'ddaf35a193617abacc417349ae204131'");
    CHECK_LUA("sb.hex(sb.digest('md5', '')) == 'd41d8cd98f00b204e9800998ecf8427e'");
    CHECK_LUA("#sb.hmac('sha256', '', '') == 32");
    /* An unknown algorithm is a misuse: it raises, naming the argument. */
    CHECK_LUA("not pcall(sb.hmac, 'sha3', 'k', 'd')");
    CHECK_LUA("select(2, pcall(sb.digest, 'crc32', 'd')):find(\"invalid option 'crc32'\") ~= nil");
}

static void test_hex_and_base64(void)
{
    CHECK_LUA("sb.hex('') == '' and sb.hex('\\0\\255\\16') == '00ff10'");
    /* RFC 4648 section 10. */
    CHECK_LUA("sb.base64('') == '' and sb.base64('f') == 'Zg==' and sb.base64('fo') == 'Zm8='");
    CHECK_LUA("sb.base64('foo') == 'Zm9v' and sb.base64('foob') == 'Zm9vYg=='");
    CHECK_LUA("sb.base64('fooba') == 'Zm9vYmE=' and sb.base64('foobar') == 'Zm9vYmFy'");
    CHECK_LUA("sb.base64('\\251\\255') == '+/8='");
    CHECK_LUA("(function() for n = 0, 64 do local s = ('\\0\\1\\254\\255xyz'):rep(10):sub(1, n) "
              "if sb.base64_decode(sb.base64(s)) ~= s then return false end end return true end)()");
    /* Decoding: padding optional, the URL-safe alphabet, white space ignored. */
    CHECK_LUA("sb.base64_decode('Zg') == 'f' and sb.base64_decode('Zm8') == 'fo'");
    CHECK_LUA("sb.base64_decode('-_8=') == '\\251\\255' and sb.base64_decode('-_8') == '\\251\\255'");
    CHECK_LUA("sb.base64_decode(' Zm9v\\nYmFy\\r\\n') == 'foobar'");
    CHECK_LUA("sb.base64_decode('') == ''");
    /* Strict: anything else is nil and a message, never a partial result. */
    CHECK_LUA("select('#', sb.base64_decode('Z')) == 2 and select(2, sb.base64_decode('Z')) == "
              "'invalid base64'");
    CHECK_LUA("sb.base64_decode('Zg=a') == nil and sb.base64_decode('Zm9v====') == nil");
    CHECK_LUA("sb.base64_decode('Zm9v!') == nil and sb.base64_decode('Zg=') == nil");
    CHECK_LUA("sb.base64_decode('=') == nil and sb.base64_decode('Zm\\0v') == nil");
}

static void test_secure_compare(void)
{
    CHECK_LUA("sb.secure_compare('', '') and sb.secure_compare('abc', 'abc')");
    CHECK_LUA("not sb.secure_compare('abc', 'abd') and not sb.secure_compare('abc', 'abcd')");
    CHECK_LUA("not sb.secure_compare('a\\0b', 'a\\0c')");
}

static void test_url_codecs(void)
{
    CHECK_LUA("sb.urlencode('a b&c=d/\\195\\169~-._') == 'a+b%26c%3Dd%2F%C3%A9~-._'");
    CHECK_LUA("sb.urlencode({ b = 2, a = { 'x', 'y z' } }) == 'a=x&a=y+z&b=2'");
    CHECK_LUA("sb.urlencode({}) == ''");
    CHECK_LUA("not pcall(sb.urlencode, { [1] = 'x' })");
    CHECK_LUA("sb.urldecode('a+b%26%C3%A9') == 'a b&\\195\\169'");
    /* Escapes that are not two hex digits are kept as they are. */
    CHECK_LUA("sb.urldecode('%zz%4%') == '%zz%4%'");
    CHECK_LUA("sb.urldecode(sb.urlencode('\\0\\1 +%&=\\255')) == '\\0\\1 +%&=\\255'");
    CHECK_LUA("sb.strip('  \\t hi \\194\\160\\n') == 'hi' and sb.strip('\\227\\128\\128') == ''");
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lua_crypto_register(L);
    lua_sb_text_register(L);
    lua_setglobal(L, "sb");
    test_digests();
    test_hex_and_base64();
    test_secure_compare();
    test_url_codecs();
    lua_close(L);
    return CHECK_DONE();
}
