# SPDX-License-Identifier: MIT
"""Reloading (docs/contract.md §7, §1 SIGHUP): changed scripts are served by new code quickly,
rejected changes keep the previous version serving and show in GET /status, requests in flight
finish on the code they started with, no request fails because of a reload, and SIGHUP re-reads
credentials.yml and endpoints.yml all-or-nothing.

Reload latency is measured from the moment the write (or the rename) returned to the first answer
produced by the new code, polling on a keep-alive connection; the numbers are printed."""
import json
import os
import re
import threading
import time
import unittest

from harness import project, write_files
from reload_util import (Client, channel_status, get_status, median, rewrite, sighup,
                         settled_generation, version_channel, wait_for_json,
                         wait_for_status)
from util import QuietHost

ONE = "server:\n  workers: 1\n"
VER = "/webhooks/ver/webhook"
GREETING = "/webhooks/p/webhook"

# A Lua bot: "slow" sleeps 1 s first; every answer carries the bot's version, read after the
# sleep (a request in flight must still answer with the version it started with).
BOT = """\
local sb = require "switchboard"
local VERSION = "{version}"
local bot = {{}}
function bot.handle(msg, out)
  if msg.text == "slow" then sb.sleep(1) end
  out:send_text_message("bot " .. VERSION)
end
return bot
"""

# A channel whose receive sleeps 1 s for {"slow": true} and answers its version afterwards.
SLOW_CHANNEL = """\
local sb = require "switchboard"
local VERSION = "{version}"
local channel = {{ name = "ver" }}
function channel.receive(req)
  if req.json.slow then sb.sleep(1) end
  return {{}}, {{ status = 200, json = {{ version = VERSION }} }}
end
return channel
"""

# A channel that uses the bot and puts its version around the collected messages.
WRAPPING_CHANNEL = """\
local VERSION = "{version}"
local channel = {{ name = "wrap" }}
function channel.respond(messages, req)
  return {{ status = 200, json = {{ version = VERSION, messages = messages }} }}
end
return channel
"""

ECHO_BOT = """\
local bot = {}
function bot.handle(msg, out) out:send_text_message("echo: " .. tostring(msg.text)) end
return bot
"""

# The version channel ("ver") with an init that keeps the CPU busy for {seconds} s, so a change
# can be written while it loads.
SLOW_INIT_CHANNEL = """\
local VERSION = "{version}"
local channel = {{ name = "ver" }}
function channel.init()
  local t = os.clock() while os.clock() - t < {seconds} do end
end
function channel.receive(req)
  return {{}}, {{ json = {{ version = VERSION }} }}
end
return channel
"""

# A channel whose answers show the parameters its init received.
PARAM_CHANNEL = """\
local channel = {{ name = "{name}" }}
local seen
function channel.init(config) seen = config and config.greeting end
function channel.receive(req)
  return {{}}, {{ status = 200, json = {{ name = channel.name, greeting = seen }} }}
end
return channel
"""


def one_channel(version="v1"):
    """A project with the version channel alone (chan.lua, name "ver")."""
    return {"credentials.yml": "chan.lua:\n", "chan.lua": version_channel(version)}


def settle():
    """The watch is installed just after the "listening on" line (a change written in between is
    lost: test_a_save_while_the_host_starts_is_not_lost); give it a moment."""
    time.sleep(0.05)


def is_version(v):
    return lambda body: isinstance(body, dict) and body.get("version") == v


class ReloadCase(unittest.TestCase):
    def start(self, files):
        files = dict(files)
        files.setdefault("endpoints.yml", ONE)
        folder = project(files)
        host = QuietHost(cwd=folder)
        self.addCleanup(host.stop)
        settle()
        return host, folder

    def post(self, host, path=VER, payload=None):
        status, _, body = host.post_json(path, payload if payload is not None else {})
        return status, body

    def assert_serves(self, host, version, path=VER):
        status, body = self.post(host, path)
        self.assertEqual((status, body.get("version") if isinstance(body, dict) else body),
                         (200, version), body)


class ScriptChangeTests(ReloadCase):
    def measure(self, host, folder, rel, make_text, versions, how, path=VER, label=None):
        """Rewrite `rel` once per version; returns the write -> new-answer times in ms."""
        times = []
        client = Client(host)
        try:
            for v in versions:
                t = rewrite(os.path.join(folder, rel), make_text(v), how=how)
                times.append(wait_for_json(host, path, {}, is_version(v), since=t, client=client))
        finally:
            client.close()
        print("\n  reload latency %s (%s, %d rewrites): min %.1f ms, median %.1f ms, max %.1f ms"
              % (label or rel, how, len(times), min(times), median(times), max(times)))
        for ms in times:
            self.assertLess(ms, 1000.0, "a rewrite took %.0f ms to be served (target 100 ms)" % ms)
        return times

    def test_plain_write_is_served_by_the_new_code(self):
        host, folder = self.start(one_channel())
        self.assert_serves(host, "v1")
        self.measure(host, folder, "chan.lua", version_channel, ["v2", "v3", "v4"], "plain")
        self.assertEqual(settled_generation(host, 4), 4)

    def test_editor_style_write_then_rename_is_served_by_the_new_code(self):
        host, folder = self.start(one_channel())
        self.measure(host, folder, "chan.lua", version_channel, ["v2", "v3", "v4"], "rename")
        self.assertEqual(settled_generation(host, 4), 4)
        # The temporary files of the editor are not scripts: nothing else was reloaded.
        self.assertNotIn("rejected", host.log())

    def test_channel_in_a_subfolder_module_path(self):
        host, folder = self.start({"credentials.yml": "pkg.chan:\n",
                                   "pkg/chan.lua": version_channel("v1")})
        self.assert_serves(host, "v1")
        self.measure(host, folder, "pkg/chan.lua", version_channel, ["v2", "v3"], "plain")
        self.measure(host, folder, "pkg/chan.lua", version_channel, ["v4", "v5"], "rename")
        st = get_status(host)
        self.assertEqual(st["generation"], 5)
        self.assertTrue(channel_status(st, "ver")["script"].endswith("/pkg/chan.lua"), st)

    def test_required_helper_module_is_watched(self):
        chan = ('local helper = require "pkg.helper"\n'
                'local channel = { name = "ver" }\n'
                'function channel.receive(req)\n'
                '  return {}, { json = { version = helper.version } }\n'
                'end\n'
                'return channel\n')
        helper = 'return {{ version = "{}" }}\n'.format
        host, folder = self.start({"credentials.yml": "pkg.chan:\n", "pkg/chan.lua": chan,
                                   "pkg/helper.lua": helper("h1")})
        self.assert_serves(host, "h1")
        self.measure(host, folder, "pkg/helper.lua", helper, ["h2", "h3"], "plain")
        self.measure(host, folder, "pkg/helper.lua", helper, ["h4"], "rename")

    def test_reload_latency_median_of_ten_rewrites(self):
        """The target is 100 ms from the write (docs/reloading-and-guards.md); the assertion is a
        loose 1 s."""
        for workers in (1, 4):
            with self.subTest(workers=workers):
                folder = project({"credentials.yml": "chan.lua:\n",
                                  "chan.lua": version_channel("v0"),
                                  "endpoints.yml": "server:\n  workers: %d\n" % workers})
                host = QuietHost(cwd=folder)
                settle()
                try:
                    versions = ["v%d" % i for i in range(1, 11)]
                    times = self.measure(host, folder, "chan.lua", version_channel, versions[:5],
                                         "plain", label="chan.lua, %d workers" % workers)
                    times += self.measure(host, folder, "chan.lua", version_channel, versions[5:],
                                          "rename", label="chan.lua, %d workers" % workers)
                    print("  => median of %d rewrites with %d worker(s): %.1f ms"
                          % (len(times), workers, median(times)))
                    self.assertLess(median(times), 1000.0)
                    self.assertEqual(settled_generation(host, 11), 11)
                finally:
                    host.stop()

    def test_lua_bot_script_is_reloaded(self):
        host, folder = self.start({"credentials.yml": "rest:\n", "bot.lua": BOT.format(version="b1"),
                                   "endpoints.yml": ONE + "bot:\n  script: bot.lua\n"})
        path = "/webhooks/rest/webhook"

        def bot_says(v):
            return lambda body: body == [{"recipient_id": "u", "text": "bot " + v}]
        payload = {"sender": "u", "message": "hi"}
        self.assertEqual(self.post(host, path, payload)[1],
                         [{"recipient_id": "u", "text": "bot b1"}])
        for v, how in (("b2", "plain"), ("b3", "rename")):
            t = rewrite(os.path.join(folder, "bot.lua"), BOT.format(version=v), how=how)
            ms = wait_for_json(host, path, payload, bot_says(v), since=t)
            print("\n  bot reload (%s): %.1f ms" % (how, ms))
            self.assertLess(ms, 1000.0)
        self.assertEqual(get_status(host)["generation"], 3)

    def test_globals_start_afresh_with_each_generation(self):
        counting = ('COUNT = COUNT or 0\n'
                    'local channel = {{ name = "ver" }}\n'
                    'function channel.receive(req)\n'
                    '  COUNT = COUNT + 1\n'
                    '  return {{}}, {{ json = {{ version = "{}", count = COUNT }} }}\n'
                    'end\n'
                    'return channel\n').format
        host, folder = self.start({"credentials.yml": "chan.lua:\n", "chan.lua": counting("v1")})
        self.assertEqual([self.post(host)[1]["count"] for _ in range(3)], [1, 2, 3])
        t = rewrite(os.path.join(folder, "chan.lua"), counting("v2"))
        wait_for_json(host, VER, {}, is_version("v2"), since=t)   # this request counted 1
        self.assertEqual(self.post(host)[1]["count"], 2, "a new generation is a new Lua state")

    def test_module_required_lazily_inside_a_handler_is_watched(self):
        # Regression (found on 4c34ed3): only the files loaded while a generation was built were
        # watched, so a module a channel requires inside receive (on first use) was never
        # watched. docs/contract.md §7: "the Lua files they require".
        chan = ('local channel = { name = "ver" }\n'
                'function channel.receive(req)\n'
                '  return {}, { json = { version = require("lazy").version } }\n'
                'end\n'
                'return channel\n')
        host, folder = self.start({"credentials.yml": "chan.lua:\n", "chan.lua": chan,
                                   "lazy.lua": 'return { version = "l1" }\n'})
        self.assert_serves(host, "l1")
        t = rewrite(os.path.join(folder, "lazy.lua"), 'return { version = "l2" }\n')
        wait_for_json(host, VER, {}, is_version("l2"), since=t, timeout=1.5)

    def test_a_save_during_a_reload_is_not_lost(self):
        # Regression (found on 4c34ed3): watch_set() removed every inotify watch and added new
        # ones after a reload, so a change written while the reload ran (here: during a 0.3 s
        # init) was queued under a watch descriptor nobody knew any more and dropped: the host
        # kept serving v3 for ever although chan.lua held v4.
        def slow(version):
            return SLOW_INIT_CHANNEL.format(version=version, seconds=0.3)
        host, folder = self.start({"credentials.yml": "chan.lua:\n", "chan.lua": slow("v1")})
        t = rewrite(os.path.join(folder, "chan.lua"), slow("v2"))
        wait_for_json(host, VER, {}, is_version("v2"), since=t)   # the watch is in place
        rewrite(os.path.join(folder, "chan.lua"), slow("v3"))
        time.sleep(0.15)   # v3 is being loaded (its init runs 0.3 s)
        t = rewrite(os.path.join(folder, "chan.lua"), slow("v4"))
        wait_for_json(host, VER, {}, is_version("v4"), since=t, timeout=2.0)

    def test_a_save_while_the_host_starts_is_not_lost(self):
        def slow(version):
            return SLOW_INIT_CHANNEL.format(version=version, seconds=0.5)
        folder = project({"credentials.yml": "chan.lua:\n", "chan.lua": slow("v1"),
                          "endpoints.yml": ONE})
        timer = threading.Timer(0.25, rewrite, args=(os.path.join(folder, "chan.lua"), slow("v2")))
        timer.start()
        host = QuietHost(cwd=folder)
        self.addCleanup(host.stop)
        timer.join()
        wait_for_json(host, VER, {}, is_version("v2"), timeout=1.5)


class RejectedReloadTests(ReloadCase):
    """A change that does not load keeps the previous version serving; the error (file:line) is
    logged and shown by /status until a good version loads."""

    def reject(self, files, rel, bad, expect, channel="ver", fixed=None, path=VER):
        """Start on `files`, write `bad` to `rel`, check the rejection, then write `fixed`."""
        host, folder = self.start(files)
        self.assert_serves(host, "v1", path)
        gen = get_status(host)["generation"]
        rewrite(os.path.join(folder, rel), bad)
        st = wait_for_status(host, lambda s: s["last_reload_error"])
        error = st["last_reload_error"]
        for pattern in expect:
            self.assertRegex(error, pattern)
        self.assertEqual(st["generation"], gen, "a rejected reload must not count")
        host.wait_for_log(r"ERROR .*rejected.*" + expect[0])
        self.assert_serves(host, "v1", path)          # the previous version keeps serving
        if channel:
            self.assertEqual(channel_status(st, channel)["last_reload_error"], error,
                             "the channel whose script failed shows the error")
        t = rewrite(os.path.join(folder, rel), fixed or version_channel("v2"))
        wait_for_json(host, path, {}, is_version("v2"), since=t)
        st = get_status(host)
        self.assertIsNone(st["last_reload_error"])
        self.assertEqual(st["generation"], gen + 1)
        for ch in st["channels"]:
            self.assertIsNone(ch["last_reload_error"], ch)
            self.assertEqual(ch["generation"], gen + 1)
        return host

    def test_syntax_error(self):
        bad = 'local channel = { name = "ver" }\n\nlocal x = = 1\nreturn channel\n'
        self.reject({"credentials.yml": "chan.lua:\n", "chan.lua": version_channel("v1")},
                    "chan.lua", bad, [r"/chan\.lua:3:", r"unexpected symbol|expected"])

    def test_init_that_raises(self):
        bad = ('local channel = { name = "ver" }\n'
               'function channel.init(config)\n'
               '  error("init failed on purpose")\n'
               'end\n'
               'return channel\n')
        self.reject({"credentials.yml": "chan.lua:\n", "chan.lua": version_channel("v1")},
                    "chan.lua", bad, [r"/chan\.lua:3:", "init failed on purpose"])

    def test_script_that_no_longer_returns_a_table(self):
        bad = 'local channel = { name = "ver" }\nreturn 42\n'
        self.reject({"credentials.yml": "chan.lua:\n", "chan.lua": version_channel("v1")},
                    "chan.lua", bad, [r"/chan\.lua", "must return a table"])

    def test_bot_with_a_syntax_error(self):
        files = {"credentials.yml": "chan.lua:\n", "chan.lua": version_channel("v1"),
                 "bot.lua": ECHO_BOT, "endpoints.yml": ONE + "bot:\n  script: bot.lua\n"}
        host, folder = self.start(files)
        rewrite(os.path.join(folder, "bot.lua"),
                "local bot = {}\nfunction bot.handle(\nreturn bot\n")
        st = wait_for_status(host, lambda s: s["last_reload_error"])
        self.assertRegex(st["last_reload_error"], r"/bot\.lua:3:")
        self.assertEqual(self.post(host, "/webhooks/ver/webhook")[0], 200)

    def test_duplicate_channel_name(self):
        files = {"credentials.yml": "chan.lua:\nother.lua:\n", "chan.lua": version_channel("v1"),
                 "other.lua": version_channel("o1", name="other")}
        host, folder = self.start(files)
        rewrite(os.path.join(folder, "other.lua"), version_channel("o2", name="ver"))
        st = wait_for_status(host, lambda s: s["last_reload_error"])
        self.assertRegex(st["last_reload_error"], r"credentials\.yml:2:\d+: .*'ver'")
        self.assertIn("share a name", st["last_reload_error"])
        self.assertEqual(st["generation"], 1)
        self.assert_serves(host, "v1")
        self.assert_serves(host, "o1", "/webhooks/other/webhook")
        t = rewrite(os.path.join(folder, "other.lua"), version_channel("o3", name="other"))
        wait_for_json(host, "/webhooks/other/webhook", {}, is_version("o3"), since=t)
        self.assertIsNone(get_status(host)["last_reload_error"])
        self.assertEqual(get_status(host)["generation"], 2)

    def test_duplicate_channel_name_shows_on_the_renamed_channel(self):
        # Regression (found on 4c34ed3): /status put a reload error on a channel only when the
        # error text contained the channel's script path; the duplicate-name error names
        # credentials.yml:line:col and the keys, so every channel showed null.
        files = {"credentials.yml": "chan.lua:\nother.lua:\n", "chan.lua": version_channel("v1"),
                 "other.lua": version_channel("o1", name="other")}
        host, folder = self.start(files)
        rewrite(os.path.join(folder, "other.lua"), version_channel("o2", name="ver"))
        st = wait_for_status(host, lambda s: s["last_reload_error"])
        self.assertIsNotNone(channel_status(st, "other")["last_reload_error"], st)

    def test_syntax_error_in_a_required_helper_names_its_line(self):
        # Regression (found on 4c34ed3): the error of a module that did not compile was "error
        # loading module 'pkg.helper' from file '.../pkg/helper.lua':\n\t.../helper.lua:2: ..."
        # and channel.c keeps only the first line, so neither line nor reason were shown.
        # docs/contract.md §7: "the error (file:line)".
        chan = ('local helper = require "pkg.helper"\n'
                'local channel = { name = "ver" }\n'
                'function channel.receive(req) return {}, { json = { version = helper.v } } end\n'
                'return channel\n')
        host, folder = self.start({"credentials.yml": "pkg.chan:\n", "pkg/chan.lua": chan,
                                   "pkg/helper.lua": 'return { v = "v1" }\n'})
        self.assert_serves(host, "v1")
        rewrite(os.path.join(folder, "pkg/helper.lua"), 'return {\n  v = = "v2" }\n')
        st = wait_for_status(host, lambda s: s["last_reload_error"])
        self.assert_serves(host, "v1")
        self.assertRegex(st["last_reload_error"], r"/pkg/helper\.lua:2:")

    def test_fixing_a_newly_required_module_reloads(self):
        # Regression (found on 4c34ed3): chan.lua starts requiring newmod.lua, which does not
        # compile: rejected. The watch list stayed the running generation's, which never loaded
        # newmod.lua, so fixing newmod.lua was ignored until chan.lua was touched again.
        host, folder = self.start(one_channel())
        write_files(folder, {"newmod.lua": 'return {\n  v = = 1 }\n'})
        rewrite(os.path.join(folder, "chan.lua"),
                'local m = require "newmod"\n' + version_channel("v2"))
        wait_for_status(host, lambda s: s["last_reload_error"])
        t = rewrite(os.path.join(folder, "newmod.lua"), 'return { v = 1 }\n')
        wait_for_json(host, VER, {}, is_version("v2"), since=t, timeout=1.5)


class InFlightTests(ReloadCase):
    """Requests in progress finish on the code they started with; later ones get the new code."""

    def in_flight(self, host, folder, rel, make_text, path, slow, fast, answer_version):
        result = {}

        def slow_request():
            result["answer"] = host.post_json(path, slow)
        thread = threading.Thread(target=slow_request, daemon=True)
        thread.start()
        time.sleep(0.3)                          # the slow request sleeps inside the script now
        t = rewrite(os.path.join(folder, rel), make_text("v2"))
        ms = wait_for_json(host, path, fast, lambda b: answer_version(b) == "v2", since=t)
        self.assertLess(ms, 1000.0)
        thread.join(10)
        self.assertIn("answer", result, "the request in flight got no answer")
        status, _, body = result["answer"]
        self.assertEqual(status, 200, body)
        self.assertEqual(answer_version(body), "v1", "the request in flight changed code")
        self.assertEqual(answer_version(host.post_json(path, slow)[2]), "v2")

    def test_bot_request_in_flight_finishes_on_the_old_bot(self):
        host, folder = self.start({"credentials.yml": "rest:\n", "bot.lua": BOT.format(version="v1"),
                                   "endpoints.yml": ONE + "bot:\n  script: bot.lua\n"})

        def bot_version(body):
            return body[0]["text"].split()[-1] if isinstance(body, list) and body else body
        self.in_flight(host, folder, "bot.lua", lambda v: BOT.format(version=v),
                       "/webhooks/rest/webhook", {"sender": "a", "message": "slow"},
                       {"sender": "b", "message": "fast"}, bot_version)

    def test_channel_request_in_flight_finishes_on_the_old_channel(self):
        host, folder = self.start({"credentials.yml": "chan.lua:\n",
                                   "chan.lua": SLOW_CHANNEL.format(version="v1")})
        self.in_flight(host, folder, "chan.lua", lambda v: SLOW_CHANNEL.format(version=v), VER,
                       {"slow": True}, {"slow": False},
                       lambda b: b.get("version") if isinstance(b, dict) else b)


class ReloadUnderLoadTests(ReloadCase):
    def test_no_request_fails_while_the_channel_is_rewritten_twenty_times(self):
        folder = project({"credentials.yml": "wrap.lua:\n",
                          "wrap.lua": WRAPPING_CHANNEL.format(version="v0"), "bot.lua": ECHO_BOT,
                          "endpoints.yml": "server:\n  workers: 2\nbot:\n  script: bot.lua\n"})
        host = QuietHost(cwd=folder)
        self.addCleanup(host.stop)
        settle()
        path = "/webhooks/wrap/webhook"
        stop = threading.Event()
        failures, counts, seen = [], [0] * 4, set()
        lock = threading.Lock()

        def client(n):
            sender = "load-%d" % n
            c = Client(host)
            i = 0
            try:
                while not stop.is_set():
                    i += 1
                    text = "m%d" % i
                    try:
                        status, body = c.post_json(path, {"sender": sender, "message": text})
                    except Exception as e:  # noqa: BLE001 - every failure is reported
                        failures.append("%s: %r" % (sender, e))
                        continue
                    ok = (status == 200 and isinstance(body, dict)
                          and re.fullmatch(r"v\d+", str(body.get("version")))
                          and body.get("messages") == [{"recipient_id": sender,
                                                        "text": "echo: " + text}])
                    if not ok:
                        failures.append("%s: %s %r" % (sender, status, body))
                    else:
                        with lock:
                            seen.add(body["version"])
                    counts[n] += 1
            finally:
                c.close()
        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        for v in range(1, 21):
            rewrite(os.path.join(folder, "wrap.lua"), WRAPPING_CHANNEL.format(version="v%d" % v),
                    how="rename" if v % 2 else "plain")
            time.sleep(0.1)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(10)
        print("\n  under load: %d requests, %d versions seen, %d failures"
              % (sum(counts), len(seen), len(failures)))
        self.assertEqual(failures, [], failures[:5])
        self.assertGreater(min(counts), 20, counts)
        for _ in range(4):   # both workers serve the last version
            status, _, body = host.post_json(path, {"sender": "after", "message": "x"})
            self.assertEqual((status, body["version"]), (200, "v20"))
        self.assertEqual(settled_generation(host, 21), 21)
        self.assertGreater(len(seen), 5, "the clients saw few of the versions: %s" % sorted(seen))


class SighupTests(ReloadCase):
    """SIGHUP re-reads credentials.yml and endpoints.yml: channels added, removed, re-initialised,
    the bot changed; a bad configuration changes nothing."""

    def hup_and_wait(self, host, expect_generation):
        sighup(host)
        return wait_for_status(host, lambda s: s["generation"] == expect_generation
                               or s["last_reload_error"])

    def start_greeting(self, files=None):
        """A host on the parameter channel p (greeting: hello) and `files`."""
        return self.start(dict(files or {}, **{"credentials.yml": "p.lua:\n  greeting: hello\n",
                                               "p.lua": PARAM_CHANNEL.format(name="p")}))

    def assert_hup_rejected(self, host, error_pattern, log_pattern):
        """SIGHUP on a configuration that must be rejected: generation 1 stays, the error is shown
        and logged, and p still greets with hello. Returns the status."""
        st = self.hup_and_wait(host, 2)
        self.assertEqual(st["generation"], 1)
        self.assertRegex(st["last_reload_error"], error_pattern)
        host.wait_for_log(log_pattern)
        self.assertEqual(self.post(host, GREETING), (200, {"name": "p", "greeting": "hello"}))
        return st

    def test_adding_a_channel(self):
        host, folder = self.start({"credentials.yml": "chan.lua:\n", "chan.lua": version_channel("v1"),
                                   "new.lua": version_channel("n1", name="new")})
        self.assertEqual(host.request("GET", "/webhooks/new/")[0], 404)
        write_files(folder, {"credentials.yml": "chan.lua:\nnew.lua:\n"})
        st = self.hup_and_wait(host, 2)
        self.assertIsNone(st["last_reload_error"])
        self.assertEqual([c["name"] for c in st["channels"]], ["ver", "new"])
        self.assertEqual(host.request("GET", "/webhooks/new/")[0], 200)
        self.assert_serves(host, "n1", "/webhooks/new/webhook")
        self.assert_serves(host, "v1")
        host.wait_for_log(r"SIGHUP: configuration reloaded \(generation 2\)")
        # The added channel's script is watched from now on.
        t = rewrite(os.path.join(folder, "new.lua"), version_channel("n2", name="new"))
        wait_for_json(host, "/webhooks/new/webhook", {}, is_version("n2"), since=t)

    def test_removing_a_channel(self):
        host, folder = self.start({"credentials.yml": "chan.lua:\nold.lua:\n",
                                   "chan.lua": version_channel("v1"),
                                   "old.lua": version_channel("o1", name="old")})
        self.assert_serves(host, "o1", "/webhooks/old/webhook")
        write_files(folder, {"credentials.yml": "chan.lua:\n"})
        st = self.hup_and_wait(host, 2)
        self.assertEqual([c["name"] for c in st["channels"]], ["ver"])
        status, _, body = host.request("POST", "/webhooks/old/webhook", body={})
        self.assertEqual(status, 404, body)
        self.assertEqual(json.loads(body)["error"], "not_found")
        self.assertEqual(host.request("GET", "/webhooks/old/")[0], 404)
        self.assert_serves(host, "v1")

    def test_changed_parameters_reach_init(self):
        host, folder = self.start_greeting()
        self.assertEqual(self.post(host, GREETING)[1]["greeting"], "hello")
        write_files(folder, {"credentials.yml": "p.lua:\n  greeting: bonjour\n"})
        self.hup_and_wait(host, 2)
        self.assertEqual(self.post(host, GREETING), (200, {"name": "p", "greeting": "bonjour"}))

    def test_broken_yaml_leaves_the_running_set_untouched(self):
        host, folder = self.start_greeting()
        write_files(folder, {"credentials.yml": "p.lua:\n  greeting: [bonjour\n"})
        self.assert_hup_rejected(host, r"credentials\.yml:\d+:\d+: ",
                                 r"ERROR .*SIGHUP: configuration rejected")
        # Fixed and signalled again: applied, and the error is gone.
        write_files(folder, {"credentials.yml": "p.lua:\n  greeting: bonjour\n"})
        sighup(host)
        st = wait_for_status(host, lambda s: s["generation"] == 2)
        self.assertIsNone(st["last_reload_error"])
        self.assertEqual(self.post(host, GREETING)[1]["greeting"], "bonjour")

    def test_a_channel_that_fails_to_load_rejects_the_whole_change(self):
        host, folder = self.start_greeting(
            {"bad.lua": 'local c = { name = "bad" }\nc.x = (\nreturn c\n'})
        # Two changes at once: new parameters for p and a channel that does not compile.
        write_files(folder, {"credentials.yml": "p.lua:\n  greeting: bonjour\nbad.lua:\n"})
        st = self.assert_hup_rejected(host, r"/bad\.lua:3:",
                                      r"ERROR .*SIGHUP: reload rejected.*bad\.lua:3:")
        self.assertEqual([c["name"] for c in st["channels"]], ["p"])
        self.assertEqual(host.request("GET", "/webhooks/bad/")[0], 404)
        # An unknown channel key is rejected the same way.
        write_files(folder, {"credentials.yml": "p.lua:\n  greeting: bonjour\nnosuch.channel:\n"})
        sighup(host)
        st = wait_for_status(host, lambda s: "nosuch" in (s["last_reload_error"] or ""))
        self.assertEqual(st["generation"], 1)
        self.assertEqual(self.post(host, GREETING)[1]["greeting"], "hello")

    def test_the_bot_changed_in_endpoints_yml(self):
        files = {"credentials.yml": "rest:\n", "bot1.lua": BOT.format(version="one"),
                 "bot2.lua": BOT.format(version="two"),
                 "endpoints.yml": ONE + "bot:\n  script: bot1.lua\n"}
        host, folder = self.start(files)
        path, payload = "/webhooks/rest/webhook", {"sender": "u", "message": "hi"}
        self.assertEqual(self.post(host, path, payload)[1][0]["text"], "bot one")
        write_files(folder, {"endpoints.yml": ONE + "bot:\n  script: bot2.lua\n"})
        st = self.hup_and_wait(host, 2)
        self.assertIsNone(st["last_reload_error"])
        self.assertIn("bot2.lua", st["bot"])
        self.assertEqual(self.post(host, path, payload)[1][0]["text"], "bot two")
        # The new bot file is the watched one now.
        t = rewrite(os.path.join(folder, "bot2.lua"), BOT.format(version="three"))
        wait_for_json(host, path, payload, lambda b: b[0]["text"] == "bot three", since=t)

    def test_server_section_changes_need_a_restart(self):
        host, folder = self.start(one_channel())
        write_files(folder, {"endpoints.yml": "server:\n  workers: 3\n"})
        st = self.hup_and_wait(host, 2)
        self.assertEqual(st["workers"], 1)
        host.wait_for_log(r"WARNING .*server: section apply at the next restart")
        self.assert_serves(host, "v1")

    def test_store_section_changes_need_a_restart(self):
        host, folder = self.start(one_channel())
        write_files(folder, {"endpoints.yml": "store:\n  url: redis://127.0.0.1:1/0\n"})
        st = self.hup_and_wait(host, 2)
        self.assertEqual(st["store"]["backend"], "embedded", st)
        host.wait_for_log(r"WARNING .*store: section apply at the next restart")
        self.assert_serves(host, "v1")


if __name__ == "__main__":
    unittest.main()
