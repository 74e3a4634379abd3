/* SPDX-License-Identifier: MIT */
/* Unit tests of the message rules (docs/contract.md §3.5) and of the dispatch and collected
 * shapes (§4.1, §4.2), run in a real Lua state of the host: the rules are the C module
 * `switchboard.message` (src/lua_message.c) and output.lua is Lua (its senders may wait), so the
 * checks go through the state as a channel's would. */
#include "check.h"
#include "lua_state.h"

#include <lauxlib.h>
#include <stdlib.h>

static lua_State *L;

/* Run `code` (a chunk returning one string) and compare its result with `expected`. */
static void check_lua(const char *code, const char *expected, int line)
{
    char err[2048];
    if (luaL_loadstring(L, code) != LUA_OK || lua_state_pcall(L, 0, 1, err, sizeof err) != 0) {
        check_count++;
        check_failures++;
        fprintf(stderr, "test_output.c:%d: Lua error: %s\n", line,
                lua_tostring(L, -1) ? lua_tostring(L, -1) : err);
        lua_pop(L, 1);
        return;
    }
    const char *got = lua_tostring(L, -1);
    check_count++;
    if (!got || strcmp(got, expected) != 0) {
        check_failures++;
        fprintf(stderr, "test_output.c:%d: got  %s\n                  want %s\n", line,
                got ? got : "(nil)", expected);
    }
    lua_pop(L, 1);
}

#define LUA_IS(code, expected) check_lua(code, expected, __LINE__)

/* Collect what one bot message dispatches to, as JSON (keys sorted by a canonical encoder). */
static const char prelude[] =
    "sb = require 'switchboard'\n"
    "output = require 'switchboard.output'\n"
    "message = require 'switchboard.message'\n"
    "local function canon(v)\n"
    "  if type(v) ~= 'table' then return sb.json.encode(v) end\n"
    "  if v[1] ~= nil or getmetatable(v) == getmetatable(sb.json.array()) then\n"
    "    local parts = {} for i, x in ipairs(v) do parts[i] = canon(x) end\n"
    "    return '[' .. table.concat(parts, ',') .. ']' end\n"
    "  local keys = {} for k in pairs(v) do keys[#keys + 1] = k end table.sort(keys)\n"
    "  local parts = {} for i, k in ipairs(keys) do parts[i] = sb.json.encode(k) .. ':' .. canon(v[k]) end\n"
    "  return '{' .. table.concat(parts, ',') .. '}' end\n"
    "CANON = canon\n"
    "function COLLECT(m) local sink, list = output.collector() output.dispatch(sink, 'u1', m)\n"
    "  return canon(list) end\n"
    "function NORMALIZE(m) local ok, r = pcall(message.normalize_all, { m }, 'rest', {})\n"
    "  if ok then r = r[1] end\n"
    "  if not ok then return sb.is_http_error(r) and (r.status .. ' ' .. r.error) or tostring(r) end\n"
    "  r.headers = nil if #r.message_id == 32 and r.message_id:match('^[0-9a-f]+$') then r.message_id = 'HEX32' end\n"
    "  return canon(r) end\n";

static void test_collected_shapes(void)
{
    LUA_IS("return COLLECT({ text = '  a\\n\\n b  ' })",
           "[{\"recipient_id\":\"u1\",\"text\":\"a\"},{\"recipient_id\":\"u1\",\"text\":\" b\"}]");
    LUA_IS("return COLLECT({ text = 'Pick', buttons = {{ title = 'Yes', payload = '/affirm' }},"
           " image = 'https://x/y.jpg' })",
           "[{\"buttons\":[{\"payload\":\"/affirm\",\"title\":\"Yes\"}],\"recipient_id\":\"u1\","
           "\"text\":\"Pick\"},{\"image\":\"https://x/y.jpg\",\"recipient_id\":\"u1\"}]");
    LUA_IS("return COLLECT({ buttons = {{ title = 'A', payload = 'a' }} })",
           "[{\"buttons\":[{\"payload\":\"a\",\"title\":\"A\"}],\"recipient_id\":\"u1\"}]");
    LUA_IS("return COLLECT({ text = 't', quick_replies = {{ title = 'Q', payload = 'q' }},"
           " buttons = {{ title = 'B', payload = 'b' }} })",
           "[{\"buttons\":[{\"payload\":\"q\",\"title\":\"Q\"}],\"recipient_id\":\"u1\","
           "\"text\":\"t\"}]");
    LUA_IS("return COLLECT({ elements = {{ title = 'T', subtitle = 'S' }}, attachment = 'f.pdf',"
           " custom = { k = 1 }, image = 'i.png' })",
           "[{\"custom\":{\"k\":1},\"recipient_id\":\"u1\"},{\"image\":\"i.png\",\"recipient_id\":"
           "\"u1\"},{\"attachment\":\"f.pdf\",\"recipient_id\":\"u1\"},{\"buttons\":[],"
           "\"recipient_id\":\"u1\",\"text\":\"T : S\"}]");
    LUA_IS("return COLLECT({ text = '', buttons = {}, image = '' })", "[]");
    LUA_IS("local sink, list = output.collector() return sb.json.encode(list)", "[]");
}

/* A sink with only send_text_message gets Rasa's fallback texts. */
static void test_fallbacks(void)
{
    LUA_IS("local sent = {} local sink = { send_text_message = function(_, r, text) "
           "sent[#sent + 1] = text end }\n"
           "output.dispatch(sink, 'u1', { text = 'Pick', buttons = {{ title = 'Yes', payload = "
           "'/affirm' }, { title = 'No', payload = '/deny' }}, image = 'i.png', attachment = 'a',"
           " custom = { x = 1 }, elements = {{ title = 'T', subtitle = 'S' }} })\n"
           "return table.concat(sent, '|')",
           "Pick|1: Yes (/affirm)|2: No (/deny)|{\"x\":1}|Image: i.png|Attachment: a|T : S");
}

static void test_message_rules(void)
{
    LUA_IS("return NORMALIZE({ text = '  hi  ', sender_id = 123 })",
           "{\"input_channel\":\"rest\",\"message_id\":\"HEX32\",\"sender_id\":\"123\","
           "\"text\":\"hi\"}");
    LUA_IS("return NORMALIZE({ sender_id = 1234567890.0, message_id = 7 })",
           "{\"input_channel\":\"rest\",\"message_id\":\"7\",\"sender_id\":\"1234567890\"}");
    LUA_IS("return NORMALIZE({})",
           "{\"input_channel\":\"rest\",\"message_id\":\"HEX32\",\"sender_id\":\"default\"}");
    LUA_IS("return NORMALIZE({ text = 5 })", "400 invalid_message");
    LUA_IS("return NORMALIZE({ sender_id = {} })", "400 invalid_message");
    LUA_IS("return NORMALIZE({ input_channel = 'web', metadata = { a = { 1, 2 } } })",
           "{\"input_channel\":\"web\",\"message_id\":\"HEX32\",\"metadata\":{\"a\":[1,2]},"
           "\"sender_id\":\"default\"}");
    LUA_IS("return NORMALIZE({ input_channel = 0 })",
           "{\"input_channel\":\"rest\",\"message_id\":\"HEX32\",\"sender_id\":\"default\"}");
    LUA_IS("return NORMALIZE({ text = '\\u{a0}\\u{3000} hi \\u{2003}' }):match('\"text\":\"(.-)\"')",
           "hi");
}

/* normalize_all: a channel's whole array, as ipairs walks it, every element checked before any
 * is returned. */
static void test_normalize_all(void)
{
    LUA_IS("local all = message.normalize_all({ { text = ' a ', sender_id = 's' }, { text = 'b' },"
           " nil, { text = 'c' } }, 'web', { h = '1' })\n"
           "return #all .. ' ' .. all[1].text .. all[1].sender_id .. all[2].text .. "
           "all[2].sender_id .. ' ' .. all[1].input_channel .. ' ' .. all[2].headers.h .. ' ' .. "
           "tostring(all[1].message_id ~= all[2].message_id)",
           "2 asbdefault web 1 true");
    LUA_IS("return #message.normalize_all({}, 'rest', nil)", "0");
    LUA_IS("local ok, e = pcall(message.normalize_all, { { text = 'fine' }, { text = {} } }, "
           "'rest') return sb.is_http_error(e) and e.status .. ' ' .. e.message",
           "400 the message text must be a string, not a table");
    LUA_IS("local ok, e = pcall(message.normalize_all, { { text = 'fine' }, 'x' }, 'rest')"
           " return e",
           "channel.receive must return an array of message tables; an element is a string");
    LUA_IS("local list = setmetatable({}, { __index = function(_, i) if i <= 3 then "
           "return { text = 't' .. i } end end })\n"
           "local all = message.normalize_all(list, 'rest') return #all .. all[3].text",
           "3t3");
}

int main(void)
{
    const char *source = getenv("SB_SOURCE_DIR");
    struct lua_paths paths = {.project_dir = NULL, .data_dir = source ? source : SB_SOURCE_DIR};
    struct lua_limits limits = {.memory_limit = 64u << 20, .cpu_budget = 5};
    char err[512];
    L = lua_state_new(&paths, &limits, err, sizeof err);
    if (!L) {
        fprintf(stderr, "cannot create a Lua state: %s\n", err);
        return 1;
    }
    if (luaL_dostring(L, prelude) != LUA_OK) {
        fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
        return 1;
    }
    test_collected_shapes();
    test_fallbacks();
    test_message_rules();
    test_normalize_all();
    lua_state_close(L);
    return CHECK_DONE();
}
