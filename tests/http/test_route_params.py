# SPDX-License-Identifier: MIT
"""Extra routes with {name} parameters and routes that hand messages to the bot (docs/contract.md
§3.6, docs/lua-api.md "Extra routes"): req.params, decoding, precedence, malformed declarations,
and messages returned by a route going through the bot exactly like a webhook's."""
import json
import unittest

from standins import Reply, StandIn
from util import (TEXT_BOT, assert_json_error, decode, error_lines, make_project, post_stream,
                  run_to_exit, serve)

# Answers with what it matched: the route's name and req.params.
PARAMS = """\
local sb = require "switchboard"
local c = { name = "bf" }
local function show(name)
  return function(req)
    return { json = { route = name, params = req.params, n = #sb.json.encode(req.params) } }
  end
end
c.routes = {
  ["POST /conversations/{id}/activities"] = show("activities"),
  ["GET /users/{id}"] = show("user"),
  ["GET /users/me"] = show("me"),
  ["PATCH /users/{id}"] = show("patch"),
  ["GET /a/{x}/c"] = show("a-x-c"),
  ["GET /{y}/b/c"] = show("y-b-c"),
  ["DELETE /v/{one}/{two}"] = show("two"),
  ["GET /plain"] = show("plain"),
  ["POST /{any}"] = show("any"),
}
return c
"""


class ParamTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.host = serve({"credentials.yml": "bf.lua:\n", "bf.lua": PARAMS}, bot=TEXT_BOT)

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()

    def matched(self, method, path):
        status, _, body = self.host.request(method, path, body=b"{}" if method == "POST" else None)
        self.assertEqual(status, 200, body)
        doc = decode(body)
        return doc["route"], doc["params"]

    def test_a_parameter_is_in_req_params(self):
        self.assertEqual(self.matched("POST", "/webhooks/bf/conversations/c-17/activities"),
                         ("activities", {"id": "c-17"}))

    def test_values_are_percent_decoded_and_a_slash_stays_in_its_segment(self):
        self.assertEqual(self.matched("POST", "/webhooks/bf/conversations/a%2Fb%20c+d%3A/activities/"),
                         ("activities", {"id": "a/b c+d:"}))
        self.assertEqual(self.matched("DELETE", "/webhooks/bf/v/x%41/%C3%A9"),
                         ("two", {"one": "xA", "two": "\u00e9"}))

    def test_a_parameter_matches_one_non_empty_segment(self):
        for path in ("/webhooks/bf/conversations//activities",
                     "/webhooks/bf/conversations/a/b/activities"):
            status, _, _ = self.host.request("POST", path, body=b"{}")
            self.assertEqual(status, 404, path)

    def test_literal_segments_win_over_parameters(self):
        self.assertEqual(self.matched("GET", "/webhooks/bf/users/me"), ("me", {}))
        self.assertEqual(self.matched("GET", "/webhooks/bf/users/m%65"), ("me", {}))
        self.assertEqual(self.matched("GET", "/webhooks/bf/users/42"), ("user", {"id": "42"}))
        # at the first segment where the two routes differ
        self.assertEqual(self.matched("GET", "/webhooks/bf/a/b/c"), ("a-x-c", {"x": "b"}))
        self.assertEqual(self.matched("GET", "/webhooks/bf/z/b/c"), ("y-b-c", {"y": "z"}))

    def test_the_built_in_webhook_wins_over_a_parameter(self):
        status, _, body = self.host.post_json("/webhooks/bf/webhook", {"sender": "u", "message": "hi"})
        self.assertEqual((status, body), (200, [{"recipient_id": "u", "text": "echo: hi"}]))
        self.assertEqual(self.matched("POST", "/webhooks/bf/other"), ("any", {"any": "other"}))

    def test_a_route_without_parameters_has_empty_params(self):
        status, _, body = self.host.request("GET", "/webhooks/bf/plain")
        self.assertEqual(status, 200)
        self.assertEqual(decode(body), {"route": "plain", "params": {}, "n": 2})

    def test_405_lists_the_methods_of_every_matching_route(self):
        answer = self.host.request("PUT", "/webhooks/bf/users/me")
        assert_json_error(self, answer, 405, "method_not_allowed")
        self.assertEqual(sorted(answer[1]["allow"].split(", ")), ["GET", "HEAD", "PATCH"])


def check_routes(routes):
    """`switchboard check` on a channel whose routes table is the Lua text `routes`."""
    channel = 'return { name = "bad", routes = { %s } }\n' % routes
    return run_to_exit(["check"], cwd=make_project({"credentials.yml": "bad.lua:\n",
                                                    "bad.lua": channel}))


class MalformedTests(unittest.TestCase):
    def test_a_malformed_parameter_stops_the_load(self):
        for key in ("POST /a/{}/b", "POST /a/{id", "POST /a/x{id}", "POST /{id}/x/{id}",
                    "GET /{1st}"):
            with self.subTest(key=key):
                result = check_routes('["%s"] = function() return {} end' % key)
                self.assertNotEqual(result.returncode, 0, result.stderr)
                lines = error_lines(result.stderr)
                self.assertEqual(len(lines), 1, result.stderr)
                self.assertIn("bad.lua", lines[0])
                self.assertIn("channel.routes", lines[0])
                self.assertIn(key, lines[0])

    def test_well_formed_parameters_load(self):
        result = check_routes('["POST /a/{id}/b/{other_2}"] = function() return {} end')
        self.assertEqual(result.returncode, 0, result.stderr)


# ---- routes that hand messages to the bot -----------------------------------------------------

# A collecting channel (no senders) whose routes return messages.
COLLECTING = """\
local sb = require "switchboard"
local c = { name = "bf" }
c.routes = {
  -- messages only: the answer is respond(collected), as for the webhook
  ["POST /conversations/{id}/activities"] = function(req)
    return { { sender_id = req.params.id, text = req.json.text, metadata = { via = "route" } } }
  end,
  -- messages and a response
  ["POST /conversations/{id}/queued"] = function(req)
    return { { sender_id = req.params.id, text = req.json.text } },
      { status = 202, json = { queued = req.params.id } }
  end,
  -- no message, as an empty JSON array
  ["POST /none"] = function(req) return sb.json.array() end,
  -- an empty table alone is still a response table (200, empty body)
  ["POST /empty"] = function(req) return {} end,
  -- a message the rules refuse
  ["POST /bad"] = function(req) return { { sender_id = "u", text = 5 } } end,
  -- a response table as it always was
  ["GET /status"] = function(req) return { json = { ok = true } } end,
}
function c.on_bot_error(msg, out, err)
  out:send_text_message("sorry: " .. err.kind)
end
return c
"""

# A bot that echoes, fails on "fail" and describes what it got on "describe".
BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  sb.log.info("BOT GOT %s", tostring(msg.text))
  if msg.text == "fail" then error("the bot broke") end
  if msg.text == "describe" then
    out:send_custom_json({ sender_id = msg.sender_id, input_channel = msg.input_channel,
      metadata = msg.metadata, has_message_id = type(msg.message_id) == "string",
      has_headers = type(msg.headers) == "table" })
    return
  end
  out:send_text_message("echo: " .. tostring(msg.text))
end
return bot
"""


class CollectingRouteTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.host = serve({"credentials.yml": "bf.lua:\n", "bf.lua": COLLECTING}, bot=BOT)

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()

    def test_messages_go_through_the_bot_and_the_replies_are_the_answer(self):
        status, _, body = self.host.post_json("/webhooks/bf/conversations/c%201/activities",
                                              {"text": "  hi  "})
        self.assertEqual((status, body), (200, [{"recipient_id": "c 1", "text": "echo: hi"}]))

    def test_the_message_is_a_normalized_user_message(self):
        status, _, body = self.host.post_json("/webhooks/bf/conversations/c2/activities",
                                              {"text": "describe"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, [{"recipient_id": "c2", "custom": {
            "sender_id": "c2", "input_channel": "bf", "metadata": {"via": "route"},
            "has_message_id": True, "has_headers": True}}])

    def test_a_response_after_the_messages_is_the_answer(self):
        status, _, body = self.host.post_json("/webhooks/bf/conversations/c3/queued",
                                              {"text": "later"})
        self.assertEqual((status, body), (202, {"queued": "c3"}))
        self.host.wait_for_log(r"BOT GOT later")

    def test_no_messages(self):
        status, _, body = self.host.request("POST", "/webhooks/bf/none", body=b"{}")
        self.assertEqual((status, decode(body)), (200, []))
        status, headers, body = self.host.request("POST", "/webhooks/bf/empty", body=b"{}")
        self.assertEqual((status, body), (200, b""))
        self.assertNotIn("content-type", headers)

    def test_a_message_the_rules_refuse_is_400(self):
        assert_json_error(self, self.host.request("POST", "/webhooks/bf/bad", body=b"{}"), 400,
                          "invalid_message")

    def test_on_bot_error_answers_for_a_failing_bot(self):
        status, _, body = self.host.post_json("/webhooks/bf/conversations/c4/activities",
                                              {"text": "fail"})
        self.assertEqual((status, body), (200, [{"recipient_id": "c4",
                                                 "text": "sorry: script_error"}]))

    def test_stream_mode_as_for_the_webhook(self):
        resp, text, _ = post_stream(self.host, "/webhooks/bf/conversations/c5/activities",
                                    {"text": "streamed"})
        self.assertEqual(resp.status, 200)
        self.assertEqual([json.loads(line) for line in text.splitlines()],
                         [{"recipient_id": "c5", "text": "echo: streamed"}])

    def test_a_plain_route_still_answers_itself(self):
        status, _, body = self.host.request("GET", "/webhooks/bf/status")
        self.assertEqual((status, decode(body)), (200, {"ok": True}))


# A push channel: its sender posts each reply to a stand-in; async, so the route's answer goes
# out before the bot runs.
PUSHING = """\
local sb = require "switchboard"
local c = { name = "pushy", async = true }
function c.init(config) c.url = config.url end
function c.send_text_message(recipient_id, text)
  local res, err = sb.http.request({ method = "POST", url = c.url,
    json = { to = recipient_id, text = text } })
  if not res then error(err) end
end
c.routes = {
  ["POST /conversations/{id}/activities"] = function(req)
    return { { sender_id = req.params.id, text = req.json.text } }
  end,
}
return c
"""


class PushRouteTests(unittest.TestCase):
    def test_a_push_channel_route_acks_and_the_replies_are_pushed(self):
        with StandIn(Reply()) as api, serve(
                {"credentials.yml": "pushy.lua:\n  url: %s\n" % api.url("/out"),
                 "pushy.lua": PUSHING}, bot=BOT) as host:
            status, _, body = host.request("POST", "/webhooks/pushy/conversations/p1/activities",
                                           body=json.dumps({"text": "hello"}))
            self.assertEqual((status, body), (200, b"success"))
            rec = api.wait_for(1)[0]
            self.assertEqual(rec.json, {"to": "p1", "text": "echo: hello"})


if __name__ == "__main__":
    unittest.main()
