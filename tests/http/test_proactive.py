# SPDX-License-Identifier: MIT
"""Proactive messages (docs/contract.md §2, docs/operations.md "Proactive messages"):
POST /conversations/<sender_id>/messages?channel=<key or name> with the push token and a JSON
array of bot messages, answered 202, then sent through the channel's senders in the sender's turn.

Each bundled push channel (Slack, Telegram, Facebook Messenger, Twilio) talks to a stand-in of its
platform API (api_url), which records the exact calls; the ordering tests use the callback channel,
whose every bot message is one POST to a stand-in."""
import hashlib
import hmac
import json
import threading
import time
import unittest
import urllib.parse

from channel_fixtures import credentials_yml, serve_bot, wait_requests
from standins import Reply, StandIn, StandInHostCase, error_line
from util import TEXT_BOT, assert_json_error, serve

TOKEN = "push-secret-9f3c2a71"
PUSH = {"push_token": '"%s"' % TOKEN}
AUTH = {"Authorization": "Bearer " + TOKEN}

# Replies the channel tests do not need: the bot answers nothing (proactive messages need no bot).
QUIET_BOT = """\
local bot = {}
function bot.handle(msg, out) end
return bot
"""


def path(sender, channel=None):
    query = "" if channel is None else "?channel=" + urllib.parse.quote(channel, safe="")
    return "/conversations/%s/messages%s" % (urllib.parse.quote(sender, safe=""), query)


def push(host, sender, messages, channel=None, headers=AUTH, body=None):
    """POST the messages (or the raw `body`) as JSON: (status, headers, body bytes)."""
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    data = body if body is not None else json.dumps(messages).encode()
    return host.request("POST", path(sender, channel), body=data, headers=hdrs)


def accepted(test, answer, sender, channel, count):
    """The 202 of an accepted post; returns its request id."""
    status, headers, body = answer
    test.assertEqual(status, 202, body)
    test.assertTrue(headers["content-type"].startswith("application/json"), headers)
    doc = json.loads(body)
    test.assertEqual(doc, {"request_id": headers["x-request-id"], "channel": channel,
                           "sender_id": sender, "messages": count})
    return doc["request_id"]


# ---- the bundled push channels -------------------------------------------------------------------

SLACK_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"


def slack_api(rec):
    body = rec.json or {}
    if body.get("channel") == "C0FAIL":
        return Reply(json={"ok": False, "error": "channel_not_found"})
    return Reply(json={"ok": True, "channel": body.get("channel"), "ts": "1700009999.000100"})


class SlackTests(StandInHostCase):
    """Slack with conversation_granularity thread and use_threads: a proactive message has no
    UserMessage metadata, so the channel reads the channel and thread from the sender id."""

    @classmethod
    def start(cls):
        cls.api = cls.standin(slack_api)
        cls.host = serve_bot(credentials_yml(
            "slack", 'slack_token: "%s"' % SLACK_TOKEN, 'slack_signing_secret: "s3cret"',
            "api_url: %s" % cls.api.url("/api"), "conversation_granularity: thread",
            "use_threads: true"), QUIET_BOT, **PUSH)

    def calls_to(self, channel, n):
        return wait_requests(self.api, lambda: [r for r in self.api.snapshot()
                                                if (r.json or {}).get("channel") == channel],
                             "chat.postMessage to %s" % channel, n)

    def test_each_kind_of_message_is_one_chat_post_message(self):
        messages = [
            {"text": "Reminder: your order ships today"},
            {"text": "Pick one", "buttons": [{"title": "Yes", "payload": "/affirm"},
                                             {"title": "No", "payload": "/deny"}]},
            {"image": "https://example.com/cat.png"},
            {"custom": {"text": "custom", "blocks": [{"type": "divider"}]}},
        ]
        accepted(self, push(self.host, "U0AAA_C0KIND_1700000000.000100", messages, "slack"),
                 "U0AAA_C0KIND_1700000000.000100", "slack", 4)
        recs = self.calls_to("C0KIND", 4)
        for rec in recs:
            self.assertEqual(rec.method, "POST")
            self.assertEqual(rec.path, "/api/chat.postMessage")
            self.assertEqual(rec.headers.get("authorization"), "Bearer " + SLACK_TOKEN)
        thread = {"channel": "C0KIND", "thread_ts": "1700000000.000100"}
        self.assertEqual([r.json for r in recs], [
            dict(thread, text="Reminder: your order ships today"),
            dict(thread, text="Pick one", blocks=[
                {"type": "section", "text": {"type": "plain_text", "text": "Pick one"}},
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Yes"},
                     "value": "/affirm"},
                    {"type": "button", "text": {"type": "plain_text", "text": "No"},
                     "value": "/deny"}]}]),
            dict(thread, text="https://example.com/cat.png", blocks=[
                {"type": "image", "image_url": "https://example.com/cat.png",
                 "alt_text": "https://example.com/cat.png"}]),
            dict(thread, text="custom", blocks=[{"type": "divider"}]),
        ])

    def test_a_user_id_alone_is_a_direct_message(self):
        accepted(self, push(self.host, "U0DIRECT", [{"text": "just you"}], "slack"),
                 "U0DIRECT", "slack", 1)
        self.assertEqual(self.calls_to("U0DIRECT", 1)[0].json,
                         {"channel": "U0DIRECT", "text": "just you"})

    def test_a_failed_send_is_logged_with_the_request_id_and_the_next_one_goes(self):
        request_id = accepted(self, push(self.host, "U0F", [
            {"custom": {"channel": "C0FAIL", "text": "refused"}}, {"text": "after the failure"}],
            "slack"), "U0F", "slack", 2)
        self.assertEqual(self.calls_to("U0F", 1)[0].json,
                         {"channel": "U0F", "text": "after the failure"})
        self.assertEqual(len(self.calls_to("C0FAIL", 1)), 1)
        error_line(self.host, request_id, r"proactive message 1 of 2 to U0F failed: .*"
                                          r"channel_not_found")


TELEGRAM_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"


def telegram_api(rec):
    body = rec.json or {}
    return Reply(json={"ok": True, "result": {"message_id": 2000, "date": 1700000000,
                                              "chat": {"id": body.get("chat_id")}}})


class TelegramTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.api = cls.standin(telegram_api)
        cls.host = serve_bot(credentials_yml("telegram", 'access_token: "%s"' % TELEGRAM_TOKEN,
                                             "api_url: %s" % cls.api.url("/tg")),
                             QUIET_BOT, **PUSH)

    def test_text_buttons_and_image(self):
        accepted(self, push(self.host, "123456789", [
            {"text": "Your reminder"},
            {"text": "Inline?", "buttons": [{"title": "Yes", "payload": "/affirm"},
                                            {"title": "No", "payload": "/deny"}]},
            {"image": "https://example.com/cat.png"}], "telegram"), "123456789", "telegram", 3)
        recs = wait_requests(self.api, self.api.snapshot, "Bot API", 3)
        self.assertEqual([(r.method, r.path) for r in recs], [
            ("POST", "/tg/bot%s/sendMessage" % TELEGRAM_TOKEN),
            ("POST", "/tg/bot%s/sendMessage" % TELEGRAM_TOKEN),
            ("POST", "/tg/bot%s/sendPhoto" % TELEGRAM_TOKEN)])
        self.assertEqual([r.json for r in recs], [
            {"chat_id": 123456789, "text": "Your reminder"},
            {"chat_id": 123456789, "text": "Inline?", "reply_markup": {
                "inline_keyboard": [[{"text": "Yes", "callback_data": "/affirm"},
                                     {"text": "No", "callback_data": "/deny"}]]}},
            {"chat_id": 123456789, "photo": "https://example.com/cat.png"}])


PAGE_TOKEN = "EAAGpagetoken"


class FacebookTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.api = cls.standin(Reply(json={"recipient_id": "x", "message_id": "m_sent"}))
        cls.host = serve_bot(credentials_yml("facebook", 'verify: "v"', 'secret: "s"',
                                             'page-access-token: "%s"' % PAGE_TOKEN,
                                             "api_url: %s" % cls.api.url("/v19.0")),
                             QUIET_BOT, **PUSH)

    def test_text_and_image_through_the_send_api(self):
        accepted(self, push(self.host, "6284105748312", [
            {"text": "Your order shipped"}, {"image": "https://example.com/box.png"}],
            "facebook"), "6284105748312", "facebook", 2)
        recs = wait_requests(self.api, self.api.snapshot, "Send API", 2)
        for rec in recs:
            self.assertEqual((rec.method, rec.path), ("POST", "/v19.0/me/messages"))
            # appsecret_proof: hex HMAC-SHA256 of the page token keyed with the app secret.
            self.assertEqual(rec.query, {"access_token": PAGE_TOKEN, "appsecret_proof": hmac.new(
                b"s", PAGE_TOKEN.encode(), hashlib.sha256).hexdigest()})
        self.assertEqual([r.json for r in recs], [
            {"recipient": {"id": "6284105748312"}, "messaging_type": "RESPONSE",
             "message": {"text": "Your order shipped"}},
            {"recipient": {"id": "6284105748312"}, "messaging_type": "RESPONSE",
             "message": {"attachment": {"type": "image",
                                        "payload": {"url": "https://example.com/box.png"}}}}])
        # No typing indicators: before_message and after_message belong to inbound messages.
        self.assertEqual(len(self.api.snapshot()), 2)


ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "twilio-auth-token-5f2e9a"
NUMBER = "+15005550006"


class TwilioTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.api = cls.standin(Reply(status=201, json={"sid": "SM0000", "status": "queued"}))
        cls.host = serve_bot(credentials_yml("twilio", 'account_sid: "%s"' % ACCOUNT_SID,
                                             'auth_token: "%s"' % AUTH_TOKEN,
                                             'twilio_number: "%s"' % NUMBER,
                                             "api_url: %s" % cls.api.url()), QUIET_BOT, **PUSH)

    def test_sms_and_whatsapp_senders(self):
        # The WhatsApp sender as a client writes it in a path: ':' and '+' percent-encoded.
        accepted(self, push(self.host, "whatsapp:+14155550123", [
            {"text": "Reminder\n\nTomorrow at 10"}, {"image": "https://example.com/map.png"}],
            "twilio"), "whatsapp:+14155550123", "twilio", 2)
        recs = wait_requests(self.api, self.api.snapshot, "Messages API", 3)
        for rec in recs:
            self.assertEqual((rec.method, rec.path),
                             ("POST", "/2010-04-01/Accounts/%s/Messages.json" % ACCOUNT_SID))
        forms = [urllib.parse.parse_qs(r.body.decode()) for r in recs]
        self.assertEqual(forms, [
            {"From": ["whatsapp:" + NUMBER], "To": ["whatsapp:+14155550123"], "Body": ["Reminder"]},
            {"From": ["whatsapp:" + NUMBER], "To": ["whatsapp:+14155550123"],
             "Body": ["Tomorrow at 10"]},
            {"From": ["whatsapp:" + NUMBER], "To": ["whatsapp:+14155550123"],
             "MediaUrl": ["https://example.com/map.png"]}])


# ---- the answers ---------------------------------------------------------------------------------

class AnswerTests(StandInHostCase):
    """401, 400, 404, 405, 409, 413, 415, with rest (no senders) and callback (senders)."""

    @classmethod
    def start(cls):
        cls.api = cls.standin(Reply())
        cls.host = serve({"credentials.yml": "rest:\ncallback:\n  url: %s\n"
                          % cls.api.url("/cb")}, bot=TEXT_BOT, max_body_size=2000, **PUSH)

    def test_no_token_is_401_with_a_challenge(self):
        answer = push(self.host, "u1", [{"text": "x"}], "callback", headers={})
        doc = assert_json_error(self, answer, 401, "unauthorized")
        self.assertEqual(answer[1].get("www-authenticate"), "Bearer")
        self.assertIn("server.push_token", doc["message"])

    def test_a_wrong_token_is_401(self):
        for auth in ("Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x", "Basic " + TOKEN, TOKEN):
            answer = push(self.host, "u1", [{"text": "x"}], "callback",
                          headers={"Authorization": auth})
            assert_json_error(self, answer, 401, "unauthorized")
            self.assertEqual(answer[1].get("www-authenticate"), "Bearer")

    def test_the_admin_token_is_not_the_push_token(self):
        # Only server.push_token opens the route (no admin_token is set here either).
        answer = push(self.host, "u1", [{"text": "x"}], "callback",
                      headers={"Authorization": "Bearer "})
        assert_json_error(self, answer, 401, "unauthorized")

    def test_an_unknown_channel_is_404_with_the_list(self):
        doc = assert_json_error(self, push(self.host, "u1", [{"text": "x"}], "nosuch"), 404,
                                "unknown_channel")
        self.assertEqual(doc["message"], "no channel 'nosuch'; the channels are: rest, callback")

    def test_no_channel_is_400_with_the_list(self):
        doc = assert_json_error(self, push(self.host, "u1", [{"text": "x"}]), 400,
                                "missing_channel")
        self.assertIn("?channel=<key or name>", doc["message"])
        self.assertIn("rest, callback", doc["message"])

    def test_a_channel_without_senders_is_409(self):
        doc = assert_json_error(self, push(self.host, "u1", [{"text": "x"}], "rest"), 409,
                                "cannot_push")
        self.assertIn("'rest' has no senders", doc["message"])

    def test_bodies_that_are_not_an_array_of_messages_are_400(self):
        cases = [
            (b"", "invalid_json", "the request body is empty; expected JSON"),
            (b"[{", "invalid_json", None),
            (b'{"text": "hi"}', "invalid_body", "the body must be a JSON array of bot messages "
             '(such as [{"text": "hi"}]), not an object'),
            (b'"hi"', "invalid_body", None),
            (b"[1]", "invalid_body", "message 1 must be an object, not a number"),
            (b'[{"text": "a"}, [{"text": "b"}]]', "invalid_body",
             "message 2 must be an object, not an array"),
            (b'[{"text": "a"}, null]', "invalid_body", "message 2 must be an object, not null"),
            (b'[{"recipient_id": "u1"}]', "invalid_body", "message 1 has none of the keys of a "
             "bot message: text, buttons, quick_replies, image, attachment, elements, custom"),
            (b'[{"text": 5}]', "invalid_body", "message 1: text must be a string, not a number"),
        ]
        for body, code, message in cases:
            with self.subTest(body=body):
                doc = assert_json_error(self, push(self.host, "u1", None, "callback", body=body),
                                        400, code)
                if message:
                    self.assertEqual(doc["message"], message)
        self.assertEqual(self.api.snapshot(), [])  # nothing of a refused body was sent

    def test_an_empty_array_is_accepted(self):
        accepted(self, push(self.host, "u1", [], "callback"), "u1", "callback", 0)

    def test_other_content_types_are_415_and_large_bodies_413(self):
        answer = push(self.host, "u1", None, "callback", body=b'[{"text":"x"}]',
                      headers=dict(AUTH, **{"Content-Type": "text/plain"}))
        assert_json_error(self, answer, 415, "unsupported_media_type")
        accepted(self, push(self.host, "u9", None, "callback", body=b'[{"text":"x"}]',
                            headers=dict(AUTH, **{"Content-Type":
                                                  "application/vnd.api+json; charset=utf-8"})),
                 "u9", "callback", 1)
        big = json.dumps([{"text": "x" * 3000}]).encode()
        assert_json_error(self, push(self.host, "u1", None, "callback", body=big), 413,
                          "payload_too_large")

    def test_other_methods_are_405(self):
        answer = self.host.request("GET", path("u1", "callback"), headers=AUTH)
        assert_json_error(self, answer, 405, "method_not_allowed")
        self.assertEqual(answer[1].get("allow"), "POST")

    def test_the_channel_by_key_or_name_and_the_answer(self):
        accepted(self, push(self.host, "u 2/x", [{"text": "by name"}], "callback"),
                 "u 2/x", "callback", 1)
        rec = wait_requests(self.api, lambda: [r for r in self.api.snapshot()
                                               if (r.json or {}).get("text") == "by name"],
                            "callback POST", 1)[0]
        self.assertEqual(rec.json, {"recipient_id": "u 2/x", "text": "by name"})

    def test_the_token_is_in_no_log_line_and_not_on_the_status_page(self):
        push(self.host, "u1", [{"text": "x"}], "callback", headers={"Authorization": "Bearer no"})
        accepted(self, push(self.host, "u3", [{"text": "logged?"}], "callback"), "u3",
                 "callback", 1)
        status, _, body = self.host.request("GET", "/status")
        self.assertEqual(status, 200)
        self.assertNotIn(TOKEN, body.decode())
        self.assertNotIn(TOKEN, self.host.log())


class WithoutTokenTests(unittest.TestCase):
    def test_the_route_does_not_exist_without_push_token(self):
        with serve({"credentials.yml": "callback:\n  url: http://127.0.0.1:9/cb\n"}) as host:
            for method in ("POST", "GET"):
                answer = host.request(method, path("u1", "callback"), headers=AUTH,
                                      body=b'[{"text": "x"}]' if method == "POST" else None)
                doc = assert_json_error(self, answer, 404, "not_found")
                self.assertIn("no route for %s /conversations/u1/messages" % method,
                              doc["message"])


# ---- order ---------------------------------------------------------------------------------------

# The bot takes its time on "slow" (so a test can post while the message is in the bot).
SLOW_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  sb.log.info("BOT GOT %s", tostring(msg.text))
  if msg.text == "slow" then
    sb.sleep(0.8)
  end
  out:send_text_message(msg.text .. " done")
end
return bot
"""


class OrderTests(unittest.TestCase):
    def start(self, responder, workers=2):
        api = StandIn(responder)
        self.addCleanup(api.close)
        host = serve({"credentials.yml": "callback:\n  url: %s\n" % api.url("/cb")},
                     bot=SLOW_BOT, workers=workers, **PUSH)
        self.addCleanup(host.stop)
        return api, host

    def test_two_posts_for_one_sender_arrive_in_order(self):
        # The platform takes 0.5 s for the first message: the second post must still wait.
        api, host = self.start(lambda rec: Reply(delay=0.5 if rec.json["text"] == "a1" else 0))
        accepted(self, push(host, "u1", [{"text": "a1"}, {"text": "a2"}], "callback"), "u1",
                 "callback", 2)
        wait_requests(api, api.snapshot, "callback", 1)  # a1 is being sent
        accepted(self, push(host, "u1", [{"text": "b1"}], "callback"), "u1", "callback", 1)
        accepted(self, push(host, "u2", [{"text": "other sender"}], "callback"), "u2",
                 "callback", 1)
        recs = wait_requests(api, api.snapshot, "callback", 4)
        texts = [r.json["text"] for r in recs]
        # u2 has a turn of its own: it does not wait for u1's slow platform call.
        self.assertEqual(texts, ["a1", "other sender", "a2", "b1"])
        a1, a2 = recs[0], recs[2]
        self.assertGreaterEqual(a2.start, a1.replied)

    def test_a_post_waits_for_the_turn_of_the_inbound_message_being_processed(self):
        api, host = self.start(Reply())
        inbound = {}

        def webhook():
            inbound["answer"] = host.post_json("/webhooks/callback/webhook",
                                               {"sender": "u1", "message": "slow"})
        thread = threading.Thread(target=webhook)
        thread.start()
        host.wait_for_log(r"BOT GOT slow")  # the inbound message is in the bot now
        t0 = time.monotonic()
        accepted(self, push(host, "u1", [{"text": "proactive"}], "callback"), "u1", "callback",
                 1)
        self.assertLess(time.monotonic() - t0, 0.6)  # the 202 does not wait for the turn
        recs = wait_requests(api, api.snapshot, "callback", 2)
        thread.join(10)
        self.assertEqual(inbound["answer"][0], 200)
        self.assertEqual([r.json["text"] for r in recs], ["slow done", "proactive"])

    def test_an_inbound_message_waits_for_a_post_being_sent(self):
        api, host = self.start(lambda rec: Reply(delay=0.6 if rec.json["text"] == "p1" else 0))
        accepted(self, push(host, "u1", [{"text": "p1"}, {"text": "p2"}], "callback"), "u1",
                 "callback", 2)
        wait_requests(api, api.snapshot, "callback", 1)
        status, _, _ = host.post_json("/webhooks/callback/webhook",
                                      {"sender": "u1", "message": "inbound"})
        self.assertEqual(status, 200)
        texts = [r.json["text"] for r in wait_requests(api, api.snapshot, "callback", 3)]
        self.assertEqual(texts, ["p1", "p2", "inbound done"])


if __name__ == "__main__":
    unittest.main()
