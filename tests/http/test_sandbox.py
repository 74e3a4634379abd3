# SPDX-License-Identifier: MIT
"""Scripts can only break themselves (docs/reloading-and-guards.md, "What scripts cannot do";
docs/lua-api.md, "The Lua environment").

Every script file (a channel, the bot, a module) runs in an environment of its own: its globals
are its own, and what every script shares (the libraries, the `switchboard` module, the host's
own modules, the string metatable, the metatables of `req`, of JSON arrays, of HTTP errors and
of the bot's `out`) is read-only. The host's own Lua does not depend on anything a script can
change. Each test runs on a one-worker host, so the requests after the offending one reach the
same Lua state.

The probe: channels `probe` and `clean` (two files, the same code) answer POST .../eval by running
the request body as Lua in their own environment (`load` without an env), with `req` as `...`;
the answer is {"ok": true, "value": v} or {"ok": false, "error": text}. The bot runs "eval:<code>"
the same way with (out, msg) as `...` and answers "ok <value>" or "error <text>"."""
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

from harness import project
from standins import error_line
from util import QuietHost

WEBHOOK = "/webhooks/rest/webhook"

# A channel that runs Lua sent to it. Everything it uses is a local captured at load, so the
# code it runs can only break what it touches through its globals.
EVAL_CHANNEL = r"""
local load, pcall, tostring, type = load, pcall, tostring, type
local channel = { name = "%s" }
local function run(code, req)
  local f, err = load(code, "=eval", "t")
  if not f then return { ok = false, error = err } end
  local ok, value = pcall(f, req)
  if not ok then return { ok = false, error = tostring(value) } end
  return { ok = true, value = value }
end
channel.routes = {
  ["POST /eval"] = function(req) return { json = run(req.body, req) } end,
  ["GET /yield"] = function() coroutine.yield() return { body = "resumed" } end,
}
return channel
"""

BOT = r"""
local load, pcall, tostring, sub = load, pcall, tostring, string.sub
local bot = {}
function bot.handle(msg, out)
  local text = msg.text
  if text == "stray" then
    type = "text"          -- a forgotten local
    return out:send_text_message("done")
  elseif text == "buttons" then
    return out:send_text_with_buttons("pick", { { title = "A", payload = "/a" } })
  elseif text == "strings" then
    return out:send_text_message(("ab"):rep(2) .. ("%d"):format(3) .. ("x"):upper())
  elseif sub(text, 1, 5) == "eval:" then
    local f, err = load(sub(text, 6), "=bot-eval", "t")
    if not f then return out:send_text_message("error " .. tostring(err)) end
    local ok, value = pcall(f, out, msg)
    return out:send_text_message((ok and "ok " or "error ") .. tostring(value))
  end
  out:send_text_message("echo " .. text .. " " .. msg.message_id)
end
return bot
"""

MODULE = r"""
local M = { answer = 42, calls = 0 }
function M.count() M.calls = M.calls + 1 return M.calls end
MODULE_GLOBAL = "the module's own"
return M
"""


def start(test, extra_files=None, env=None):
    files = {
        "credentials.yml": "rest:\nprobe.lua:\nclean.lua:\n",
        "probe.lua": EVAL_CHANNEL % "probe",
        "clean.lua": EVAL_CHANNEL % "clean",
        "bot.lua": BOT,
        "mymod.lua": MODULE,
        "endpoints.yml": "server:\n  workers: 1\n  lua_cpu_budget: 2\nbot:\n  script: bot.lua\n",
    }
    files.update(extra_files or {})
    host = QuietHost(cwd=project(files), env=env)
    test.addCleanup(host.stop)
    return host


def ev(host, code, channel="probe"):
    """Run code in a channel: (ok, value or error text)."""
    status, _, body = host.post_json("/webhooks/%s/eval" % channel, code)
    assert status == 200 and isinstance(body, dict), (status, body, host.log())
    return (True, body.get("value")) if body["ok"] else (False, body["error"])


def say(host, text, sender="u1", **extra):
    payload = {"sender": sender, "message": text}
    payload.update(extra)
    status, headers, body = host.post_json(WEBHOOK, payload)
    return status, body, headers.get("x-request-id")


def bot_eval(host, code):
    """Run code in the bot: its reply text ("ok ..." / "error ..."), or None when none came."""
    status, body, _ = say(host, "eval:" + code)
    assert status == 200, (status, body)
    return body[0]["text"] if body else None


class Base(unittest.TestCase):
    def assert_host_ok(self, host):
        """Ordinary requests on the same worker: the rest echo (message id through the float
        path of the UserMessage rules), nested JSON in the answer, string methods in another
        script, and a channel's own globals."""
        self.assertEqual(say(host, "hi", message_id=12.0)[:2],
                         (200, [{"recipient_id": "u1", "text": "echo hi 12"}]))
        self.assertEqual(say(host, "buttons")[:2],
                         (200, [{"recipient_id": "u1", "text": "pick",
                                 "buttons": [{"title": "A", "payload": "/a"}]}]))
        self.assertEqual(say(host, "strings")[:2], (200, [{"recipient_id": "u1", "text": "abab3X"}]))
        self.assertEqual(ev(host, "return type(1) .. tostring(2) .. string.format('%d', 3) .."
                               " ('x'):rep(2) .. select(2, next({ 'y' }))", "clean"),
                         (True, "number23xxy"))


# ---- A: what a script changes affects only that script ------------------------------------------

# name: (code, where it runs, True when it writes to a read-only table)
WAYS = {
    "stray_global": ("type = 'text'", ("bot", "channel"), False),
    "tostring_nil": ("tostring = nil", ("bot", "channel"), False),
    "next_nil": ("next = nil", ("bot", "channel"), False),
    "string_format_nil": ("string.format = nil", ("bot", "channel"), True),
    "sb_json_encode": ("require('switchboard').json.encode = function() return 'x' end",
                       ("bot", "channel"), True),
    "string_metatable": ("local s = getmetatable('').__index s.rep = nil s.find = nil",
                         ("bot", "channel"), True),
    "json_array_metatable": ("getmetatable(require('switchboard').json.array()).__newindex = error",
                             ("bot", "channel"), True),
    "req_metatable": ("getmetatable((...)).__index = function() error('boom') end",
                      ("channel",), False),
    "out_metatable": ("getmetatable((...)).send_text_message = function() end", ("bot",), False),
    "collector_metatable": ("getmetatable((...).sink).store = function() end", ("bot",), False),
    "out_methods": ("(...).__index.send_text_message = function() end", ("bot",), False),
    "collector_methods": ("(...).sink.__index.store = function() end", ("bot",), False),
    "cjson_settings": ("require('cjson').encode_max_depth(1)", ("bot", "channel"), False),
}


class ScriptMistakesTests(Base):
    def check_way(self, name):
        code, wheres, read_only = WAYS[name]
        for where in wheres:
            with self.subTest(where=where):
                host = start(self)
                if where == "bot":
                    reply = bot_eval(host, code)
                    failed, error = (reply or "").startswith("error "), reply
                else:
                    ok, error = ev(host, code)
                    failed = not ok
                if read_only:
                    self.assertTrue(failed, "the write to a shared table succeeded")
                    self.assertIn("read-only", error)
                self.assert_host_ok(host)

    def test_stray_global(self):
        self.check_way("stray_global")

    def test_stray_global_in_the_bot_file(self):
        host = start(self)
        self.assertEqual(say(host, "stray")[:2], (200, [{"recipient_id": "u1", "text": "done"}]))
        self.assert_host_ok(host)

    def test_tostring_nil(self):
        self.check_way("tostring_nil")

    def test_next_nil(self):
        self.check_way("next_nil")

    def test_string_format_nil(self):
        self.check_way("string_format_nil")

    def test_overwriting_sb_json_encode(self):
        self.check_way("sb_json_encode")

    def test_string_metatable(self):
        self.check_way("string_metatable")

    def test_json_array_metatable(self):
        self.check_way("json_array_metatable")

    def test_req_metatable(self):
        self.check_way("req_metatable")

    def test_out_metatable(self):
        self.check_way("out_metatable")

    def test_collector_metatable(self):
        self.check_way("collector_metatable")

    def test_out_methods(self):
        self.check_way("out_methods")

    def test_collector_methods(self):
        self.check_way("collector_methods")

    def test_cjson_settings(self):
        self.check_way("cjson_settings")

    def test_cjson_settings_apply_to_the_script_that_made_them(self):
        host = start(self)
        self.assertEqual(ev(host, "require('cjson').encode_max_depth(1) "
                                  "return (pcall(require('cjson').encode, { { 1 } }))"),
                         (True, False))
        self.assertEqual(ev(host, "return require('cjson').encode({ { 1 } })", "clean"),
                         (True, "[[1]]"))
        self.assertEqual(bot_eval(host, "return require('cjson').encode({ { 1 } })"), "ok [[1]]")

    def test_a_push_channels_sink(self):
        # The sink of a push channel is shared by the channel's requests: the bot gets it
        # read-only.
        pusher = ('local sent = {}\n'
                  'local channel = { name = "pusher" }\n'
                  'function channel.send_text_message(recipient, text) sent[#sent + 1] = text end\n'
                  'channel.routes = { ["GET /sent"] = function() '
                  'return { json = { sent = table.concat(sent, "|") } } end }\n'
                  'return channel\n')
        host = start(self, {"credentials.yml": "rest:\nprobe.lua:\nclean.lua:\npusher.lua:\n",
                            "pusher.lua": pusher})
        hook = "/webhooks/pusher/webhook"
        code = "eval:(...).sink.send_text_message = nil"
        self.assertEqual(host.post_json(hook, {"sender": "p", "message": code})[0], 200)
        self.assertEqual(host.post_json(hook, {"sender": "p", "message": "hi",
                                               "message_id": "m1"})[0], 200)
        status, _, body = host.request("GET", "/webhooks/pusher/sent")
        sent = json.loads(body)["sent"].split("|")
        self.assertIn("read-only", sent[0])
        self.assertEqual(sent[1:], ["echo hi m1"])
        self.assert_host_ok(host)

    def test_a_global_of_one_script_is_not_anothers(self):
        host = start(self)
        self.assertEqual(bot_eval(host, "SHARED = 'bot' return SHARED"), "ok bot")
        self.assertEqual(ev(host, "return SHARED"), (True, None))
        self.assertEqual(ev(host, "return rawget(_G, 'SHARED')"), (True, None))


# ---- B: the ways around the sandbox are closed --------------------------------------------------

class EscapeTests(Base):
    def assert_refused(self, code):
        host = start(self)
        ok, value = ev(host, code)
        self.assertFalse(ok and value == "escaped", "escaped: %r" % value)
        self.assert_host_ok(host)
        return ok, value

    def test_original_load_through_debug_getupvalue(self):
        self.assert_refused("local _, orig = debug.getupvalue(load, 1) "
                            "local f = orig(string.dump(function() return 'escaped' end), 'd', 'b') "
                            "return f()")

    def test_original_setmetatable_through_debug_getupvalue(self):
        self.assert_refused("local _, orig = debug.getupvalue(setmetatable, 1) "
                            "orig({}, { __gc = function() end }) return 'escaped'")

    def test_original_coroutine_resume_through_debug_getupvalue(self):
        self.assert_refused("local _, orig = debug.getupvalue(coroutine.resume, 1) "
                            "if type(orig) == 'function' then return 'escaped' end")

    def test_original_load_through_debug_getinfo(self):
        # Inside a reader function, the stack holds the load that calls it: debug.getinfo must
        # not hand that function out.
        self.assert_refused(
            "local found = {} local n = 0 "
            "load(function() n = n + 1 if n > 1 then return nil end "
            "  for level = 1, 20 do local i = debug.getinfo(level, 'fS') "
            "    if i and i.func and i.what == 'C' then found[#found + 1] = i.func end end "
            "  return 'return 1' end) "
            "local dumped = string.dump(function() return 'escaped' end) "
            "for _, f in ipairs(found) do local ok, g = pcall(f, dumped, 'd', 'b') "
            "  if ok and type(g) == 'function' then return g() end end "
            "return #found")

    def test_debug_setmetatable_on_strings(self):
        self.assert_refused("debug.setmetatable('', {}) return 'escaped'")

    def test_debug_setmetatable_on_nil(self):
        self.assert_refused("debug.setmetatable(nil, { __index = function() return 1 end }) "
                            "return 'escaped'")

    def test_debug_getregistry(self):
        self.assert_refused("local r = debug.getregistry() r[2].type = nil return 'escaped'")

    def test_the_real_globals_through_package_loaded(self):
        self.assert_refused("package.loaded._G.type = nil return 'escaped'")

    def test_a_library_through_package_loaded(self):
        ok, error = self.assert_refused("package.loaded.string.format = nil return 'escaped'")
        self.assertIn("read-only", error)

    def test_a_library_through_require(self):
        ok, error = self.assert_refused("require('string').format = nil return 'escaped'")
        self.assertIn("read-only", error)

    def test_rawset_on_a_library(self):
        ok, error = self.assert_refused("rawset(string, 'format', nil) return 'escaped'")
        self.assertIn("read-only", error)

    def test_rawset_on_the_switchboard_module(self):
        ok, error = self.assert_refused(
            "rawset(require('switchboard').json, 'encode', nil) return 'escaped'")
        self.assertIn("read-only", error)

    def test_setmetatable_on_a_library(self):
        self.assert_refused("setmetatable(string, {}) return 'escaped'")

    def test_sb_json_array_on_a_library(self):
        self.assert_refused("require('switchboard').json.array(string) return 'escaped'")

    def test_the_bundled_helper_module_is_read_only(self):
        ok, error = self.assert_refused(
            "require('switchboard.channel').non_null = nil return 'escaped'")
        self.assertIn("read-only", error)

    def test_the_pipeline_module_is_read_only(self):
        ok, error = self.assert_refused(
            "require('switchboard.output').dispatch = nil return 'escaped'")
        self.assertIn("read-only", error)

    def test_the_environment_metatable(self):
        self.assert_refused("local mt = getmetatable(_G) mt.__index.type = nil return 'escaped'")

    def test_the_io_file_metatable(self):
        self.assert_refused("getmetatable(io.stdout).__index.write = nil return 'escaped'")

    def test_a_gc_mode_switch(self):
        self.assert_refused("collectgarbage('incremental') return 'escaped'")

    def test_a_requests_own_coroutine_cannot_be_resumed_or_closed(self):
        # A script can get the coroutine of its request (coroutine.running()) and keep it; while
        # that request waits (sb.sleep here), another request must not run or end it.
        for how in ("coroutine.resume(SAVED)", "coroutine.close(SAVED)",
                    "coroutine.wrap(function() coroutine.resume(SAVED) end)()"):
            with self.subTest(how):
                host = start(self)
                result = {}
                waiting = threading.Thread(target=lambda: result.update(r=ev(
                    host, "SAVED = coroutine.running() require('switchboard').sleep(1) "
                          "return 'slept'")), daemon=True)
                waiting.start()
                deadline = time.monotonic() + 5
                while ev(host, "return SAVED and coroutine.status(SAVED)") != (True, "suspended"):
                    self.assertLess(time.monotonic(), deadline, "the first request never waited")
                    time.sleep(0.01)
                ok, error = ev(host, how)
                self.assertFalse(ok, "a request's coroutine was resumed or closed by a script")
                self.assertIn("belongs to the host", error)
                waiting.join(10)
                self.assertEqual(result.get("r"), (True, "slept"))
                self.assert_host_ok(host)

    def test_debug_has_only_traceback_and_getinfo(self):
        host = start(self)
        self.assertEqual(ev(host, "local t = {} for k in pairs(debug) do t[#t + 1] = k end "
                                  "table.sort(t) return table.concat(t, ',')"),
                         (True, "getinfo,sethook,traceback"))


class OwnGlobalsTests(Base):
    def test_pairs_of_g_lists_the_files_own_globals(self):
        host = start(self)
        self.assertEqual(ev(host, "local n = {} for k in pairs(_G) do n[#n + 1] = k end "
                                  "table.sort(n) return table.concat(n, ',')", "clean"),
                         (True, "_G,dofile,load,loadfile,require"))


# ---- the documented environment: what is refused, what works ------------------------------------

REFUSED = {
    "os.exit": "it would end the host",
    "os.execute": "it would block a worker",
    "io.popen": "it would block a worker",
    "io.read": "standard input would block a worker",
    "package.loadlib": "native code could take the host down",
    "debug.sethook": "the host's CPU budget uses the hook",
}


class EnvironmentTests(Base):
    @classmethod
    def setUpClass(cls):
        cls.host = QuietHost(cwd=project({
            "credentials.yml": "rest:\nprobe.lua:\nclean.lua:\n",
            "probe.lua": EVAL_CHANNEL % "probe",
            "clean.lua": EVAL_CHANNEL % "clean",
            "bot.lua": BOT,
            "mymod.lua": MODULE,
            "slack.lua": "return { mine = true }\n",
            "endpoints.yml": "server:\n  workers: 1\n  lua_cpu_budget: 2\n"
                             "bot:\n  script: bot.lua\n",
        }), env={"SB_SANDBOX_TEST": "visible"})

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()

    def ev(self, code, channel="probe"):
        return ev(self.host, code, channel)

    def test_refused_functions_name_themselves_and_why(self):
        for name, why in REFUSED.items():
            with self.subTest(name):
                self.assertEqual(self.ev("%s()" % name),
                                 (False, "eval:1: %s is not available to Switchboard scripts (%s)"
                                  % (name, why)))

    def test_left_out_functions_are_absent(self):
        for name in ("os.setlocale", "io.input", "io.output", "debug.getlocal",
                     "debug.setupvalue", "debug.upvaluejoin", "debug.getmetatable",
                     "package.searchers", "package.preload", "package.cpath"):
            with self.subTest(name):
                self.assertEqual(self.ev("return %s == nil" % name), (True, True))

    def test_loadfile_and_dofile_need_a_file_name(self):
        for code in ("loadfile()", "dofile()"):
            with self.subTest(code):
                ok, error = self.ev(code)
                self.assertFalse(ok)
                self.assertIn("string expected", error)

    def test_debug_getinfo_without_func(self):
        self.assertEqual(self.ev("local i = debug.getinfo(1, 'Slf') "
                                 "return tostring(i.func) .. ' ' .. i.currentline .. ' ' .. i.source"),
                         (True, "nil 1 =eval"))
        self.assertEqual(self.ev("local co = coroutine.create(function() coroutine.yield() end) "
                                 "coroutine.resume(co) local i = debug.getinfo(co, 1, 'f') "
                                 "return i ~= nil and i.func == nil"), (True, True))

    def test_library_views_look_empty_to_raw_access(self):
        self.assertEqual(self.ev("return next(string) == nil and rawget(string, 'format') == nil "
                                 "and rawlen(table) == 0"), (True, True))

    def test_protected_metatables(self):
        self.assertEqual(self.ev("return type(getmetatable(io.stdout)) .. ' ' .. "
                                 "type(getmetatable((...))) .. ' ' .. type(getmetatable(_G))"),
                         (True, "table boolean boolean"))
        ok, error = self.ev("getmetatable(io.stdout).__index.write = nil")
        self.assertIn("read-only", error)
        self.assertEqual(bot_eval(self.host, "return type(getmetatable((...))) .. "
                                             "type(getmetatable((...).sink))"),
                         "ok booleanboolean")

    def test_package_loaded_hides_the_real_globals_and_cjson(self):
        self.assertEqual(self.ev("require 'cjson' return package.loaded._G == nil and "
                                 "package.loaded.cjson == nil"),
                         (True, True))
        self.assertEqual(self.ev("require 'mymod' local n = 0 for k, v in pairs(package.loaded) do "
                                 "if k == '_G' or k == 'cjson' then return 'leaked ' .. k end "
                                 "n = n + 1 end return n > 5"), (True, True))

    def test_io_lines_needs_a_file_name(self):
        ok, error = self.ev("for l in io.lines() do end")
        self.assertFalse(ok)
        self.assertIn("io.lines", error)

    def test_collectgarbage_options(self):
        self.assertEqual(self.ev("return type(collectgarbage('count'))"), (True, "number"))
        self.assertEqual(self.ev("return collectgarbage('collect')"), (True, 0))
        self.assertEqual(self.ev("return collectgarbage()"), (True, 0))
        self.assertEqual(self.ev("return type(collectgarbage('step'))"), (True, "boolean"))
        self.assertEqual(self.ev("return collectgarbage('isrunning')"), (True, True))
        for option in ("stop", "restart", "incremental", "generational", "setpause"):
            with self.subTest(option):
                ok, error = self.ev("collectgarbage('%s')" % option)
                self.assertFalse(ok)
                self.assertIn("collectgarbage", error)

    def test_binary_chunks_are_refused_by_load_loadfile_and_dofile(self):
        path = os.path.join(self.host.cwd, "dumped.bin")
        self.assertEqual(self.ev("return select(2, load(string.dump(function() end)))"),
                         (True, "attempt to load a binary chunk (mode is 't')"))
        self.assertEqual(self.ev("return select(2, load(string.dump(function() end), 'n', 'b'))"),
                         (True, "attempt to load a binary chunk (mode is 't')"))
        self.assertEqual(self.ev("local f = io.open(%r, 'wb') f:write(string.dump(function() end)) "
                                 "f:close() local g, err = loadfile(%r) return err" % (path, path)),
                         (True, "attempt to load a binary chunk (mode is 't')"))
        ok, error = self.ev("dofile(%r)" % path)
        self.assertFalse(ok)
        self.assertIn("attempt to load a binary chunk (mode is 't')", error)

    def test_setmetatable_refuses_gc(self):
        self.assertEqual(self.ev("setmetatable({}, { __gc = function() end })"),
                         (False, "eval:1: __gc metamethods are not available to Switchboard "
                                 "scripts (a finalizer cannot be given a CPU budget)"))

    def test_setmetatable_works(self):
        self.assertEqual(self.ev("return setmetatable({}, { __index = { a = 1 } }).a"), (True, 1))

    def test_setmetatable_replaces_a_json_array_mark(self):
        self.assertEqual(self.ev("local sb = require 'switchboard' local a = sb.json.array() "
                                 "local was = sb.json.encode(a) setmetatable(a, nil) "
                                 "return was .. sb.json.encode(a)"), (True, "[]{}"))

    def test_json_array_marks_compare_equal(self):
        self.assertEqual(self.ev("local sb = require 'switchboard' "
                                 "return getmetatable(sb.json.array()) == "
                                 "getmetatable(sb.json.decode('[]'))"), (True, True))

    def test_io_open_and_os_functions(self):
        path = os.path.join(self.host.cwd, "written.txt")
        self.assertEqual(self.ev("local f = assert(io.open(%r, 'w')) f:write('hello') f:close() "
                                 "local g = assert(io.open(%r)) local s = g:read('a') g:close() "
                                 "return s" % (path, path)), (True, "hello"))
        self.assertEqual(self.ev("local n = 0 for l in io.lines(%r) do n = n + 1 end return n"
                                 % path), (True, 1))
        self.assertEqual(self.ev("assert(os.rename(%r, %r)) assert(os.remove(%r)) "
                                 "return io.type(io.stdout)" % (path, path + ".2", path + ".2")),
                         (True, "file"))
        self.assertFalse(os.path.exists(path + ".2"))
        self.assertEqual(self.ev("return os.getenv('SB_SANDBOX_TEST')"), (True, "visible"))
        self.assertEqual(self.ev("return type(os.time()) .. type(os.clock()) .. type(os.date()) "
                                 ".. type(os.difftime(2, 1)) .. type(os.tmpname())"),
                         (True, "numbernumberstringnumberstring"))
        self.assertEqual(self.ev("return io.write('') == io.stdout and io.type(io.stderr)"),
                         (True, "file"))
        self.assertEqual(self.ev("return io.type(io.tmpfile())"), (True, "file"))

    def test_string_methods(self):
        self.assertEqual(self.ev("local s = 'Hello' return s:upper() .. s:sub(2, 3) .. #s .. "
                                 "('%d'):format(7) .. s:rep(2, '-') .. string.len(s)"),
                         (True, "HELLOel57Hello-Hello5"))
        self.assertEqual(self.ev("return (getmetatable('').__index.upper('a'))"), (True, "A"))

    def test_libraries_can_be_iterated(self):
        self.assertEqual(self.ev("local n = 0 for k, v in pairs(string) do n = n + 1 end "
                                 "return n > 10 and string.format ~= nil"), (True, True))
        self.assertEqual(self.ev("local n = 0 for k in pairs(require('switchboard').json) do "
                                 "n = n + 1 end return n >= 3"), (True, True))
        self.assertEqual(self.ev("return #require('switchboard.output').SENDERS"), (True, 7))

    def test_a_library_write_names_the_library(self):
        self.assertEqual(self.ev("string.x = 1"),
                         (False, "eval:1: string is read-only (shared by every script)"))
        self.assertEqual(self.ev("math.pi = 3"),
                         (False, "eval:1: math is read-only (shared by every script)"))

    def test_require_of_a_project_module(self):
        self.assertEqual(self.ev("return require('mymod').answer"), (True, 42))
        # One instance per state: the bot and the channels share it and its module-level state.
        first = self.ev("return require('mymod').count()")[1]
        reloads = [l for l in self.host.log().splitlines() if "reload" in l]
        self.assertEqual(bot_eval(self.host, "return require('mymod').count()"),
                         "ok %d" % (first + 1), reloads)
        # Its globals are its own.
        self.assertEqual(self.ev("return tostring(MODULE_GLOBAL)"), (True, "nil"))

    def test_require_order_project_then_bundled(self):
        self.assertEqual(self.ev("return require('slack').mine"), (True, True))
        self.assertEqual(self.ev("return require('telegram').name"), (True, "telegram"))
        self.assertEqual(self.ev("return require('switchboard.channel').non_null(1)"), (True, True))

    def test_require_of_switchboard_and_cjson(self):
        self.assertEqual(self.ev("local sb = require 'switchboard' "
                                 "return sb == require('switchboard') and type(sb.version)"),
                         (True, "string"))
        self.assertEqual(self.ev("local c = require 'cjson' "
                                 "return c._VERSION .. c.encode({ 1 }) .. tostring(c == require('cjson'))"),
                         (True, "2.1.0[1]true"))
        self.assertEqual(self.ev("local c = require 'cjson.safe' return c.decode('{') == nil"),
                         (True, True))
        self.assertEqual(self.ev("return require('_G') == _G"), (True, True))

    def test_package_view(self):
        self.assertEqual(self.ev("return type(package.path) .. type(package.config) .. "
                                 "tostring(package.loaded.switchboard == require('switchboard')) .. "
                                 "tostring(package.loaded.string == string)"),
                         (True, "stringstringtruetrue"))
        self.assertEqual(self.ev("return package.searchpath('mymod', package.path):match('[^/]*$')"),
                         (True, "mymod.lua"))
        ok, error = self.ev("package.path = ''")
        self.assertIn("read-only", error)

    def test_load_of_text_without_an_env(self):
        self.assertEqual(self.ev("load('FROM_LOAD = 5')() return FROM_LOAD"), (True, 5))
        self.assertEqual(self.ev("return FROM_LOAD"), (True, 5))
        self.assertEqual(self.ev("return tostring(FROM_LOAD)", "clean"), (True, "nil"))

    def test_load_of_text_with_an_env(self):
        self.assertEqual(self.ev("local env = {} load('y = 7', 'n', 't', env)() "
                                 "return env.y .. tostring(y)"), (True, "7nil"))
        self.assertEqual(self.ev("local env = setmetatable({}, { __index = _G }) "
                                 "return load('return type(1)', 'n', 't', env)()"),
                         (True, "number"))

    def test_loadfile_and_dofile_of_text(self):
        # Outside the project's folder: a new .lua file there makes the host reload its scripts
        # (a module a script requires later is watched too), which would start the later tests
        # of this class, and the module state they count on, on a new generation.
        folder = tempfile.mkdtemp(prefix="sb-chunk-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "chunk.lua")
        with open(path, "w") as f:
            f.write("IN_CHUNK = (IN_CHUNK or 0) + 1 return 'ran ' .. IN_CHUNK\n")
        self.assertEqual(self.ev("return loadfile(%r)() .. ' ' .. dofile(%r) .. ' ' .. IN_CHUNK"
                                 % (path, path)), (True, "ran 1 ran 2 2"))
        self.assertEqual(self.ev("local env = {} loadfile(%r, 't', env)() return env.IN_CHUNK"
                                 % path), (True, 1))

    def test_globals_are_kept_between_requests(self):
        first = self.ev("COUNTER = (COUNTER or 0) + 1 return COUNTER")[1]
        self.assertEqual(self.ev("COUNTER = COUNTER + 1 return COUNTER"), (True, first + 1))
        self.assertEqual(self.ev("return _G.COUNTER == COUNTER and rawget(_G, 'COUNTER') == COUNTER"),
                         (True, True))

    def test_g_is_the_scripts_environment(self):
        self.assertEqual(self.ev("return _G == _ENV and _G._G == _G and type(_G.print)"),
                         (True, "function"))
        self.assertEqual(self.ev("return _VERSION"), (True, "Lua 5.4"))
        ok, error = self.ev("setmetatable(_G, {})")
        self.assertFalse(ok)
        self.assertIn("protected metatable", error)

    def test_pcall_and_xpcall(self):
        self.assertEqual(self.ev("return select(2, pcall(error, 'x', 0))"), (True, "x"))
        self.assertEqual(self.ev("return select(2, xpcall(error, function(e) return 'handled ' "
                                 ".. e end, 'x', 0))"), (True, "handled x"))

    def test_coroutines(self):
        self.assertEqual(self.ev("local co = coroutine.create(function(a) "
                                 "local b = coroutine.yield(a + 1) return b * 2 end) "
                                 "local _, x = coroutine.resume(co, 1) "
                                 "local _, y = coroutine.resume(co, 10) "
                                 "return x .. ',' .. y .. ',' .. coroutine.status(co)"),
                         (True, "2,20,dead"))
        self.assertEqual(self.ev("local gen = coroutine.wrap(function() for i = 1, 3 do "
                                 "coroutine.yield(i) end end) return gen() + gen() + gen()"),
                         (True, 6))
        ok, error = self.ev("local co = coroutine.wrap(function() "
                            "require('switchboard').sleep(0.01) end) co()")
        self.assertFalse(ok, "sb.sleep ran inside a script's coroutine")

    def test_coroutine_yield_in_a_hook_is_a_500(self):
        status, _, body = self.host.request("GET", "/webhooks/probe/yield")
        self.assertEqual(status, 500, body)
        self.assertIn(b"internal_error", body)

    def test_http_errors_keep_their_metatable(self):
        self.assertEqual(self.ev("local sb = require 'switchboard' "
                                 "local _, e = pcall(sb.http_error, 400, 'bad', 'text') "
                                 "local ok = pcall(function() getmetatable(e).__tostring = nil end) "
                                 "return tostring(ok) .. ' ' .. tostring(e) .. ' ' .. "
                                 "tostring(sb.is_http_error(e))"),
                         (True, "false 400 bad: text true"))


if __name__ == "__main__":
    unittest.main()
