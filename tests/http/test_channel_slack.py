# SPDX-License-Identifier: MIT
"""The bundled `slack` channel (docs/contract.md §8, docs/channels/slack.md), black box: signed
Events API and interactivity requests (fixtures recorded in the shapes Slack documents) go to the
real binary; the replies go to a stand-in of Slack's Web API (api_url) that records every request.

The Lua bot logs what it got (BOT GOT <json>) and, unless the text is a `do:` command, answers
with the UserMessage itself as custom JSON, so the recorded chat.postMessage body shows the text,
sender and metadata the bot received and where the reply was sent."""
import hashlib
import hmac
import itertools
import json
import time
import unittest
import urllib.parse

import channel_fixtures
from channel_fixtures import (assert_refused, credentials_yml, sdk, serve_bot, wait_bot_got,
                              wait_requests)
from standins import Reply, StandIn, StandInHostCase, error_line, in_threads
from util import serve

WEBHOOK = "/webhooks/slack/webhook"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"

# "do:split" and "do:image" are recording_bot's own commands; any other text is answered with
# the UserMessage itself.
BOT = r"""
local sb = require "switchboard"
local replies = {}

replies["do:buttons"] = function(out)
  out:send_text_with_buttons("Pick one", { { title = "Yes", payload = "/affirm" },
    { title = "No", payload = "/deny" } })
end

replies["do:quick"] = function(out)
  out:send_quick_replies("Quick?", { { title = "A", payload = "/a" } })
end

replies["do:many"] = function(out)
  local buttons = {}
  for i = 1, 27 do buttons[i] = { title = "B" .. i, payload = "/b" .. i } end
  out:send_text_with_buttons("Many", buttons)
end

replies["do:custom"] = function(out)
  out:send_custom_json({ text = "custom", unfurl_links = false,
    blocks = { { type = "divider" } } })
end

replies["do:elsewhere"] = function(out)
  out:send_custom_json({ channel = "C0ELSEWHERE", text = "elsewhere" })
end

replies["do:attachment"] = function(out)
  out:send_attachment({ fallback = "Summary", title = "Summary", color = "#36a64f" })
end

replies["do:response"] = function(out)
  out:send_response({ text = "Look", image = "https://example.com/dog.png" })
end

replies["do:fail"] = function(out)
  out:send_custom_json({ channel = "C0FAIL", text = "refused by Slack" })
  out:send_text_message("after the failure")
end

replies["do:slow"] = function(out)
  sb.sleep(0.6)
  out:send_text_message("slow reply")
end

return require("recording_bot").commands(replies, function(out, msg)
  out:send_custom_json(msg)
end)
"""


def fixture(name):
    return channel_fixtures.fixture("slack", name)


# Slack's event_id names one event: the channel hands each to the bot once (a repeat is a
# retry), so every event a test makes gets an id of its own. The fixtures' ids are sent only as
# they are, once per host.
EVENT_IDS = itertools.count(1)


def fresh(payload):
    """The event_callback (a dict) with a new event_id."""
    payload["event_id"] = "Ev0TEST%06d" % next(EVENT_IDS)
    return payload


def event_body(name, event_id=None, **event_changes):
    """A fixture's raw bytes, or (with changes to its `event`; None removes a key) re-encoded
    JSON with a new event_id (or the one given)."""
    raw = channel_fixtures.changed(fixture(name), lambda payload: payload["event"],
                                   event_changes)
    if not event_changes and event_id is None:
        return raw
    payload = fresh(json.loads(raw))
    if event_id is not None:
        payload["event_id"] = event_id
    return json.dumps(payload).encode()


def form_body(name, **action_changes):
    payload = json.loads(fixture(name))
    payload["actions"][0].update(action_changes)
    return ("payload=" + urllib.parse.quote_plus(json.dumps(payload))).encode()


FORM = "application/x-www-form-urlencoded"


def command_body(**changes):
    """The recorded slash command (fixtures/slack/slash_command.txt) with fields changed (None
    removes one), form-encoded in Slack's field order."""
    fields = urllib.parse.parse_qsl(fixture("slash_command.txt").decode(), keep_blank_values=True)
    fields = [(k, changes.pop(k, v)) for k, v in fields] + list(changes.items())
    return urllib.parse.urlencode([(k, v) for k, v in fields if v is not None]).encode()


def payload_body(name, **changes):
    """An interactive payload fixture, with top-level keys changed, as Slack posts it."""
    payload = json.loads(fixture(name))
    payload.update(changes)
    return ("payload=" + urllib.parse.quote_plus(json.dumps(payload))).encode()


def bolt(*requests):
    """The official check (tests/sdk/slack_check.js): each request (body bytes, signed or not)
    with the headers Slack sends, signed as @slack/bolt verifies them, and the answer a Bolt app
    whose listeners only ack() gives to it: [{"headers", "valid", "bolt": {"status", "body"}}]."""
    return sdk("slack_check.js", {"signing_secret": SECRET, "requests": [
        {"body": body.decode(), "content_type": FORM, "sign": sign} for body, sign in requests]})


def signed(body, secret=SECRET, timestamp=None, content_type="application/json"):
    """Headers as Slack sends them: X-Slack-Request-Timestamp and X-Slack-Signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + digest.hexdigest()}


def slack_api(rec):
    """Slack's Web API as the stand-in plays it: chat.postMessage answers ok, except for the
    channel C0FAIL (ok: false, as Slack answers a channel it does not know)."""
    body = rec.json or {}
    if rec.path.endswith("/chat.postMessage") and body.get("channel") == "C0FAIL":
        return Reply(json={"ok": False, "error": "channel_not_found"})
    return Reply(json={"ok": True, "channel": body.get("channel"), "ts": "1700009999.000100",
                       "message": {"type": "message", "text": body.get("text")}})


def credentials(api, **params):
    return credentials_yml("slack", 'slack_token: "%s"' % TOKEN,
                           'slack_signing_secret: "%s"' % SECRET, "api_url: %s" % api.url("/api"),
                           **params)


class SlackTestCase(StandInHostCase):
    """One host and one Slack stand-in per class; tests tell their requests apart by text."""
    params = {}

    @classmethod
    def start(cls):
        cls.api = cls.standin(slack_api)
        cls.host = serve_bot(credentials(cls.api, **cls.params), BOT)

    def post(self, body, headers=None, sign=True, content_type="application/json"):
        """POST raw bytes (signed unless told otherwise): (status, headers, body bytes, seconds)."""
        hdrs = signed(body, content_type=content_type) if sign else {"Content-Type": content_type}
        hdrs.update(headers or {})
        t0 = time.monotonic()
        status, rhdrs, data = self.host.request("POST", WEBHOOK, body=body, headers=hdrs)
        return status, rhdrs, data, time.monotonic() - t0

    def posts(self, predicate):
        return [r for r in self.api.snapshot() if predicate(r.json or {})]

    def wait_posts(self, predicate, n=1, timeout=5.0):
        return wait_requests(self.api, lambda: self.posts(predicate), "matching chat.postMessage",
                             n, timeout)

    def bot_got(self, text, timeout=5.0):
        """What the bot received for the message with this text (from its log line)."""
        return wait_bot_got(self.host, text, timeout)

    def assert_not_processed(self, marker_text, sentinel_user="U0SENTINEL"):
        """Nothing reached the bot or Slack for `marker_text`. A later message of the sentinel
        user is processed first to be sure the host is done with the earlier request."""
        sentinel = "sentinel %s" % time.monotonic()
        status, _, _, _ = self.post(event_body("message_im.json", text=sentinel, user=sentinel_user))
        self.assertEqual(status, 200)
        self.wait_posts(lambda b: b.get("text") == sentinel)
        self.bot_got(sentinel)  # the log is read in order: every earlier line is in too
        self.assertEqual(self.posts(lambda b: marker_text in json.dumps(b)), [])
        self.assertNotIn(marker_text, "".join(
            line for line in self.host.log().splitlines() if "BOT GOT" in line))

    def assert_slack_call(self, rec):
        """Every Web API call: POST <api_url>/chat.postMessage, bearer token, JSON."""
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.path, "/api/chat.postMessage")
        self.assertEqual(rec.headers.get("authorization"), "Bearer " + TOKEN)
        self.assertTrue(rec.headers.get("content-type", "").startswith("application/json"),
                        rec.headers)


class StartupTests(unittest.TestCase):
    def test_startup_fails_without_signing_secret(self):
        assert_refused(self, "slack:\n  slack_token: xoxb-1\n", "slack_signing_secret")
        assert_refused(self, "slack:\n", "slack_signing_secret")
        assert_refused(self, 'slack:\n  slack_token: xoxb-1\n  slack_signing_secret: ""\n',
                       "slack_signing_secret")

    def test_startup_fails_on_an_unknown_granularity(self):
        assert_refused(self,
                       "slack:\n  slack_signing_secret: s\n  conversation_granularity: team\n",
                       "conversation_granularity")


class SignatureTests(SlackTestCase):
    params = {"slack_channel": "C0CONFIG1"}

    def test_a_correctly_signed_event_is_processed(self):
        body = fixture("message_im.json")
        status, headers, data, took = self.post(body)
        self.assertEqual((status, data), (200, b""))
        self.assertLess(took, 2.0)
        self.assertEqual(self.bot_got("hello there")["sender_id"], "U061F7AUR")
        self.wait_posts(lambda b: b.get("text") == "hello there")

    def refused(self, body, headers, marker, reason_words):
        status, rheaders, data = self.host.request("POST", WEBHOOK, body=body, headers=headers)
        self.assertEqual(status, 400, data)
        self.assertTrue(rheaders["content-type"].startswith("application/json"), rheaders)
        answer = json.loads(data)
        self.assertEqual(answer["error"], "invalid_signature")
        self.assertRegex(answer["message"], reason_words)
        self.assert_not_processed(marker)

    def test_wrong_secret(self):
        body = event_body("message_im.json", text="marker wrong secret")
        self.refused(body, signed(body, secret="not-the-secret"), "marker wrong secret",
                     "X-Slack-Signature does not match")

    def test_tampered_body(self):
        body = event_body("message_im.json", text="marker tampered")
        headers = signed(body)
        tampered = body.replace(b"marker tampered", b"marker Tampered")
        self.refused(tampered, headers, "marker Tampered", "does not match")

    def test_stale_timestamp(self):
        body = event_body("message_im.json", text="marker stale")
        self.refused(body, signed(body, timestamp=int(time.time()) - 301), "marker stale",
                     "5 minutes")

    def test_timestamp_in_the_future(self):
        body = event_body("message_im.json", text="marker future")
        self.refused(body, signed(body, timestamp=int(time.time()) + 400), "marker future",
                     "5 minutes")

    def test_a_timestamp_that_is_not_a_number(self):
        body = event_body("message_im.json", text="marker nan")
        headers = signed(body)
        headers["X-Slack-Request-Timestamp"] = "yesterday"
        self.refused(body, headers, "marker nan", "not a number")

    def test_missing_signature_header(self):
        body = event_body("message_im.json", text="marker no signature")
        headers = signed(body)
        del headers["X-Slack-Signature"]
        self.refused(body, headers, "marker no signature", "X-Slack-Signature header is missing")

    def test_missing_timestamp_header(self):
        body = event_body("message_im.json", text="marker no timestamp")
        headers = signed(body)
        del headers["X-Slack-Request-Timestamp"]
        self.refused(body, headers, "marker no timestamp",
                     "X-Slack-Request-Timestamp header is missing")

    def test_signature_of_another_timestamp(self):
        body = event_body("message_im.json", text="marker other ts")
        headers = signed(body, timestamp=int(time.time()) - 10)
        headers["X-Slack-Request-Timestamp"] = str(int(time.time()))
        self.refused(body, headers, "marker other ts", "does not match")

    def test_url_verification_answers_the_challenge(self):
        status, headers, data, _ = self.post(fixture("url_verification.json"))
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("application/json"), headers)
        self.assertEqual(json.loads(data),
                         {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})

    def test_url_verification_must_be_signed_too(self):
        status, _, data, _ = self.post(fixture("url_verification.json"), sign=False)
        self.assertEqual(status, 400)
        self.assertNotIn(b"3eZbrw1aBm2rZgRNFdxV", data)

    def test_interactive_requests_are_verified(self):
        body = form_body("block_actions_button.json", value="marker unsigned click")
        status, _, _, _ = self.post(body, sign=False,
                                    content_type="application/x-www-form-urlencoded")
        self.assertEqual(status, 400)
        self.assert_not_processed("marker unsigned click")


class EventTests(SlackTestCase):
    params = {"slack_channel": "C0CONFIG1"}

    def test_direct_message_reaches_the_bot_with_metadata(self):
        status, headers, data, _ = self.post(fixture("message_im.json"))
        self.assertEqual((status, data), (200, b""))
        got = self.bot_got("hello there")
        self.assertEqual(got, {"text": "hello there", "sender_id": "U061F7AUR",
                               "input_channel": "slack",
                               "metadata": {"out_channel": "D0PNCRP9N",
                                            "thread_id": "1700000000.000100",
                                            "users": ["U0BOTUSER"]}})
        rec = self.wait_posts(lambda b: b.get("text") == "hello there")[0]
        self.assert_slack_call(rec)
        self.assertEqual(rec.json["metadata"], got["metadata"])
        self.assertEqual(rec.json["sender_id"], "U061F7AUR")
        self.assertEqual(rec.json["input_channel"], "slack")
        self.assertNotIn("thread_ts", rec.json)

    def test_bot_mention_and_links_are_cleaned(self):
        status, _, _, _ = self.post(fixture("app_mention.json"))
        self.assertEqual(status, 200)
        text = ("is this river deep? ask ada@example.com & see https://example.org/faq 1 < 2")
        got = self.bot_got(text)
        self.assertEqual(got["sender_id"], "U061F7AUR")
        self.assertEqual(got["metadata"], {"out_channel": "C0LAN2Q65",
                                           "thread_id": "1700000100.000200",
                                           "users": ["U0BOTUSER"]})

    def test_mentions_in_the_middle_and_end_and_of_other_users(self):
        text = "<@U0BOTUSER>hi <@U0BOTUSER> there <@U0OTHER> and <@U0BOTUSER>"
        status, _, _, _ = self.post(event_body("app_mention.json", text=text, user="U0MENTION"))
        self.assertEqual(status, 200)
        self.assertEqual(self.bot_got("hi there <@U0OTHER> and")["sender_id"], "U0MENTION")

    def test_authed_users_are_the_ids_removed(self):
        payload = fresh(json.loads(fixture("app_mention.json")))
        payload["authed_users"] = ["U0LEGACY1"]
        payload["event"]["text"] = "<@U0LEGACY1> legacy mention <@U0BOTUSER>"
        payload["event"]["user"] = "U0LEGACYUSER"
        status, _, _, _ = self.post(json.dumps(payload).encode())
        self.assertEqual(status, 200)
        got = self.bot_got("legacy mention <@U0BOTUSER>")
        self.assertEqual(got["metadata"]["users"], ["U0LEGACY1"])

    def test_message_in_slack_channel_is_processed(self):
        status, _, _, _ = self.post(fixture("message_channel_thread.json"))
        self.assertEqual(status, 200)
        got = self.bot_got("a reply in a thread")
        self.assertEqual(got["sender_id"], "U061F7AUR")
        self.assertEqual(got["metadata"]["out_channel"], "C0CONFIG1")
        self.assertEqual(got["metadata"]["thread_id"], "1700000000.000100")
        rec = self.wait_posts(lambda b: b.get("text") == "a reply in a thread")[0]
        self.assertEqual(rec.json["channel"], "C0CONFIG1")
        self.assertNotIn("thread_ts", rec.json)  # use_threads is off

    def test_file_share_with_text_is_processed(self):
        status, _, _, _ = self.post(fixture("file_share.json"))
        self.assertEqual(status, 200)
        self.assertEqual(self.bot_got("here is the report")["sender_id"], "U061F7AUR")

    def ignored(self, body, marker):
        status, headers, data, _ = self.post(body)
        self.assertEqual(status, 200, data)
        self.assert_not_processed(marker)

    def test_other_bots_messages_are_ignored(self):
        self.ignored(event_body("bot_message.json", text="marker other bot"), "marker other bot")

    def test_the_apps_own_messages_are_ignored(self):
        self.ignored(event_body("own_message.json", text="marker own message"),
                     "marker own message")

    def test_message_changed_is_ignored(self):
        payload = fresh(json.loads(fixture("message_changed.json")))
        payload["event"]["message"]["text"] = "marker edited"
        payload["event"]["text"] = "marker edited"  # even with a top-level text
        payload["event"]["user"] = "U061F7AUR"
        self.ignored(json.dumps(payload).encode(), "marker edited")

    def test_channel_join_is_ignored(self):
        self.ignored(event_body("channel_join.json",
                                text="<@U061F7AUR> marker joined the channel"), "marker joined")

    def test_a_file_share_without_text_is_ignored(self):
        body = event_body("file_share.json", text="")
        payload = json.loads(body)
        payload["event"]["files"][0]["name"] = "marker-file.pdf"
        self.ignored(json.dumps(payload).encode(), "marker-file.pdf")

    def test_a_channel_message_without_a_mention_is_ignored(self):
        self.ignored(event_body("message_channel_other.json", text="marker colleagues"),
                     "marker colleagues")

    def test_other_event_types_are_ignored(self):
        payload = fresh(json.loads(fixture("reaction_added.json")))
        payload["event"]["reaction"] = "marker_reaction"
        self.ignored(json.dumps(payload).encode(), "marker_reaction")

    def test_other_callback_types_are_ignored(self):
        body = json.dumps({"type": "app_rate_limited", "token": "XXYYZZ", "team_id": "T061EG9R6",
                           "minute_rate_limited": 1518467820, "api_app_id": "marker_rl"}).encode()
        self.ignored(body, "marker_rl")

    def test_a_body_that_is_not_json_is_400(self):
        status, _, data, _ = self.post(b"not json")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["error"], "invalid_json")
        status, _, data, _ = self.post(b"[]")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["error"], "invalid_body")


class RetryTests(SlackTestCase):
    params = {"slack_channel": "C0CONFIG1"}

    def test_a_retry_for_http_timeout_is_answered_201_and_not_processed(self):
        body = event_body("message_im.json", text="marker retried")
        status, headers, data, _ = self.post(body, headers={"X-Slack-Retry-Num": "1",
                                                            "X-Slack-Retry-Reason": "http_timeout"})
        self.assertEqual(status, 201)
        self.assertEqual(headers.get("x-slack-no-retry"), "1")
        self.assertEqual(data, b"")
        self.assert_not_processed("marker retried")

    def test_a_retry_for_another_reason_is_processed(self):
        body = event_body("message_im.json", text="retry after an error", user="U0RETRY")
        status, headers, _, _ = self.post(body, headers={"X-Slack-Retry-Num": "2",
                                                         "X-Slack-Retry-Reason": "http_error"})
        self.assertEqual(status, 200)
        self.assertNotIn("x-slack-no-retry", headers)
        self.assertEqual(self.bot_got("retry after an error")["sender_id"], "U0RETRY")


class ConfiguredRetryTests(SlackTestCase):
    params = {"errors_ignore_retry": ["http_error", "connection_failed"]}

    def test_errors_ignore_retry_replaces_the_default(self):
        body = event_body("message_im.json", text="marker configured retry")
        status, headers, _, _ = self.post(body, headers={"X-Slack-Retry-Num": "1",
                                                         "X-Slack-Retry-Reason": "http_error"})
        self.assertEqual((status, headers.get("x-slack-no-retry")), (201, "1"))
        self.assert_not_processed("marker configured retry")
        body = event_body("message_im.json", text="timeout retry processed", user="U0TIMEOUT")
        status, _, _, _ = self.post(body, headers={"X-Slack-Retry-Num": "1",
                                                   "X-Slack-Retry-Reason": "http_timeout"})
        self.assertEqual(status, 200)
        self.bot_got("timeout retry processed")


class InteractiveTests(SlackTestCase):
    params = {"slack_channel": "C0CONFIG1"}

    def click(self, name, **changes):
        return self.post(form_body(name, **changes),
                         content_type="application/x-www-form-urlencoded")

    def test_button_value_becomes_the_text(self):
        status, _, data, _ = self.click("block_actions_button.json")
        self.assertEqual((status, data), (200, b""))
        got = self.bot_got("/affirm")
        self.assertEqual(got["sender_id"], "U061F7AUR")
        self.assertEqual(got["metadata"], {"out_channel": "C0LAN2Q65",
                                           "thread_id": "1700000800.000100",
                                           "users": ["U061F7AUR"]})

    def test_static_select_value(self):
        status, _, _, _ = self.click("block_actions_static_select.json")
        self.assertEqual(status, 200)
        got = self.bot_got('/inform{"city": "Berlin"}')
        self.assertEqual(got["metadata"]["out_channel"], "D0PNCRP9N")
        self.assertEqual(got["metadata"]["thread_id"], "1700000000.000100")

    def test_datepicker_date(self):
        status, _, _, _ = self.click("block_actions_datepicker.json")
        self.assertEqual(status, 200)
        self.assertEqual(self.bot_got("2024-03-15")["sender_id"], "U061F7AUR")

    def test_users_select_and_overflow(self):
        self.click("block_actions_button.json", type="users_select", selected_user="U0PICKED1",
                   value=None)
        self.bot_got("U0PICKED1")
        self.click("block_actions_button.json", type="overflow",
                   selected_option={"text": {"type": "plain_text", "text": "More"},
                                    "value": "/overflow_more"})
        self.bot_got("/overflow_more")

    def test_a_link_button_is_ignored(self):
        status, _, _, _ = self.click("block_actions_link_button.json",
                                     url="https://example.com/marker-link")
        self.assertEqual(status, 200)
        self.assert_not_processed("marker-link")

    def test_an_unsupported_component_is_ignored(self):
        status, _, _, _ = self.click("block_actions_multi_select.json", action_id="marker_multi")
        self.assertEqual(status, 200)
        self.assert_not_processed("marker_multi")

    def test_a_form_without_payload_is_400(self):
        status, _, data, _ = self.post(b"token=x&team_id=T1",
                                       content_type="application/x-www-form-urlencoded")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["error"], "invalid_body")


class SlashCommandTests(SlackTestCase):
    """Slash commands, Slack's ssl_check probe, shortcuts and view submissions, signed (or not)
    by the official SDK's rules, answered as a Bolt app answers them."""
    params = {"slack_channel": "C0CONFIG1"}

    def post_as(self, checked):
        """POST the body with the headers slack_check.js gave: (status, body, seconds)."""
        status, _, data, took = self.post(checked["body"], headers=checked["headers"],
                                          sign=False, content_type=FORM)
        return status, data, took

    def answered_as_bolt(self, *requests):
        """Posts each request and checks the channel's status and body are Bolt's."""
        results = bolt(*requests)
        for (body, sign), checked in zip(requests, results):
            self.assertEqual(checked["valid"], sign, checked)
            status, data, took = self.post_as(dict(checked, body=body))
            self.assertEqual((status, data.decode()),
                             (checked["bolt"]["status"], checked["bolt"]["body"]), body)
            self.assertLess(took, 2.0)
        return results

    def test_a_slash_command_reaches_the_bot_and_is_answered_in_its_channel(self):
        self.answered_as_bolt((fixture("slash_command.txt"), True))
        got = self.bot_got("/weather Paris & Lyon")
        self.assertEqual(got, {
            "text": "/weather Paris & Lyon", "sender_id": "U061F7AUR", "input_channel": "slack",
            "metadata": {
                "out_channel": "C0LAN2Q65", "command": "/weather",
                "response_url":
                    "https://hooks.slack.com/commands/T061EG9R6/1234567890/ZmFrZXJlc3BvbnNldXJs",
                "trigger_id": "1700001000.61001.9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e",
                "team_id": "T061EG9R6", "channel_name": "general", "user_name": "ada",
                "api_app_id": "A0PNCHHK2", "enterprise_id": "E0001", "users": ["U061F7AUR"]}})
        rec = self.wait_posts(lambda b: b.get("text") == "/weather Paris & Lyon")[0]
        self.assert_slack_call(rec)
        self.assertEqual(rec.json["channel"], "C0LAN2Q65")
        self.assertNotIn("thread_ts", rec.json)

    def test_a_slash_command_without_text_is_the_command(self):
        self.answered_as_bolt((command_body(command="/forecast", text="", user_id="U0NOARGS"),
                               True))
        self.assertEqual(self.bot_got("/forecast")["sender_id"], "U0NOARGS")

    def test_an_unsigned_slash_command_is_refused(self):
        body = command_body(text="marker unsigned command", user_id="U0UNSIGNED")
        [checked] = bolt((body, False))
        self.assertGreaterEqual(checked["bolt"]["status"], 400)  # Bolt refuses it too
        status, data, _ = self.post_as(dict(checked, body=body))
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["error"], "invalid_signature")
        self.assert_not_processed("marker unsigned command")

    def test_ssl_check_is_answered_200_signed_or_not_and_never_processed(self):
        smuggled = command_body(ssl_check="1", text="marker smuggled", user_id="U0SMUGGLE")
        self.answered_as_bolt((b"ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO", False),
                              (b"ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO", True),
                              (smuggled, False))
        self.assert_not_processed("marker smuggled")

    def test_shortcuts_and_view_submissions_get_an_empty_200(self):
        self.answered_as_bolt(
            (payload_body("shortcut.json", callback_id="marker_shortcut"), True),
            (payload_body("message_action.json", callback_id="marker_message_action"), True),
            (payload_body("view_submission.json", trigger_id="marker_view"), True))
        for marker in ("marker_shortcut", "marker_message_action", "marker_view"):
            self.assert_not_processed(marker)


class ReplyTests(SlackTestCase):
    """Sender granularity, no threads; the commands are written in slack_channel, so Rasa and
    this channel both answer there."""
    params = {"slack_channel": "C0CONFIG1"}

    def command(self, text, user):
        status, _, data, _ = self.post(event_body("message_channel_thread.json", text=text,
                                                  user=user))
        self.assertEqual((status, data), (200, b""))

    def test_text_is_split_on_blank_lines(self):
        self.command("do:split", "U0SPLIT")
        recs = self.wait_posts(lambda b: b.get("text") in ("first part", "second part"), 2)
        self.assertEqual([r.json for r in recs], [
            {"channel": "C0CONFIG1", "text": "first part"},
            {"channel": "C0CONFIG1", "text": "second part"}])
        for rec in recs:
            self.assert_slack_call(rec)

    def test_image_as_an_image_block(self):
        self.command("do:image", "U0IMAGE")
        rec = self.wait_posts(lambda b: "blocks" in b and b.get("text") ==
                              "https://example.com/cat.png")[0]
        self.assert_slack_call(rec)
        self.assertEqual(rec.json, {
            "channel": "C0CONFIG1", "text": "https://example.com/cat.png",
            "blocks": [{"type": "image", "image_url": "https://example.com/cat.png",
                        "alt_text": "https://example.com/cat.png"}]})

    def test_buttons_as_section_and_actions_blocks(self):
        self.command("do:buttons", "U0BUTTONS")
        rec = self.wait_posts(lambda b: b.get("text") == "Pick one")[0]
        self.assert_slack_call(rec)
        self.assertEqual(rec.json, {
            "channel": "C0CONFIG1", "text": "Pick one",
            "blocks": [
                {"type": "section", "text": {"type": "plain_text", "text": "Pick one"}},
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Yes"},
                     "value": "/affirm"},
                    {"type": "button", "text": {"type": "plain_text", "text": "No"},
                     "value": "/deny"}]}]})

    def test_quick_replies_are_buttons(self):
        self.command("do:quick", "U0QUICK")
        rec = self.wait_posts(lambda b: b.get("text") == "Quick?")[0]
        self.assertEqual(rec.json["blocks"][1], {"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "A"}, "value": "/a"}]})

    def test_more_than_25_buttons_take_several_actions_blocks(self):
        self.command("do:many", "U0MANY")
        rec = self.wait_posts(lambda b: b.get("text") == "Many")[0]
        blocks = rec.json["blocks"]
        self.assertEqual([b["type"] for b in blocks], ["section", "actions", "actions"])
        self.assertEqual([len(b["elements"]) for b in blocks[1:]], [25, 2])
        self.assertEqual(blocks[2]["elements"][1]["value"], "/b27")

    def test_custom_json_is_the_message_body(self):
        self.command("do:custom", "U0CUSTOM")
        rec = self.wait_posts(lambda b: b.get("text") == "custom")[0]
        self.assert_slack_call(rec)
        self.assertEqual(rec.json, {"channel": "C0CONFIG1", "text": "custom",
                                    "unfurl_links": False, "blocks": [{"type": "divider"}]})

    def test_custom_json_may_name_its_channel(self):
        self.command("do:elsewhere", "U0ELSE")
        rec = self.wait_posts(lambda b: b.get("text") == "elsewhere")[0]
        self.assertEqual(rec.json, {"channel": "C0ELSEWHERE", "text": "elsewhere"})

    def test_attachment(self):
        self.command("do:attachment", "U0ATTACH")
        rec = self.wait_posts(lambda b: "attachments" in b)[0]
        self.assertEqual(rec.json, {"channel": "C0CONFIG1", "attachments": [
            {"fallback": "Summary", "title": "Summary", "color": "#36a64f"}]})

    def test_a_whole_response_is_dispatched_in_order(self):
        self.command("do:response", "U0RESPONSE")
        recs = self.wait_posts(lambda b: b.get("text") in ("Look", "https://example.com/dog.png"),
                               2)
        self.assertEqual(recs[0].json, {"channel": "C0CONFIG1", "text": "Look"})
        self.assertEqual(recs[1].json["blocks"][0]["image_url"], "https://example.com/dog.png")

    def test_a_refusal_from_slack_is_logged_and_later_replies_are_sent(self):
        status, headers, _, _ = self.post(event_body("message_channel_thread.json",
                                                     text="do:fail", user="U0FAIL"))
        self.assertEqual(status, 200)
        self.wait_posts(lambda b: b.get("text") == "after the failure")
        self.assertEqual(len(self.posts(lambda b: b.get("channel") == "C0FAIL")), 1)
        error_line(self.host, headers["x-request-id"], "channel_not_found")

    def test_the_answer_does_not_wait_for_a_slow_bot(self):
        status, _, data, took = self.post(event_body("message_channel_thread.json",
                                                     text="do:slow", user="U0SLOW"))
        answered = time.monotonic()
        self.assertEqual((status, data), (200, b""))
        self.assertLess(took, 0.4)
        rec = self.wait_posts(lambda b: b.get("text") == "slow reply")[0]
        self.assertGreater(rec.start, answered)
        self.assertGreater(rec.start - answered, 0.3)


class ChannelGranularityTests(SlackTestCase):
    """conversation_granularity: channel, use_threads: the conversation is the user in a channel,
    and replies go to the message's channel, in its thread."""
    params = {"conversation_granularity": "channel", "use_threads": True}

    def test_sender_id_is_user_and_channel(self):
        self.post(fixture("app_mention.json"))
        got = self.bot_got("is this river deep? ask ada@example.com & see "
                           "https://example.org/faq 1 < 2")
        self.assertEqual(got["sender_id"], "U061F7AUR_C0LAN2Q65")

    def test_reply_goes_to_the_channel_of_the_message(self):
        self.post(event_body("app_mention.json", text="<@U0BOTUSER> where am I", user="U0WHERE"))
        rec = self.wait_posts(lambda b: b.get("text") == "where am I")[0]
        self.assertEqual(rec.json["channel"], "C0LAN2Q65")
        self.assertEqual(rec.json["sender_id"], "U0WHERE_C0LAN2Q65")

    def test_reply_goes_into_the_thread_of_the_message(self):
        # The sender gets the UserMessage it answers (last argument), with metadata.thread_id.
        self.post(event_body("app_mention.json", text="<@U0BOTUSER> thread me", user="U0THREAD"))
        rec = self.wait_posts(lambda b: b.get("text") == "thread me")[0]
        self.assertEqual(rec.json["thread_ts"], "1700000100.000200")


    def test_a_slash_command_is_a_conversation_in_its_channel_without_a_thread(self):
        body = command_body(text="in channel", user_id="U0SLASHCH")
        status, _, data, _ = self.post(body, content_type=FORM)
        self.assertEqual((status, data), (200, b""))
        self.assertEqual(self.bot_got("/weather in channel")["sender_id"], "U0SLASHCH_C0LAN2Q65")
        rec = self.wait_posts(lambda b: b.get("text") == "/weather in channel")[0]
        self.assertEqual(rec.json["channel"], "C0LAN2Q65")
        self.assertNotIn("thread_ts", rec.json)  # a command has no message to thread under


class ThreadGranularityTests(SlackTestCase):
    params = {"conversation_granularity": "thread", "use_threads": True}

    def test_sender_id_is_user_channel_and_thread_and_replies_go_in_the_thread(self):
        self.post(event_body("message_im.json", text="in a thread", user="U0T1",
                             thread_ts="1700000000.000001"))
        got = self.bot_got("in a thread")
        self.assertEqual(got["sender_id"], "U0T1_D0PNCRP9N_1700000000.000001")
        rec = self.wait_posts(lambda b: b.get("text") == "in a thread")[0]
        self.assertEqual(rec.json["channel"], "D0PNCRP9N")
        self.assertEqual(rec.json["thread_ts"], "1700000000.000001")

    def test_a_top_level_message_is_a_thread_of_its_own(self):
        self.post(event_body("message_im.json", text="top level", user="U0T2"))
        self.assertEqual(self.bot_got("top level")["sender_id"],
                         "U0T2_D0PNCRP9N_1700000000.000100")


class SenderGranularityTests(SlackTestCase):
    """Sender granularity without slack_channel: Rasa answers in the message's channel."""
    params = {"use_threads": True}

    def test_a_direct_message_is_answered_to_the_user(self):
        self.post(event_body("message_im.json", text="dm reply", user="U0DM"))
        rec = self.wait_posts(lambda b: b.get("text") == "dm reply")[0]
        # Posting to a user id opens the app's direct message with that user.
        self.assertIn(rec.json["channel"], ("U0DM", "D0PNCRP9N"))

    def test_a_mention_is_answered_in_its_channel_and_thread(self):
        # The sender reads out_channel and thread_id from the UserMessage it answers, so a
        # mention is answered where it was made, as Rasa does.
        self.post(event_body("app_mention.json", text="<@U0BOTUSER> answer here", user="U0HERE"))
        rec = self.wait_posts(lambda b: b.get("text") == "answer here")[0]
        self.assertEqual(rec.json["channel"], "C0LAN2Q65")
        self.assertEqual(rec.json["thread_ts"], "1700000100.000200")


class RedeliveryTests(SlackTestCase):
    """Slack retries an event that got no 2xx within 3 s (X-Slack-Retry-Num 1, 2, 3): each
    event_id is handed to the bot once, whatever the retry reason; a repeat is answered 200 at
    once and not processed (docs/channels/slack.md, "Retries")."""
    params = {"slack_channel": "C0CONFIG1", "errors_ignore_retry": ["connection_failed"]}

    def got(self, user):
        return [g["text"] for g in channel_fixtures.bot_got_all(self.host)
                if g["sender_id"] == user]

    def test_a_retry_of_a_processed_event_is_answered_200_and_not_processed(self):
        body = event_body("message_im.json", text="dedupe me", user="U0DEDUPE")
        status, _, data, _ = self.post(body)
        self.assertEqual((status, data), (200, b""))
        self.bot_got("dedupe me")
        for n, reason in (("1", "http_timeout"), ("2", "http_error")):
            status, headers, data, took = self.post(body, headers={
                "X-Slack-Retry-Num": n, "X-Slack-Retry-Reason": reason})
            self.assertEqual((status, data), (200, b""))
            self.assertNotIn("x-slack-no-retry", headers)
            self.assertLess(took, 2.0)
        self.assert_not_processed("nothing", sentinel_user="U0DEDUPE")
        self.assertEqual(self.got("U0DEDUPE")[:1], ["dedupe me"])
        self.assertEqual(self.got("U0DEDUPE").count("dedupe me"), 1)
        self.assertEqual(len(self.posts(lambda b: b.get("text") == "dedupe me")), 1)
        self.host.wait_for_log(r"slack: event Ev0TEST\d+ \(retry #2, http_error\) was already "
                               r"received")

    def test_the_same_event_without_retry_headers_is_processed_once(self):
        body = event_body("message_im.json", text="sent twice", user="U0TWICE")
        for _ in range(2):
            status, _, data, _ = self.post(body)
            self.assertEqual((status, data), (200, b""))
        self.assert_not_processed("nothing", sentinel_user="U0TWICE")
        self.assertEqual(self.got("U0TWICE").count("sent twice"), 1)

    def test_the_same_event_at_once_on_two_connections(self):
        body = event_body("message_im.json", text="racing", user="U0RACE")
        results = in_threads([lambda: self.post(body)] * 2)
        self.assertEqual([r[0] for r in results], [200, 200])
        self.assert_not_processed("nothing", sentinel_user="U0RACE")
        self.assertEqual(self.got("U0RACE").count("racing"), 1)

    def test_two_events_with_the_same_text_are_both_processed(self):
        for _ in range(2):
            status, _, _, _ = self.post(event_body("message_im.json", text="same text",
                                                   user="U0SAME"))
            self.assertEqual(status, 200)
        self.wait_posts(lambda b: b.get("text") == "same text", 2)
        got = channel_fixtures.wait_bot_got_where(
            self.host, lambda g: g["sender_id"] == "U0SAME" and g["text"] == "same text", n=2)
        self.assertEqual(len(got), 2)

    def test_an_ignored_retry_reason_is_still_answered_201(self):
        body = event_body("message_im.json", text="marker ignored reason", user="U0IGN")
        status, headers, _, _ = self.post(body, headers={"X-Slack-Retry-Num": "1",
                                                         "X-Slack-Retry-Reason":
                                                             "connection_failed"})
        self.assertEqual((status, headers.get("x-slack-no-retry")), (201, "1"))
        self.assert_not_processed("marker ignored reason")

    def test_clicks_and_commands_are_not_deduplicated(self):
        # Slack does not retry interactivity or slash commands: two equal clicks are two clicks.
        body = form_body("block_actions_button.json", value="/click_twice")
        for _ in range(2):
            status, _, _, _ = self.post(body, content_type=FORM)
            self.assertEqual(status, 200)
        self.wait_posts(lambda b: b.get("text") == "/click_twice", 2)


class RedeliveryTtlTests(unittest.TestCase):
    def test_dedupe_ttl_must_be_a_number_of_seconds(self):
        assert_refused(self, "slack:\n  slack_signing_secret: s\n  dedupe_ttl: never\n",
                       "dedupe_ttl")


class ProxyTests(unittest.TestCase):
    """Rasa's `proxy`: the Web API calls go through it (sb.http.request's proxy option); without
    it, the proxy of the host's environment (http_proxy, https_proxy, no_proxy) applies."""

    def post_through(self, extra, env):
        creds = credentials_yml("slack", 'slack_token: "%s"' % TOKEN,
                                'slack_signing_secret: "%s"' % SECRET,
                                "api_url: http://slack.invalid/api", *extra)
        with serve({"credentials.yml": creds, "recording_bot.lua":
                    channel_fixtures.RECORDING_BOT}, bot=BOT, env=env) as host:
            body = event_body("message_im.json", text="through the proxy")
            status, _, _ = host.request("POST", WEBHOOK, body=body, headers=signed(body))
            self.assertEqual(status, 200)
            return host

    def check(self, proxy):
        [rec] = proxy.wait_for(1)
        self.assertEqual(rec.target, "http://slack.invalid/api/chat.postMessage")
        self.assertEqual(rec.json["text"], "through the proxy")

    def test_the_proxy_parameter_carries_the_calls(self):
        with StandIn(Reply(json={"ok": True})) as proxy, \
                StandIn(Reply(json={"ok": True})) as environment_proxy:
            self.post_through(["proxy: %s" % proxy.url("")],
                              {"http_proxy": environment_proxy.url("")})
            self.check(proxy)
            self.assertEqual(environment_proxy.snapshot(), [])

    def test_without_it_the_environment_proxy_carries_the_calls(self):
        with StandIn(Reply(json={"ok": True})) as proxy:
            self.post_through([], {"http_proxy": proxy.url("")})
            self.check(proxy)


if __name__ == "__main__":
    unittest.main()
