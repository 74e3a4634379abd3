# SPDX-License-Identifier: MIT
"""Push channels (docs/contract.md §4 item 3, §4.1): a channel with its own senders delivers each
bot message through sb.http.request to a stand-in platform API, in order, with Rasa's fallbacks; ack
and async; a failing sender is logged and later messages are still sent."""
import time
import unittest

from harness import project
from standins import Reply, StandIn, StandInHostCase, error_line, lua_bot_endpoints, post_timed
from util import QuietHost as Host, final_log

PUSHLIB = """\
local sb = require "switchboard"
local M = {}

-- A push channel named `name` whose senders POST to <api_url>/<kind>.
function M.make(name, opts)
  opts = opts or {}
  local c = { name = name, async = opts.async, ack = opts.ack }
  function c.init(config) c.api = config.api_url end
  local function post(kind, r, fields)
    fields.recipient = r
    fields.channel = name
    local res, err = sb.http.request({ method = "POST", url = c.api .. "/" .. kind,
                                       json = fields, timeout = 5 })
    if not res then error("the API is unreachable: " .. tostring(err), 0) end
    if res.status >= 300 then error(("the API answered %d"):format(res.status), 0) end
  end
  if opts.whole then
    function c.send_response(r, message) post("whole", r, { message = message }) end
    return c
  end
  function c.send_text_message(r, text, extras)
    if text == "raise" then error("sender raised on purpose", 0) end
    post("text", r, { text = text, extras = extras })
  end
  function c.send_text_with_buttons(r, text, buttons) post("buttons", r, { text = text, buttons = buttons }) end
  function c.send_custom_json(r, value) post("custom", r, { value = value }) end
  return c
end
return M
"""

CHANNELS = {
    "pusher.lua": 'return require("pushlib").make("pusher")\n',
    "whole.lua": 'return require("pushlib").make("whole", { whole = true })\n',
    "acker.lua": ('return require("pushlib").make("acker", { ack = function(req)\n'
                  '  return { status = 202, json = { ok = true, path = req.path } } end })\n'),
    "asyncer.lua": 'return require("pushlib").make("asyncer", { async = true })\n',
}

BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local t = msg.text
  if t == "all" then
    out:send_text_message("one")
    out:send_text_with_buttons("Pick", { { title = "Yes", payload = "/y" } })
    out:send_custom_json({ k = 1 })
    out:send_image_url("https://x/y.jpg")
    out:send_attachment("file.pdf")
    out:send_quick_replies("Q", { { title = "R", payload = "/r" } })
    out:send_elements({ { title = "T", subtitle = "S", buttons = { { title = "B", payload = "/b" } } } })
    out:send_response({ text = "T2", image = "https://x/z.png" })
    out:send_text_message("last")
  elseif t == "errors" then
    for _, x in ipairs({ "a", "raise", "b", "fail500", "c" }) do out:send_text_message(x) end
  elseif t == "whole" then
    out:send_response({ text = "T", buttons = { { title = "Yes", payload = "/y" } },
                        image = "https://x/y.jpg", custom = { k = 1 } })
    out:send_response({ text = "two" })
  elseif t == "slow" then
    sb.sleep(0.3)
    for i = 1, 3 do out:send_text_message("slow" .. i) end
  elseif t == "slowfail" then
    sb.sleep(0.4)
    out:send_text_message("raise")
    out:send_text_message("slow-after")
    error("the bot exploded after the answer")
  else
    out:send_text_message("echo: " .. tostring(t))
  end
end
return bot
"""


def api_responder(rec):
    body = rec.json or {}
    text = body.get("text") or ""
    if text == "fail500":
        return Reply(status=500, json={"error": "down"})
    if text.startswith("slow"):
        return Reply(json={"ok": True}, delay=0.3)
    return Reply(json={"ok": True})


class PushTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.api = cls.standin(api_responder)
        credentials = "".join("%s:\n  api_url: %s\n" % (key, cls.api.url("/" + key[:-4]))
                              for key in CHANNELS)
        files = dict(CHANNELS, **{"credentials.yml": credentials, "pushlib.lua": PUSHLIB,
                                  "bot.lua": BOT, "endpoints.yml": lua_bot_endpoints()})
        cls.host = Host(cwd=project(files))

    def calls_for(self, sender, n, timeout=5.0):
        """The API calls for `sender`, waiting until there are n."""
        deadline = time.monotonic() + timeout
        while True:
            recs = [r for r in self.api.snapshot()
                    if (r.json or {}).get("recipient") == sender and r.end is not None]
            if len(recs) >= n or time.monotonic() > deadline:
                return recs
            time.sleep(0.02)

    def send(self, channel, sender, text):
        return post_timed(self.host, "/webhooks/%s/webhook" % channel,
                          {"sender": sender, "message": text})

    def test_every_message_in_order_with_fallbacks_and_default_ack(self):
        status, headers, body, _ = self.send("pusher", "p-all", "all")
        answered = time.monotonic()
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
        self.assertEqual(body, "success")
        recs = self.calls_for("p-all", 10)
        got = [(r.path, {k: v for k, v in r.json.items()
                         if k not in ("recipient", "channel", "extras")}) for r in recs]
        self.assertEqual(got, [
            ("/pusher/text", {"text": "one"}),
            ("/pusher/buttons", {"text": "Pick", "buttons": [{"title": "Yes", "payload": "/y"}]}),
            ("/pusher/custom", {"value": {"k": 1}}),
            ("/pusher/text", {"text": "Image: https://x/y.jpg"}),
            ("/pusher/text", {"text": "Attachment: file.pdf"}),
            ("/pusher/buttons", {"text": "Q", "buttons": [{"title": "R", "payload": "/r"}]}),
            ("/pusher/buttons", {"text": "T : S", "buttons": [{"title": "B", "payload": "/b"}]}),
            ("/pusher/text", {"text": "T2"}),
            ("/pusher/text", {"text": "Image: https://x/z.png"}),
            ("/pusher/text", {"text": "last"}),
        ])
        t2 = recs[7].json
        self.assertEqual(t2.get("extras"), {"image": "https://x/z.png"}, t2)
        self.assertTrue(all(r.json["channel"] == "pusher" for r in recs))
        # without async the answer comes after the last delivery
        self.assertTrue(all(r.replied < answered for r in recs))
        self.assertEqual(recs[-1].headers.get("content-type"), "application/json")

    def test_send_response_gets_whole_messages(self):
        status, _, body, _ = self.send("whole", "p-whole", "whole")
        self.assertEqual((status, body), (200, "success"))
        recs = self.calls_for("p-whole", 2)
        self.assertEqual([r.path for r in recs], ["/whole/whole", "/whole/whole"])
        self.assertEqual(recs[0].json["message"], {"text": "T", "buttons": [{"title": "Yes",
                                                   "payload": "/y"}], "image": "https://x/y.jpg",
                                                   "custom": {"k": 1}})
        self.assertEqual(recs[1].json["message"], {"text": "two"})

    def test_channel_ack_overrides_the_answer(self):
        status, headers, body, _ = self.send("acker", "p-ack", "hello")
        self.assertEqual(status, 202)
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(body, {"ok": True, "path": "/webhooks/acker/webhook"})
        self.assertEqual([r.json["text"] for r in self.calls_for("p-ack", 1)], ["echo: hello"])

    def test_a_failing_sender_is_logged_and_later_messages_are_sent(self):
        status, headers, body, _ = self.send("pusher", "p-err", "errors")
        self.assertEqual((status, body), (200, "success"))
        recs = self.calls_for("p-err", 4)
        self.assertEqual([r.json["text"] for r in recs], ["a", "b", "fail500", "c"])
        rid = headers["x-request-id"]
        error_line(self.host, rid, "sender raised on purpose")
        error_line(self.host, rid, "500")

    def test_async_answers_before_the_api_hears_anything(self):
        t0 = time.monotonic()
        status, headers, body, took = self.send("asyncer", "p-async", "slow")
        answered = t0 + took
        self.assertEqual((status, body), (200, "success"))
        self.assertLess(took, 0.5, "async: the answer does not wait for the bot (0.3 s) "
                                   "and the API (3 x 0.3 s)")
        recs = self.calls_for("p-async", 3)
        self.assertEqual([r.json["text"] for r in recs], ["slow1", "slow2", "slow3"])
        self.assertGreater(recs[0].start, answered)
        for a, b in zip(recs, recs[1:]):
            self.assertGreaterEqual(b.start, a.replied, "deliveries overlap")


class AsyncErrorTests(unittest.TestCase):
    """On a host of its own: under AddressSanitizer the bug below kills the host."""

    def send(self, host, channel, sender, text):
        return post_timed(host, "/webhooks/%s/webhook" % channel,
                          {"sender": sender, "message": text})

    def calls_for(self, api, sender, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            recs = [r for r in api.snapshot()
                    if (r.json or {}).get("recipient") == sender and r.end is not None]
            if len(recs) >= n or time.monotonic() > deadline:
                return recs
            time.sleep(0.02)

    def test_async_errors_after_the_answer_are_logged(self):
        api = StandIn(api_responder)
        self.addCleanup(api.close)
        credentials = "asyncer.lua:\n  api_url: %s\npusher.lua:\n  api_url: %s\n" % (
            api.url("/asyncer"), api.url("/pusher"))
        files = dict(CHANNELS, **{"credentials.yml": credentials, "pushlib.lua": PUSHLIB,
                                  "bot.lua": BOT, "endpoints.yml": lua_bot_endpoints()})
        host = Host(cwd=project(files))
        try:
            self.run_async_errors(api, host)
        finally:
            log = final_log(host)  # exit code 0 expected
        self.assertNotIn("AddressSanitizer", log)

    def run_async_errors(self, api, host):
        status, headers, body, took = self.send(host, "asyncer", "p-async-err", "slowfail")
        self.assertEqual((status, body), (200, "success"))
        self.assertLess(took, 0.5)
        rid = headers["x-request-id"]
        # more requests while the bot sleeps (the answered request's memory may be reused)
        for i in range(3):
            self.assertEqual(self.send(host, "pusher", "p-async-other", "x%d" % i)[:3:2],
                             (200, "success"))
        recs = self.calls_for(api, "p-async-err", 1)
        self.assertEqual([r.json["text"] for r in recs], ["slow-after"])
        error_line(host, rid, "sender raised on purpose")
        error_line(host, rid, "the bot exploded after the answer")
        # the host keeps serving
        status, _, body, _ = self.send(host, "asyncer", "p-async-err", "next")
        self.assertEqual((status, body), (200, "success"))
        self.assertEqual([r.json["text"] for r in self.calls_for(api, "p-async-err", 2)],
                         ["slow-after", "echo: next"])


if __name__ == "__main__":
    unittest.main()
