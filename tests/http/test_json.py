# SPDX-License-Identifier: MIT
"""sb.json through the real host (docs/lua-api.md, sb.json): user data that looks like the
markers an older sb.json smuggled values in ("\\u0002...\\u0002" for numbers, the
"\\u0001sb-empty-array\\u0001" sentinel for []) passes through unchanged, in both directions,
and what the host sends is always valid JSON."""
import json
import unittest

from harness import project
from standins import StandInHostCase, echo_rasa_bot, http_bot_endpoints
from util import ECHO_BOT, QuietHost as Host, serve

WEBHOOK = "/webhooks/rest/webhook"
SENTINEL = "\x01sb-empty-array\x01"
# Strings the old encoder or decoder rewrote: a number marker around a word, the empty-array
# sentinel, a lone marker (unbalanced: the old encoder swallowed the rest of the text), markers
# around digits and around "[]".
MARKER_STRINGS = ["\x02true\x02", SENTINEL, "\x02", "\x02123", "a\x02\x02b", "\x021.5\x02",
                  "\x02[]\x02", "\\u0002x\\u0002"]
METADATA = {
    "a": [],
    "strings": MARKER_STRINGS,
    "by_key": {"k%d" % i: s for i, s in enumerate(MARKER_STRINGS)},
    "sentinel_list": [SENTINEL],
    "nested_sentinel": [[SENTINEL], {"x": [SENTINEL, []]}],
    SENTINEL: "a key like the sentinel",
    "\x02true\x02": "a key like a number marker",
}


def raw_body(sender, message, metadata):
    """The request text exactly as a client writes it (json.dumps escapes \\x01, \\x02)."""
    return json.dumps({"sender": sender, "message": message, "metadata": metadata})


class HttpBotReceivesWhatWasSent(StandInHostCase):
    """The rest channel relays the message to an HTTP bot stand-in: the bot gets the text and the
    metadata the client sent, as valid JSON."""

    @classmethod
    def start(cls):
        cls.bot = cls.standin(echo_rasa_bot())
        cls.host = Host(cwd=project({
            "credentials.yml": "rest:\n",
            "endpoints.yml": http_bot_endpoints(cls.bot.url(WEBHOOK), timeout=5)}))

    def sent_by(self, sender):
        for rec in reversed(self.bot.snapshot()):
            if sender.encode() in rec.body:
                return rec
        self.fail("the bot got nothing from %s: %r" % (sender, self.bot.snapshot()))

    def relay(self, sender, message, metadata):
        status, _, body = self.host.request("POST", WEBHOOK,
                                            body=raw_body(sender, message, metadata),
                                            headers={"Content-Type": "application/json"})
        self.assertEqual(status, 200, body)
        rec = self.sent_by(sender)
        got = rec.json
        self.assertIsNotNone(got, "the host sent invalid JSON to the bot: %r" % rec.body)
        return got

    def test_number_marker_text_and_empty_array_metadata_arrive_as_sent(self):
        # The exact request of the report: {"message":"\u0002true\u0002","metadata":{"a":[]}}
        got = self.relay("marker-user", "\x02true\x02", {"a": []})
        self.assertEqual(got["message"], "\x02true\x02")
        self.assertEqual(got["metadata"], {"a": []})

    def test_every_marker_like_string_arrives_as_sent(self):
        for i, text in enumerate(MARKER_STRINGS):
            with self.subTest(text=text):
                got = self.relay("marker-%d" % i, text, METADATA)
                self.assertEqual(got["message"], text)
                self.assertEqual(got["metadata"], METADATA)

    def test_integers_beyond_53_bits_arrive_in_full(self):
        metadata = {"big": 123456789012345678, "neg": -9223372036854775808,
                    "max": 9223372036854775807,
                    "float": 0.1, "tiny": 5e-324, "huge": 1e300}
        got = self.relay("wide-user", "x", metadata)
        self.assertEqual(got["metadata"], metadata)
        raw = self.sent_by("wide-user").body.decode().replace(" ", "")
        self.assertIn('"big":123456789012345678', raw)
        self.assertIn('"max":9223372036854775807', raw)


class EchoBotAnswersWhatItGot(unittest.TestCase):
    """A Lua bot that answers the message it got as a custom payload: the marker-like strings
    come back unchanged and the answer is valid JSON."""

    @classmethod
    def setUpClass(cls):
        cls.host = serve({"credentials.yml": "rest:\n"}, bot=ECHO_BOT).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()

    def echo(self, sender, message, metadata):
        status, _, data = self.host.request("POST", WEBHOOK,
                                            body=raw_body(sender, message, metadata),
                                            headers={"Content-Type": "application/json"})
        self.assertEqual(status, 200, data)
        try:
            answer = json.loads(data.decode("utf-8"))
        except ValueError:
            self.fail("the answer is not valid JSON: %r" % data)
        self.assertEqual(len(answer), 1, answer)
        return answer[0]["custom"]

    def test_marker_like_strings_come_back_unchanged(self):
        for i, text in enumerate(MARKER_STRINGS):
            with self.subTest(text=text):
                got = self.echo("echo-%d" % i, text, METADATA)
                self.assertEqual(got["text"], text)
                self.assertEqual(got["metadata"], METADATA)

    def test_the_reported_request_comes_back_unchanged(self):
        got = self.echo("echo-report", "\x02true\x02", {"a": []})
        self.assertEqual((got["text"], got["metadata"]), ("\x02true\x02", {"a": []}))


if __name__ == "__main__":
    unittest.main()
