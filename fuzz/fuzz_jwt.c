/* SPDX-License-Identifier: MIT */
/* fuzz_jwt: sb.jwt.verify on any bytes, as a channel calls it on a bearer token, and on any key
 * text, as a channel hands it a fetched JWK set (docs/lua-api.md, "sb.jwt").
 *
 * Checked besides memory errors and leaks:
 *   verify(x, opts) never raises, for a secret, a JWK set (RFC 7515 A.2 and A.3 keys, with and
 *   without kids) and claim options; it returns a claims table and a header table, or nil and a
 *   string reason;
 *   a token it accepts for the secret is one that sb.jwt.sign could have made: its signature
 *   is the HMAC of its first two segments;
 *   verify(token, {key = x}) for the RFC 7515 A.3 token either answers as above or raises a
 *   "bad argument #2" error (a key given wrongly), never anything else.
 * Uses: lua_state (a host state with the switchboard module). */
#include "lua_state.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;

static const char *const checks =
    "local x = ...\n"
    "local sb = require 'switchboard'\n"
    "local function fail(what) error(what .. ' (input ' .. string.format('%q', x) .. ')', 0) end\n"
    "local RSA = {kty = 'RSA', kid = 'r', e = 'AQAB', n = 'ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcy"
    "QoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6"
    "b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg6"
    "65xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91k"
    "zk2PAcDTW9gb54h4FRWyuXpoQ'}\n"
    "local EC = {kty = 'EC', crv = 'P-256', x = 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',"
    " y = 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0'}\n"
    "local OCT = {kty = 'oct', kid = 'o', k = 'c2VjcmV0'}\n"
    "local function answer(ok, a, b)\n"
    "  if not ok then fail('verify raised: ' .. tostring(a)) end\n"
    "  if a == nil then if type(b) ~= 'string' then fail('no reason') end return false end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then fail('not two tables') end\n"
    "  return true\n"
    "end\n"
    "if answer(pcall(sb.jwt.verify, x, {secret = 'secret'})) then\n"
    "  local input, sig = x:match('^(.*)%.([^.]*)$')\n"
    "  local alg = ({HS256 = 'sha256', HS512 = 'sha512'})[select(2, sb.jwt.verify(x, "
    "{secret = 'secret'})).alg]\n"
    "  if alg and sb.base64_decode(sig) ~= sb.hmac(alg, 'secret', input) then fail('hmac') end\n"
    "end\n"
    "answer(pcall(sb.jwt.verify, x, {key = {keys = {RSA, EC, OCT}}, now = 1300819000}))\n"
    "answer(pcall(sb.jwt.verify, x, {key = {keys = {EC}}, aud = {'a', 'b'}, iss = 'joe',"
    " leeway = 5, require = {'sub'}, algorithms = {'ES256', 'RS256', 'HS256'}}))\n"
    "local A3 = 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9l"
    "eGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa"
    "8ISlSApmWQxfKTUJqPP3-Kg6NU1Q'\n"
    "local ok, a, b = pcall(sb.jwt.verify, A3, {key = x, now = 1300819000})\n"
    "if ok then answer(ok, a, b)\n"
    "elseif not tostring(a):find('bad argument #2', 1, true) then fail('key raised: ' .. "
    "tostring(a)) end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[512];
    struct lua_paths paths = {.project_dir = SB_SOURCE_DIR, .data_dir = SB_SOURCE_DIR};
    struct lua_limits limits = {.memory_limit = 0, .cpu_budget = 0};
    L = lua_state_new(&paths, &limits, err, sizeof err);
    if (!L || luaL_loadstring(L, checks) != LUA_OK) {
        fprintf(stderr, "fuzz_jwt: %s\n", L ? lua_tostring(L, -1) : err);
        abort();
    }
    lua_setglobal(L, "fuzz_checks");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_settop(L, 0);
    lua_getglobal(L, "fuzz_checks");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_jwt: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    return 0;
}
