# SPDX-License-Identifier: MIT
"""The bundled `botframework` channel (Microsoft Teams and the other Bot Framework channels,
docs/channels/botframework.md), black box: activities in the shapes the Bot Connector sends
(fixtures/botframework/) go to the real binary with tokens made by `jsonwebtoken`; one stand-in
plays the OpenID metadata and its keys, the token endpoint (login_url) and the Bot Connector
(the activities' serviceUrl). The replies are compared with what Microsoft's
`botframework-connector` (ConnectorClient with MicrosoftAppCredentials over MSAL) sends for the
same activities, and the tokens' verdicts with the SDK's own check (tests/sdk/botframework_check.js).

The Lua bot logs what it got (BOT GOT <json>) and answers `do:` commands with the reply under
test; any other text is answered "echo: <text>"."""
import copy
import itertools
import json
import os
import threading
import time
import unittest
import urllib.parse

import channel_fixtures
from channel_fixtures import (assert_refused, bot_got_all, credentials_yml, sdk, serve_bot,
                              wait_bot_got, wait_bot_got_where, wait_requests)
from harness import project
from standins import Reply, StandInHostCase, error_line
from util import run_to_exit

WEBHOOK = "/webhooks/botframework/webhook"
APP_ID = "2f5e1a7c-8b3d-4e6f-9a0b-1c2d3e4f5a6b"
APP_PASSWORD = "Qx~8Q~s3cr3t.pa55w0rd&more"
ISSUER = "https://api.botframework.com"
LOGIN_PATH = "/botframework.com/oauth2/v2.0/token"
SCOPE = "https://api.botframework.com/.default"

BOT = r"""
local sb = require "switchboard"
local replies = {}
local buttons = { { title = "Yes", payload = "/affirm" }, { title = "No", payload = "/deny" } }

replies["do:text"] = function(out) out:send_text_message("Hello\n\nWorld") end
replies["do:buttons"] = function(out) out:send_text_with_buttons("Pick one", buttons) end
replies["do:typed"] = function(out)
  out:send_text_with_buttons("Typed", { { type = "openUrl", title = "Docs",
    value = "https://example.com/docs" }, { title = "Site", url = "https://example.com" } })
end
replies["do:quick"] = function(out) out:send_quick_replies("Quick?", buttons) end
replies["do:image"] = function(out) out:send_image_url("https://example.com/cat.png") end
replies["do:attachment"] = function(out) out:send_attachment("https://example.com/r.pdf") end
replies["do:custom"] = function(out)
  out:send_custom_json({ attachments = { { contentType = "application/vnd.microsoft.card.adaptive",
    content = { type = "AdaptiveCard", version = "1.4",
      body = { { type = "TextBlock", text = "Card" } } } } },
    channelData = { notification = { alert = "false" } }, recipient = { name = "Ada" } })
end
replies["do:elements"] = function(out)
  out:send_elements({ { text = "first element" }, { text = "second", summary = "2" } })
end
replies["do:slow"] = function(out)
  sb.sleep(2)
  out:send_text_message("slow answer")
end
replies["do:two"] = function(out)
  out:send_text_message("one")
  out:send_text_message("two")
end

return require("recording_bot").commands(replies, function(out, msg)
  out:send_text_message("echo: " .. (msg.text or ""))
end)
"""


def fixture(name):
    return channel_fixtures.fixture_json("botframework", name)


ACTIVITY_IDS = itertools.count(1715690000001)


class Platform:
    """The stand-in's answers: OpenID metadata, keys (rotated by setting `jwks`), tokens
    (tok-1, tok-2, ... one per token request) and the Bot Connector (201 with an id; a
    conversation id starting with "conv-401" is refused once, "conv-500" always)."""

    def __init__(self, jwks):
        self.jwks = jwks
        self.tokens = itertools.count(1)
        self.refused = set()
        self.lock = threading.Lock()
        self.base = None

    def __call__(self, rec):
        if rec.path == "/openid":
            return Reply(json={"issuer": ISSUER, "authorization_endpoint":
                               "https://invalid.botframework.com",
                               "jwks_uri": self.base + "/keys",
                               "id_token_signing_alg_values_supported": ["RS256"],
                               "token_endpoint_auth_methods_supported": ["private_key_jwt"]})
        if rec.path == "/keys":
            return Reply(json={"keys": self.jwks})
        if rec.path.endswith(LOGIN_PATH):
            with self.lock:
                n = next(self.tokens)
            return Reply(json={"token_type": "Bearer", "expires_in": 86399,
                               "ext_expires_in": 86399, "access_token": "tok-%d" % n})
        conversation = urllib.parse.unquote(rec.path.split("/conversations/")[-1].split("/")[0])
        if conversation.startswith("conv-500"):
            return Reply(status=500, json={"error": {"code": "ServiceError",
                                                     "message": "Unknown error"}})
        if conversation.startswith("conv-401"):
            with self.lock:
                first = conversation not in self.refused
                self.refused.add(conversation)
            if first:
                return Reply(status=401, json={"message": "Authorization has been denied for "
                                                          "this request."})
        return Reply(status=201, json={"id": "1:%d" % next(ACTIVITY_IDS)})


class BotFrameworkCase(StandInHostCase):
    """One host and one stand-in per class; the keys and tokens are made once per module."""
    kids = None
    extra = {}

    @classmethod
    def start(cls):
        made = keys()
        cls.keys = {k["kid"]: k for k in made}
        cls.platform = Platform([cls.keys["k1"]["jwk"]])
        cls.api = cls.standin(cls.platform)
        cls.platform.base = cls.api.url("")
        cls.service_url = cls.api.url("/svc/")
        cls.host = serve_bot(credentials_yml(
            "botframework", "app_id: %s" % json.dumps(APP_ID),
            "app_password: %s" % json.dumps(APP_PASSWORD),
            "openid_url: %s" % cls.api.url("/openid"),
            "login_url: %s" % cls.api.url(LOGIN_PATH), **cls.extra), BOT)

    # ---- tokens

    def claims(self, **changes):
        now = int(time.time())
        claims = {"serviceurl": self.service_url, "nbf": now - 60, "exp": now + 3600,
                  "iss": ISSUER, "aud": APP_ID}
        for key, value in changes.items():
            if value is None:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims

    def tokens(self, specs):
        """Tokens for [(claims, kid, alg)]: signed with the key of that kid (alg none: none)."""
        return sdk("botframework_check.js", {"command": "sign", "items": [
            {"claims": claims, "kid": kid, "alg": alg,
             "key": None if alg == "none" else self.keys[kid]["private"]}
            for claims, kid, alg in specs]})

    def token(self, kid="k1", alg="RS256", **changes):
        return self.tokens([(self.claims(**changes), kid, alg)])[0]

    # ---- requests

    def activity(self, name="message.json", text=None, conversation=None, **changes):
        """A fixture activity from this class's serviceUrl, with a new id."""
        activity = fixture(name)
        activity["serviceUrl"] = self.service_url
        activity["id"] = str(next(ACTIVITY_IDS))
        if text is not None:
            activity["text"] = text
        if conversation is not None:
            activity["conversation"]["id"] = conversation
        activity.update(changes)
        return activity

    def post(self, activity, token=None, authorization=None):
        headers = {"Content-Type": "application/json"}
        if authorization is None and token is not False:
            authorization = "Bearer " + (token or self.good_token())
        if authorization is not None:
            headers["Authorization"] = authorization
        body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
        return self.host.request("POST", WEBHOOK, body=body, headers=headers)

    def good_token(self):
        cls = type(self)
        if getattr(cls, "_good", None) is None:
            cls._good = self.token()
        return cls._good

    def assert_success(self, activity, **kw):
        status, headers, body = self.post(activity, **kw)
        self.assertEqual((status, body), (200, b"success"))
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
        return headers

    def sent(self, conversation, n=1, timeout=5.0):
        """The activities the channel posted to this conversation, once there are n."""
        quoted = urllib.parse.quote(conversation, safe="-_.!~*'()")
        path = "/svc/v3/conversations/%s/activities" % quoted
        return wait_requests(self.api, lambda: [r for r in self.api.snapshot()
                                                if r.path == path], "activity", n, timeout)

    def token_requests(self):
        return [r for r in self.api.snapshot() if r.path.endswith(LOGIN_PATH)]

    def bot_got(self, text, timeout=5.0):
        return wait_bot_got(self.host, text, timeout)

    def assert_not_processed(self, marker):
        # A refused request is answered before anything is queued: nothing can come later.
        self.assertFalse([g for g in bot_got_all(self.host) if marker in json.dumps(g)])

    def settle(self, conversation):
        """Once this returns, every activity posted before from the fixture's sender has been
        processed: one more from the same sender is, after them (per-sender order)."""
        marker = "sentinel %d" % next(ACTIVITY_IDS)
        self.assert_success(self.activity(text=marker, conversation=conversation))
        self.bot_got(marker)


_KEYS = []


def keys():
    """Three RSA keys by jsonwebtoken's host (node's crypto), endorsed for msteams and webchat:
    k1 published from the start, k2 published when a test rotates, k3 never."""
    if not _KEYS:
        _KEYS.extend(sdk("botframework_check.js", {"command": "keys", "kids": ["k1", "k2", "k3"],
                                                   "endorsements": ["msteams", "webchat"]}))
    return _KEYS


class StartupTests(unittest.TestCase):
    def test_app_id_and_app_password_are_required(self):
        assert_refused(self, "botframework:\n", "app_id")
        assert_refused(self, 'botframework:\n  app_id: "x"\n', "app_password")

    def test_a_misspelt_key_is_refused(self):
        assert_refused(self, 'botframework:\n  app_id: "x"\n  app_pasword: "y"\n',
                       "app_pasword", "app_password")


class TokenTests(BotFrameworkCase):
    """Inbound requests carry a JWT from the Bot Connector: checked against the OpenID
    metadata's keys, issuer, audience (app_id), expiry with 5 minutes' leeway, and the
    serviceurl claim against the activity's serviceUrl."""

    def refused(self, marker, token=None, authorization=None, body=None, activity=None):
        activity = activity or self.activity(text=marker)
        status, headers, data = self.post(activity, token=token, authorization=authorization)
        self.assertEqual(status, 401, data)
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
        if body is not None:
            self.assertEqual(data.decode(), body)
        self.assert_not_processed(marker)
        return headers

    def test_a_valid_token_is_accepted(self):
        self.assert_success(self.activity(text="valid token"))
        got = self.bot_got("valid token")
        self.assertEqual(got["sender_id"], fixture("message.json")["from"]["id"])

    def test_expired_beyond_the_leeway_is_refused(self):
        now = int(time.time())
        headers = self.refused("marker expired", token=self.token(exp=now - 400, nbf=now - 900),
                               body="Could not validate JWT token.")
        self.host.wait_for_log(r"WARNING.*\[%s\].*botframework.*expired"
                               % headers["x-request-id"])

    def test_expired_within_the_leeway_is_accepted(self):
        now = int(time.time())
        self.assert_success(self.activity(text="within leeway"),
                            token=self.token(exp=now - 100, nbf=now - 900))
        self.bot_got("within leeway")

    def test_wrong_audience(self):
        self.refused("marker audience", token=self.token(aud="someone-else"))

    def test_wrong_issuer(self):
        self.refused("marker issuer", token=self.token(iss="https://sts.windows.net/x/"))

    def test_no_expiry(self):
        self.refused("marker no exp", token=self.token(exp=None))

    def test_service_url_mismatch(self):
        headers = self.refused("marker service url",
                               token=self.token(serviceurl="https://evil.example/"))
        self.host.wait_for_log(r"WARNING.*\[%s\].*serviceurl" % headers["x-request-id"])

    def test_service_url_claim_missing(self):
        self.refused("marker no service url", token=self.token(serviceurl=None))

    def test_missing_header(self):
        self.refused("marker no header", token=False, body="No authorization header provided.")

    def test_not_bearer(self):
        self.refused("marker basic", authorization="Basic YWxhZGRpbjpvcGVuc2VzYW1l",
                     body="No Bearer token provided in Authorization header.")

    def test_alg_none(self):
        self.refused("marker none", token=self.token(alg="none"))

    def test_rs384_is_refused(self):
        self.refused("marker rs384", token=self.token(alg="RS384"))

    def test_unknown_kid(self):
        self.refused("marker k3", token=self.token(kid="k3"))

    def test_signed_by_another_key_under_a_known_kid(self):
        token = self.tokens([(self.claims(), "k3", "RS256")])[0]
        # k3's signature with k1's kid in the header
        forged = self.tokens([(self.claims(), "k1", "RS256")])[0].split(".")[0] + "." + \
            token.split(".", 1)[1]
        self.refused("marker forged", token=forged)

    def test_a_channel_the_key_does_not_endorse(self):
        self.refused("marker slack", activity=self.activity(text="marker slack",
                                                            channelId="slack"))

    def test_the_sdk_agrees(self):
        # Each case as the SDK's ChannelValidation judges it with the same metadata and keys.
        # Two differ on purpose: the channel wants an exp and RS256 (docs/channels/botframework.md).
        now = int(time.time())
        cases = [
            ("valid", self.claims(), "k1", "RS256", "msteams", True),
            ("expired", self.claims(exp=now - 400), "k1", "RS256", "msteams", False),
            ("leeway", self.claims(exp=now - 100), "k1", "RS256", "msteams", True),
            ("audience", self.claims(aud="other"), "k1", "RS256", "msteams", False),
            ("issuer", self.claims(iss="https://evil.example"), "k1", "RS256", "msteams", False),
            ("service url", self.claims(serviceurl="https://x.example/"), "k1", "RS256",
             "msteams", False),
            ("unknown kid", self.claims(), "k3", "RS256", "msteams", False),
            ("alg none", self.claims(), "k1", "none", "msteams", False),
            ("endorsement", self.claims(), "k1", "RS256", "slack", False),
            ("webchat", self.claims(), "k1", "RS256", "webchat", True),
            ("no exp", self.claims(exp=None), "k1", "RS256", "msteams", False),
            ("RS384", self.claims(), "k1", "RS384", "msteams", False),
        ]
        differ = {"no exp", "RS384"}
        tokens = self.tokens([(c[1], c[2], c[3]) for c in cases])
        verdicts = sdk("botframework_check.js", {
            "command": "validate", "openid_url": self.api.url("/openid"), "app_id": APP_ID,
            "cases": [{"authorization": "Bearer " + t, "serviceUrl": self.service_url,
                       "channelId": c[4]} for t, c in zip(tokens, cases)]})
        for (name, _, _, _, channel_id, accepted), token, verdict in zip(cases, tokens, verdicts):
            marker = "sdk case %s" % name
            status, _, _ = self.post(self.activity(text=marker, channelId=channel_id),
                                     token=token)
            self.assertEqual(status == 200, accepted, (name, status))
            if name in differ:
                self.assertEqual(verdict, "ok", name)
            else:
                self.assertEqual(verdict == "ok", accepted, (name, verdict))
            if accepted:
                self.bot_got(marker)


class KeyRotationTests(BotFrameworkCase):
    """A kid the keys lack makes the channel fetch them again (at most once per
    refetch_interval): a key Microsoft rotates in is found."""
    extra = {"refetch_interval": 0.5}

    def test_a_rotated_key_is_found_after_a_refetch(self):
        self.assert_success(self.activity(text="before rotation"))
        self.bot_got("before rotation")
        k2 = self.token(kid="k2")
        status, _, _ = self.post(self.activity(text="marker not yet"), token=k2)
        self.assertEqual(status, 401)
        fetches = len([r for r in self.api.snapshot() if r.path == "/keys"])
        self.platform.jwks = [self.keys["k1"]["jwk"], self.keys["k2"]["jwk"]]
        deadline = time.monotonic() + 10
        while True:  # the refetch interval is the host's clock: retry until it has passed
            status, _, _ = self.post(self.activity(text="after rotation"), token=k2)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(status, 200)
        self.bot_got("after rotation")
        self.assertGreater(len([r for r in self.api.snapshot() if r.path == "/keys"]), fetches)
        # The metadata is fetched once, the keys only when a kid is unknown.
        self.assertEqual(len([r for r in self.api.snapshot() if r.path == "/openid"]), 1)


class MessageTests(BotFrameworkCase):
    def test_text_message_metadata_and_reply(self):
        activity = self.activity(text="hello there", conversation="conv-hello")
        self.assert_success(activity)
        got = self.bot_got("hello there")
        self.assertEqual(got["sender_id"], activity["from"]["id"])
        self.assertEqual(got["input_channel"], "botframework")
        md = got["metadata"]
        self.assertEqual(md["serviceUrl"], self.service_url)
        self.assertEqual(md["conversation"], activity["conversation"])
        self.assertEqual(md["recipient"], activity["recipient"])
        self.assertEqual(md["from"], activity["from"])
        self.assertEqual(md["channelId"], "msteams")
        self.assertEqual(md["activity_id"], activity["id"])
        self.assertNotIn("attachments", md)
        [rec] = self.sent("conv-hello")
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.headers["authorization"], "Bearer tok-1")
        self.assertTrue(rec.headers["content-type"].startswith("application/json"))
        self.assertEqual(rec.json, {"type": "message", "recipient": {"id": activity["from"]["id"]},
                                    "from": activity["recipient"], "text": "echo: hello there",
                                    "channelData": {"notification": {"alert": "true"}}})

    def test_attachments_go_into_the_metadata_and_the_text_is_empty(self):
        activity = self.activity("message_attachment.json", conversation="conv-attach")
        self.assert_success(activity)
        [rec] = self.sent("conv-attach")
        self.assertEqual(rec.json["text"], "echo:")  # stripped, as Rasa strips it
        [got] = wait_bot_got_where(
            self.host, lambda g: g.get("metadata", {}).get("activity_id") == activity["id"])
        self.assertEqual(got["text"], "")
        self.assertEqual(got["metadata"]["attachments"], activity["attachments"])

    def test_an_adaptive_card_submit_value_becomes_the_text(self):
        activity = self.activity("message_card_submit.json", conversation="conv-submit")
        self.assert_success(activity)
        got = self.bot_got('{"intent":"/order","size":"large"}')
        self.assertEqual(got["metadata"]["value"], {"intent": "/order", "size": "large"})

    def test_message_back_keeps_its_text(self):
        activity = self.activity("message_back.json", conversation="conv-back")
        self.assert_success(activity)
        got = self.bot_got("/affirm")
        self.assertEqual(got["metadata"]["value"], "/affirm")

    def test_conversation_update_is_ignored(self):
        activity = self.activity("conversation_update.json", conversation="conv-update")
        self.assert_success(activity)
        self.settle("conv-update")
        [reply] = self.sent("conv-update")
        self.assertTrue(reply.json["text"].startswith("echo: sentinel"), reply.json)

    def test_a_body_that_is_not_an_object_is_400(self):
        status, _, data = self.post(b"[1]")
        self.assertEqual(status, 400, data)
        self.assertEqual(json.loads(data)["error"], "invalid_body")

    def test_the_answer_does_not_wait_for_the_replies(self):
        t0 = time.monotonic()
        self.assert_success(self.activity(text="do:slow", conversation="conv-slow"))
        took = time.monotonic() - t0
        self.assertLess(took, 1.5)
        [rec] = self.sent("conv-slow", timeout=10)
        self.assertEqual(rec.json["text"], "slow answer")

    def test_a_redelivered_activity_is_processed_once(self):
        activity = self.activity(text="only once", conversation="conv-once")
        self.assert_success(activity)
        self.assert_success(activity)
        again = dict(activity, id=str(next(ACTIVITY_IDS)))
        self.assert_success(again)
        self.settle("conv-once")
        texts = [r.json["text"] for r in self.sent("conv-once", n=3)]
        self.assertEqual(texts[:2], ["echo: only once"] * 2)
        self.assertEqual(len(texts), 3, texts)
        got = wait_bot_got_where(self.host, lambda g: g["text"] == "only once", n=2)
        self.assertEqual(len(got), 2)


class ReplyTests(BotFrameworkCase):
    def replies(self, command, conversation, n=1):
        self.assert_success(self.activity(text=command, conversation=conversation))
        return [r.json for r in self.sent(conversation, n)]

    def base(self, **fields):
        activity = fixture("message.json")
        out = {"type": "message", "recipient": {"id": activity["from"]["id"]},
               "from": activity["recipient"], "channelData": {"notification": {"alert": "true"}},
               "text": ""}
        out.update(fields)
        return out

    def test_text_split_on_blank_lines(self):
        self.assertEqual(self.replies("do:text", "conv-text", 2),
                         [self.base(text="Hello"), self.base(text="World")])

    def test_buttons_as_a_hero_card(self):
        [got] = self.replies("do:buttons", "conv-buttons")
        self.assertEqual(got, self.base(attachments=[HERO_BUTTONS]))

    def test_buttons_with_a_type_are_sent_as_they_are_and_url_buttons_open_it(self):
        [got] = self.replies("do:typed", "conv-typed")
        self.assertEqual(got["attachments"][0]["content"]["buttons"], [
            {"type": "openUrl", "title": "Docs", "value": "https://example.com/docs"},
            {"type": "openUrl", "title": "Site", "value": "https://example.com"}])

    def test_quick_replies_are_buttons(self):
        [got] = self.replies("do:quick", "conv-quick")
        card = copy.deepcopy(HERO_BUTTONS)
        card["content"]["subtitle"] = "Quick?"
        self.assertEqual(got, self.base(attachments=[card]))

    def test_image_as_a_hero_card(self):
        [got] = self.replies("do:image", "conv-image")
        self.assertEqual(got, self.base(attachments=[HERO_IMAGE]))

    def test_attachment_falls_back_to_text(self):
        [got] = self.replies("do:attachment", "conv-attachment")
        self.assertEqual(got, self.base(text="Attachment: https://example.com/r.pdf"))

    def test_custom_json_is_completed_with_the_defaults(self):
        [got] = self.replies("do:custom", "conv-custom")
        self.assertEqual(got, CUSTOM_SENT(self.base()))

    def test_elements_are_one_activity_each(self):
        got = self.replies("do:elements", "conv-elements", 2)
        self.assertEqual(got, [self.base(text="first element"),
                               self.base(text="second", summary="2")])

    def test_the_token_is_fetched_once_and_reused(self):
        self.replies("do:two", "conv-two-a", 2)
        self.replies("do:two", "conv-two-b", 2)
        recs = self.token_requests()
        self.assertEqual(len(recs), 1, recs)
        form = urllib.parse.parse_qs(recs[0].body.decode())
        self.assertEqual(form, {"grant_type": ["client_credentials"], "client_id": [APP_ID],
                                "client_secret": [APP_PASSWORD], "scope": [SCOPE]})
        for conversation in ("conv-two-a", "conv-two-b"):
            for rec in self.sent(conversation, 2):
                self.assertEqual(rec.headers["authorization"], "Bearer tok-1")



class TokenRenewalTests(BotFrameworkCase):
    """The Bot Connector refuses the token (401): a new one is fetched, the activity sent again."""

    def test_a_refused_token_is_renewed_and_the_reply_sent_again(self):
        self.assert_success(self.activity(text="renew me", conversation="conv-401-a"))
        recs = self.sent("conv-401-a", 2)
        self.assertEqual([r.json["text"] for r in recs], ["echo: renew me"] * 2)
        first, second = recs[0].headers["authorization"], recs[1].headers["authorization"]
        self.assertNotEqual(first, second)

    def test_a_connector_error_is_logged_and_later_replies_are_sent(self):
        headers = self.assert_success(self.activity(text="do:two", conversation="conv-500-a"))
        recs = self.sent("conv-500-a", 2)
        self.assertEqual([r.json["text"] for r in recs], ["one", "two"])
        error_line(self.host, headers["x-request-id"], "HTTP 500")


HERO_BUTTONS = {"contentType": "application/vnd.microsoft.card.hero", "content": {
    "subtitle": "Pick one", "buttons": [
        {"type": "imBack", "title": "Yes", "value": "/affirm"},
        {"type": "imBack", "title": "No", "value": "/deny"}]}}
HERO_IMAGE = {"contentType": "application/vnd.microsoft.card.hero",
              "content": {"images": [{"url": "https://example.com/cat.png"}]}}


def CUSTOM_SENT(base):
    return {"type": "message", "recipient": {"name": "Ada", "id": base["recipient"]["id"]},
            "from": base["from"], "text": "", "channelData": {"notification": {"alert": "false"}},
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                             "content": {"type": "AdaptiveCard", "version": "1.4",
                                         "body": [{"type": "TextBlock", "text": "Card"}]}}]}


class SdkTests(BotFrameworkCase):
    """The channel's replies next to what botframework-connector's ConnectorClient sends for the
    same activities, to another stand-in: the same method, path, Content-Type, bearer token and
    JSON body; and the token request next to MSAL's."""

    def test_replies_match_the_sdk(self):
        conversation = "19:meeting_Yz@thread.v2;messageid=1715678467526 x/y"
        commands = ["do:text", "do:buttons", "do:image", "do:custom", "do:elements"]
        for command in commands:
            self.assert_success(self.activity(text=command, conversation=conversation))
        ours = self.sent(conversation, 7)
        base = ReplyTests.base(self)
        expected = [dict(base, text="Hello"), dict(base, text="World"),
                    dict(base, attachments=[HERO_BUTTONS]), dict(base, attachments=[HERO_IMAGE]),
                    CUSTOM_SENT(base), dict(base, text="first element"),
                    dict(base, text="second", summary="2")]
        self.assertEqual([r.json for r in ours], expected)
        theirs_api = self.standin(Platform([]))
        sdk("botframework_check.js", {
            "command": "send", "service_url": theirs_api.url("/svc/"),
            "login_url": theirs_api.url(LOGIN_PATH), "app_id": APP_ID,
            "app_password": APP_PASSWORD, "conversation_id": conversation,
            "activities": expected})
        theirs = [r for r in theirs_api.snapshot() if "/conversations/" in r.path]
        self.assertEqual(len(theirs), len(ours))
        for mine, sdk_rec in zip(ours, theirs):
            self.assertEqual((mine.method, mine.path), (sdk_rec.method, sdk_rec.path))
            self.assertEqual(mine.headers["content-type"].split(";")[0],
                             sdk_rec.headers["content-type"].split(";")[0])
            self.assertEqual(mine.headers["authorization"], sdk_rec.headers["authorization"])
            self.assertEqual(mine.json, sdk_rec.json)
        # The token request: MSAL sends more (telemetry), the four fields that matter agree.
        [msal] = [r for r in theirs_api.snapshot() if r.path.endswith(LOGIN_PATH)]
        [mine] = self.token_requests()
        msal_form = urllib.parse.parse_qs(msal.body.decode())
        mine_form = urllib.parse.parse_qs(mine.body.decode())
        for key in ("grant_type", "client_id", "client_secret", "scope"):
            self.assertEqual(mine_form[key], msal_form[key], key)
        self.assertEqual(mine.method, msal.method)


CASES = os.path.join(channel_fixtures.FIXTURES, "botframework", "botframework.cases.yml")


class CaseFileTests(unittest.TestCase):
    def test_switchboard_test_runs_the_case_file(self):
        folder = project({"botframework.cases.yml": open(CASES).read()})
        result = run_to_exit(["test", "botframework.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"\n(\d+) passed, 0 failed\n$")


if __name__ == "__main__":
    unittest.main()
