# SPDX-License-Identifier: MIT
"""The bundled `hangouts` channel (Google Chat, docs/channels/hangouts.md), black box: events in
the shapes Google Chat posts (fixtures/hangouts/) go to the real binary, which answers each with
one Google Chat message merged from the bot's replies as Rasa's HangoutsOutput merges them. With
`project_id`, the bearer token is checked against the certificates a stand-in serves at
certs_url (a map of key ids to X.509 PEM certificates, as Google's), made and signed here with
the openssl command-line tool.

The Lua bot logs what it got (BOT GOT <json>) and answers `do:` commands with the replies under
test; any other text is answered "echo: <text>"."""
import base64
import json
import os
import subprocess
import tempfile
import time
import unittest

import channel_fixtures
from channel_fixtures import (assert_refused, bot_got_all, credentials_yml, serve_bot,
                              wait_bot_got)
from harness import project
from standins import Reply, StandInHostCase
from util import run_to_exit

WEBHOOK = "/webhooks/hangouts/webhook"
PROJECT = "123456789012"
ISSUER = "chat@system.gserviceaccount.com"

BOT = r"""
local replies = {}
local buttons = { { title = "Yes", payload = "/affirm" }, { title = "No", payload = "/deny" } }

replies["do:texts"] = function(out)
  out:send_text_message("Hello")
  out:send_text_message("World")
end
replies["do:buttons"] = function(out) out:send_text_with_buttons("Pick one", buttons) end
replies["do:quick"] = function(out) out:send_quick_replies("Quick?", buttons) end
replies["do:mixed"] = function(out)
  out:send_text_message("Look")
  out:send_image_url("https://example.com/cat.png")
  out:send_text_message("Nice")
end
replies["do:image then text"] = function(out)
  out:send_image_url("https://example.com/cat.png")
  out:send_text_message("A cat")
end
replies["do:custom"] = function(out)
  out:send_custom_json({ actionResponse = { type = "NEW_MESSAGE" }, cards = { { header = {
    title = "Custom" }, sections = { { widgets = { { keyValue = { content = "v" } } } } } } } })
end
replies["do:custom then text"] = function(out)
  out:send_custom_json({ actionResponse = { type = "NEW_MESSAGE" }, cards = { { header = {
    title = "Custom" } } } })
  out:send_text_message("after")
end
replies["do:custom text"] = function(out)
  out:send_custom_json({ text = "custom text", cards = { { header = { title = "dropped" } } } })
end
replies["do:attachment"] = function(out) out:send_attachment("https://example.com/r.pdf") end
replies["do:bad buttons"] = function(out)
  out:send_text_with_buttons("Broken", { { title = "no payload" } })
  out:send_text_message("after the bad buttons")
end
replies["do:nothing"] = function(out) end

return require("recording_bot").commands(replies, function(out, msg)
  out:send_text_message("echo: " .. (msg.text or ""))
end)
"""


def fixture(name):
    return channel_fixtures.fixture_json("hangouts", name)


def text_card(text):
    return {"sections": [{"widgets": [{"textParagraph": {"text": text}}]}]}


def image_card(url):
    return {"sections": [{"widgets": [{"image": {"imageUrl": url}}]}]}


def button_card(text, buttons):
    return {"sections": [{"widgets": [{"textParagraph": {"text": text}}, {"buttons": [
        {"textButton": {"text": t, "onClick": {"action": {"actionMethodName": p}}}}
        for t, p in buttons]}]}]}


YES_NO = [("Yes", "/affirm"), ("No", "/deny")]


class HangoutsCase(StandInHostCase):
    params = {}

    @classmethod
    def start(cls):
        cls.certs = cls.standin(cls.certs_reply)
        cls.host = serve_bot(credentials_yml("hangouts", "certs_url: %s" % cls.certs.url("/certs"),
                                             **cls.params), BOT)

    @classmethod
    def certs_reply(cls, rec):
        return Reply(json={}, headers={"Cache-Control": "public, max-age=20000"})

    def post(self, event, authorization=None):
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        return self.host.request("POST", WEBHOOK, body=json.dumps(event).encode(),
                                 headers=headers)

    def answer(self, event, **kw):
        status, headers, body = self.post(event, **kw)
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["content-type"].startswith("application/json"), headers)
        return json.loads(body)

    def say(self, text, name="message_dm.json", **kw):
        event = fixture(name)
        event["message"]["text"] = text
        return self.answer(event, **kw)


class StartupTests(unittest.TestCase):
    def test_a_misspelt_key_is_refused(self):
        assert_refused(self, "hangouts:\n  project_idd: \"1\"\n", "project_idd", "project_id")

    def test_no_parameters_is_fine(self):
        result = channel_fixtures.check("hangouts:\n")
        self.assertEqual(result.returncode, 0, result.stderr)


class EventTests(HangoutsCase):
    """Without project_id, as Rasa: no token is checked."""

    def test_a_direct_message(self):
        self.assertEqual(self.say("hello"), {"text": "echo: hello"})
        got = wait_bot_got(self.host, "hello")
        self.assertEqual(got["sender_id"], "Ada Lovelace")
        self.assertEqual(got["input_channel"], "hangouts")
        # Rasa's {"room": null} in a direct message, and what else identifies the user and space
        self.assertEqual(got["metadata"]["space"], "spaces/AAAAx1yZ2bc")
        self.assertEqual(got["metadata"]["user"], "users/112233445566778899001")
        self.assertIn("room", got["metadata"])

    def test_a_room_message_names_the_room(self):
        self.assertEqual(self.answer(fixture("message_room.json")),
                         {"text": "echo: @Switchboard hello room"})
        got = wait_bot_got(self.host, "@Switchboard hello room")
        self.assertEqual(got["metadata"]["room"], "Engineering")
        self.assertEqual(got["metadata"]["thread"], "spaces/AAAAq7Rt9wE/threads/Xh3kLp0QwEs")

    def test_added_to_a_direct_message(self):
        self.assertEqual(self.answer(fixture("added_to_dm.json")), {"text": "echo: /user_added"})

    def test_added_to_a_room(self):
        self.assertEqual(self.answer(fixture("added_to_room.json")), {"text": "echo: /room_added"})
        self.assertEqual(wait_bot_got(self.host, "/room_added")["metadata"]["room"],
                         "Engineering")

    def test_removed_from_a_space(self):
        self.assertEqual(self.answer(fixture("removed_from_space.json")),
                         {"text": "echo: /bot_removed"})

    def test_card_clicked_is_the_action_method_name(self):
        self.assertEqual(self.answer(fixture("card_clicked.json")), {"text": "echo: /affirm"})
        self.assertEqual(wait_bot_got(self.host, "/affirm")["sender_id"], "Ada Lovelace")

    def test_another_event_type_is_answered_empty(self):
        event = fixture("message_dm.json")
        event["type"] = "WIDGET_UPDATED"
        event["message"]["text"] = "marker widget"
        self.assertEqual(self.answer(event), {})
        self.assertFalse([g for g in bot_got_all(self.host) if "marker" in json.dumps(g)])

    def test_a_body_that_is_not_an_object_is_400(self):
        status, _, body = self.host.request("POST", WEBHOOK, body=b"[]",
                                            headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400, body)


class AnswerTests(HangoutsCase):
    """The bot's replies merged into one message, as Rasa's HangoutsOutput merges them."""

    def test_texts_are_joined_with_a_space(self):
        self.assertEqual(self.say("do:texts"), {"text": "Hello World"})

    def test_a_text_with_blank_lines(self):
        # The collected parts are joined like separate texts (Rasa keeps the blank line).
        self.assertEqual(self.say("do:split"), {"text": "first part second part"})

    def test_buttons_are_a_card(self):
        self.assertEqual(self.say("do:buttons"), {"cards": [button_card("Pick one", YES_NO)]})

    def test_quick_replies_are_buttons(self):
        self.assertEqual(self.say("do:quick"), {"cards": [button_card("Quick?", YES_NO)]})

    def test_an_image_is_an_image_card(self):
        self.assertEqual(self.say("do:image"),
                         {"cards": [image_card("https://example.com/cat.png")]})

    def test_texts_around_a_card_become_text_cards(self):
        self.assertEqual(self.say("do:mixed"), {"cards": [
            text_card("Look"), image_card("https://example.com/cat.png"), text_card("Nice")]})

    def test_a_text_after_a_card(self):
        self.assertEqual(self.say("do:image then text"), {"cards": [
            image_card("https://example.com/cat.png"), text_card("A cat")]})

    def test_custom_json_alone_is_sent_as_it_is(self):
        self.assertEqual(self.say("do:custom"), {
            "actionResponse": {"type": "NEW_MESSAGE"},
            "cards": [{"header": {"title": "Custom"},
                       "sections": [{"widgets": [{"keyValue": {"content": "v"}}]}]}]})

    def test_custom_json_merged_keeps_only_the_cards(self):
        self.assertEqual(self.say("do:custom then text"), {"cards": [
            {"header": {"title": "Custom"}}, text_card("after")]})

    def test_custom_json_with_text_is_a_text(self):
        self.assertEqual(self.say("do:custom text"), {"text": "custom text"})

    def test_an_attachment_is_a_text(self):
        self.assertEqual(self.say("do:attachment"), {"text": "https://example.com/r.pdf"})

    def test_buttons_without_a_payload_are_logged_and_dropped(self):
        status, headers, body = self.post(dict(fixture("message_dm.json"), message=dict(
            fixture("message_dm.json")["message"], text="do:bad buttons")))
        self.assertEqual(json.loads(body), {"text": "after the bad buttons"})
        self.host.wait_for_log(r"ERROR.*\[%s\].*title.*payload" % headers["x-request-id"])

    def test_nothing_is_an_empty_object(self):
        self.assertEqual(self.say("do:nothing"), {})


class IntentNameTests(HangoutsCase):
    params = {"hangouts_user_added_intent_name": "/hi_user",
              "hangouts_room_added_intent_name": "/hi_room",
              "hangouts_removed_intent_name": "/bye"}

    def test_the_configured_intents(self):
        self.assertEqual(self.answer(fixture("added_to_dm.json")), {"text": "echo: /hi_user"})
        self.assertEqual(self.answer(fixture("added_to_room.json")), {"text": "echo: /hi_room"})
        self.assertEqual(self.answer(fixture("removed_from_space.json")), {"text": "echo: /bye"})


# ---- tokens -------------------------------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """RSA keys and self-signed certificates by the openssl tool; RS256 tokens signed with it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sb-hangouts-")
        self.certs = {}

    def key(self, kid):
        key, cert = (os.path.join(self.dir, kid + ext) for ext in (".key", ".pem"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "2", "-subj", "/CN=" + kid], check=True,
                       capture_output=True, timeout=60)
        with open(cert) as f:
            self.certs[kid] = f.read()
        return key

    def token(self, claims, kid, alg="RS256", key_kid=None):
        header = {"alg": alg, "kid": kid, "typ": "JWT"}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        if alg == "none":
            return signing_input + "."
        key = os.path.join(self.dir, (key_kid or kid) + ".key")
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                             input=signing_input.encode(), capture_output=True, check=True,
                             timeout=30).stdout
        return signing_input + "." + b64url(sig)


class TokenTests(HangoutsCase):
    """With project_id: RS256 tokens from chat@system.gserviceaccount.com for that audience,
    signed by a key whose certificate certs_url lists."""
    params = {"project_id": int(PROJECT), "refetch_interval": 0.5}

    @classmethod
    def start(cls):
        cls.signer = Signer()
        for kid in ("g1", "g2", "g3"):
            cls.signer.key(kid)
        cls.published = ["g1"]
        super().start()

    @classmethod
    def certs_reply(cls, rec):
        return Reply(json={kid: cls.signer.certs[kid] for kid in cls.published},
                     headers={"Cache-Control": "public, max-age=20000, must-revalidate"})

    def claims(self, **changes):
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": PROJECT, "iat": now - 10, "exp": now + 3600}
        claims.update(changes)
        return claims

    def bearer(self, kid="g1", **kw):
        return "Bearer " + self.signer.token(self.claims(**kw.pop("claims", {})), kid, **kw)

    def refused(self, marker, authorization):
        event = fixture("message_dm.json")
        event["message"]["text"] = marker
        status, _, body = self.post(event, authorization=authorization)
        self.assertEqual(status, 401, body)
        self.assertFalse([g for g in bot_got_all(self.host) if marker in json.dumps(g)])

    def test_a_valid_token(self):
        self.assertEqual(self.say("valid token", authorization=self.bearer()),
                         {"text": "echo: valid token"})

    def test_the_certificates_are_fetched_once(self):
        for i in range(3):
            self.say("cached %d" % i, authorization=self.bearer())
        self.assertEqual(len(self.certs.snapshot()), 1)

    def test_missing_header(self):
        self.refused("marker missing", None)

    def test_wrong_audience(self):
        self.refused("marker aud", self.bearer(claims={"aud": "999"}))

    def test_wrong_issuer(self):
        self.refused("marker iss", self.bearer(claims={"iss": "accounts.google.com"}))

    def test_expired(self):
        now = int(time.time())
        self.refused("marker expired", self.bearer(claims={"iat": now - 7200, "exp": now - 600}))

    def test_alg_none(self):
        self.refused("marker none", self.bearer(alg="none"))

    def test_signed_by_another_key_under_a_known_kid(self):
        self.refused("marker forged", self.bearer(kid="g1", key_kid="g3"))

    def test_unknown_kid_then_a_rotated_certificate(self):
        self.refused("marker g3", self.bearer(kid="g3"))
        token = self.bearer(kid="g2")
        self.refused("marker g2", token)
        type(self).published = ["g1", "g2"]
        deadline = time.monotonic() + 10
        while True:  # the refetch interval runs on the host's clock
            status, _, body = self.post(dict(fixture("message_dm.json"), message=dict(
                fixture("message_dm.json")["message"], text="rotated")), authorization=token)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual((status, json.loads(body)), (200, {"text": "echo: rotated"}))


CASES = os.path.join(channel_fixtures.FIXTURES, "hangouts", "hangouts.cases.yml")


class CaseFileTests(unittest.TestCase):
    def test_switchboard_test_runs_the_case_file(self):
        with open(CASES) as f:
            folder = project({"hangouts.cases.yml": f.read()})
        result = run_to_exit(["test", "hangouts.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"\n(\d+) passed, 0 failed\n$")


if __name__ == "__main__":
    unittest.main()
