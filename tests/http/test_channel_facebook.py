# SPDX-License-Identifier: MIT
"""The bundled `facebook` channel (docs/contract.md §8): the Messenger webhook handshake, signed
event batches (X-Hub-Signature-256, X-Hub-Signature as fallback), every messaging event of every
entry, echoes and receipts ignored, and replies through a stand-in of the Graph API's Send API."""
import hashlib
import hmac
import itertools
import json
import unittest
import urllib.parse

import channel_fixtures
from channel_fixtures import assert_refused, check, credentials_yml, serve_bot, startup_error
from harness import project
from standins import Reply, StandIn, StandInHostCase, error_line, in_threads
from util import run_to_exit

WEBHOOK = "/webhooks/facebook/webhook"

SECRET = "fb-app-secret-7c1d"
VERIFY = "verify-me-4711"
PAGE_TOKEN = "EAAB-page-token-0042"
PAGE_ID = "106735048797271"
# appsecret_proof: the hex HMAC-SHA256 of the page access token, keyed with the app secret.
PROOF = hmac.new(SECRET.encode(), PAGE_TOKEN.encode(), hashlib.sha256).hexdigest()

# A Lua bot that answers a few commands with each kind of message, and anything else with a
# JSON description of the message it received (so the Send API stand-in shows what the bot got).
# The commands "text", "image" and "fail then text" are recording_bot's own.
BOT = r"""
local replies = {}

replies["buttons"] = function(out)
  out:send_text_with_buttons("Pick one", {
    { title = "Yes", payload = "/affirm" },
    { title = "Docs", url = "https://example.com/docs" },
    { title = "Call us", type = "phone_number", payload = "+15005550006" },
  })
end

replies["many buttons"] = function(out)
  out:send_text_with_buttons("Pick", {
    { title = "A", payload = "/a" }, { title = "B", payload = "/b" },
    { title = "C", payload = "/c" }, { title = "D", payload = "/d" },
  })
end

replies["quick"] = function(out)
  out:send_quick_replies("Colour?", {
    { title = "Red", payload = "/red" },
    { title = "Blue", payload = "/blue", image_url = "https://example.com/blue.png" },
  })
end

replies["cards"] = function(out)
  out:send_elements({
    { title = "Switchboard", subtitle = "Channels in Lua", image_url = "https://example.com/sb.png",
      buttons = { { title = "Docs", payload = "/docs" },
                  { title = "Site", url = "https://example.com" } } },
    { title = "Second", subtitle = "two" },
  })
end

replies["custom"] = function(out)
  out:send_custom_json({ text = "custom text", metadata = "m1" })
end

replies["custom other"] = function(out)
  out:send_custom_json({ text = "to another", sender = { id = "999" } })
end

replies["attachment"] = function(out)
  out:send_attachment({ type = "file", payload = { url = "https://example.com/a.pdf" } })
end

replies["all"] = function(out)
  out:send_response({ text = "Pick", buttons = { { title = "Yes", payload = "/affirm" } },
                      image = "https://example.com/x.png" })
end

return require("recording_bot").describing(replies)
"""


def graph_api(rec):
    body = rec.json or {}
    recipient = (body.get("recipient") or {}).get("id")
    if recipient == "fb-error":
        text = (body.get("message") or {}).get("text")
        if text != "second":
            return Reply(status=400, json={"error": {
                "message": "(#100) The parameter recipient is invalid",
                "type": "OAuthException", "code": 100, "fbtrace_id": "AbC"}})
    return Reply(json={"recipient_id": recipient, "message_id": "m_sent"})


def fixture(name):
    return channel_fixtures.fixture("facebook", name)


# A message's mid names it: the channel hands each to the bot once (a repeat is a redelivery), so
# a fixture sent more than once to one host gets new mids.
MIDS = itertools.count(1)


def fresh(raw):
    """A fixture's bytes with a new suffix on every mid."""
    payload = json.loads(raw)
    suffix = "-%d" % next(MIDS)
    for entry in payload["entry"]:
        for ev in entry["messaging"]:
            for kind in ("message", "postback"):
                if isinstance(ev.get(kind), dict) and "mid" in ev[kind]:
                    ev[kind]["mid"] += suffix
    return json.dumps(payload).encode()


def sign(body, secret=SECRET, alg="sha256"):
    digest = hashlib.sha256 if alg == "sha256" else hashlib.sha1
    return "%s=%s" % (alg, hmac.new(secret.encode(), body, digest).hexdigest())


def event(sender, text=None, mid=None, **extra):
    """One messaging event of a user's text message (or of `extra` kinds)."""
    ev = {"sender": {"id": sender}, "recipient": {"id": PAGE_ID}, "timestamp": 1718208009000}
    if text is not None:
        ev["message"] = {"mid": mid or "m_" + sender, "text": text}
    ev.update(extra)
    return ev


def payload(*events, entries=None):
    if entries is None:
        entries = [list(events)]
    return {"object": "page", "entry": [
        {"id": PAGE_ID, "time": 1718208009999, "messaging": evs} for evs in entries]}


def credentials(api_url, **params):
    return credentials_yml("facebook", 'verify: "%s"' % VERIFY, 'secret: "%s"' % SECRET,
                           'page-access-token: "%s"' % PAGE_TOKEN, "api_url: %s" % api_url,
                           **params)


class FacebookTests(StandInHostCase):
    @classmethod
    def start(cls):
        cls.api = cls.standin(graph_api)
        cls.host = serve_bot(credentials(cls.api.url("/v19.0/")), BOT)

    # -- helpers -----------------------------------------------------------------------------

    def post(self, body, headers=None, signature="sha256"):
        """POST raw bytes (or a dict as JSON) signed as Facebook does; returns (status, headers,
        body text, the Send API requests the call caused)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"}
        if signature == "sha256":
            hdrs["X-Hub-Signature-256"] = sign(body)
        elif signature == "sha1":
            hdrs["X-Hub-Signature"] = sign(body, alg="sha1")
        hdrs.update(headers or {})
        before = len(self.api.snapshot())
        status, rhdrs, data = self.host.request("POST", WEBHOOK, body=body, headers=hdrs)
        return status, rhdrs, data.decode("utf-8", "replace"), self.api.snapshot()[before:]

    def sends(self, recs):
        """The Send API bodies, after checking each request's method, path, query and type."""
        out = []
        for r in recs:
            self.assertEqual(r.method, "POST")
            self.assertEqual(r.path, "/v19.0/me/messages")
            self.assertEqual(r.query, {"access_token": PAGE_TOKEN, "appsecret_proof": PROOF})
            self.assertTrue(r.headers.get("content-type", "").startswith("application/json"),
                            r.headers)
            out.append(r.json)
        return out

    def got(self, recs):
        """What the bot received, for each message, from its `got {...}` answers."""
        result = []
        for body in self.sends(recs):
            self.assertEqual(body["messaging_type"], "RESPONSE")
            text = body["message"]["text"]
            self.assertTrue(text.startswith("got "), text)
            desc = json.loads(text[4:])
            self.assertEqual(desc["sender"], body["recipient"]["id"])
            result.append(desc)
        return result

    def assert_success(self, status, headers, text):
        self.assertEqual((status, text), (200, "success"))
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)

    # -- the GET handshake -------------------------------------------------------------------

    def get_webhook(self, **query):
        return self.host.request("GET", WEBHOOK + "?" + urllib.parse.urlencode(query))

    def test_hub_verification_echoes_the_challenge(self):
        status, headers, body = self.get_webhook(**{
            "hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"})
        self.assertEqual((status, body), (200, b"1158201444"))
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)

    def test_hub_verification_refuses_a_wrong_token_or_mode(self):
        for query in ({"hub.mode": "subscribe", "hub.verify_token": "nope",
                       "hub.challenge": "1"},
                      {"hub.mode": "subscribe", "hub.challenge": "1"},
                      {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY,
                       "hub.challenge": "1"},
                      {"hub.verify_token": VERIFY, "hub.challenge": "1"}):
            status, headers, body = self.get_webhook(**query)
            self.assertEqual(status, 403, query)
            self.assertEqual(json.loads(body)["error"], "forbidden")

    def test_health(self):
        status, _, body = self.host.request("GET", "/webhooks/facebook/")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))

    # -- signatures --------------------------------------------------------------------------

    def test_valid_sha256_signature(self):
        status, headers, text, recs = self.post(fresh(fixture("text.json")))
        self.assert_success(status, headers, text)
        self.assertEqual(len(recs), 1)

    def test_wrong_secret_tampered_body_missing_or_malformed_header_are_403(self):
        body = fixture("text.json")
        tampered = body.replace(b"hello, world", b"hello, WORLD")
        cases = [
            ("wrong secret", body, {"X-Hub-Signature-256": sign(body, secret="other")}),
            ("tampered body", tampered, {"X-Hub-Signature-256": sign(body)}),
            ("missing header", body, {}),
            ("no sha256= prefix", body, {"X-Hub-Signature-256": sign(body)[7:]}),
            ("sha1 value in the sha256 header", body,
             {"X-Hub-Signature-256": sign(body, alg="sha1")}),
            ("bad sha256, good sha1", body, {"X-Hub-Signature-256": sign(body, secret="x"),
                                             "X-Hub-Signature": sign(body, alg="sha1")}),
            ("wrong sha1", body, {"X-Hub-Signature": sign(body, secret="x", alg="sha1")}),
        ]
        for name, data, headers in cases:
            status, rhdrs, text, recs = self.post(data, headers=headers, signature=None)
            self.assertEqual(status, 403, name)
            self.assertTrue(rhdrs["content-type"].startswith("application/json"), name)
            self.assertEqual(json.loads(text)["error"], "forbidden", name)
            self.assertEqual(recs, [], name)

    def test_sha1_signature_alone_is_accepted(self):
        status, headers, text, recs = self.post(fresh(fixture("text.json")), signature="sha1")
        self.assert_success(status, headers, text)
        self.assertEqual(len(recs), 1)

    def test_uppercase_hex_signature_is_accepted(self):
        body = fresh(fixture("text.json"))
        status, headers, text, recs = self.post(
            body, headers={"X-Hub-Signature-256": "sha256=" + sign(body)[7:].upper()},
            signature=None)
        self.assert_success(status, headers, text)
        self.assertEqual(len(recs), 1)

    # -- events ------------------------------------------------------------------------------

    def test_text_message(self):
        status, headers, text, recs = self.post(fixture("text.json"))
        self.assert_success(status, headers, text)
        [got] = self.got(recs)
        self.assertEqual(got, {
            "sender": "6543210987654321", "text": "hello, world!",
            "message_id": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP"
                          "_5cgXIbu7I3rBN0P",
            "input_channel": "facebook",
            "metadata": {"page_id": PAGE_ID, "event": "message", "timestamp": 1718208000001}})
        self.assertEqual(self.sends(recs)[0]["recipient"], {"id": "6543210987654321"})

    def test_quick_reply_payload_wins_over_text(self):
        status, headers, text, recs = self.post(fixture("quick_reply.json"))
        self.assert_success(status, headers, text)
        [got] = self.got(recs)
        self.assertEqual(got["text"], '/choose{"colour": "red"}')
        self.assertEqual(got["message_id"], "m_quick_reply_1")
        self.assertEqual(got["metadata"]["event"], "quick_reply")

    def test_postback_payload(self):
        status, headers, text, recs = self.post(fixture("postback.json"))
        self.assert_success(status, headers, text)
        [got] = self.got(recs)
        self.assertEqual((got["sender"], got["text"], got["message_id"]),
                         ("6543210987654321", "/greet", "m_postback_1"))
        self.assertEqual(got["metadata"]["event"], "postback")

    def test_attachment_url_is_the_text(self):
        status, headers, text, recs = self.post(fixture("attachment.json"))
        self.assert_success(status, headers, text)
        [got] = self.got(recs)
        self.assertEqual(got["text"],
                         "https://scontent.xx.fbcdn.net/v/t1.15752-9/cat.png?_nc_cat=1&oh=abc")
        self.assertEqual(got["metadata"]["event"], "attachment")
        self.assertEqual([a["type"] for a in got["metadata"]["attachments"]], ["image", "image"])

    def test_echoes_deliveries_and_reads_are_ignored(self):
        before = self.host.log().count("BOT GOT")
        status, headers, text, recs = self.post(fixture("ignored.json"))
        self.assert_success(status, headers, text)
        self.assertEqual(recs, [])
        self.assertEqual(self.host.log().count("BOT GOT"), before)

    def test_every_event_of_every_entry_in_order(self):
        status, headers, text, recs = self.post(fixture("batch.json"))
        self.assert_success(status, headers, text)
        got = self.got(recs)
        self.assertEqual([(g["sender"], g["text"], g["message_id"]) for g in got], [
            ("1111111111111111", "first", "m_batch_1"),
            ("1111111111111111", "/affirm", "m_batch_2"),
            ("2222222222222222", "/blue", "m_batch_3"),
            ("1111111111111111", "https://cdn.fbsbx.com/v/t59/report.pdf", "m_batch_4"),
        ])
        self.assertEqual([g["metadata"]["event"] for g in got],
                         ["message", "postback", "quick_reply", "attachment"])

    def test_unknown_events_and_messages_without_content_are_ignored(self):
        body = payload(
            event("fb-u9", optin={"ref": "x"}),
            event("fb-u9", reaction={"reaction": "love", "emoji": "\u2764", "action": "react",
                                     "mid": "m_1"}),
            event("fb-u9", message={"mid": "m_sticker_like", "attachments": [
                {"type": "location", "payload": {"coordinates": {"lat": 1, "long": 2}}}]}),
            {"recipient": {"id": PAGE_ID}, "message": {"mid": "m_nosender", "text": "x"}},
            event("fb-u9", "last one"))
        status, headers, text, recs = self.post(body)
        self.assert_success(status, headers, text)
        self.assertEqual([g["text"] for g in self.got(recs)], ["last one"])

    def test_a_body_without_entries_is_400(self):
        for body in ({"object": "page"}, [1, 2], {"object": "page", "entry": "x"}):
            status, _, text, recs = self.post(body)
            self.assertEqual(status, 400, body)
            self.assertEqual(json.loads(text)["error"], "invalid_body")
            self.assertEqual(recs, [])
        status, _, text, _ = self.post(b"{not json")
        self.assertEqual((status, json.loads(text)["error"]), (400, "invalid_json"))

    # -- replies -----------------------------------------------------------------------------

    def reply_to(self, sender, command):
        status, headers, text, recs = self.post(payload(event(sender, command)))
        self.assert_success(status, headers, text)
        bodies = self.sends(recs)
        for b in bodies:
            self.assertEqual(b["messaging_type"], "RESPONSE")
        return bodies

    def test_text_is_split_on_blank_lines(self):
        bodies = self.reply_to("fb-text", "text")
        self.assertEqual(bodies, [
            {"recipient": {"id": "fb-text"}, "messaging_type": "RESPONSE",
             "message": {"text": "Hello"}},
            {"recipient": {"id": "fb-text"}, "messaging_type": "RESPONSE",
             "message": {"text": "World"}},
            {"recipient": {"id": "fb-text"}, "messaging_type": "RESPONSE",
             "message": {"text": " again"}},
        ])

    def test_buttons_become_a_button_template(self):
        [body] = self.reply_to("fb-buttons", "buttons")
        self.assertEqual(body["recipient"], {"id": "fb-buttons"})
        self.assertEqual(body["message"], {"attachment": {"type": "template", "payload": {
            "template_type": "button", "text": "Pick one", "buttons": [
                {"type": "postback", "title": "Yes", "payload": "/affirm"},
                {"type": "web_url", "title": "Docs", "url": "https://example.com/docs"},
                {"type": "phone_number", "title": "Call us", "payload": "+15005550006"},
            ]}}})

    def test_more_than_three_buttons_are_sent_as_text(self):
        bodies = self.reply_to("fb-many", "many buttons")
        self.assertEqual([b["message"] for b in bodies], [
            {"text": "Pick"}, {"text": "1: A (/a)"}, {"text": "2: B (/b)"},
            {"text": "3: C (/c)"}, {"text": "4: D (/d)"}])

    def test_quick_replies(self):
        [body] = self.reply_to("fb-quick", "quick")
        self.assertEqual(body["message"], {"text": "Colour?", "quick_replies": [
            {"content_type": "text", "title": "Red", "payload": "/red"},
            {"content_type": "text", "title": "Blue", "payload": "/blue",
             "image_url": "https://example.com/blue.png"}]})

    def test_image(self):
        [body] = self.reply_to("fb-image", "image")
        self.assertEqual(body["message"], {"attachment": {
            "type": "image", "payload": {"url": "https://example.com/cat.png"}}})

    def test_elements_become_a_generic_template(self):
        [body] = self.reply_to("fb-cards", "cards")
        self.assertEqual(body["message"], {"attachment": {"type": "template", "payload": {
            "template_type": "generic", "elements": [
                {"title": "Switchboard", "subtitle": "Channels in Lua",
                 "image_url": "https://example.com/sb.png", "buttons": [
                     {"type": "postback", "title": "Docs", "payload": "/docs"},
                     {"type": "web_url", "title": "Site", "url": "https://example.com"}]},
                {"title": "Second", "subtitle": "two"}]}}})

    def test_custom_json_is_the_message(self):
        [body] = self.reply_to("fb-custom", "custom")
        self.assertEqual(body, {"recipient": {"id": "fb-custom"}, "messaging_type": "RESPONSE",
                                "message": {"text": "custom text", "metadata": "m1"}})

    def test_custom_json_sender_names_another_recipient(self):
        [body] = self.reply_to("fb-custom2", "custom other")
        self.assertEqual(body, {"recipient": {"id": "999"}, "messaging_type": "RESPONSE",
                                "message": {"text": "to another"}})

    def test_attachment_object(self):
        [body] = self.reply_to("fb-attach", "attachment")
        self.assertEqual(body["message"], {"attachment": {
            "type": "file", "payload": {"url": "https://example.com/a.pdf"}}})

    def test_a_whole_message_is_dispatched_in_rasa_order(self):
        bodies = self.reply_to("fb-all", "all")
        self.assertEqual([b["message"] for b in bodies], [
            {"attachment": {"type": "template", "payload": {
                "template_type": "button", "text": "Pick",
                "buttons": [{"type": "postback", "title": "Yes", "payload": "/affirm"}]}}},
            {"attachment": {"type": "image", "payload": {"url": "https://example.com/x.png"}}},
        ])

    def test_a_graph_api_error_is_logged_and_later_messages_still_go(self):
        status, headers, text, recs = self.post(payload(event("fb-error", "fail then text")))
        self.assert_success(status, headers, text)
        self.assertEqual([b["message"]["text"] for b in self.sends(recs)], ["first", "second"])
        error_line(self.host, headers["x-request-id"], r"\(#100\) The parameter recipient")
        self.assertNotIn(PAGE_TOKEN, self.host.log())


class SenderActionTests(unittest.TestCase):
    def test_mark_seen_and_typing_on_before_the_reply_and_typing_off_after(self):
        with StandIn(graph_api) as api:
            with serve_bot(credentials(api.url("/v19.0"), sender_actions=True), BOT) as host:
                body = json.dumps(payload(event("fb-act", "image"))).encode()
                status, _, data = host.request("POST", WEBHOOK, body=body, headers={
                    "Content-Type": "application/json", "X-Hub-Signature-256": sign(body)})
                self.assertEqual((status, data), (200, b"success"))
                recs = api.snapshot()
                self.assertEqual([r.path for r in recs], ["/v19.0/me/messages"] * 4)
                self.assertEqual([r.query for r in recs],
                                 [{"access_token": PAGE_TOKEN, "appsecret_proof": PROOF}] * 4)
                bodies = [r.json for r in recs]
                self.assertEqual(bodies[:2], [
                    {"recipient": {"id": "fb-act"}, "sender_action": "mark_seen"},
                    {"recipient": {"id": "fb-act"}, "sender_action": "typing_on"}])
                self.assertIn("attachment", bodies[2]["message"])
                self.assertEqual(bodies[3],
                                 {"recipient": {"id": "fb-act"}, "sender_action": "typing_off"})


class StartupTests(unittest.TestCase):
    def test_secret_and_page_access_token_are_required(self):
        for text, missing in (("facebook:\n  verify: v\n  page-access-token: t\n", "secret"),
                              ("facebook:\n  verify: v\n  secret: s\n", "page-access-token"),
                              ("facebook:\n", "verify")):
            line = startup_error(self, check(text))
            self.assertIn(missing, line)
            self.assertIn("facebook", line)

    def test_verify_is_optional_and_the_default_api_url(self):
        result = check("facebook:\n  secret: s\n  page-access-token: t\n")
        self.assertEqual(result.returncode, 0, result.stderr)


class RedeliveryTests(StandInHostCase):
    """Messenger delivers a batch again when it got no 200 in time: each message (its mid) is
    handed to the bot once; a repeat is answered 200 "success" and not processed
    (docs/channels/facebook.md, "Redeliveries")."""

    @classmethod
    def start(cls):
        cls.api = cls.standin(graph_api)
        cls.host = serve_bot(credentials(cls.api.url("/v19.0/")), BOT)

    def post(self, body):
        data = json.dumps(body).encode()
        before = len(self.api.snapshot())
        status, _, answer = self.host.request("POST", WEBHOOK, body=data, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": sign(data)})
        self.assertEqual((status, answer), (200, b"success"))
        return [r.json for r in self.api.snapshot()[before:]]

    def test_a_redelivered_batch_is_not_processed_again(self):
        batch = payload(event("fb-r1", "one", mid="m_r1_a"), event("fb-r1", "two", mid="m_r1_b"))
        self.assertEqual(len(self.post(batch)), 2)
        self.assertEqual(self.post(batch), [])

    def test_only_the_new_events_of_a_batch_are_processed(self):
        self.assertEqual(len(self.post(payload(event("fb-r2", "first", mid="m_r2_a")))), 1)
        sent = self.post(payload(event("fb-r2", "first", mid="m_r2_a"),
                                 event("fb-r2", "second", mid="m_r2_b")))
        self.assertEqual([json.loads(b["message"]["text"][4:])["text"] for b in sent],
                         ["second"])

    def test_the_same_text_with_another_mid_is_processed(self):
        self.assertEqual(len(self.post(payload(event("fb-r3", "again", mid="m_r3_a")))), 1)
        self.assertEqual(len(self.post(payload(event("fb-r3", "again", mid="m_r3_b")))), 1)

    def test_a_postback_with_a_mid_is_processed_once(self):
        body = payload(event("fb-r4", postback={"title": "Go", "payload": "/go",
                                                "mid": "m_r4_postback"}))
        self.assertEqual(len(self.post(body)), 1)
        self.assertEqual(self.post(body), [])

    def test_a_postback_without_a_mid_is_processed_each_time(self):
        body = payload(event("fb-r5", postback={"title": "Go", "payload": "/go"}))
        self.assertEqual(len(self.post(body)), 1)
        self.assertEqual(len(self.post(body)), 1)

    def test_the_same_batch_at_once_on_two_connections(self):
        body = payload(event("fb-r6", "racing", mid="m_r6"))
        results = in_threads([lambda: self.post(body)] * 2)
        self.assertFalse([r for r in results if isinstance(r, Exception)], results)
        sent = [r for r in self.api.snapshot()
                if ((r.json or {}).get("recipient") or {}).get("id") == "fb-r6"]
        self.assertEqual(len(sent), 1, sent)


class GraphApiTests(unittest.TestCase):
    def test_the_default_graph_api_version_is_v23(self):
        # switchboard try shows the Send API call the channel makes with the default api_url.
        folder = project({"credentials.yml": 'facebook:\n  secret: "%s"\n'
                                             '  page-access-token: "%s"\n' % (SECRET, PAGE_TOKEN),
                          "body.json": fixture("text.json").decode()})
        result = run_to_exit(["try", "facebook", "--sign", "--echo", "--data", "@body.json"],
                             cwd=folder)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("POST https://graph.facebook.com/v23.0/me/messages?", result.stdout)
        self.assertIn("appsecret_proof=" + PROOF, result.stdout)

    def test_dedupe_ttl_must_be_a_number_of_seconds(self):
        assert_refused(self, 'facebook:\n  secret: s\n  page-access-token: t\n'
                             '  dedupe_ttl: "-1"\n', "dedupe_ttl")


if __name__ == "__main__":
    unittest.main()
