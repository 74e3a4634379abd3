# SPDX-License-Identifier: MIT
"""sb.http.request (docs/contract.md §6) against stand-ins: methods, headers, json/form/raw bodies,
the response table, failures as nil, err, HTTPS with and without ca_file; a slow call does not block
the worker; the waiting functions raise a clear error outside a request."""
import json
import shutil
import tempfile
import time
import unittest

from harness import project
from standins import (Reply, StandIn, StandInHostCase, dead_port, in_threads,
                      make_ca_and_server_cert, server_ssl_context)
from util import QuietHost as Host, error_lines, run_to_exit

# POST /webhooks/http/call with the options of sb.http.request as the JSON body answers
# {"ok": true, "status", "headers", "body", "json", "has_json", "took"} or {"ok": false, "err"}.
CALLER = """\
local sb = require "switchboard"
local c = { name = "http" }
c.routes = {
  ["POST /call"] = function(req)
    local opts = req.json
    local t0 = sb.now()
    local res, err = sb.http.request(opts)
    local took = sb.now() - t0
    if not res then
      return { json = { ok = false, err = err, err_type = type(err), took = took } }
    end
    return { json = { ok = true, status = res.status, headers = res.headers, body = res.body,
                      json = res.json, has_json = res.json ~= nil, took = took } }
  end,
}
return c
"""

# A Lua bot that fetches its answer from the stand-in with sb.http.request.
FETCH_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.init(config) bot.base = config.base end
function bot.handle(msg, out)
  local res, err = sb.http.request({ url = bot.base .. "/bot-get?text=" .. sb.urlencode(msg.text) })
  if not res then error(err) end
  out:send_text_message(res.body)
end
return bot
"""


def responder(rec):
    if rec.path == "/resp":
        return Reply(status=201, json={"k": [1, "two"]},
                     headers=[("X-Custom", "Val"), ("X-Twice", "a=1"), ("X-Twice", "b=2")])
    if rec.path == "/text":
        return Reply(body='{"a": 1}', content_type="text/plain")
    if rec.path == "/problem":
        return Reply(status=422, body='{"p": 1}', content_type="application/problem+json")
    if rec.path == "/slow":
        return Reply(body="late", delay=2.0)
    if rec.path == "/slow15":
        return Reply(body="slow answer", delay=1.5)
    if rec.path == "/bot-get":
        return Reply(body="fetched " + rec.query.get("text", ""))
    return Reply(json={"ok": True})


class RequestTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.api = cls.standin(responder)
        cls.host = Host(cwd=project({
            "credentials.yml": "http.lua:\nrest:\n", "http.lua": CALLER, "bot.lua": FETCH_BOT,
            "endpoints.yml": "server:\n  workers: 1\nbot:\n  script: bot.lua\n  base: %s\n"
                             % cls.api.url("")}))

    def call(self, **opts):
        status, _, body = self.host.post_json("/webhooks/http/call", opts)
        self.assertEqual(status, 200, body)
        return body

    def recorded(self, path):
        recs = [r for r in self.api.snapshot() if r.target == path]
        self.assertEqual(len(recs), 1, recs)
        return recs[0]

    def test_get_with_headers(self):
        got = self.call(url=self.api.url("/get?q=1"), headers={"X-Token": "abc"})
        self.assertTrue(got["ok"], got)
        self.assertEqual(got["status"], 200)
        rec = self.recorded("/get?q=1")
        self.assertEqual(rec.method, "GET")
        self.assertEqual(rec.headers.get("x-token"), "abc")
        self.assertEqual(rec.body, b"")

    def test_post_json(self):
        payload = {"a": 1, "list": [1, "x", {"n": None}], "s": "ü/\""}
        got = self.call(url=self.api.url("/json"), json=payload)
        self.assertTrue(got["ok"], got)
        rec = self.recorded("/json")
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.headers.get("content-type"), "application/json")
        self.assertEqual(json.loads(rec.body), payload)

    def test_post_form_with_sorted_keys(self):
        got = self.call(url=self.api.url("/form"), form={"b": "2 3", "a": "x&y=z", "c": "ü"})
        self.assertTrue(got["ok"], got)
        rec = self.recorded("/form")
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.headers.get("content-type"), "application/x-www-form-urlencoded")
        self.assertEqual(rec.body, b"a=x%26y%3Dz&b=2+3&c=%C3%BC")

    def test_raw_body(self):
        raw = "raw \u00e9 bytes\n{not json"
        got = self.call(url=self.api.url("/raw"), body=raw, headers={"Content-Type": "text/x-mine"})
        self.assertTrue(got["ok"], got)
        rec = self.recorded("/raw")
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.body, raw.encode())
        self.assertEqual(rec.headers.get("content-type"), "text/x-mine")

    def test_custom_methods(self):
        got = self.call(url=self.api.url("/put"), method="PUT", json={"x": 1})
        self.assertTrue(got["ok"], got)
        rec = self.recorded("/put")
        self.assertEqual((rec.method, json.loads(rec.body)), ("PUT", {"x": 1}))
        got = self.call(url=self.api.url("/delete"), method="DELETE")
        self.assertTrue(got["ok"], got)
        rec = self.recorded("/delete")
        self.assertEqual((rec.method, rec.body), ("DELETE", b""))

    def test_response_fields(self):
        got = self.call(url=self.api.url("/resp"))
        self.assertEqual(got["status"], 201)
        self.assertEqual(got["headers"].get("x-custom"), "Val")
        self.assertEqual(got["headers"].get("x-twice"), "a=1, b=2")
        self.assertEqual(got["headers"].get("content-type"), "application/json")
        self.assertTrue(all(k == k.lower() for k in got["headers"]), got["headers"])
        self.assertEqual(json.loads(got["body"]), {"k": [1, "two"]})
        self.assertEqual(got["json"], {"k": [1, "two"]})

    def test_json_is_decoded_only_for_json_content_types(self):
        got = self.call(url=self.api.url("/text"))
        self.assertEqual((got["status"], got["body"], got["has_json"]), (200, '{"a": 1}', False))
        got = self.call(url=self.api.url("/problem"))
        self.assertEqual((got["status"], got["json"]), (422, {"p": 1}))

    def test_failures_return_nil_and_an_error(self):
        got = self.call(url="http://127.0.0.1:%d/x" % dead_port())
        self.assertEqual((got["ok"], got["err_type"]), (False, "string"), got)
        got = self.call(url=self.api.url("/slow"), timeout=0.5)
        self.assertEqual((got["ok"], got["err_type"]), (False, "string"), got)
        self.assertIn("timed out", got["err"])
        self.assertGreater(got["took"], 0.4)
        self.assertLess(got["took"], 1.5)
        # header injection is refused before anything is sent
        got = self.call(url=self.api.url("/inject"), headers={"X-A": "a\r\nX-Injected: 1"})
        self.assertEqual((got["ok"], got["err_type"]), (False, "string"), got)
        self.assertEqual([r for r in self.api.snapshot() if r.path == "/inject"], [])
        for url in ("ftp://127.0.0.1/file", "file:///etc/passwd", "not a url"):
            got = self.call(url=url)
            self.assertEqual((got["ok"], got["err_type"]), (False, "string"), (url, got))

    def test_slow_call_does_not_block_the_worker(self):
        def slow():
            return self.call(url=self.api.url("/slow15"))

        def quick():
            time.sleep(0.3)
            t0 = time.monotonic()
            root = self.host.request("GET", "/")
            rest = self.host.post_json("/webhooks/rest/webhook", {"sender": "q", "message": "hi"})
            return root[0], rest[0], rest[2], time.monotonic() - t0
        slow_result, quick_result = in_threads([slow, quick])
        self.assertEqual(slow_result["body"], "slow answer")
        self.assertGreater(slow_result["took"], 1.3)
        root_status, rest_status, rest_body, took = quick_result
        self.assertEqual((root_status, rest_status), (200, 200))
        self.assertEqual(rest_body, [{"recipient_id": "q", "text": "fetched hi"}])
        self.assertLess(took, 0.8, "GET / and a webhook waited for the slow outbound call")


class HttpsTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("no openssl CLI")
        folder = tempfile.mkdtemp(prefix="sb-tls-")
        cls.ca, cert, key = make_ca_and_server_cert(folder)
        cls.api = StandIn(Reply(json={"secure": True}), ssl_context=server_ssl_context(cert, key))

    @classmethod
    def tearDownClass(cls):
        cls.api.close()

    def test_certificate_verification(self):
        with Host(cwd=project({"credentials.yml": "http.lua:\n", "http.lua": CALLER,
                               "endpoints.yml": "server:\n  workers: 1\n"})) as host:
            status, _, got = host.post_json("/webhooks/http/call", {"url": self.api.url("/s")})
            self.assertEqual(status, 200)
            self.assertFalse(got["ok"], got)
            self.assertRegex(got["err"].lower(), "certificate|ssl|verif")
            status, _, got = host.post_json("/webhooks/http/call",
                                            {"url": self.api.url("/s"), "ca_file": self.ca})
            self.assertTrue(got["ok"], got)
            self.assertEqual((got["status"], got["json"]), (200, {"secure": True}))


# Host functions that wait belong to a request: outside one (init, a script's own coroutine)
# they raise a clear error instead of touching a request that does not exist.
class OutsideRequestTests(unittest.TestCase):
    def assert_clear_startup_error(self, files, what, script):
        folder = project(dict(files, **{"endpoints.yml": files.get(
            "endpoints.yml", "server:\n  workers: 1\n")}))
        result = run_to_exit(["run", "-p", "0", "-i", "127.0.0.1"], cwd=folder, timeout=10)
        self.assertNotIn(result.returncode, (0, None), result.stderr)
        self.assertNotIn("Sanitizer", result.stderr)
        lines = error_lines(result.stderr)
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(what, lines[0])
        self.assertRegex(lines[0], r"%s:\d+" % script)

    def test_sleep_and_http_in_channel_init(self):
        for call, what in (("sb.sleep(0.01)", "sb.sleep"),
                           ('sb.http.request({ url = "http://127.0.0.1:9/" })', "sb.http.request")):
            channel = ('local sb = require "switchboard"\nlocal c = { name = "c" }\n'
                       'function c.init(config)\n  %s\nend\nreturn c\n' % call)
            with self.subTest(call=call):
                self.assert_clear_startup_error({"credentials.yml": "c.lua:\n", "c.lua": channel},
                                                what, "c.lua")

    def test_sleep_in_bot_init(self):
        bot = ('local sb = require "switchboard"\nlocal bot = {}\n'
               'function bot.init(config)\n  sb.sleep(0.01)\nend\n'
               'function bot.handle(msg, out) end\nreturn bot\n')
        self.assert_clear_startup_error(
            {"bot.lua": bot, "endpoints.yml": "server:\n  workers: 1\nbot:\n  script: bot.lua\n"},
            "sb.sleep", "bot.lua")


    def test_log_in_init_and_waits_in_a_scripts_own_coroutine(self):
        channel = """\
local sb = require "switchboard"
local c = { name = "c" }
function c.init(config) sb.log.info("INIT LOG LINE") end
c.routes = {
  ["GET /wrap"] = function(req)
    local ok1, err1 = pcall(coroutine.wrap(function() sb.sleep(0.01) end))
    local ok2, err2 = pcall(coroutine.wrap(function()
      return sb.http.request({ url = "http://127.0.0.1:9/" }) end))
    return { json = { ok1 = ok1, err1 = tostring(err1), ok2 = ok2, err2 = tostring(err2) } }
  end,
}
return c
"""
        with Host(cwd=project({"credentials.yml": "c.lua:\n", "c.lua": channel,
                               "endpoints.yml": "server:\n  workers: 1\n"})) as host:
            self.assertRegex(host.log(), r"INFO\s+INIT LOG LINE")
            status, _, got = host.request("GET", "/webhooks/c/wrap")
            self.assertEqual(status, 200)
            got = json.loads(got)
            self.assertEqual((got["ok1"], got["ok2"]), (False, False), got)
            self.assertIn("sb.sleep can only be called while handling a request", got["err1"])
            self.assertIn("sb.http.request can only be called", got["err2"])
            self.assertEqual(host.request("GET", "/")[0], 200)


if __name__ == "__main__":
    unittest.main()
