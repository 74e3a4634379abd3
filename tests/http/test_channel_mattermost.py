# SPDX-License-Identifier: MIT
"""The bundled `mattermost` channel (docs/channels/mattermost.md), black box: outgoing webhook
calls (JSON and form-encoded, in the shapes Mattermost documents) and interactive message actions
(button presses) go to the real binary; the replies go to a stand-in of Mattermost's REST API v4
(`url`) that records every request."""
import hashlib
import hmac
import itertools
import json
import unittest
import urllib.parse

import channel_fixtures
from channel_fixtures import assert_refused, credentials_yml, serve_bot, wait_bot_got
from harness import project
from standins import Reply, StandInHostCase, error_line, in_threads
from util import run_to_exit

WEBHOOK = "/webhooks/mattermost/webhook"
TOKEN = "xq7d1n4ruffg3nd9e4mbnw8kyo"          # the bot account's personal access token
HOOK_TOKEN = "zmigewsanbbsdf59xnmduzypjc"     # the outgoing webhook's token (in the fixtures)
PUBLIC_URL = "https://bot.example.com/webhooks/mattermost/webhook"
CHANNEL = "hawos4dqtby53pd64o4a4cmeoo"
USER = "rnina9994bde8mua79zqcg5hmo"
BOT_USER = "q8c4gz7nxpbyfmtdrw1ke3hs5a"         # the bot account's user id

# "text", "image" and "fail then text" are recording_bot's own; any other text is answered with
# "got <what the bot received>".
BOT = r"""
local replies = {}
local buttons = { { title = "Yes", payload = "/affirm" }, { title = "No", payload = "/deny" } }

replies["buttons"] = function(out)
  out:send_text_with_buttons("Do you agree?", buttons)
end

replies["quick"] = function(out)
  out:send_response({ text = "Quick?", quick_replies = buttons })
end

replies["custom"] = function(out)
  out:send_custom_json({ props = { card = "**hi**" } })
  out:send_custom_json({ channel_id = "otherchannel00000000000000", message = "elsewhere" })
end

return require("recording_bot").describing(replies)
"""


def fixture(name):
    return channel_fixtures.fixture("mattermost", name)


POST_IDS = itertools.count(1)


def fresh_post_id():
    return "testpost%018d" % next(POST_IDS)


def outgoing(text, **changes):
    """The outgoing-webhook fixture with this text (after the trigger word) and a new post_id."""
    payload = json.loads(fixture("outgoing_webhook.json"))
    payload["text"] = "@rasabot " + text
    payload["post_id"] = fresh_post_id()
    payload.update(changes)
    return payload


def signature(action, key=HOOK_TOKEN):
    return hmac.new(key.encode(), action.encode(), hashlib.sha256).hexdigest()


def posts_api(rec):
    if rec.method == "GET" and rec.path == "/api/v4/users/me":
        return Reply(json={"id": BOT_USER, "username": "rasabot", "is_bot": True,
                           "roles": "system_user"})
    body = rec.json or {}
    if body.get("message") == "first":
        return Reply(status=403, json={
            "id": "api.context.permissions.app_error", "message":
            "You do not have the appropriate permissions.", "detailed_error": "",
            "request_id": "8fjz1qkxobrh3kq6j1dr8wzkmc", "status_code": 403})
    return Reply(status=201, json={"id": "newpost0000000000000000000", "create_at": 1700000000000,
                                   "channel_id": body.get("channel_id"),
                                   "message": body.get("message", "")})


def credentials(api, *lines):
    return credentials_yml("mattermost", "url: %s" % api.url("/api/v4"),
                           'token: "%s"' % TOKEN, "webhook_url: %s" % PUBLIC_URL, *lines)


class MattermostTestCase(StandInHostCase):
    extra = ()

    @classmethod
    def start(cls):
        cls.api = cls.standin(posts_api)
        cls.host = serve_bot(credentials(cls.api, *cls.extra), BOT)

    def post(self, payload, form=False, headers=None):
        """POST a webhook call; returns (status, headers, body, the posts it caused)."""
        before = len(self.api.snapshot())
        if form:
            body = payload if isinstance(payload, bytes) else urllib.parse.urlencode(payload)
            hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            body = payload if isinstance(payload, bytes) else json.dumps(payload)
            hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        status, rhdrs, data = self.host.request("POST", WEBHOOK, body=body, headers=hdrs)
        return status, rhdrs, data, self.api.snapshot()[before:]

    def posts(self, recs):
        """The JSON bodies of /posts calls, after checking method, path and authorization."""
        bodies = []
        for r in recs:
            if r.path == "/api/v4/users/me":
                continue
            self.assertEqual((r.method, r.path), ("POST", "/api/v4/posts"))
            self.assertEqual(r.headers.get("authorization"), "Bearer " + TOKEN)
            self.assertTrue(r.headers.get("content-type", "").startswith("application/json"))
            bodies.append(r.json)
        return bodies

    def got(self, recs):
        """What the bot received, from its "got <json>" reply (one post)."""
        [body] = self.posts(recs)
        self.assertTrue(body["message"].startswith("got "), body)
        return body, json.loads(body["message"][4:])

    def assert_success(self, status, headers, data):
        # Mattermost decodes the answer as JSON (and logs an error when it is not): {} posts
        # nothing.
        self.assertEqual((status, data), (200, b"{}"))
        self.assertTrue(headers["content-type"].startswith("application/json"), headers)


class OutgoingWebhookTests(MattermostTestCase):
    def test_trigger_word_is_stripped_and_the_reply_goes_to_the_channel(self):
        status, headers, data, recs = self.post(fixture("outgoing_webhook.json"))
        self.assert_success(status, headers, data)
        body, got = self.got(recs)
        self.assertEqual(body["channel_id"], CHANNEL)
        self.assertEqual(sorted(body), ["channel_id", "message"])
        self.assertEqual(got["text"], "what can you do?")
        self.assertEqual(got["sender"], USER)
        self.assertEqual(got["input_channel"], "mattermost")
        self.assertEqual(got["message_id"], "axdygg1957njfe5pu38saikdho")
        self.assertEqual(got["metadata"], {
            "channel_id": CHANNEL, "channel_name": "town-square", "team_id":
            "kwoknj9nwpypzgzy78wkw516qe", "team_domain": "someteam",
            "post_id": "axdygg1957njfe5pu38saikdho", "user_name": "somename",
            "trigger_word": "@rasabot"})
        self.assertNotIn(TOKEN, self.host.log())

    def test_the_bots_own_posts_are_ignored(self):
        status, headers, data, recs = self.post(outgoing("my own reply", user_id=BOT_USER,
                                                         user_name="rasabot"))
        self.assert_success(status, headers, data)
        self.assertEqual(self.posts(recs), [])
        self.assertNotIn("my own reply", json.dumps([g for g in channel_fixtures.bot_got_all(
            self.host)]))

    def test_users_me_is_asked_once(self):
        for text in ("me one", "me two"):
            self.assertEqual(self.post(outgoing(text))[0], 200)
        me = [r for r in self.api.snapshot() if r.path == "/api/v4/users/me"]
        self.assertEqual(len(me), 1)
        self.assertEqual((me[0].method, me[0].headers["authorization"]), ("GET", "Bearer " + TOKEN))

    def test_form_encoded_webhook(self):
        status, headers, data, recs = self.post(fixture("outgoing_webhook_form.txt"), form=True)
        self.assert_success(status, headers, data)
        body, got = self.got(recs)
        self.assertEqual(got["text"], "hello from a form")
        self.assertEqual((got["sender"], body["channel_id"]), (USER, CHANNEL))

    def test_a_channel_webhook_without_trigger_word_keeps_the_whole_text(self):
        status, headers, data, recs = self.post(fixture("outgoing_webhook_channel.json"))
        self.assert_success(status, headers, data)
        body, got = self.got(recs)
        self.assertEqual(got["text"], "good morning everyone")
        self.assertEqual(body["channel_id"], "c8xq1z4ytbgn7r5m3k9w2d6hpe")

    def test_the_trigger_word_alone_is_kept_as_rasa_does(self):
        payload = outgoing("")
        payload["text"] = "@rasabot"
        status, _, _, recs = self.post(payload)
        self.assertEqual(status, 200)
        _, got = self.got(recs)
        self.assertEqual(got["text"], "@rasabot")

    def test_a_call_that_is_neither_webhook_nor_action_is_ignored(self):
        status, headers, data, recs = self.post({"text": "hello", "user_id": USER,
                                                 "channel_id": CHANNEL})
        self.assert_success(status, headers, data)
        self.assertEqual(recs, [])

    def test_a_body_that_is_not_an_object_is_400(self):
        for body in (b"[1, 2]", b"{not json"):
            status, _, _, recs = self.post(body)
            self.assertEqual((status, recs), (400, []), body)

    def test_text_is_split_on_blank_lines(self):
        status, _, _, recs = self.post(outgoing("text"))
        self.assertEqual(status, 200)
        self.assertEqual([b["message"] for b in self.posts(recs)], ["Hello", "World", " again"])
        self.assertEqual({b["channel_id"] for b in self.posts(recs)}, {CHANNEL})

    def test_buttons_are_interactive_actions_calling_webhook_url(self):
        status, _, _, recs = self.post(outgoing("buttons"))
        self.assertEqual(status, 200)
        self.assertEqual(self.posts(recs), [{
            "channel_id": CHANNEL, "message": "Do you agree?",
            "props": {"attachments": [{"actions": [
                {"name": "Yes", "integration": {"url": PUBLIC_URL,
                                                "context": {"action": "/affirm"}}},
                {"name": "No", "integration": {"url": PUBLIC_URL,
                                               "context": {"action": "/deny"}}}]}]}}])

    def test_quick_replies_are_buttons(self):
        status, _, _, recs = self.post(outgoing("quick"))
        self.assertEqual(status, 200)
        [body] = self.posts(recs)
        self.assertEqual(body["message"], "Quick?")
        self.assertEqual([a["name"] for a in body["props"]["attachments"][0]["actions"]],
                         ["Yes", "No"])

    def test_image_is_an_attachment_with_image_url(self):
        status, _, _, recs = self.post(outgoing("image"))
        self.assertEqual(status, 200)
        self.assertEqual(self.posts(recs), [{
            "channel_id": CHANNEL,
            "props": {"attachments": [{"image_url": "https://example.com/cat.png"}]}}])

    def test_custom_json_is_the_post_with_channel_and_message_defaults(self):
        status, _, _, recs = self.post(outgoing("custom"))
        self.assertEqual(status, 200)
        self.assertEqual(self.posts(recs), [
            {"channel_id": CHANNEL, "message": "", "props": {"card": "**hi**"}},
            {"channel_id": "otherchannel00000000000000", "message": "elsewhere"}])

    def test_an_api_error_is_logged_and_later_replies_still_go(self):
        status, headers, _, recs = self.post(outgoing("fail then text"))
        self.assertEqual(status, 200)
        self.assertEqual([b["message"] for b in self.posts(recs)], ["first", "second"])
        error_line(self.host, headers["x-request-id"],
                   r"mattermost: .*HTTP 403: You do not have the appropriate permissions")
        self.assertNotIn(TOKEN, self.host.log())

    def test_the_same_post_twice_is_processed_once(self):
        payload = outgoing("only once")
        status, headers, data, recs = self.post(payload)
        self.assertEqual((status, len(recs)), (200, 1))
        status, headers, data, recs = self.post(payload)
        self.assert_success(status, headers, data)
        self.assertEqual(recs, [])
        status, _, _, recs = self.post(dict(payload, post_id=fresh_post_id()))
        self.assertEqual((status, len(recs)), (200, 1))

    def test_the_same_post_at_once_on_two_connections(self):
        payload = outgoing("racing")
        results = in_threads([lambda: self.post(payload)] * 2)
        self.assertFalse([r for r in results if isinstance(r, Exception)], results)
        self.assertEqual([r[0] for r in results], [200, 200])
        sent = [r for r in self.api.snapshot() if '"racing"' in (r.json or {}).get("message", "")]
        self.assertEqual(len(sent), 1, sent)


class ActionTests(MattermostTestCase):
    def test_a_button_press_is_its_payload(self):
        status, headers, data, recs = self.post(fixture("action.json"))
        # Mattermost reads the answer to an action as JSON: an empty object changes nothing.
        self.assertEqual((status, json.loads(data)), (200, {}))
        self.assertTrue(headers["content-type"].startswith("application/json"), headers)
        body, got = self.got(recs)
        self.assertEqual(body["channel_id"], CHANNEL)
        self.assertEqual((got["text"], got["sender"]), ("/affirm", USER))
        self.assertEqual(got["metadata"]["post_id"], "gqrnh3675jfxzftnjyjfe4udeh")
        self.assertEqual(got["metadata"]["channel_id"], CHANNEL)

    def test_pressing_twice_is_two_messages(self):
        for _ in range(2):
            status, _, _, recs = self.post(fixture("action.json"))
            self.assertEqual((status, len(recs)), (200, 1))

    def test_an_action_without_an_action_key_is_ignored(self):
        payload = json.loads(fixture("action.json"))
        payload["context"] = {"other": 1}
        status, _, data, recs = self.post(payload)
        self.assertEqual((status, json.loads(data), recs), (200, {}, []))


class WebhookTokenTests(MattermostTestCase):
    """With `webhook_token`, a call must carry the outgoing webhook's token, and a button press
    the signature the channel put into the button's context."""
    extra = ('webhook_token: "%s"' % HOOK_TOKEN,)

    def test_the_right_token_is_accepted(self):
        status, headers, data, recs = self.post(outgoing("with token"))
        self.assert_success(status, headers, data)
        self.assertEqual(len(recs), 1)

    def test_a_wrong_or_missing_token_is_403(self):
        for token in ("wrong", "", None):
            payload = outgoing("bad token %r" % token, token=token)
            if token is None:
                del payload["token"]
            status, _, data, recs = self.post(payload)
            self.assertEqual((status, recs), (403, []), token)
            self.assertEqual(json.loads(data)["error"], "forbidden")

    def test_buttons_carry_a_signature_that_a_press_must_return(self):
        status, _, _, recs = self.post(outgoing("buttons"))
        self.assertEqual(status, 200)
        [body] = self.posts(recs)
        contexts = [a["integration"]["context"] for a in body["props"]["attachments"][0]["actions"]]
        self.assertEqual(contexts, [{"action": "/affirm", "signature": signature("/affirm")},
                                    {"action": "/deny", "signature": signature("/deny")}])
        press = json.loads(fixture("action.json"))
        press["context"] = contexts[1]
        status, _, data, recs = self.post(press)
        self.assertEqual(status, 200, data)
        _, got = self.got(recs)
        self.assertEqual(got["text"], "/deny")
        for context in ({"action": "/deny"}, {"action": "/deny", "signature": signature("/affirm")},
                        {"action": "/deny", "signature": signature("/deny", key="other")}):
            press["context"] = context
            status, _, _, recs = self.post(press)
            self.assertEqual((status, recs), (403, []), context)


class FallbackUrlTests(MattermostTestCase):
    """Without webhook_url, buttons call back the URL Mattermost called."""

    @classmethod
    def start(cls):
        cls.api = cls.standin(posts_api)
        cls.host = serve_bot(credentials_yml("mattermost", "url: %s" % cls.api.url("/api/v4"),
                                             'token: "%s"' % TOKEN), BOT)

    def test_buttons_without_webhook_url(self):
        status, _, _, recs = self.post(outgoing("buttons"), headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "mm-bot.example.org"})
        self.assertEqual(status, 200)
        [body] = self.posts(recs)
        urls = {a["integration"]["url"] for a in body["props"]["attachments"][0]["actions"]}
        self.assertEqual(urls, {"https://mm-bot.example.org" + WEBHOOK})


class StartupTests(unittest.TestCase):
    def test_url_and_token_are_required(self):
        assert_refused(self, 'mattermost:\n  token: "t"\n', "url")
        assert_refused(self, "mattermost:\n  url: https://chat.example.com/api/v4\n", "token")

    def test_url_must_be_a_url(self):
        assert_refused(self, 'mattermost:\n  url: chat.example.com\n  token: "t"\n', "url")


CASES = """\
credentials:
  mattermost:
    url: https://chat.example.com/api/v4
    token: bot-token
    webhook_url: https://bot.example.com/webhooks/mattermost/webhook
bot:
  replies:
    - text: "Do you agree?"
      buttons: [{title: "Yes", payload: /affirm}]
platform:
  - method: GET
    url: https://chat.example.com/api/v4/users/me
    json: {id: botuser, username: rasabot}
  - method: POST
    url: https://chat.example.com/api/v4/posts
    status: 201
    json: {id: p1}
cases:
  - name: an outgoing webhook call with a trigger word
    request:
      json: {channel_id: c1, post_id: p100, text: "@rasabot hello there", token: t,
             trigger_word: "@rasabot", user_id: u1, user_name: ada, team_id: t1}
    expect:
      status: 200
      json: {}
      messages: [{sender_id: u1, text: hello there, input_channel: mattermost}]
      calls:
        - {method: GET, url: https://chat.example.com/api/v4/users/me}
        - method: POST
          url: https://chat.example.com/api/v4/posts
          headers: {Authorization: Bearer bot-token}
          json: {channel_id: c1, message: "Do you agree?",
                 props: {attachments: [{actions: [{name: "Yes", integration: {
                   url: "https://bot.example.com/webhooks/mattermost/webhook",
                   context: {action: /affirm}}}]}]}}
  - name: the same post again is answered and not processed
    request:
      json: {channel_id: c1, post_id: p100, text: "@rasabot hello there", token: t,
             trigger_word: "@rasabot", user_id: u1, user_name: ada, team_id: t1}
    expect: {status: 200, json: {}, messages: [], calls: []}
  - name: the bot's own post is ignored
    request:
      json: {channel_id: c1, post_id: p102, text: "@rasabot Do you agree?", token: t,
             trigger_word: "@rasabot", user_id: botuser, user_name: rasabot}
    expect: {status: 200, json: {}, messages: [], calls: []}
  - name: a button press
    request:
      json: {channel_id: c1, post_id: p101, user_id: u1, user_name: ada, trigger_id: x,
             context: {action: /affirm}}
    expect:
      status: 200
      json: {}
      messages: [{sender_id: u1, text: /affirm}]
      calls: [{json: {channel_id: c1}}]
"""


class CaseFileTests(unittest.TestCase):
    def test_switchboard_test_runs_mattermost_cases(self):
        folder = project({"mattermost.cases.yml": CASES})
        result = run_to_exit(["test", "mattermost.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("4 passed, 0 failed\n"), result.stdout)


if __name__ == "__main__":
    unittest.main()
