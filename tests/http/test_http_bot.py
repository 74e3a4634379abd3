# SPDX-License-Identifier: MIT
"""The HTTP bot (docs/contract.md §5.1 `bot: url:`, §5 bot failures): what the host POSTs, how the
bot's Rasa REST answer is dispatched, and what each kind of failure gives."""
import json
import unittest

from harness import project
from standins import (Reply, StandInHostCase, dead_port, echo_rasa_bot, error_line,
                      http_bot_endpoints, post_timed)
from util import RELAY, QuietHost as Host, final_log, post_stream

WEBHOOK = "/webhooks/rest/webhook"


def bot_project(url, timeout=None, headers=None, extra=None):
    files = {"credentials.yml": "rest:\nrelay.lua:\n", "relay.lua": RELAY,
             "endpoints.yml": http_bot_endpoints(url, timeout=timeout, headers=headers)}
    files.update(extra or {})
    return project(files)


class RequestTests(StandInHostCase):
    """What the bot receives, and how its answer comes back."""

    @classmethod
    def start(cls):
        def respond(rec):
            body = rec.json or {}
            if body.get("message") == "kinds":
                return Reply(json=[
                    {"recipient_id": "someone-else", "text": "Hello"},
                    {"recipient_id": "someone-else", "text": "Pick",
                     "buttons": [{"title": "Yes", "payload": "/affirm"}]},
                    {"recipient_id": "someone-else", "image": "https://x/y.jpg"},
                    {"recipient_id": "someone-else", "custom": {"k": [1, {"z": None}], "e": []}},
                    {"recipient_id": "someone-else", "attachment": "file.pdf"},
                    {"recipient_id": "someone-else", "text": "a\n\nb"},
                    {"text": "Both", "image": "https://x/z.png"},
                ])
            return echo_rasa_bot()(rec)
        cls.bot = cls.standin(respond)
        cls.host = Host(cwd=bot_project(
            cls.bot.url("/webhooks/rest/webhook"), timeout=5,
            headers={"Authorization": "Bearer ${SB_TEST_BOT_TOKEN}", "X-Extra": "fixed"}),
            env={"SB_TEST_BOT_TOKEN": "tok-42"})

    def last_request_for(self, sender):
        for rec in reversed(self.bot.snapshot()):
            if (rec.json or {}).get("sender") == sender:
                return rec
        self.fail("the bot got nothing from %s: %r" % (sender, self.bot.snapshot()))

    def test_bot_gets_exactly_the_rasa_rest_json(self):
        metadata = {"empty_list": [], "empty_map": {}, "nested": {"a": {"b": [1, 2, {"c": "d"}]}},
                    "n": 1.5, "wide": 12345678901234, "flag": False, "nothing": None,
                    "url": "https://a/b"}
        status, _, body = self.host.post_json(WEBHOOK, {
            "sender": "shape-user", "message": "  hello  ", "metadata": metadata,
            "message_id": "mid-1"})
        self.assertEqual(status, 200, body)
        rec = self.last_request_for("shape-user")
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.path, "/webhooks/rest/webhook")
        self.assertTrue(rec.headers.get("content-type", "").startswith("application/json"),
                        rec.headers)
        got = rec.json
        self.assertEqual(set(got), {"sender", "message", "metadata", "input_channel", "message_id"},
                         got)
        self.assertEqual(got["sender"], "shape-user")
        self.assertEqual(got["message"], "hello")
        self.assertEqual(got["input_channel"], "rest")
        self.assertEqual(got["message_id"], "mid-1")
        self.assertEqual(got["metadata"], metadata)
        self.assertEqual(body, [{"recipient_id": "shape-user", "text": "echo: hello"}])

    # sb.json decodes integers as Lua integers, so one beyond 2^53 reaches the bot untouched.
    def test_integers_beyond_53_bits_in_metadata_pass_through_exactly(self):
        metadata = {"big": 123456789012345678}
        status, _, body = self.host.post_json(WEBHOOK, {
            "sender": "big-user", "message": "x", "metadata": metadata})
        self.assertEqual(status, 200, body)
        raw = self.last_request_for("big-user").body.decode()
        self.assertIn('"big":123456789012345678', raw.replace(" ", ""))

    def test_missing_text_and_metadata_are_sent_as_null(self):
        status, _, body = self.host.post_json(WEBHOOK, {"sender": "no-meta"})
        self.assertEqual(status, 200, body)
        got = self.last_request_for("no-meta").json
        self.assertEqual(set(got), {"sender", "message", "metadata", "input_channel", "message_id"},
                         got)
        self.assertIsNone(got["message"])
        self.assertIsNone(got["metadata"])

    def test_generated_message_id_and_numeric_sender(self):
        status, _, body = self.host.post_json(WEBHOOK, {"sender": 4711, "message": "num"})
        self.assertEqual(status, 200, body)
        got = self.last_request_for("4711").json
        self.assertRegex(got["message_id"], r"^[0-9a-f]{32}$")
        self.assertEqual(got["sender"], "4711")
        self.assertEqual(body, [{"recipient_id": "4711", "text": "echo: num"}])

    def test_input_channel_and_metadata_pass_through(self):
        status, _, body = self.host.post_json(WEBHOOK, {
            "sender": "ic-user", "message": "x", "input_channel": "my-channel",
            "metadata": [[], {}]})
        self.assertEqual(status, 200, body)
        got = self.last_request_for("ic-user").json
        self.assertEqual(got["input_channel"], "my-channel")
        self.assertEqual(got["metadata"], [[], {}])

    def test_configured_headers_are_sent_with_variables_expanded(self):
        self.host.post_json(WEBHOOK, {"sender": "hdr-user", "message": "x"})
        rec = self.last_request_for("hdr-user")
        self.assertEqual(rec.headers.get("authorization"), "Bearer tok-42")
        self.assertEqual(rec.headers.get("x-extra"), "fixed")

    def test_every_kind_of_bot_message_is_dispatched_with_the_senders_recipient_id(self):
        status, headers, body = self.host.post_json(WEBHOOK, {"sender": "u1", "message": "kinds"})
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(body, [
            {"recipient_id": "u1", "text": "Hello"},
            {"recipient_id": "u1", "text": "Pick",
             "buttons": [{"title": "Yes", "payload": "/affirm"}]},
            {"recipient_id": "u1", "image": "https://x/y.jpg"},
            {"recipient_id": "u1", "custom": {"k": [1, {"z": None}], "e": []}},
            {"recipient_id": "u1", "attachment": "file.pdf"},
            {"recipient_id": "u1", "text": "a"},
            {"recipient_id": "u1", "text": "b"},
            {"recipient_id": "u1", "text": "Both"},
            {"recipient_id": "u1", "image": "https://x/z.png"},
        ])

    def test_streaming_with_an_http_bot(self):
        resp, data, _ = post_stream(self.host, WEBHOOK,
                                    {"sender": "stream-user", "message": "kinds"})
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("Content-Type", "").startswith("text/event-stream"))
        lines = [json.loads(line) for line in data.split("\n") if line.strip()]
        self.assertEqual(len(lines), 9, data)
        self.assertEqual(lines[0], {"recipient_id": "stream-user", "text": "Hello"})
        self.assertEqual(lines[-1], {"recipient_id": "stream-user", "image": "https://x/z.png"})


class FailureTests(StandInHostCase):
    """Each failure: 200 with what was collected, an ERROR line with the request id, and the host
    keeps serving. One host; the stand-in fails according to the message text."""

    @classmethod
    def start(cls):
        def respond(rec):
            text = (rec.json or {}).get("message")
            if text == "status500":
                return Reply(status=500, body="kaputt")
            if text == "status404":
                return Reply(status=404, json={"error": "nope"})
            if text == "badjson":
                return Reply(body="this is [not json", content_type="application/json")
            if text == "object":
                return Reply(json={"recipient_id": "x", "text": "an object, not an array"})
            if text == "emptyobject":
                return Reply(body="{}", content_type="application/json")
            if text == "string":
                return Reply(json="just a string")
            if text == "slow":
                return Reply(json=[{"text": "too late"}], delay=2.0)
            return echo_rasa_bot()(rec)
        cls.bot = cls.standin(respond)
        cls.host = Host(cwd=bot_project(cls.bot.url("/bot"), timeout=0.5))

    def assert_failure(self, text, log_pattern, max_seconds=5.0, log_timeout=5.0):
        status, headers, body, took = post_timed(self.host, WEBHOOK,
                                                 {"sender": "f-" + text, "message": text})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, [])
        self.assertLess(took, max_seconds)
        rid = headers.get("x-request-id")
        self.assertTrue(rid, headers)
        error_line(self.host, rid, log_pattern, timeout=log_timeout)
        # still serving, the same sender included
        status, _, body = self.host.post_json(WEBHOOK, {"sender": "f-" + text, "message": "ok"})
        self.assertEqual((status, body), (200, [{"recipient_id": "f-" + text, "text": "echo: ok"}]))
        return took

    def test_non_2xx_answers(self):
        self.assert_failure("status500", "500")
        self.assert_failure("status404", "404")

    def test_invalid_json(self):
        self.assert_failure("badjson", "JSON")

    def test_object_instead_of_an_array(self):
        self.assert_failure("object", "array")

    def test_a_json_string_instead_of_an_array(self):
        self.assert_failure("string", "array")

    def test_an_empty_json_object_instead_of_an_array(self):
        self.assert_failure("emptyobject", "array", log_timeout=1.0)

    def test_timeout(self):
        took = self.assert_failure("slow", "timed out")
        self.assertGreater(took, 0.4)
        self.assertLess(took, 1.6, "bot timeout is 0.5 s, the stand-in answers after 2 s")

    def test_what_was_collected_before_the_failure_is_answered(self):
        status, headers, body = self.host.post_json("/webhooks/relay/webhook", {"messages": [
            {"sender_id": "mix", "text": "first"},
            {"sender_id": "mix", "text": "status500"},
            {"sender_id": "mix", "text": "third"}]})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, [{"recipient_id": "mix", "text": "echo: first"},
                                {"recipient_id": "mix", "text": "echo: third"}])
        error_line(self.host, headers["x-request-id"], "500")


class RefusedTests(unittest.TestCase):
    def test_refused_connection(self):
        with Host(cwd=bot_project("http://127.0.0.1:%d/bot" % dead_port(), timeout=5)) as host:
            status, headers, body, took = post_timed(host, WEBHOOK, {"sender": "r", "message": "hi"})
            self.assertEqual((status, body), (200, []))
            self.assertLess(took, 3)
            rid = headers["x-request-id"]
            error_line(host, rid, "")
            self.assertEqual(host.request("GET", "/")[0], 200)
            status, headers, body = host.post_json(WEBHOOK, {"sender": "r", "message": "again"})
            self.assertEqual((status, body), (200, []))
            log = final_log(host)
        self.assertIn("[%s]" % rid, log)


if __name__ == "__main__":
    unittest.main()
