# SPDX-License-Identifier: MIT
"""The host log (docs/operations.md#logs): --log-format json (one JSON object per line with time,
level, request_id, channel and message, whatever bytes a client sent), --access-log (one info
line per answer), multi-line messages such as a Lua traceback kept readable in the text format
(continuation lines indented, none mistakable for an event), the reload line naming the files
that changed, and no libmicrohttpd option warning at debug level."""
import json
import os
import re
import socket
import time
import unittest

from harness import project
from util import QuietHost as Host

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")

# A bot that fails with a Lua error three calls deep (a traceback of several lines); "log" makes
# it write a line with sb.log instead.
BOT = """\
local sb = require "switchboard"
local bot = {}
local function deepest(text) error("bot broke on " .. text) end
local function deeper(text) deepest(text) end
function bot.handle(msg, out)
  if msg.text:sub(1, 3) == "log" then
    sb.log.info("bot saw %s", msg.text)
    out:send_text_message("logged")
    return
  end
  deeper(msg.text)
end
return bot
"""

ENDPOINTS = "server:\n  workers: 1\nbot:\n  script: bot.lua\n"


def new_project():
    return project({"credentials.yml": "rest:\n", "bot.lua": BOT, "endpoints.yml": ENDPOINTS})


def raw_request(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


class JsonLogTests(unittest.TestCase):
    def test_every_line_is_a_json_object(self):
        with Host(args=["--log-format", "json", "--access-log", "--log-level", "debug"],
                  cwd=new_project()) as host:
            status, headers, _ = host.request("POST", "/webhooks/rest/webhook",
                                              {"sender": "u", "message": "log"})
            self.assertEqual(status, 200)
            ok_id = headers["x-request-id"]
            status, headers, _ = host.request("POST", "/webhooks/rest/webhook",
                                              {"sender": "u", "message": "boom"})
            fail_id = headers["x-request-id"]
            # Bytes that are not UTF-8, quotes and a backslash in the target of a 404.
            raw_request(host.port, b'GET /x\xff\xfe"q\\ HTTP/1.1\r\nHost: a\r\n'
                                   b'X-Request-Id: raw-1\r\nConnection: close\r\n\r\n')
            host.wait_for_log(r'"request_id":"raw-1"')
            host.wait_for_log(r"bot broke on boom")
        records = []
        for line in host.log().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                self.fail("not a JSON line: %r" % line)
            self.assertIsInstance(doc, dict, line)
            self.assertRegex(doc["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(doc["level"], ("debug", "info", "warning", "error"))
            self.assertIsInstance(doc["message"], str)
            records.append(doc)
        self.assertTrue(any("listening on" in r["message"] for r in records))
        # The bot's own log line carries the request id and the channel.
        said = [r for r in records if r["message"] == "bot saw log"]
        self.assertEqual(len(said), 1, records)
        self.assertEqual(said[0]["request_id"], ok_id)
        self.assertEqual(said[0]["channel"], "rest")
        # The access line of the webhook: info level, channel known.
        access = [r for r in records if r.get("request_id") == ok_id and "->" in r["message"]]
        self.assertEqual(len(access), 1, records)
        self.assertEqual(access[0]["level"], "info")
        self.assertEqual(access[0]["channel"], "rest")
        self.assertRegex(access[0]["message"], r"^POST /webhooks/rest/webhook -> 200 \(\d+\.\d ms\)$")
        # The failure: its traceback is one record whose message keeps its line breaks.
        failed = [r for r in records if r.get("request_id") == fail_id]
        self.assertTrue(any(r["level"] == "error" and "bot broke on boom" in r["message"]
                            for r in failed), failed)
        trace = [r for r in failed if "stack traceback" in r["message"]]
        self.assertTrue(trace and "\n" in trace[0]["message"], failed)
        # The raw request: no channel, its bytes escaped, non-UTF-8 as U+FFFD.
        raw = [r for r in records if r.get("request_id") == "raw-1" and "->" in r["message"]]
        self.assertEqual(len(raw), 1, records)
        self.assertNotIn("channel", raw[0])
        self.assertIn('"q\\', raw[0]["message"])
        self.assertIn("\ufffd", raw[0]["message"])


class AccessLogTests(unittest.TestCase):
    def test_access_lines_only_with_the_flag_at_info(self):
        with Host(cwd=new_project()) as plain:
            status, headers, _ = plain.request("GET", "/webhooks/rest/")
            self.assertEqual(status, 200)
            plain.request("GET", "/")
            plain.wait_for_log(r"listening on")
        self.assertNotIn(headers["x-request-id"], plain.log())
        with Host(args=["--access-log"], cwd=new_project()) as host:
            status, headers, _ = host.request("GET", "/webhooks/rest/?a=1")
            rid = headers["x-request-id"]
            status, headers, _ = host.request("GET", "/missing")
            missing = headers["x-request-id"]
            host.wait_for_log(re.escape(missing))
        log = host.log()
        self.assertRegex(log, r"INFO    \[%s\] GET /webhooks/rest/\?a=1 -> 200 \(\d+\.\d ms\)\n"
                         % rid)
        self.assertRegex(log, r"INFO    \[%s\] GET /missing -> 404 \(\d+\.\d ms\)\n" % missing)


class TextFormatTests(unittest.TestCase):
    def test_traceback_keeps_its_lines_indented(self):
        with Host(args=["--log-level", "debug"], cwd=new_project()) as host:
            status, headers, _ = host.request("POST", "/webhooks/rest/webhook",
                                              {"sender": "u", "message": "boom"})
            rid = headers["x-request-id"]
            host.wait_for_log(r"\[%s\] stack traceback:" % rid)
            host.wait_for_log(r"\n    .*bot\.lua:\d+: in ")
        log = host.log()
        lines = log.splitlines()
        for line in lines:
            # Every line is an event or a continuation: a client or a script cannot forge one.
            self.assertTrue(TIMESTAMP.match(line) or line.startswith("    "), line)
        self.assertNotIn("\\n", log)
        start = next(i for i, l in enumerate(lines) if "[%s] stack traceback:" % rid in l)
        following = lines[start + 1:start + 4]
        self.assertTrue(all(l.startswith("    ") for l in following), following)
        self.assertTrue(any(re.search(r"bot\.lua:3: in", l) for l in following), following)
        # No warning from libmicrohttpd about the order of its options.
        self.assertNotIn("is not the first option", log)
        self.assertNotIn("MHD_OPTION", log)

    def test_a_client_cannot_forge_a_log_line(self):
        # The bot logs the text a client sent, line breaks included.
        forged = "log\n2026-01-01T00:00:00.000Z ERROR   forged\r\n2026-01-01T00:00:01.000Z x"
        with Host(cwd=new_project()) as host:
            status, _, _ = host.request("POST", "/webhooks/rest/webhook",
                                        {"sender": "u", "message": forged})
            self.assertEqual(status, 200)
            host.wait_for_log(r"bot saw log\n    2026-01-01T00:00:00.000Z ERROR   forged")
        for line in host.log().splitlines():
            self.assertFalse(line.startswith("2026-01-01T"), line)


class ReloadLineTests(unittest.TestCase):
    def test_reload_line_names_the_changed_file(self):
        folder = new_project()
        bot = os.path.realpath(os.path.join(folder, "bot.lua"))
        named = []
        with Host(cwd=folder) as host:
            # A save in the moment between the startup line and the watch being set is reloaded
            # as "a change to a script while starting": then save again.
            for generation in (2, 3):
                with open(bot, "a") as f:
                    f.write("-- edited\n")
                m = host.wait_for_log(r"scripts reloaded \(generation %d\) after a change to "
                                      r"([^\n]*)" % generation, timeout=10)
                named.append(m.group(1))
                if m.group(1) == bot:
                    break
        self.assertEqual(named[-1], bot, named)


if __name__ == "__main__":
    unittest.main()
