# SPDX-License-Identifier: MIT
"""libcurl is loaded only when an outbound HTTP request first needs it (docs/architecture.md,
Outbound HTTP): a host that makes none never maps libcurl or OpenSSL's libssl; the first
sb.http.request (on a worker or in a startup hook) and an HTTP bot load it and work; when it cannot
be loaded the request fails with a clear error and a log line, and the host keeps serving."""
import os
import shutil
import tempfile
import unittest

from harness import project
from standins import (Reply, StandIn, echo_rasa_bot, error_line, http_bot_endpoints,
                      in_threads, lua_bot_endpoints)
from util import TEXT_BOT, QuietHost as Host, final_log

WEBHOOK = "/webhooks/rest/webhook"

# POST /webhooks/http/call {"url": ...} -> {"ok": true, "status", "body"} or {"ok": false, "err"}
CALLER = """\
local sb = require "switchboard"
local c = { name = "http" }
c.routes = {
  ["POST /call"] = function(req)
    local res, err = sb.http.request({ url = req.json.url })
    if not res then return { json = { ok = false, err = err } } end
    return { json = { ok = true, status = res.status, body = res.body } }
  end,
}
return c
"""

# A channel whose startup hook (run on the main thread, where sb.http.request blocks) fetches a URL.
STARTUP = """\
local sb = require "switchboard"
local c = { name = "hook" }
c.parameters = { url = { type = "string", required = true } }
function c.startup(config)
  local res, err = sb.http.request({ url = config.url })
  if res then
    sb.log.info("STARTUP GOT %d %s", res.status, res.body)
  else
    sb.log.info("STARTUP FAILED %s", err)
  end
end
function c.receive(req) return {} end
return c
"""


def mapped(host, *names):
    """The names among `names` that the host's process maps (a prefix of a file's base name)."""
    with open("/proc/%d/maps" % host.proc.pid) as f:
        files = {line.split()[-1].rsplit("/", 1)[-1] for line in f if "/" in line}
    return sorted(n for n in names if any(f.startswith(n) for f in files))


def hello(rec):
    return Reply(body="hello from " + rec.path)


class LoadedOnFirstUseTests(unittest.TestCase):
    def setUp(self):
        self.api = StandIn(hello)
        self.addCleanup(self.api.close)

    def test_lua_bot_host_maps_no_libcurl_until_sb_http_request(self):
        folder = project({"credentials.yml": "rest:\nhttp.lua:\n", "http.lua": CALLER,
                          "bot.lua": TEXT_BOT, "endpoints.yml": lua_bot_endpoints(workers=2)})
        with Host(cwd=folder) as host:
            for i in range(20):
                status, _, body = host.post_json(WEBHOOK, {"sender": "u%d" % i, "message": "hi"})
                self.assertEqual((status, body), (200, [{"recipient_id": "u%d" % i,
                                                         "text": "echo: hi"}]))
            self.assertEqual(mapped(host, "libcurl", "libssl"), [])
            # The first requests, on both workers at once: each makes its multi handle, the
            # library is loaded once.
            results = in_threads([lambda i=i: host.post_json(
                "/webhooks/http/call", {"url": self.api.url("/w%d" % i)}) for i in range(6)])
            for i, (status, _, got) in enumerate(results):
                self.assertEqual(status, 200, got)
                self.assertEqual(got, {"ok": True, "status": 200, "body": "hello from /w%d" % i})
            self.assertEqual(mapped(host, "libcurl", "libssl"), ["libcurl", "libssl"])
            status, _, body = host.post_json(WEBHOOK, {"sender": "after", "message": "hi"})
            self.assertEqual((status, body), (200, [{"recipient_id": "after", "text": "echo: hi"}]))

    def test_http_bot_end_to_end(self):
        """An HTTP bot sends every message through libcurl: it is loaded with the bot, so the
        first message does not wait for it."""
        bot = StandIn(echo_rasa_bot())
        self.addCleanup(bot.close)
        folder = project({"credentials.yml": "rest:\n",
                          "endpoints.yml": http_bot_endpoints(bot.url(WEBHOOK), timeout=5)})
        with Host(cwd=folder) as host:
            self.assertEqual(mapped(host, "libcurl"), ["libcurl"])
            status, _, body = host.post_json(WEBHOOK, {"sender": "s", "message": "hi"})
            self.assertEqual((status, body), (200, [{"recipient_id": "s", "text": "echo: hi"}]))
            self.assertEqual(mapped(host, "libcurl"), ["libcurl"])

    def test_blocking_request_in_a_startup_hook(self):
        folder = project({"credentials.yml": "hook.lua:\n  url: %s\n" % self.api.url("/start"),
                          "hook.lua": STARTUP, "bot.lua": TEXT_BOT,
                          "endpoints.yml": lua_bot_endpoints()})
        with Host(cwd=folder) as host:
            host.wait_for_log(r"INFO\s+STARTUP GOT 200 hello from /start")
            self.assertEqual(mapped(host, "libcurl"), ["libcurl"])


class UnavailableTests(unittest.TestCase):
    """A libcurl.so.4 that is no library, found first through LD_LIBRARY_PATH, stands for a
    missing or broken libcurl."""

    def setUp(self):
        self.libdir = tempfile.mkdtemp(prefix="sb-nolibcurl-")
        self.addCleanup(shutil.rmtree, self.libdir, True)
        with open(os.path.join(self.libdir, "libcurl.so.4"), "w") as f:
            f.write("not a shared library\n")
        self.env = {"LD_LIBRARY_PATH": self.libdir}

    def test_sb_http_request_fails_clearly_and_the_host_keeps_serving(self):
        folder = project({"credentials.yml": "rest:\nhttp.lua:\n", "http.lua": CALLER,
                          "bot.lua": TEXT_BOT, "endpoints.yml": lua_bot_endpoints()})
        with Host(cwd=folder, env=self.env) as host:
            for attempt in range(2):
                status, _, got = host.post_json("/webhooks/http/call",
                                                {"url": "http://127.0.0.1:9/"})
                self.assertEqual(status, 200, got)
                self.assertFalse(got["ok"], got)
                self.assertIn("outbound HTTP requests are unavailable", got["err"])
                self.assertIn("libcurl.so.4", got["err"])
            status, _, body = host.post_json(WEBHOOK, {"sender": "s", "message": "still"})
            self.assertEqual((status, body), (200, [{"recipient_id": "s", "text": "echo: still"}]))
            log = final_log(host)
        # Logged once, however many requests fail.
        lines = [l for l in log.splitlines() if "cannot load libcurl.so.4" in l]
        self.assertEqual(len(lines), 1, log)
        self.assertIn("ERROR", lines[0])

    def test_http_bot_fails_clearly(self):
        folder = project({"credentials.yml": "rest:\n",
                          "endpoints.yml": http_bot_endpoints("http://127.0.0.1:9/bot")})
        with Host(cwd=folder, env=self.env) as host:
            status, headers, body = host.post_json(WEBHOOK, {"sender": "s", "message": "hi"})
            self.assertEqual((status, body), (200, []))
            error_line(host, headers["x-request-id"], "libcurl.so.4")
            self.assertEqual(host.request("GET", "/")[0], 200)

    def test_startup_hook_gets_the_error(self):
        folder = project({"credentials.yml": "hook.lua:\n  url: http://127.0.0.1:9/\n",
                          "hook.lua": STARTUP, "bot.lua": TEXT_BOT,
                          "endpoints.yml": lua_bot_endpoints()})
        with Host(cwd=folder, env=self.env) as host:
            host.wait_for_log(r"STARTUP FAILED outbound HTTP requests are unavailable")
            self.assertEqual(host.request("GET", "/")[0], 200)


if __name__ == "__main__":
    unittest.main()
