/* SPDX-License-Identifier: MIT */
/* fuzz_codecs: the encoders and decoders of the switchboard module, called from Lua as channels
 * call them: sb.base64, sb.base64_decode, sb.urlencode (string and table), sb.urldecode, sb.hex.
 *
 * Checked besides memory errors, on the input as bytes:
 *   base64_decode(base64(x)) == x, and base64 output is [A-Za-z0-9+/=] of length 4*ceil(n/3);
 *   base64_decode(x), when it accepts x, gives bytes that encode and decode back to themselves;
 *   urldecode(urlencode(x)) == x, and urlencode output is unreserved characters, '+' and %XX;
 *   urldecode(urlencode(urldecode(x))) == urldecode(x);
 *   hex(x) is 2n lower-case hex digits that read back as x;
 *   urlencode{...} of a table cut from the input (pairs separated by NUL) decodes back to it.
 * Uses: lua_state (a host state with the switchboard module). */
#include "lua_state.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;

/* Run in the state on the input string (argument 1); errors raise with the broken property. */
static const char *const checks =
    "local x = ...\n"
    "local sb = require 'switchboard'\n"
    "local function fail(what) error(what .. ' (input ' .. string.format('%q', x) .. ')', 0) end\n"
    "local b = sb.base64(x)\n"
    "if #b ~= 4 * ((#x + 2) // 3) or b:find('[^%w+/=]') then fail('base64 output') end\n"
    "if sb.base64_decode(b) ~= x then fail('base64 round trip') end\n"
    "local d = sb.base64_decode(x)\n"
    "if d ~= nil and sb.base64_decode(sb.base64(d)) ~= d then fail('base64_decode round trip') end\n"
    "local u = sb.urlencode(x)\n"
    "if u:gsub('%%%x%x', ''):find('[^%w%-._~+]') then fail('urlencode output') end\n"
    "if sb.urldecode(u) ~= x then fail('url round trip') end\n"
    "local ud = sb.urldecode(x)\n"
    "if sb.urldecode(sb.urlencode(ud)) ~= ud then fail('urldecode round trip') end\n"
    "local h = sb.hex(x)\n"
    "if #h ~= 2 * #x or h:find('[^0-9a-f]') then fail('hex output') end\n"
    "if h:gsub('..', function(p) return string.char(tonumber(p, 16)) end) ~= x then\n"
    "  fail('hex round trip') end\n"
    /* A form from the input: NUL separates the pieces, taken as name, value, name, value... */
    "local form, pieces, name = {}, 0, nil\n"
    "for piece in (x .. '\\0'):gmatch('([^%z]*)%z') do\n"
    "  pieces = pieces + 1\n"
    "  if pieces % 2 == 1 then name = piece else form[name] = piece end\n"
    "end\n"
    "local encoded, back = sb.urlencode(form), {}\n"
    "for pair in encoded:gmatch('[^&]+') do\n"
    "  local k, v = pair:match('^([^=]*)=(.*)$')\n"
    "  if not k then fail('urlencode table: a pair without =') end\n"
    "  back[sb.urldecode(k)] = sb.urldecode(v)\n"
    "end\n"
    "for k, v in pairs(form) do if back[k] ~= v then fail('urlencode table round trip') end end\n"
    "for k in pairs(back) do if form[k] == nil then fail('urlencode table: extra key') end end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[512];
    struct lua_paths paths = {.project_dir = SB_SOURCE_DIR, .data_dir = SB_SOURCE_DIR};
    struct lua_limits limits = {.memory_limit = 0, .cpu_budget = 0};
    L = lua_state_new(&paths, &limits, err, sizeof err);
    if (!L || luaL_loadstring(L, checks) != LUA_OK) {
        fprintf(stderr, "fuzz_codecs: %s\n", L ? lua_tostring(L, -1) : err);
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
        fprintf(stderr, "fuzz_codecs: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    return 0;
}
