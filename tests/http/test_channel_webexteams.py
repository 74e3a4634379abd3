# SPDX-License-Identifier: MIT
"""The bundled `webexteams` channel (docs/channels/webexteams.md), black box: Webex webhook
notifications (in the shapes Webex documents) go to the real binary, which fetches each message
from a stand-in of the Webex REST API (`api_url`), checks it is not the bot's own, and posts the
replies there; the stand-in records every request. X-Spark-Signature is computed here as Webex
documents it (hex HMAC-SHA1 of the raw body with the webhook's secret)."""
import hashlib
import hmac
import itertools
import json
import threading
import unittest

import channel_fixtures
from channel_fixtures import assert_refused, credentials_yml, serve_bot
from harness import project
from standins import Reply, StandInHostCase, error_line, in_threads
from util import run_to_exit

WEBHOOK = "/webhooks/webexteams/webhook"
ACCESS_TOKEN = "NzE0ZDk3YTktMTk3Ni00NmQ4LWEyYTUtZDYwZmQ3YWI5YzVm_PF84_test"
SECRET = "webex-webhook-secret-31a9"
BOT_ID = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9ib3QtMDAwMS0wMDAwLTAwMDAtMDAwMDAwMDAwMDAx"
ROOM = "Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQtNDNmMS0zYjU4LTkxNDctZjE0YmIwYzRkMTU0"
PERSON = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS8xZjdkZTVjYi04NTYxLTQ2NzEtYmMwMy1iYzk3NDMxNDQ0MmQ"

BOT = r"""
local replies = {}

replies["buttons"] = function(out)
  out:send_text_with_buttons("Pick", { { title = "Yes", payload = "/affirm" } })
end

replies["custom"] = function(out)
  out:send_custom_json({ markdown = "**bold** news" })
end

return require("recording_bot").describing(replies)
"""


def fixture(name):
    return channel_fixtures.fixture("webexteams", name)


def fixture_json(name):
    return channel_fixtures.fixture_json("webexteams", name)


def sign(body, secret=SECRET):
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class WebexApi:
    """The Webex REST API as the stand-in plays it: the messages a test added, people/me."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = {fixture_json("message.json")["id"]: fixture_json("message.json")}

    def add(self, message):
        with self.lock:
            self.messages[message["id"]] = message

    def __call__(self, rec):
        if rec.headers.get("authorization") != "Bearer " + ACCESS_TOKEN:
            return Reply(status=401, json={"message": "The request requires a valid access token "
                                                      "set in the Authorization request header.",
                                           "trackingId": "ROUTER_1"})
        if rec.method == "GET" and rec.path == "/v1/people/me":
            return Reply(json=fixture_json("people_me.json"))
        if rec.method == "GET" and rec.path.startswith("/v1/messages/"):
            with self.lock:
                message = self.messages.get(rec.path[len("/v1/messages/"):])
            if message is None:
                return Reply(status=404, json={
                    "message": "The requested resource could not be found.",
                    "errors": [{"description": "The requested resource could not be found."}],
                    "trackingId": "ROUTER_2"})
            return Reply(json=message)
        if rec.method == "POST" and rec.path == "/v1/messages":
            body = rec.json or {}
            if body.get("text") == "first":
                return Reply(status=400, json={
                    "message": "Unable to post message to room: \"The request payload is "
                               "too big\"", "trackingId": "ROUTER_3"})
            return Reply(json=dict(body, id="Y2lzY29zcGFyazovL3VzL01FU1NBR0UvcmVwbHk",
                                   personId=BOT_ID))
        return Reply(status=404, json={"message": "not found"})


MESSAGE_IDS = itertools.count(1)


class WebexTestCase(StandInHostCase):
    extra = ()

    @classmethod
    def start(cls):
        cls.api_state = WebexApi()
        cls.api = cls.standin(cls.api_state)
        cls.host = serve_bot(credentials_yml("webexteams", 'access_token: "%s"' % ACCESS_TOKEN,
                                             "api_url: %s" % cls.api.url(""), *cls.extra), BOT)

    def message(self, text, person=PERSON, room=ROOM):
        """A new message in the stand-in, and the webhook notification (bytes) about it."""
        message = fixture_json("message.json")
        message.update(id="MSG-%06d" % next(MESSAGE_IDS), text=text, personId=person, roomId=room)
        self.api_state.add(message)
        hook = fixture_json("webhook_message_created.json")
        hook["data"].update(id=message["id"], personId=person, roomId=room)
        return json.dumps(hook).encode()

    def post(self, body, signature=None, headers=None):
        before = len(self.api.snapshot())
        hdrs = {"Content-Type": "application/json"}
        if signature:
            hdrs["X-Spark-Signature"] = signature
        hdrs.update(headers or {})
        status, rhdrs, data = self.host.request("POST", WEBHOOK, body=body, headers=hdrs)
        return status, rhdrs, data, self.api.snapshot()[before:]

    def sent(self, recs):
        """The bodies of the POST /v1/messages among recs."""
        return [r.json for r in recs if r.method == "POST"]

    def got(self, recs):
        [body] = self.sent(recs)
        self.assertTrue(body["text"].startswith("got "), body)
        return body, json.loads(body["text"][4:])


class IncomingTests(WebexTestCase):
    def test_a_message_is_fetched_and_answered_in_its_room(self):
        status, headers, data, recs = self.post(fixture("webhook_message_created.json"))
        self.assertEqual((status, data), (200, b""))
        fetch = [r for r in recs if r.path.startswith("/v1/messages/")][0]
        self.assertEqual((fetch.method, fetch.path), (
            "GET", "/v1/messages/Y2lzY29zcGFyazovL3VzL01FU1NBR0UvOTJkYjNiZTAtNDNiZC0xMWU2LThhZTkt"
                   "ZGQ1YjNkZmM1NjVk"))
        self.assertEqual(fetch.headers["authorization"], "Bearer " + ACCESS_TOKEN)
        body, got = self.got(recs)
        self.assertEqual(sorted(body), ["roomId", "text"])
        self.assertEqual(body["roomId"], ROOM)
        self.assertEqual((got["sender"], got["text"]), (ROOM, "What are the opening hours?"))
        self.assertEqual(got["message_id"], fetch.path[len("/v1/messages/"):])
        self.assertEqual(got["metadata"], {"person_id": PERSON, "person_email": "matt@example.com",
                                           "room_type": "direct"})
        self.assertNotIn(ACCESS_TOKEN, self.host.log())

    def test_people_me_is_asked_once(self):
        for text in ("one", "two", "three"):
            status, _, _, _ = self.post(self.message(text))
            self.assertEqual(status, 200)
        me = [r for r in self.api.snapshot() if r.path == "/v1/people/me"]
        self.assertEqual(len(me), 1)

    def test_the_bots_own_message_is_ignored(self):
        # known from the notification itself: the message is not even fetched
        self.post(self.message("warm up"))
        status, _, data, recs = self.post(self.message("my own reply", person=BOT_ID))
        self.assertEqual((status, data), (200, b"OK"))
        self.assertEqual(recs, [])
        # a notification without personId: the fetched message says whose it is
        body = json.loads(self.message("own, found by the fetch", person=BOT_ID))
        del body["data"]["personId"]
        status, _, data, recs = self.post(json.dumps(body).encode())
        self.assertEqual((status, data), (200, b"OK"))
        self.assertEqual([(r.method, r.path.split("/")[2]) for r in recs], [("GET", "messages")])

    def test_a_message_with_only_a_file_has_no_text(self):
        body = self.message("unused")
        message = dict(self.api_state.messages[json.loads(body)["data"]["id"]])
        del message["text"]
        message["files"] = ["https://webexapis.com/v1/contents/Y2lzY29zcGFyazovL3VzL0NPTlRFTlQv"]
        self.api_state.add(message)
        status, _, _, recs = self.post(body)
        self.assertEqual(status, 200)
        _, got = self.got(recs)
        self.assertIsNone(got["text"])
        self.assertEqual(got["metadata"]["files"], message["files"])

    def test_other_resources_are_ignored(self):
        status, _, data, recs = self.post(fixture("webhook_membership_created.json"))
        self.assertEqual((status, data, recs), (200, b"", []))

    def test_a_message_that_cannot_be_fetched_is_an_error(self):
        hook = fixture_json("webhook_message_created.json")
        hook["data"]["id"] = "MSG-missing"
        status, headers, data, recs = self.post(json.dumps(hook).encode())
        self.assertEqual(status, 502, data)
        self.assertEqual(self.sent(recs), [])
        error_line(self.host, headers["x-request-id"],
                   r"webexteams: cannot fetch message MSG-missing: HTTP 404: The requested "
                   r"resource could not be found")

    def test_a_body_that_is_not_an_object_is_400(self):
        for body in (b"[]", b"{x"):
            status, _, _, recs = self.post(body)
            self.assertEqual((status, recs), (400, []), body)

    def test_the_same_notification_twice_is_processed_once(self):
        body = self.message("only once")
        status, _, _, recs = self.post(body)
        self.assertEqual((status, len(self.sent(recs))), (200, 1))
        status, _, data, recs = self.post(body)
        self.assertEqual((status, data, self.sent(recs)), (200, b"", []))

    def test_the_same_notification_at_once_on_two_connections(self):
        body = self.message("racing")
        results = in_threads([lambda: self.post(body)] * 2)
        self.assertEqual([r[0] for r in results], [200, 200], results)
        sent = [r for r in self.api.snapshot() if r.method == "POST"
                and '\\"racing\\"' in r.body.decode()]
        self.assertEqual(len(sent), 1, sent)


class ReplyTests(WebexTestCase):
    def replies(self, text):
        status, _, _, recs = self.post(self.message(text))
        self.assertEqual(status, 200)
        return self.sent(recs)

    def test_text_is_split_on_blank_lines(self):
        self.assertEqual(self.replies("text"), [{"roomId": ROOM, "text": "Hello"},
                                                {"roomId": ROOM, "text": "World"},
                                                {"roomId": ROOM, "text": " again"}])

    def test_image_is_a_file_url(self):
        self.assertEqual(self.replies("image"), [
            {"roomId": ROOM, "files": ["https://example.com/cat.png"]}])

    def test_buttons_fall_back_to_text(self):
        self.assertEqual([b["text"] for b in self.replies("buttons")], ["Pick", "1: Yes (/affirm)"])

    def test_custom_json_is_the_message(self):
        self.assertEqual(self.replies("custom"), [{"roomId": ROOM, "markdown": "**bold** news"}])

    def test_an_api_error_is_logged_and_later_replies_still_go(self):
        status, headers, _, recs = self.post(self.message("fail then text"))
        self.assertEqual(status, 200)
        self.assertEqual([b["text"] for b in self.sent(recs)], ["first", "second"])
        error_line(self.host, headers["x-request-id"],
                   r"webexteams: the messages API refused a text to .*: HTTP 400: Unable to post")


class RoomTests(WebexTestCase):
    """`room`: texts and images go to that room whoever wrote (Rasa's WebexTeamsBot)."""
    extra = ('room: "FIXEDROOM"',)

    def test_texts_and_images_go_to_room_custom_json_to_the_sender(self):
        for text, expected in (("text", ["FIXEDROOM"] * 3), ("image", ["FIXEDROOM"]),
                               ("custom", [ROOM])):
            status, _, _, recs = self.post(self.message(text))
            self.assertEqual(status, 200)
            self.assertEqual([b["roomId"] for b in self.sent(recs)], expected, text)


class SignatureTests(WebexTestCase):
    extra = ('secret: "%s"' % SECRET,)

    def test_a_signed_notification_is_processed(self):
        body = self.message("signed")
        status, _, _, recs = self.post(body, signature=sign(body))
        self.assertEqual((status, len(self.sent(recs))), (200, 1))

    def test_the_signature_covers_the_raw_bytes(self):
        body = b"  " + self.message("spaced").replace(b", ", b" ,  ") + b"\n"
        status, _, _, recs = self.post(body, signature=sign(body))
        self.assertEqual((status, len(self.sent(recs))), (200, 1))

    def test_wrong_missing_or_stale_signatures_are_403(self):
        body = self.message("refused")
        other = self.message("other")
        for name, signature in (("wrong secret", sign(body, "nope")), ("missing", None),
                                ("another body", sign(other)), ("upper case", sign(body).upper()),
                                ("truncated", sign(body)[:-2])):
            status, _, data, recs = self.post(body, signature=signature)
            self.assertEqual((status, recs), (403, []), name)
            self.assertEqual(json.loads(data)["error"], "forbidden", name)


class StartupTests(unittest.TestCase):
    def test_access_token_is_required(self):
        assert_refused(self, "webexteams:\n  room: R\n", "access_token")

    def test_api_url_must_be_a_url(self):
        assert_refused(self, 'webexteams:\n  access_token: "t"\n  api_url: webexapis.com\n',
                       "api_url")


CASE_BODY = ('{"resource":"messages","event":"created","data":{"id":"M1","roomId":"R1",'
             '"personId":"P1"}}')

CASES = """\
credentials:
  webexteams:
    access_token: tok
    secret: s3
platform:
  - method: GET
    url: https://webexapis.com/v1/people/me
    json: {id: BOT, displayName: Bot, type: bot}
  - method: GET
    url: https://webexapis.com/v1/messages/M1
    json: {id: M1, roomId: R1, personId: P1, personEmail: p@example.com, text: hello}
  - method: POST
    url: https://webexapis.com/v1/messages
    json: {id: M2}
cases:
  - name: a signed notification is fetched and answered
    request:
      headers: {X-Spark-Signature: "%(sig)s", Content-Type: application/json}
      body: '%(body)s'
    expect:
      status: 200
      messages: [{sender_id: R1, text: hello, input_channel: webexteams}]
      calls:
        - {method: GET, url: https://webexapis.com/v1/people/me,
           headers: {Authorization: Bearer tok}}
        - {method: GET, url: https://webexapis.com/v1/messages/M1}
        - {method: POST, url: https://webexapis.com/v1/messages, json: {roomId: R1, text: hello}}
  - name: a bad signature is refused
    request:
      headers: {X-Spark-Signature: "0000", Content-Type: application/json}
      body: '%(body)s'
    expect: {status: 403, messages: [], calls: []}
""" % {"sig": hmac.new(b"s3", CASE_BODY.encode(), hashlib.sha1).hexdigest(), "body": CASE_BODY}


class CaseFileTests(unittest.TestCase):
    def test_switchboard_test_runs_webexteams_cases(self):
        folder = project({"webexteams.cases.yml": CASES})
        result = run_to_exit(["test", "webexteams.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("2 passed, 0 failed\n"), result.stdout)


if __name__ == "__main__":
    unittest.main()
