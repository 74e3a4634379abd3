# SPDX-License-Identifier: MIT
"""The guards around scripts (docs/contract.md §6, last paragraph): a CPU budget per call that a
pcall cannot swallow, a memory cap per Lua state, no os.exit, no native modules, no binary chunks
through require. A script that breaks a guard fails its own request (logged with the request id);
the host and every other request carry on.

Unless a test says otherwise the host runs with
    server: {lua_cpu_budget: 0.3, lua_memory_limit: 67108864, workers: 1}"""
import os
import shutil
import subprocess
import threading
import time
import unittest

from harness import project
from reload_util import rewrite, version_channel, wait_for_status
from standins import built_with_sanitizers, error_line
from util import QuietHost, error_lines, run_to_exit

BUDGET = 0.3
# How long after the budget a cut request may still answer: the budget counts CPU time, and a
# loaded machine or a sanitizer build stretches the wall-clock time around it.
LATE = BUDGET + (2.7 if built_with_sanitizers() else 0.9)
GUARDED = "server:\n  lua_cpu_budget: 0.3\n  lua_memory_limit: 67108864\n  workers: %d\n"
WEBHOOK = "/webhooks/rest/webhook"

# The bot: sends "before <text>", then does what the text says, then sends "after <text>".
BOT = r"""
local sb = require "switchboard"
local bot = {}
local function spin(seconds) local t = os.clock() while os.clock() - t < seconds do end end
function bot.handle(msg, out)
  local t = msg.text
  out:send_text_message("before " .. t)
  if t == "loop" then
    while true do end
  elseif t == "pcall-loop" then
    while true do pcall(function() while true do end end) end
  elseif t == "catch-and-loop" then
    while true do
      local ok, err = pcall(function() while true do end end)
      sb.log.info("CAUGHT %s", tostring(err))
    end
  elseif t == "slow-error-handler" then
    xpcall(function() while true do end end, function(e) spin(1.5) return e end)
  elseif t == "slow-finalizer" then
    setmetatable({}, { __gc = function() spin(1.5) end })
    collectgarbage()
  elseif t == "slow-close" then
    local guard <close> = setmetatable({}, { __close = function() spin(1.5) end })
    while true do end
  elseif t == "coroutine-loop" then
    while true do coroutine.resume(coroutine.create(function() while true do end end)) end
  elseif t == "spin-0.3" then
    spin(0.3)
  elseif t == "bomb" then
    local hoard = {}
    for i = 1, math.huge do hoard[#hoard + 1] = ("x"):rep(1 << 20) .. i end
  elseif t == "forty-mib" then
    local hoard = {}
    for i = 1, 40 do hoard[#hoard + 1] = ("x"):rep(1 << 20) .. i end
    out:send_text_message("held " .. #hoard .. " MiB")
  elseif t == "small-bomb" then
    local hoard = {}
    for i = 1, math.huge do hoard[i] = { i, tostring(i) } end
  elseif t == "exit" then
    os.exit(3)
  elseif t == "sethook" then
    debug.sethook()
    spin(1.5)
  elseif t == "c-pattern" then
    local n = 22   -- Lua pattern backtracking: about 2^22 steps inside one C call (~1.3 s)
    local s = ("a"):rep(n)
    s:find(("a?"):rep(n) .. ("a"):rep(n) .. "b")
  end
  out:send_text_message("after " .. t)
end
return bot
"""

# A channel whose receive loops for {"loop": true} and exits for {"exit": true}; its routes
# probe what a script may load.
PROBE = r"""
local channel = { name = "probe" }
function channel.receive(req)
  if req.json.loop then while true do end end
  if req.json.exit then os.exit(0) end
  return {}, { json = { ok = true } }
end
channel.routes = {
  ["GET /require"] = function(req)
    local mod = require(req.query.m)
    return { json = { value = mod.answer } }
  end,
  ["GET /dofile"] = function(req)
    local mod = dofile(req.query.f)
    return { json = { value = mod.answer } }
  end,
  ["GET /load-binary"] = function(req)
    local f, err = load(string.dump(function() return 42 end), "dumped", "b")
    return { json = { value = f and f(), error = err } }
  end,
  ["GET /loadlib"] = function(req)
    local ok, f, err = pcall(package.loadlib, req.query.lib, "*")
    if not ok then err = f; f = nil end
    return { json = { loaded = f ~= nil, error = err, cpath = package.cpath } }
  end,
}
return channel
"""

# Writes a compiled chunk with string.dump and io.open when luac5.4 is not installed.
DUMPER = r"""
local channel = { name = "dumper" }
function channel.init(config)
  local f = assert(io.open(config.out, "wb"))
  f:write(string.dump(load("return { answer = 42 }")))
  f:close()
end
return channel
"""


def start(test, workers=1, files=None, args=(), cpu_budget=None):
    endpoints = GUARDED % workers + "bot:\n  script: bot.lua\n"
    if cpu_budget is not None:
        endpoints = endpoints.replace("lua_cpu_budget: 0.3", "lua_cpu_budget: %g" % cpu_budget)
    all_files = {"credentials.yml": "rest:\nprobe.lua:\n", "probe.lua": PROBE, "bot.lua": BOT,
                 "endpoints.yml": endpoints}
    all_files.update(files or {})
    host = QuietHost(cwd=project(all_files), args=args)
    test.addCleanup(host.stop)
    time.sleep(0.05)   # the watch is installed after "listening on" (see test_reload)
    return host


def say(host, sender, text, timeout=10.0):
    """POST to the rest channel: (status, decoded body, request id, seconds)."""
    t0 = time.monotonic()
    status, headers, body = host.post_json(WEBHOOK, {"sender": sender, "message": text})
    return status, body, headers.get("x-request-id"), time.monotonic() - t0


def texts(sender, *texts_):
    return [{"recipient_id": sender, "text": t} for t in texts_]


class CpuBudgetTests(unittest.TestCase):
    def assert_cut(self, host, text, sender="cpu"):
        status, body, rid, took = say(host, sender, text)
        self.assertEqual((status, body), (200, texts(sender, "before " + text)),
                         "the bot's answer up to the loop")
        self.assertGreater(took, BUDGET * 0.8, "answered before the budget was used")
        self.assertLess(took, LATE, "the loop ran well past the %g s budget" % BUDGET)
        error_line(host, rid, "CPU budget")
        return took

    def test_infinite_loop_in_the_bot(self):
        host = start(self)
        took = self.assert_cut(host, "loop")
        print("\n  infinite loop answered after %.0f ms (budget %g s)" % (took * 1000, BUDGET))
        # The worker is free again: the same sender and another one are served.
        self.assertEqual(say(host, "cpu", "hi")[:2], (200, texts("cpu", "before hi", "after hi")))
        self.assertEqual(say(host, "other", "hi")[:2],
                         (200, texts("other", "before hi", "after hi")))

    def test_pcall_cannot_swallow_the_budget(self):
        host = start(self)
        for text in ("pcall-loop", "catch-and-loop", "coroutine-loop", "slow-close"):
            with self.subTest(text):
                self.assert_cut(host, text)
        self.assertEqual(say(host, "cpu", "hi")[:2], (200, texts("cpu", "before hi", "after hi")))

    def test_work_under_the_budget_is_not_cut(self):
        host = start(self, files={"endpoints.yml": GUARDED.replace("0.3", "0.6") % 1
                                  + "bot:\n  script: bot.lua\n"})
        status, body, _, _ = say(host, "cpu", "spin-0.3")
        self.assertEqual((status, body), (200, texts("cpu", "before spin-0.3", "after spin-0.3")))

    def test_loop_in_channel_receive_is_a_500(self):
        host = start(self)
        t0 = time.monotonic()
        status, headers, body = host.post_json("/webhooks/probe/webhook", {"loop": True})
        took = time.monotonic() - t0
        self.assertEqual(status, 500, body)
        self.assertEqual(body["error"], "channel_error")
        self.assertLess(took, LATE)
        error_line(host, headers["x-request-id"], r"probe\.lua:4: .*CPU budget")
        self.assertEqual(host.post_json("/webhooks/probe/webhook", {})[::2], (200, {"ok": True}))

    def test_loop_in_init_fails_startup_with_file_line(self):
        looping_init = ('local channel = { name = "spin" }\n'
                        'function channel.init(config)\n'
                        '  while true do end\n'
                        'end\n'
                        'return channel\n')
        folder = project({"credentials.yml": "spin.lua:\n", "spin.lua": looping_init,
                          "endpoints.yml": GUARDED % 1})
        t0 = time.monotonic()
        result = run_to_exit(["run", "-p", "0", "-i", "127.0.0.1"], cwd=folder)
        self.assertIsNotNone(result.returncode, "the host started serving:\n" + result.stderr)
        self.assertNotEqual(result.returncode, 0)
        self.assertLess(time.monotonic() - t0, 5)
        lines = error_lines(result.stderr)
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertRegex(lines[0], r"/spin\.lua:3: .*CPU budget")
        self.assertNotIn("listening on", result.stderr)

    def test_loop_in_init_of_a_reload_is_rejected(self):
        host = start(self, files={"credentials.yml": "chan.lua:\n",
                                  "chan.lua": version_channel("v1")})
        self.assertEqual(host.post_json("/webhooks/ver/webhook", {})[2]["version"], "v1")
        rewrite(os.path.join(host.cwd, "chan.lua"), 'local c = { name = "ver" }\n'
                'function c.init()\n  while true do end\nend\nreturn c\n')
        st = wait_for_status(host, lambda s: s["last_reload_error"])
        self.assertRegex(st["last_reload_error"], r"/chan\.lua:3: .*CPU budget")
        self.assertEqual(host.post_json("/webhooks/ver/webhook", {})[2]["version"], "v1")

    def test_a_looping_request_does_not_hold_up_the_other_worker(self):
        host = start(self, workers=2)
        results = {}

        def looping():
            results["loop"] = say(host, "looper", "loop")
        thread = threading.Thread(target=looping, daemon=True)
        thread.start()
        time.sleep(0.05)   # the loop runs on one worker now
        # Send several (new connections land on either worker): the ones on the free worker must
        # be answered while the loop still runs.
        quick = []
        lock = threading.Lock()

        def one(i):
            r = say(host, "quick-%d" % i, "hi")
            with lock:
                quick.append((r[0], r[3]))
        senders = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
        for s in senders:
            s.start()
        for s in senders:
            s.join(5)
        thread.join(5)
        self.assertEqual(len(quick), 8)
        self.assertTrue(all(status == 200 for status, _ in quick), quick)
        fastest = min(took for _, took in quick)
        print("\n  other worker while one loops: fastest %.0f ms, slowest %.0f ms"
              % (fastest * 1000, max(took for _, took in quick) * 1000))
        self.assertLess(fastest, 0.15, "no request was answered while the other worker looped")
        self.assertEqual(results["loop"][1], texts("looper", "before loop"))

    def test_debug_sethook_cannot_switch_the_budget_off(self):
        host = start(self)
        status, body, rid, took = say(host, "cpu", "sethook")
        self.assertEqual(body, texts("cpu", "before sethook"))
        self.assertLess(took, LATE)

    def test_an_xpcall_message_handler_runs_under_the_budget(self):
        host = start(self)
        status, body, rid, took = say(host, "cpu", "slow-error-handler")
        self.assertLess(took, LATE, "the message handler ran %.2f s" % took)

    def test_a_gc_finalizer_runs_under_the_budget(self):
        host = start(self)
        status, body, rid, took = say(host, "cpu", "slow-finalizer")
        self.assertLess(took, LATE, "the finalizer ran %.2f s" % took)

    def test_a_long_c_call_fails_its_request_when_it_returns(self):
        # The budget runs out during one long C call (string.find with a backtracking pattern);
        # the first Lua instruction after it raises, so the request does not go on.
        host = start(self)
        status, body, rid, took = say(host, "cpu", "c-pattern")
        self.assertEqual(body, texts("cpu", "before c-pattern"))
        error_line(host, rid, "CPU budget")

    @unittest.expectedFailure
    def test_a_long_c_call_is_interrupted_at_the_budget(self):
        # KNOWN LIMITATION (docs/reloading-and-guards.md): the budget stops Lua between
        # instructions; one C call (here string.find with a backtracking pattern, ~1.3 s) runs to
        # its end, holding its worker that long, before the request fails.
        host = start(self)
        status, body, rid, took = say(host, "cpu", "c-pattern")
        self.assertLess(took, 3 * BUDGET, "one C call ran %.2f s with a %g s budget"
                        % (took, BUDGET))


class MemoryCapTests(unittest.TestCase):
    # A generous CPU budget, so that the memory cap, not the budget, ends a bomb (sanitizer
    # builds run Lua several times slower).
    def test_memory_bomb_fails_its_request_and_the_host_carries_on(self):
        host = start(self, cpu_budget=10)
        for text in ("bomb", "small-bomb"):
            with self.subTest(text):
                status, body, rid, took = say(host, "mem", text)
                self.assertEqual((status, body), (200, texts("mem", "before " + text)))
                error_line(host, rid, "not enough memory")
                self.assertIsNone(host.proc.poll())
                # The next requests of the same and of another sender are served.
                self.assertEqual(say(host, "mem", "hi")[:2],
                                 (200, texts("mem", "before hi", "after hi")))
                self.assertEqual(say(host, "other", "hi")[:2],
                                 (200, texts("other", "before hi", "after hi")))
        self.assertEqual(host.post_json("/webhooks/probe/webhook", {})[::2], (200, {"ok": True}))

    def test_memory_under_the_cap_is_usable(self):
        host = start(self, cpu_budget=10)
        status, body, _, _ = say(host, "mem", "forty-mib")
        self.assertEqual(body, texts("mem", "before forty-mib", "held 40 MiB", "after forty-mib"))

    def test_memory_is_given_back_after_a_bomb(self):
        host = start(self, cpu_budget=10)
        say(host, "mem", "bomb")
        status, body, rid, _ = say(host, "mem", "forty-mib")
        self.assertEqual(body, texts("mem", "before forty-mib", "held 40 MiB", "after forty-mib"))


class ForbiddenTests(unittest.TestCase):
    def test_os_exit_fails_the_request_and_the_host_keeps_running(self):
        host = start(self)
        status, headers, body = host.post_json("/webhooks/probe/webhook", {"exit": True})
        self.assertEqual((status, body["error"]), (500, "channel_error"), body)
        error_line(host, headers["x-request-id"], "os.exit is not available")
        # From the bot: the bot failure is logged, the rest channel answers what came before.
        status, body, rid, _ = say(host, "ex", "exit")
        self.assertEqual((status, body), (200, texts("ex", "before exit")))
        error_line(host, rid, "os.exit is not available")
        time.sleep(0.1)
        self.assertIsNone(host.proc.poll(), "the host exited")
        self.assertEqual(say(host, "ex", "hi")[:2], (200, texts("ex", "before hi", "after hi")))

    def binary_module(self, folder):
        """Put a compiled chunk returning {answer = 42} at folder/binmod.lua."""
        out = os.path.join(folder, "binmod.lua")
        luac = shutil.which("luac5.4")
        if luac:
            with open(os.path.join(folder, "binsrc.txt"), "w") as f:
                f.write("return { answer = 42 }\n")
            subprocess.run([luac, "-o", out, os.path.join(folder, "binsrc.txt")], check=True)
        else:   # let the host write it: a channel's init with string.dump and io.open
            dump = project({"credentials.yml": "dumper.lua:\n  out: %s\n" % out,
                            "dumper.lua": DUMPER})
            run_to_exit(["check"], cwd=dump)
        with open(out, "rb") as f:
            self.assertEqual(f.read(4), b"\x1bLua", "not a compiled chunk")

    def test_require_refuses_a_binary_chunk(self):
        host = start(self)
        self.binary_module(host.cwd)
        status, headers, body = host.request("GET", "/webhooks/probe/require?m=binmod")
        self.assertEqual(status, 500, body)
        error_line(host, headers["x-request-id"], r"attempt to load a binary chunk")
        self.assertEqual(host.post_json("/webhooks/probe/webhook", {})[::2], (200, {"ok": True}))

    def test_a_refused_binary_module_is_named_in_the_error(self):
        host = start(self)
        self.binary_module(host.cwd)
        status, headers, body = host.request("GET", "/webhooks/probe/require?m=binmod")
        error_line(host, headers["x-request-id"], r"binmod.*attempt to load a binary chunk")

    def test_no_native_modules_through_package_cpath(self):
        host = start(self)
        status, headers, body = host.request("GET", "/webhooks/probe/require?m=socket.core")
        self.assertEqual(status, 500, body)
        m = error_line(host, headers["x-request-id"], "module 'socket.core' not found")
        self.assertNotIn(".so", m.group(0), "a C searcher still looked for a native module")

    def test_no_binary_chunks_through_load_or_dofile(self):
        host = start(self)
        self.binary_module(host.cwd)
        status, _, body = host.request("GET", "/webhooks/probe/load-binary")
        self.assertNotIn(b'"value":42', body)
        status, _, body = host.request("GET", "/webhooks/probe/dofile?f=binmod.lua")
        self.assertEqual(status, 500, body)

    def test_no_native_code_through_package_loadlib(self):
        host = start(self)
        status, _, body = host.request("GET", "/webhooks/probe/loadlib?lib=libc.so.6")
        self.assertIn(b'"loaded":false', body)


if __name__ == "__main__":
    unittest.main()
