# SPDX-License-Identifier: MIT
"""The bundled `rocketchat` channel (docs/channels/rocketchat.md), black box: outgoing webhook
calls and Livechat (Omnichannel) webhooks, in the shapes Rocket.Chat documents, go to the real
binary; the replies go to a stand-in of Rocket.Chat's REST API (`server_url`) that checks the
login session (X-Auth-Token, X-User-Id) and records every request."""
import itertools
import json
import threading
import unittest
import urllib.parse

import channel_fixtures
from channel_fixtures import assert_refused, credentials_yml, serve_bot
from harness import project
from standins import Reply, StandInHostCase, error_line, in_threads
from util import run_to_exit

WEBHOOK = "/webhooks/rocketchat/webhook"
BOT_USER = "rasa-bot"
BOT_USER_ID = "rasaBotUserId0001"
PASSWORD = "rc-pass-8f3k2"
HOOK_TOKEN = "ir7hozblv4"
ROOM = "ZpMw6XxSuZdpupcDa"

BOT = r"""
local replies = {}
local buttons = { { title = "Yes", payload = "/affirm" }, { title = "No", payload = "/deny" } }

replies["buttons"] = function(out)
  out:send_text_with_buttons("Do you agree?", buttons)
end

replies["attachment"] = function(out)
  out:send_attachment({ title = "Report", title_link = "https://example.com/r.pdf" })
end

replies["elements"] = function(out)
  out:send_elements({ { title = "Card", text = "one" }, { title = "Card", text = "two" } })
end

replies["custom"] = function(out)
  out:send_custom_json({ text = "to the room", emoji = ":robot:" })
  out:send_custom_json({ text = "to a channel", channel = "#general", room_id = "ignored" })
  out:send_custom_json({ text = "to another room", room_id = "OtherRoom0000001" })
end

return require("recording_bot").describing(replies)
"""


def fixture(name):
    return channel_fixtures.fixture("rocketchat", name)


MESSAGE_IDS = itertools.count(1)


def outgoing(text, **changes):
    payload = json.loads(fixture("outgoing_webhook.json"))
    payload.update(text=text, message_id="msg%014d" % next(MESSAGE_IDS))
    payload.update(changes)
    return payload


class RocketApi:
    """Rocket.Chat's REST API as the stand-in plays it: /api/v1/login issues a new token each
    time; chat.postMessage needs a token that is still valid (else 401)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.issued = 0
        self.valid = set()
        self.login_ok = True

    def expire_all(self):
        with self.lock:
            self.valid.clear()

    def __call__(self, rec):
        if rec.path == "/api/v1/login":
            form = urllib.parse.parse_qs(rec.body.decode())
            if not self.login_ok or form.get("password") != [PASSWORD]:
                return Reply(status=401, json={"status": "error", "error": "Unauthorized",
                                               "message": "Unauthorized"})
            with self.lock:
                self.issued += 1
                token = "auth-token-%d" % self.issued
                self.valid.add(token)
            return Reply(json={"status": "success", "data": {
                "userId": BOT_USER_ID, "authToken": token,
                "me": {"_id": BOT_USER_ID, "username": BOT_USER, "name": "Rasa Bot"}}})
        if rec.path == "/api/v1/chat.postMessage":
            with self.lock:
                ok = (rec.headers.get("x-auth-token") in self.valid
                      and rec.headers.get("x-user-id") == BOT_USER_ID)
            if not ok:
                return Reply(status=401, json={"status": "error",
                                               "message": "You must be logged in to do this."})
            body = rec.json or {}
            if body.get("text") == "first":
                return Reply(status=400, json={"success": False,
                                               "error": "error-action-not-allowed"})
            return Reply(json={"ts": 1700000000000, "channel": body.get("roomId"),
                               "message": {"_id": "newMsg", "msg": body.get("text", "")},
                               "success": True})
        return Reply(status=404, json={"success": False, "error": "not found"})


def credentials(api, *lines):
    return credentials_yml("rocketchat", "user: %s" % BOT_USER, 'password: "%s"' % PASSWORD,
                           "server_url: %s" % api.url(""), *lines)


class RocketTestCase(StandInHostCase):
    extra = ()

    @classmethod
    def start(cls):
        cls.api_state = RocketApi()
        cls.api = cls.standin(cls.api_state)
        cls.host = serve_bot(credentials(cls.api, *cls.extra), BOT)

    def post(self, payload, headers=None):
        before = len(self.api.snapshot())
        body = payload if isinstance(payload, bytes) else json.dumps(payload)
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        status, rhdrs, data = self.host.request("POST", WEBHOOK, body=body, headers=hdrs)
        return status, rhdrs, data, self.api.snapshot()[before:]

    def logins(self, recs=None):
        return [r for r in (recs if recs is not None else self.api.snapshot())
                if r.path == "/api/v1/login"]

    def messages(self, recs):
        """The JSON bodies of the chat.postMessage calls among recs, after checking them."""
        bodies = []
        for r in recs:
            if r.path == "/api/v1/login":
                continue
            self.assertEqual((r.method, r.path), ("POST", "/api/v1/chat.postMessage"))
            self.assertEqual(r.headers.get("x-user-id"), BOT_USER_ID)
            self.assertTrue(r.headers.get("x-auth-token", "").startswith("auth-token-"))
            bodies.append(r.json)
        return bodies

    def got(self, recs):
        [body] = [b for b in self.messages(recs) if b.get("text", "").startswith("got ")]
        return body, json.loads(body["text"][4:])

    def assert_answered(self, status, headers, data):
        self.assertEqual((status, data), (200, b""))
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)


class IncomingTests(RocketTestCase):
    def test_outgoing_webhook_message_is_answered_in_its_room(self):
        status, headers, data, recs = self.post(fixture("outgoing_webhook.json"))
        self.assert_answered(status, headers, data)
        body, got = self.got(recs)
        self.assertEqual(body["roomId"], ROOM)
        self.assertEqual(sorted(body), ["roomId", "text"])
        self.assertEqual(got["sender"], ROOM)
        self.assertEqual(got["text"], "hi there")
        self.assertEqual(got["message_id"], "QSGJ9YqFkXuinmHAt")
        self.assertEqual(got["metadata"], {"user_id": "zk8ei6fZYTxnNdbWg", "user_name": "ana.lima",
                                           "channel_name": "support",
                                           "message_id": "QSGJ9YqFkXuinmHAt"})
        self.assertNotIn(PASSWORD, self.host.log())

    def test_livechat_message(self):
        status, headers, data, recs = self.post(fixture("livechat_message.json"))
        self.assert_answered(status, headers, data)
        body, got = self.got(recs)
        self.assertEqual(body["roomId"], "Tc5SyBZHovD4k8BXv")
        self.assertEqual((got["sender"], got["text"]),
                         ("Tc5SyBZHovD4k8BXv", "I need help with my order"))
        self.assertEqual(got["message_id"], "s4Kx8mEwYpVq2RzJd")
        self.assertEqual(got["metadata"], {
            "user_name": "guest-3", "message_id": "s4Kx8mEwYpVq2RzJd",
            "visitor": {"_id": "63db8d4990fe6eda42ad429a", "name": "James",
                        "username": "guest-3"}})

    def test_the_bots_own_messages_are_ignored(self):
        status, headers, data, recs = self.post(fixture("outgoing_webhook_own.json"))
        self.assert_answered(status, headers, data)
        self.assertEqual(recs, [])
        own = json.loads(fixture("livechat_message.json"))
        own["messages"][0].update(username=BOT_USER, _id="ownLivechatMsg01", agentId=BOT_USER_ID)
        status, _, _, recs = self.post(own)
        self.assertEqual((status, recs), (200, []))

    def test_livechat_events_other_than_messages_are_ignored(self):
        status, headers, data, recs = self.post(fixture("livechat_session.json"))
        self.assert_answered(status, headers, data)
        self.assertEqual(recs, [])

    def test_a_body_that_is_not_an_object_is_400(self):
        for body in (b"[1]", b"{nope"):
            status, _, _, recs = self.post(body)
            self.assertEqual((status, recs), (400, []), body)

    def test_the_same_message_twice_is_processed_once(self):
        payload = outgoing("only once")
        status, _, _, recs = self.post(payload)
        self.assertEqual((status, len(self.messages(recs))), (200, 1))
        status, headers, data, recs = self.post(payload)
        self.assert_answered(status, headers, data)
        self.assertEqual(recs, [])
        livechat = json.loads(fixture("livechat_message.json"))
        livechat["messages"][0].update(_id="livechatOnce0001", msg="livechat once")
        self.assertEqual(len(self.messages(self.post(livechat)[3])), 1)
        self.assertEqual(self.post(livechat)[3], [])

    def test_the_same_message_at_once_on_two_connections(self):
        payload = outgoing("racing")
        results = in_threads([lambda: self.post(payload)] * 2)
        self.assertEqual([r[0] for r in results], [200, 200], results)
        sent = [r for r in self.api.snapshot() if '\\"racing\\"' in r.body.decode()]
        self.assertEqual(len(sent), 1, sent)

    def test_one_login_serves_every_reply(self):
        for text in ("login a", "login b", "text"):
            status, _, _, _ = self.post(outgoing(text))
            self.assertEqual(status, 200)
        [login] = self.logins()
        self.assertEqual(urllib.parse.parse_qs(login.body.decode()),
                         {"username": [BOT_USER], "password": [PASSWORD]})
        self.assertTrue(login.headers["content-type"].startswith(
            "application/x-www-form-urlencoded"))
        tokens = {r.headers.get("x-auth-token") for r in self.api.snapshot()
                  if r.path.endswith("chat.postMessage")}
        self.assertEqual(tokens, {"auth-token-1"})


class ReplyTests(RocketTestCase):
    def reply_bodies(self, text):
        status, _, _, recs = self.post(outgoing(text))
        self.assertEqual(status, 200)
        return self.messages(recs)

    def test_text_is_split_on_blank_lines(self):
        self.assertEqual(self.reply_bodies("text"), [
            {"roomId": ROOM, "text": "Hello"}, {"roomId": ROOM, "text": "World"},
            {"roomId": ROOM, "text": " again"}])

    def test_image(self):
        self.assertEqual(self.reply_bodies("image"), [{"roomId": ROOM, "attachments": [
            {"image_url": "https://example.com/cat.png", "collapsed": False}]}])

    def test_buttons_are_message_actions(self):
        self.assertEqual(self.reply_bodies("buttons"), [{
            "roomId": ROOM, "text": "Do you agree?", "attachments": [{"actions": [
                {"text": "Yes", "msg": "/affirm", "type": "button", "msg_in_chat_window": True},
                {"text": "No", "msg": "/deny", "type": "button",
                 "msg_in_chat_window": True}]}]}])

    def test_attachment_and_elements(self):
        self.assertEqual(self.reply_bodies("attachment"), [{"roomId": ROOM, "attachments": [
            {"title": "Report", "title_link": "https://example.com/r.pdf"}]}])
        self.assertEqual(self.reply_bodies("elements"), [{"roomId": ROOM, "attachments": [
            {"title": "Card", "text": "one"}, {"title": "Card", "text": "two"}]}])

    def test_custom_json(self):
        self.assertEqual(self.reply_bodies("custom"), [
            {"roomId": ROOM, "text": "to the room", "emoji": ":robot:"},
            {"channel": "#general", "text": "to a channel"},
            {"roomId": "OtherRoom0000001", "text": "to another room"}])

    def test_an_api_error_is_logged_and_later_replies_still_go(self):
        status, headers, _, recs = self.post(outgoing("fail then text"))
        self.assertEqual(status, 200)
        self.assertEqual([b["text"] for b in self.messages(recs)], ["first", "second"])
        error_line(self.host, headers["x-request-id"],
                   r"rocketchat: chat.postMessage refused a text to %s: HTTP 400: "
                   r"error-action-not-allowed" % ROOM)


class ReloginTests(RocketTestCase):
    def test_an_expired_session_logs_in_again_once(self):
        status, _, _, _ = self.post(outgoing("before expiry"))
        self.assertEqual(status, 200)
        self.api_state.expire_all()
        status, _, _, recs = self.post(outgoing("text"))
        self.assertEqual(status, 200)
        # the first post is refused (401), the login renews the session, the post is sent again
        self.assertEqual([r.path for r in recs], [
            "/api/v1/chat.postMessage", "/api/v1/login", "/api/v1/chat.postMessage",
            "/api/v1/chat.postMessage", "/api/v1/chat.postMessage"])
        old, new = recs[0].headers["x-auth-token"], recs[2].headers["x-auth-token"]
        self.assertNotEqual(old, new)
        self.assertEqual({r.headers["x-auth-token"] for r in recs[2:]}, {new})
        self.assertEqual([r.json["text"] for r in recs if r.json], [
            "Hello", "Hello", "World", " again"])

    def test_a_refused_login_is_logged_and_the_host_keeps_serving(self):
        self.api_state.expire_all()
        self.api_state.login_ok = False
        try:
            status, headers, _, recs = self.post(outgoing("no session"))
            self.assertEqual(status, 200)
            error_line(self.host, headers["x-request-id"],
                       r"rocketchat: cannot log in as rasa-bot: .*HTTP 401")
            self.assertNotIn(PASSWORD, self.host.log())
        finally:
            self.api_state.login_ok = True
        status, _, _, recs = self.post(outgoing("after recovery"))
        self.assertEqual(status, 200)
        self.assertEqual(len(self.messages(recs)), 1)

    def test_concurrent_replies_share_one_login(self):
        self.api_state.expire_all()
        before = len(self.logins())
        results = in_threads([lambda i=i: self.post(outgoing("parallel %d" % i,
                                                             channel_id="ParallelRoom%d" % i))
                              for i in range(4)])
        self.assertEqual([r[0] for r in results], [200] * 4, results)
        self.assertEqual(len(self.logins()) - before, 1)


class WebhookTokenTests(RocketTestCase):
    extra = ('webhook_token: "%s"' % HOOK_TOKEN,)

    def test_outgoing_webhook_token(self):
        status, _, _, recs = self.post(outgoing("right token"))
        self.assertEqual((status, len(self.messages(recs))), (200, 1))
        for token in ("wrong", None):
            status, _, data, recs = self.post(outgoing("wrong token", token=token))
            self.assertEqual((status, recs), (403, []))
            self.assertEqual(json.loads(data)["error"], "forbidden")

    def test_livechat_secret_token_header(self):
        payload = json.loads(fixture("livechat_message.json"))
        payload["messages"][0].update(_id="livechatTok00001")
        status, _, _, recs = self.post(payload)
        self.assertEqual((status, recs), (403, []))
        status, _, _, recs = self.post(payload, headers={"X-RocketChat-Livechat-Token": "nope"})
        self.assertEqual((status, recs), (403, []))
        status, _, _, recs = self.post(payload, headers={
            "X-RocketChat-Livechat-Token": HOOK_TOKEN})
        self.assertEqual((status, len(self.messages(recs))), (200, 1))


class StartupTests(unittest.TestCase):
    def test_user_password_and_server_url_are_required(self):
        full = {"user": "bot", "password": '"p"', "server_url": "https://chat.example.com"}
        for missing in full:
            text = "rocketchat:\n" + "".join("  %s: %s\n" % kv for kv in full.items()
                                             if kv[0] != missing)
            assert_refused(self, text, missing)


CASES = """\
credentials:
  rocketchat:
    user: bot@example.com
    password: secret
    server_url: https://chat.example.com
platform:
  - method: POST
    url: https://chat.example.com/api/v1/login
    json: {status: success, data: {userId: U1, authToken: T1, me: {_id: U1, username: bot}}}
  - method: POST
    url: https://chat.example.com/api/v1/chat.postMessage
    json: {success: true}
cases:
  - name: a message logs in (by e-mail) and is answered in its room
    request:
      json: {token: x, bot: false, channel_id: R1, channel_name: general, message_id: M1,
             user_id: A1, user_name: ada, text: hello}
    expect:
      status: 200
      body: ""
      messages: [{sender_id: R1, text: hello, input_channel: rocketchat}]
      calls:
        - url: https://chat.example.com/api/v1/login
          body: password=secret&user=bot%40example.com
        - url: https://chat.example.com/api/v1/chat.postMessage
          headers: {X-Auth-Token: T1, X-User-Id: U1}
          json: {roomId: R1, text: hello}
  - name: the next message reuses the session
    request:
      json: {channel_id: R1, message_id: M2, user_id: A1, user_name: ada, text: again}
    expect:
      calls: [{url: https://chat.example.com/api/v1/chat.postMessage, json: {text: again}}]
  - name: the bot's own message is ignored
    request:
      json: {channel_id: R1, message_id: M3, user_id: U1, user_name: bot, text: hello}
    expect: {status: 200, messages: [], calls: []}
"""


class CaseFileTests(unittest.TestCase):
    def test_switchboard_test_runs_rocketchat_cases(self):
        folder = project({"rocketchat.cases.yml": CASES})
        result = run_to_exit(["test", "rocketchat.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("3 passed, 0 failed\n"), result.stdout)


if __name__ == "__main__":
    unittest.main()
