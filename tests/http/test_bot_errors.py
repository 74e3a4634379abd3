# SPDX-License-Identifier: MIT
"""A bot failure reaches the channel (docs/contract.md §5, docs/lua-api.md "on_bot_error"): when
the bot fails on a message, the channel's on_bot_error(msg, out, err) runs in the same sender's
turn with the bot's own `out`, so what it sends is collected, streamed or pushed as usual; `err`
says what failed: refused, timeout, bad_status (with the status), bad_json, script_error or
deadline. Without the hook nothing is sent; an error in the hook is logged and changes nothing."""
import json
import unittest

from harness import project
from standins import (Reply, StandInHostCase, dead_port, echo_rasa_bot, error_line,
                      post_timed)
from util import QuietHost as Host, post_stream

# A collecting channel that apologises with the kind, the status and the message it was given.
SORRY = """\
local c = { name = "sorry" }
function c.on_bot_error(msg, out, err)
  out:send_text_message(("sorry %s %s for %s"):format(err.kind, tostring(err.status), msg.text))
  out:send_custom_json({ kind = err.kind, status = err.status, message = err.message })
end
return c
"""

# A push channel: its senders POST to a stand-in platform (<api_url>/send), or, with
# `record: true`, keep what they got for GET /webhooks/pushsorry/sent (a sender that does not
# wait, for the deadline case: the message's time is up, so it cannot wait any more).
PUSH_SORRY = """\
local sb = require "switchboard"
local c = { name = "pushsorry" }
local sent = {}
function c.init(config) c.api = config.api_url; c.record = config.record end
function c.send_text_message(r, text)
  if c.record then sent[#sent + 1] = { recipient = r, text = text } return end
  local res, err = sb.http.request({ method = "POST", url = c.api .. "/send",
                                     json = { recipient = r, text = text }, timeout = 5 })
  if not res then error("platform unreachable: " .. tostring(err), 0) end
end
function c.on_bot_error(msg, out, err)
  out:send_text_message(("sorry %s %s"):format(err.kind, tostring(err.status)))
end
c.routes = { ["GET /sent"] = function() return { json = sent } end }
return c
"""

# A channel whose hook fails (after the bot failed).
BROKEN_HOOK = """\
local c = { name = "broken" }
function c.on_bot_error(msg, out, err) error("the apology itself failed") end
return c
"""

NO_HOOK = 'return { name = "nohook" }\n'

# A Lua bot that sends "before" and then fails as its text asks.
LUA_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  out:send_text_message("before")
  if msg.text == "raise" then error("the bot exploded") end
  if msg.text == "table" then error({ code = 7 }) end
  if msg.text == "slow" then sb.sleep(5) end
  out:send_text_message("fine")
end
return bot
"""


def credentials(*extra):
    return "sorry.lua:\nbroken.lua:\nnohook.lua:\n" + "".join(extra)


def files_for(endpoints, push_api=None, record=False):
    push = ""
    if push_api or record:
        push = "pushsorry.lua:\n"
        push += "  api_url: %s\n" % (push_api or "http://127.0.0.1:1")
        if record:
            push += "  record: true\n"
    return {"credentials.yml": credentials(push), "sorry.lua": SORRY, "broken.lua": BROKEN_HOOK,
            "nohook.lua": NO_HOOK, "pushsorry.lua": PUSH_SORRY, "bot.lua": LUA_BOT,
            "endpoints.yml": endpoints}


def http_endpoints(url, timeout):
    return "server:\n  workers: 1\nbot:\n  url: %s\n  timeout: %s\n" % (url, timeout)


LUA_ENDPOINTS = "server:\n  workers: 1\nbot:\n  script: bot.lua\n"


class Checks:
    """Assertions shared by the test classes (self.host runs the project)."""

    def collect(self, sender, text):
        status, headers, body = self.host.post_json("/webhooks/sorry/webhook",
                                                    {"sender": sender, "message": text})
        self.assertEqual(status, 200, body)
        return body, headers["x-request-id"]

    def assert_apology(self, body, kind, status, text, before=()):
        texts = [m["text"] for m in body if "text" in m]
        self.assertEqual(texts, list(before) + ["sorry %s %s for %s" % (kind, status, text)],
                         body)
        custom = [m["custom"] for m in body if "custom" in m]
        self.assertEqual(len(custom), 1, body)
        self.assertEqual(custom[0]["kind"], kind)
        self.assertEqual(custom[0].get("status"), None if status == "nil" else status)
        self.assertIsInstance(custom[0]["message"], str)
        self.assertNotIn("\n", custom[0]["message"])
        return custom[0]["message"]

    def stream(self, sender, text):
        resp, data, _ = post_stream(self.host, "/webhooks/sorry/webhook",
                                    {"sender": sender, "message": text})
        self.assertEqual(resp.status, 200, data)
        return [json.loads(line) for line in data.splitlines() if line.strip()]


class HttpBotFailures(StandInHostCase, Checks):
    """refused is its own class (a dead port); the rest through one stand-in bot."""

    @classmethod
    def start(cls):
        def respond(rec):
            text = (rec.json or {}).get("message")
            if text == "status503":
                return Reply(status=503, body="down\nfor maintenance")
            if text == "badjson":
                return Reply(body="[not json", content_type="application/json")
            if text == "object":
                return Reply(json={"text": "an object"})
            if text == "slow":
                return Reply(json=[{"text": "too late"}], delay=2.0)
            return echo_rasa_bot()(rec)
        cls.bot = cls.standin(respond)
        cls.platform = cls.standin(Reply(json={"ok": True}))
        cls.host = Host(cwd=project(files_for(http_endpoints(cls.bot.url("/bot"), 0.5),
                                              push_api=cls.platform.url())))

    def test_bad_status_collect(self):
        body, _ = self.collect("hs1", "status503")
        message = self.assert_apology(body, "bad_status", 503, "status503")
        self.assertIn("503", message)

    def test_bad_json_collect(self):
        body, _ = self.collect("hj1", "badjson")
        self.assert_apology(body, "bad_json", "nil", "badjson")
        body, _ = self.collect("hj2", "object")
        self.assert_apology(body, "bad_json", "nil", "object")

    def test_timeout_collect(self):
        body, _ = self.collect("ht1", "slow")
        self.assert_apology(body, "timeout", "nil", "slow")

    def test_stream(self):
        lines = self.stream("hst1", "status503")
        self.assertEqual(lines[0], {"recipient_id": "hst1", "text": "sorry bad_status 503 for status503"})
        self.assertEqual(lines[1]["custom"]["kind"], "bad_status")
        lines = self.stream("hst2", "badjson")
        self.assertEqual(lines[0]["text"], "sorry bad_json nil for badjson")

    def test_push(self):
        before = len(self.platform.snapshot())
        status, _, body = self.host.post_json("/webhooks/pushsorry/webhook",
                                              {"sender": "hp1", "message": "status503"})
        self.assertEqual((status, body), (200, "success"))
        recs = self.platform.wait_for(before + 1)
        self.assertEqual(recs[before].json, {"recipient": "hp1", "text": "sorry bad_status 503"})
        status, _, _ = self.host.post_json("/webhooks/pushsorry/webhook",
                                           {"sender": "hp2", "message": "slow"})
        recs = self.platform.wait_for(before + 2)
        self.assertEqual(recs[before + 1].json, {"recipient": "hp2", "text": "sorry timeout nil"})

    def test_success_does_not_call_the_hook(self):
        body, _ = self.collect("hok", "hello")
        self.assertEqual(body, [{"recipient_id": "hok", "text": "echo: hello"}])

    def test_without_the_hook_nothing_is_sent(self):
        status, headers, body = self.host.post_json("/webhooks/nohook/webhook",
                                                    {"sender": "hn", "message": "status503"})
        self.assertEqual((status, body), (200, []))
        error_line(self.host, headers["x-request-id"], "503")

    def test_an_error_in_the_hook_is_logged_and_changes_nothing(self):
        status, headers, body = self.host.post_json("/webhooks/broken/webhook",
                                                    {"sender": "hb", "message": "status503"})
        self.assertEqual((status, body), (200, []))
        error_line(self.host, headers["x-request-id"], "on_bot_error.*the apology itself failed")
        # still serving
        body, _ = self.collect("hb", "hello")
        self.assertEqual(body, [{"recipient_id": "hb", "text": "echo: hello"}])


class HttpBotRefused(StandInHostCase, Checks):
    @classmethod
    def start(cls):
        cls.platform = cls.standin(Reply(json={"ok": True}))
        cls.host = Host(cwd=project(files_for(
            http_endpoints("http://127.0.0.1:%d/bot" % dead_port(), 5),
            push_api=cls.platform.url())))

    def test_collect_stream_push(self):
        body, _ = self.collect("r1", "hi")
        self.assert_apology(body, "refused", "nil", "hi")
        lines = self.stream("r2", "hi")
        self.assertEqual(lines[0]["text"], "sorry refused nil for hi")
        self.host.post_json("/webhooks/pushsorry/webhook", {"sender": "r3", "message": "hi"})
        recs = self.platform.wait_for(1)
        self.assertEqual(recs[0].json, {"recipient": "r3", "text": "sorry refused nil"})


class HttpBotDeadline(StandInHostCase, Checks):
    """The bot's own timeout (10 s) is longer than the response timeout (1 s)."""

    @classmethod
    def start(cls):
        cls.bot = cls.standin(Reply(json=[{"text": "too late"}], delay=3.0))
        cls.host = Host(args=["--response-timeout", "1"],
                        cwd=project(files_for(http_endpoints(cls.bot.url("/bot"), 10),
                                              record=True)))

    def test_collect_stream_push(self):
        body, _ = self.collect("d1", "hi")
        message = self.assert_apology(body, "deadline", "nil", "hi")
        self.assertIn("response timeout", message)
        lines = self.stream("d2", "hi")
        self.assertEqual(lines[0]["text"], "sorry deadline nil for hi")
        status, _, body = self.host.post_json("/webhooks/pushsorry/webhook",
                                              {"sender": "d3", "message": "hi"})
        self.assertEqual(status, 200, body)
        status, _, body = self.host.request("GET", "/webhooks/pushsorry/sent")
        self.assertEqual(json.loads(body), [{"recipient": "d3", "text": "sorry deadline nil"}])


class LuaBotFailures(StandInHostCase, Checks):
    @classmethod
    def start(cls):
        cls.platform = cls.standin(Reply(json={"ok": True}))
        cls.host = Host(args=["--response-timeout", "1"],
                        cwd=project(files_for(LUA_ENDPOINTS, push_api=cls.platform.url())))

    def test_script_error_keeps_what_was_sent_before(self):
        body, rid = self.collect("l1", "raise")
        message = self.assert_apology(body, "script_error", "nil", "raise", before=["before"])
        self.assertIn("the bot exploded", message)
        error_line(self.host, rid, "the bot exploded")

    def test_a_table_error_is_a_script_error(self):
        body, _ = self.collect("l2", "table")
        self.assert_apology(body, "script_error", "nil", "table", before=["before"])

    def test_deadline(self):
        body, _ = self.collect("l3", "slow")
        self.assert_apology(body, "deadline", "nil", "slow", before=["before"])

    def test_stream(self):
        lines = self.stream("l4", "raise")
        self.assertEqual([m.get("text") for m in lines[:2]],
                         ["before", "sorry script_error nil for raise"])
        lines = self.stream("l5", "slow")
        self.assertEqual(lines[1]["text"], "sorry deadline nil for slow")

    def test_push(self):
        self.host.post_json("/webhooks/pushsorry/webhook", {"sender": "l6", "message": "raise"})
        recs = self.platform.wait_for(2)
        self.assertEqual([r.json for r in recs[:2]],
                         [{"recipient": "l6", "text": "before"},
                          {"recipient": "l6", "text": "sorry script_error nil"}])

    def test_the_hook_error_is_logged_and_the_answer_unchanged(self):
        status, headers, body = self.host.post_json("/webhooks/broken/webhook",
                                                    {"sender": "l7", "message": "raise"})
        self.assertEqual((status, body), (200, [{"recipient_id": "l7", "text": "before"}]))
        error_line(self.host, headers["x-request-id"], "on_bot_error.*the apology itself failed")

    def test_without_the_hook_nothing_more_is_sent(self):
        status, _, body = self.host.post_json("/webhooks/nohook/webhook",
                                              {"sender": "l8", "message": "raise"})
        self.assertEqual((status, body), (200, [{"recipient_id": "l8", "text": "before"}]))


if __name__ == "__main__":
    unittest.main()
