# SPDX-License-Identifier: MIT
"""The bundled `callback` channel (docs/contract.md §8): rest-style requests; every bot message is
POSTed as one JSON object of the collected shape (§4.2) to `url`, one request per message, in
order, with the configured headers, query parameters, token and basic auth; the webhook answers
200 "success" after the POSTs."""
import base64
import os
import tempfile
import time
import unittest

from channel_fixtures import assert_refused
from harness import project
from standins import (Reply, StandIn, StandInHostCase, dead_port, error_line,
                      http_bot_endpoints, lua_bot_endpoints, make_ca_and_server_cert,
                      post_timed, server_ssl_context)
from util import QuietHost as Host

WEBHOOK = "/webhooks/callback/webhook"

BOT_MESSAGES = [
    {"recipient_id": "bot-side", "text": "Hello"},
    {"text": "Pick", "buttons": [{"title": "Yes", "payload": "/affirm"}]},
    {"image": "https://x/y.jpg"},
    {"text": "a\n\nb"},
    {"custom": {"k": [1, 2]}},
    {"text": "Both", "attachment": "file.pdf"},
]

EXPECTED_SHAPES = [
    {"text": "Hello"},
    {"text": "Pick", "buttons": [{"title": "Yes", "payload": "/affirm"}]},
    {"image": "https://x/y.jpg"},
    {"text": "a"},
    {"text": "b"},
    {"custom": {"k": [1, 2]}},
    {"text": "Both"},
    {"attachment": "file.pdf"},
]


def rasa_bot(rec):
    text = (rec.json or {}).get("message")
    if text == "kinds":
        return Reply(json=BOT_MESSAGES)
    return Reply(json=[{"text": "echo: %s" % text}])


def callback_api(rec):
    if (rec.json or {}).get("text") == "echo: cbfail":
        return Reply(status=500, body="callback endpoint down")
    return Reply(body="ok", delay=0.05)


class StartupTests(unittest.TestCase):
    def test_startup_fails_without_url(self):
        for credentials in ("callback:\n", "callback:\n  headers: {X-A: b}\n"):
            assert_refused(self, credentials, "callback", "url")


class CallbackTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.bot = cls.standin(rasa_bot)
        cls.api = cls.standin(callback_api)
        credentials = (
            "callback:\n"
            "  url: %s\n"
            "  headers:\n"
            '    X-Api-Key: "${SB_TEST_CALLBACK_KEY}"\n'
            "  params:\n"
            "    channel: web\n"
            '    "a b": "c&d"\n'
            "  token: secret-token\n"
            "  token_name: tk\n"
            "  basic_auth:\n"
            "    username: user\n"
            '    password: "p:w"\n' % cls.api.url("/cb?x=1"))
        cls.host = Host(cwd=project({
            "credentials.yml": credentials,
            "endpoints.yml": http_bot_endpoints(cls.bot.url("/bot"), timeout=5)}),
            env={"SB_TEST_CALLBACK_KEY": "key-123"})

    def posts_for(self, sender):
        return [r for r in self.api.snapshot() if (r.json or {}).get("recipient_id") == sender]

    def test_one_post_per_message_in_order_then_success(self):
        status, headers, body, took = post_timed(self.host, WEBHOOK,
                                                 {"sender": "cb-u1", "message": "kinds"})
        answered = time.monotonic()
        self.assertEqual(status, 200)
        self.assertEqual(body, "success")
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
        recs = self.posts_for("cb-u1")
        self.assertEqual([r.json for r in recs],
                         [dict(shape, recipient_id="cb-u1") for shape in EXPECTED_SHAPES])
        for r in recs:
            self.assertEqual(r.method, "POST")
            self.assertEqual(r.path, "/cb")
            self.assertTrue(r.headers.get("content-type", "").startswith("application/json"))
        # the answer waits for the POSTs (each takes 0.05 s at the stand-in)
        self.assertTrue(all(r.replied is not None and r.replied < answered for r in recs))
        for a, b in zip(recs, recs[1:]):
            self.assertGreaterEqual(b.start, a.replied, "POSTs overlap")

    def test_headers_query_token_and_basic_auth(self):
        status, _, body = self.host.post_json(WEBHOOK, {"sender": "cb-u2", "message": "hi"})
        self.assertEqual((status, body), (200, "success"))
        rec = self.posts_for("cb-u2")[0]
        self.assertEqual(rec.json, {"recipient_id": "cb-u2", "text": "echo: hi"})
        self.assertEqual(rec.headers.get("x-api-key"), "key-123")
        self.assertEqual(rec.query, {"x": "1", "channel": "web", "a b": "c&d", "tk": "secret-token"})
        self.assertEqual(rec.headers.get("authorization"),
                         "Basic " + base64.b64encode(b"user:p:w").decode())

    def test_a_failing_callback_is_logged_and_the_webhook_still_answers_success(self):
        status, headers, body, _ = post_timed(self.host, WEBHOOK,
                                              {"sender": "cb-fail", "message": "cbfail"})
        self.assertEqual((status, body), (200, "success"))
        self.assertEqual(len(self.posts_for("cb-fail")), 1)
        error_line(self.host, headers["x-request-id"], "500")
        status, _, body = self.host.post_json(WEBHOOK, {"sender": "cb-fail", "message": "again"})
        self.assertEqual((status, body), (200, "success"))
        self.assertEqual([r.json["text"] for r in self.posts_for("cb-fail")],
                         ["echo: cbfail", "echo: again"])


class MoreCallbackTests(unittest.TestCase):
    def test_default_token_name_and_refused_callback_url(self):
        with StandIn(rasa_bot) as bot, StandIn(Reply(body="ok")) as api:
            credentials = "callback:\n  url: %s\n  token: tok\n" % api.url("/hook")
            with Host(cwd=project({"credentials.yml": credentials,
                                   "endpoints.yml": http_bot_endpoints(bot.url("/bot"))})) as host:
                status, _, body = host.post_json(WEBHOOK, {"sender": "t", "message": "x"})
                self.assertEqual((status, body), (200, "success"))
                rec = api.wait_for(1)[0]
                self.assertEqual(rec.query, {"token": "tok"})
                self.assertEqual(rec.json, {"recipient_id": "t", "text": "echo: x"})
            credentials = "callback:\n  url: http://127.0.0.1:%d/hook\n" % dead_port()
            with Host(cwd=project({"credentials.yml": credentials,
                                   "endpoints.yml": http_bot_endpoints(bot.url("/bot"))})) as host:
                status, headers, body, took = post_timed(host, WEBHOOK,
                                                         {"sender": "t", "message": "x"})
                self.assertEqual((status, body), (200, "success"))
                self.assertLess(took, 3)
                error_line(host, headers["x-request-id"], "callback")
                self.assertEqual(host.request("GET", "/webhooks/callback/")[0], 200)

    def test_a_failing_post_does_not_log_the_token(self):
        # Secrets from credentials.yml never appear in the log: the token travels in the query,
        # so errors name the URL without it.
        port = dead_port()
        with StandIn(rasa_bot) as bot:
            credentials = ("callback:\n  url: http://127.0.0.1:%d/hook?a=1\n"
                           "  token: s3cr3t-tok\n" % port)
            with Host(cwd=project({"credentials.yml": credentials,
                                   "endpoints.yml": http_bot_endpoints(bot.url("/bot"))})) as host:
                status, headers, body = host.post_json(WEBHOOK, {"sender": "t", "message": "x"})
                self.assertEqual((status, body), (200, "success"))
                line = error_line(host, headers["x-request-id"], "callback POST to [^\\n]*").group(0)
                self.assertIn("http://127.0.0.1:%d/hook failed" % port, line)
                self.assertNotIn("s3cr3t-tok", host.log())

    def test_lua_bot_messages_are_posted(self):
        bot = ('local bot = {}\n'
               'function bot.handle(msg, out)\n'
               '  out:send_text_message("hello " .. msg.text)\n'
               '  out:send_image_url("https://x/y.jpg")\n'
               'end\nreturn bot\n')
        with StandIn(Reply(body="ok")) as api:
            credentials = "callback:\n  url: %s\n" % api.url("/hook")
            with Host(cwd=project({"credentials.yml": credentials, "bot.lua": bot,
                                   "endpoints.yml": lua_bot_endpoints()})) as host:
                status, _, body = host.post_json(WEBHOOK, {"sender": "lb", "message": "you"})
                self.assertEqual((status, body), (200, "success"))
                self.assertEqual([r.json for r in api.snapshot()],
                                 [{"recipient_id": "lb", "text": "hello you"},
                                  {"recipient_id": "lb", "image": "https://x/y.jpg"}])


class TlsTests(unittest.TestCase):
    """cafile: the callback URL's certificate is verified with that CA (Rasa's EndpointConfig
    takes the same key); without it, with the system's CAs."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="sb-callback-tls-")
        cls.ca, cert, key = make_ca_and_server_cert(cls.certs)
        cls.context = server_ssl_context(cert, key)

    def test_a_private_ca_given_as_cafile(self):
        with StandIn(rasa_bot) as bot, StandIn(Reply(body="ok"), self.context) as api:
            credentials = "callback:\n  url: %s\n  cafile: %s\n" % (api.url("/hook"), self.ca)
            with Host(cwd=project({"credentials.yml": credentials,
                                   "endpoints.yml": http_bot_endpoints(bot.url("/bot"))})) as host:
                status, _, body = host.post_json(WEBHOOK, {"sender": "tls", "message": "x"})
                self.assertEqual((status, body), (200, "success"))
                self.assertEqual([r.json for r in api.snapshot()],
                                 [{"recipient_id": "tls", "text": "echo: x"}])
                self.assertNotIn("ERROR", host.log())

    def test_without_cafile_the_private_ca_is_not_trusted(self):
        with StandIn(rasa_bot) as bot, StandIn(Reply(body="ok"), self.context) as api:
            credentials = "callback:\n  url: %s\n" % api.url("/hook")
            with Host(cwd=project({"credentials.yml": credentials,
                                   "endpoints.yml": http_bot_endpoints(bot.url("/bot"))})) as host:
                status, headers, body = host.post_json(WEBHOOK, {"sender": "tls", "message": "x"})
                self.assertEqual((status, body), (200, "success"))
                error_line(host, headers["x-request-id"], "callback POST to .*certificate")

    def test_a_cafile_that_cannot_be_read_stops_startup(self):
        missing = os.path.join(self.certs, "missing.pem")
        assert_refused(self, "callback:\n  url: https://example.com/hook\n  cafile: %s\n"
                       % missing, "cafile", "missing.pem")


class TimeoutTests(unittest.TestCase):
    def test_the_default_timeout_is_rasas_300_seconds(self):
        # A callback that takes 11 s: more than the 10 s this channel used to allow, well
        # within Rasa's 300 s (and the 30 s response timeout).
        with StandIn(rasa_bot) as bot, StandIn(Reply(body="ok", delay=11)) as api:
            credentials = "callback:\n  url: %s\n" % api.url("/slow")
            with Host(cwd=project({"credentials.yml": credentials,
                                   "endpoints.yml": http_bot_endpoints(bot.url("/bot"))})) as host:
                status, _, body, took = post_timed(host, WEBHOOK,
                                                   {"sender": "slow", "message": "x"}, timeout=40)
                self.assertEqual((status, body), (200, "success"))
                self.assertGreater(took, 10.5)
                self.assertEqual(len(api.wait_for(1, finished=True)), 1)
                self.assertNotIn("ERROR", host.log())

    def test_timeout_is_still_configurable(self):
        with StandIn(rasa_bot) as bot, StandIn(Reply(body="ok", delay=3)) as api:
            credentials = "callback:\n  url: %s\n  timeout: 0.5\n" % api.url("/slow")
            with Host(cwd=project({"credentials.yml": credentials,
                                   "endpoints.yml": http_bot_endpoints(bot.url("/bot"))})) as host:
                status, headers, body, took = post_timed(host, WEBHOOK,
                                                         {"sender": "slow", "message": "x"})
                self.assertEqual((status, body), (200, "success"))
                self.assertLess(took, 2.5)
                error_line(host, headers["x-request-id"], "callback POST to .*timed out")


if __name__ == "__main__":
    unittest.main()
