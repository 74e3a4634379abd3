# SPDX-License-Identifier: MIT
"""The bundled `telegram` channel (docs/contract.md §8, docs/channels/telegram.md), black box: Bot
API updates (fixtures in the shapes Telegram documents) go to the real binary; the replies go to a
stand-in of the Bot API (api_url) that records every request.

The Lua bot logs what it got (BOT GOT <json>) and answers `do:` commands with the reply under
test; any other text is answered with "echo: <text>" (one sendMessage)."""
import itertools
import json
import os
import signal
import time
import unittest

import channel_fixtures
from channel_fixtures import (assert_refused, bot_got_all, credentials_yml, serve_bot,
                              wait_bot_got, wait_bot_got_where, wait_requests)
from harness import project
from standins import Reply, StandIn, StandInHostCase, error_line, in_threads
from util import run_to_exit, serve

WEBHOOK = "/webhooks/telegram/webhook"
TOKEN = "7000000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
USERNAME = "switchboard_test_bot"
SECRET = "s3cr3t-T0ken_x"
PUBLIC_URL = "https://bot.example.com/webhooks/telegram/webhook"

# "do:split" and "do:image" are recording_bot's own commands; any other text is answered with
# "echo: <text>" (one sendMessage).
BOT = r"""
local replies = {}
local buttons = { { title = "Yes", payload = "/affirm" }, { title = "No", payload = "/deny" } }

replies["do:inline"] = function(out)
  out:send_text_with_buttons("Inline?", buttons)
end

replies["do:vertical"] = function(out)
  out:send_response({ text = "Vertical?", buttons = buttons, button_type = "vertical" })
end

replies["do:reply"] = function(out)
  out:send_response({ text = "Reply?", button_type = "reply", buttons = { buttons[1],
    { { title = "Left", payload = "/l" }, { title = "Right", payload = "/r" } } } })
end

replies["do:quick"] = function(out)
  out:send_response({ text = "Quick?", quick_replies = buttons, button_type = "vertical" })
end

replies["do:badtype"] = function(out)
  out:send_response({ text = "Bad?", buttons = buttons, button_type = "diagonal" })
  out:send_text_message("after the bad type")
end

replies["do:custom"] = function(out)
  out:send_custom_json({ text = "*bold*", parse_mode = "MarkdownV2" })
  out:send_custom_json({ photo = "https://example.com/p.jpg", caption = "A photo" })
  out:send_custom_json({ latitude = 52.5, longitude = 13.4 })
  out:send_custom_json({ latitude = 52.5, longitude = 13.4, title = "Museum",
    address = "Island 1" })
  out:send_custom_json({ phone_number = "+4930123456", first_name = "Ada" })
  out:send_custom_json({ sticker = "CAACAgIAAxkBAAIBYmVg", chat_id = 555 })
  out:send_custom_json({ document = "https://example.com/r.pdf" })
  out:send_custom_json({ unknown_key = 1 })
  out:send_text_message("custom done")
end

replies["do:fail"] = function(out)
  out:send_custom_json({ text = "to a chat that does not exist", chat_id = 999 })
  out:send_text_message("after the failure")
end

return require("recording_bot").commands(replies, function(out, msg)
  out:send_text_message("echo: " .. (msg.text or ""))
end)
"""


def fixture(name):
    return channel_fixtures.fixture("telegram", name)


# Telegram numbers its updates: the channel processes each update_id once (a repeat is a
# redelivery), so every update a test makes gets an id of its own. The fixtures' ids (733081001,
# ...) are sent only as they are, once per host.
UPDATE_IDS = itertools.count(900000001)


def fresh(payload):
    """The update (a dict) with a new update_id."""
    payload["update_id"] = next(UPDATE_IDS)
    return payload


def update(name, **message_changes):
    """A fixture's raw bytes, or (with changes to its message) re-encoded JSON with a new
    update_id."""
    def message(payload):
        return payload[next(k for k in ("message", "edited_message", "callback_query",
                                        "channel_post") if k in payload)]
    raw = channel_fixtures.changed(fixture(name), message, message_changes)
    if not message_changes:
        return raw
    return json.dumps(fresh(json.loads(raw))).encode()


def text_update(text, chat_id=123456789, update_id=None):
    payload = fresh(json.loads(fixture("message_text.json")))
    if update_id is not None:
        payload["update_id"] = update_id
    payload["message"]["text"] = text
    payload["message"]["chat"]["id"] = chat_id
    return json.dumps(payload).encode()


class TelegramApi:
    """The Bot API as the stand-in plays it. `set_webhook_ok` switches setWebhook's answer."""

    def __init__(self, username=USERNAME):
        self.username = username
        self.set_webhook_ok = True

    def __call__(self, rec):
        method = rec.path.rsplit("/", 1)[-1]
        body = rec.json or {}
        if method == "getMe":
            return Reply(json={"ok": True, "result": {
                "id": 7000000001, "is_bot": True, "first_name": "Switchboard",
                "username": self.username, "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False}})
        if method == "setWebhook":
            if self.set_webhook_ok:
                return Reply(json={"ok": True, "result": True, "description": "Webhook was set"})
            return Reply(status=400, json={"ok": False, "error_code": 400,
                                           "description": "Bad Request: bad webhook: HTTPS url "
                                                          "must be provided for webhook"})
        if body.get("chat_id") == 999:
            return Reply(status=400, json={"ok": False, "error_code": 400,
                                           "description": "Bad Request: chat not found"})
        return Reply(json={"ok": True, "result": {"message_id": 2000, "date": 1700000000,
                                                  "chat": {"id": body.get("chat_id"),
                                                           "type": "private"}}})


def credentials(api, **params):
    return credentials_yml("telegram", 'access_token: "%s"' % TOKEN,
                           "api_url: %s" % api.url("/tg"), **params)


class TelegramTestCase(StandInHostCase):
    """One host and one Bot API stand-in per class; tests tell their requests apart by text."""
    params = {"verify": USERNAME, "webhook_url": PUBLIC_URL, "secret_token": SECRET}
    api_username = USERNAME

    @classmethod
    def start(cls):
        cls.api_state = TelegramApi(cls.api_username)
        cls.api = cls.standin(cls.api_state)
        cls.host = serve_bot(credentials(cls.api, **cls.params), BOT)

    def post(self, body, secret=SECRET, headers=None):
        hdrs = {"Content-Type": "application/json"}
        if secret is not None:
            hdrs["X-Telegram-Bot-Api-Secret-Token"] = secret
        hdrs.update(headers or {})
        return self.host.request("POST", WEBHOOK, body=body, headers=hdrs)

    def assert_success(self, body, **kw):
        status, headers, data = self.post(body, **kw)
        self.assertEqual((status, data), (200, b"success"))
        self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
        return headers

    def calls(self, method=None, predicate=lambda b: True):
        return [r for r in self.api.snapshot()
                if (method is None or r.path.endswith("/" + method)) and predicate(r.json or {})]

    def wait_calls(self, method, predicate, n=1, timeout=5.0):
        return wait_requests(self.api, lambda: self.calls(method, predicate),
                             "matching %s" % method, n, timeout)

    def bot_got_all(self):
        return bot_got_all(self.host)

    def bot_got(self, text, timeout=5.0):
        return wait_bot_got(self.host, text, timeout)

    def assert_bot_call(self, rec, method):
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.path, "/tg/bot%s/%s" % (TOKEN, method))
        self.assertTrue(rec.headers.get("content-type", "").startswith("application/json"),
                        rec.headers)

    def assert_not_processed(self, marker):
        """The webhook answers after processing, so nothing may have happened for `marker`."""
        self.assertEqual(self.calls(predicate=lambda b: marker in json.dumps(b)), [])
        self.assertFalse([g for g in self.bot_got_all() if marker in json.dumps(g)])


class StartupTests(unittest.TestCase):
    def test_startup_fails_without_access_token(self):
        assert_refused(self, "telegram:\n  verify: my_bot\n", "access_token")
        assert_refused(self, "telegram:\n", "access_token")

    def test_startup_fails_on_a_secret_token_telegram_would_refuse(self):
        assert_refused(self, 'telegram:\n  access_token: "1:A"\n  secret_token: "no spaces!"\n',
                       "secret_token")


class UpdateTests(TelegramTestCase):
    def test_text_message_is_echoed_with_send_message(self):
        self.assert_success(fixture("message_text.json"))
        got = self.bot_got("hello")
        self.assertEqual(got, {"text": "hello", "sender_id": "123456789",
                               "input_channel": "telegram"})
        rec = self.wait_calls("sendMessage", lambda b: b.get("text") == "echo: hello")[0]
        self.assert_bot_call(rec, "sendMessage")
        self.assertEqual(rec.json, {"chat_id": 123456789, "text": "echo: hello"})

    def test_the_answer_comes_after_the_replies(self):
        headers = self.assert_success(text_update("in order", chat_id=1001))
        # the webhook answers once processing is done: the reply is already there
        self.assertEqual(len(self.calls("sendMessage", lambda b: b.get("text") == "echo: in order")),
                         1, headers)

    def test_group_chat_id_and_command_addressed_to_the_bot(self):
        self.assert_success(fixture("message_group_command.json"))
        got = self.bot_got("/start")
        self.assertEqual(got["sender_id"], "-1001234567890")
        rec = self.wait_calls("sendMessage", lambda b: b.get("text") == "echo: /start")[0]
        self.assertEqual(rec.json["chat_id"], -1001234567890)
        self.assertIn(b'"chat_id":-1001234567890', rec.body)

    def test_a_command_for_another_bot_is_left_as_it_is(self):
        self.assert_success(text_update("/help@some_other_bot", chat_id=1002))
        self.bot_got("/help@some_other_bot")

    def test_edited_message(self):
        self.assert_success(fixture("edited_message.json"))
        self.assertEqual(self.bot_got("hello, corrected")["sender_id"], "123456789")

    def test_callback_query_data_is_the_text(self):
        self.assert_success(fixture("callback_query.json"))
        self.assertEqual(self.bot_got("/affirm")["sender_id"], "123456789")
        self.wait_calls("sendMessage", lambda b: b.get("text") == "echo: /affirm")
        self.assertEqual(self.calls("answerCallbackQuery"), [])

    def test_location_as_rasa_writes_it(self):
        self.assert_success(fixture("location.json"))
        got = self.bot_got('{"lng":13.404954, "lat":52.520008}')
        self.assertEqual(got["sender_id"], "123456789")

    def test_location_with_whole_numbers(self):
        payload = fresh(json.loads(fixture("location.json")))
        payload["message"]["location"] = {"latitude": 52, "longitude": -0.000125}
        payload["message"]["chat"]["id"] = 1003
        self.assert_success(json.dumps(payload).encode())
        self.assertEqual(self.bot_got('{"lng":-0.000125, "lat":52.0}')["sender_id"], "1003")

    def test_restart_is_processed_as_restart_then_start(self):
        self.assert_success(text_update("/restart", chat_id=1004))
        got = wait_bot_got_where(self.host, lambda g: g["sender_id"] == "1004", n=2)
        self.assertEqual([g["text"] for g in got], ["/restart", "/start"])
        recs = self.calls("sendMessage", lambda b: b.get("chat_id") == 1004)
        self.assertEqual([r.json["text"] for r in recs], ["echo: /restart", "echo: /start"])

    def test_sticker_is_ignored(self):
        payload = fresh(json.loads(fixture("sticker.json")))
        payload["message"]["chat"]["id"] = 424242
        self.assert_success(json.dumps(payload).encode())
        self.assert_not_processed("424242")

    def test_channel_post_is_ignored(self):
        self.assert_success(update("channel_post.json", text="marker channel post"))
        self.assert_not_processed("marker channel post")

    def test_my_chat_member_is_ignored(self):
        payload = fresh(json.loads(fixture("my_chat_member.json")))
        payload["my_chat_member"]["chat"]["id"] = 434343
        self.assert_success(json.dumps(payload).encode())
        self.assert_not_processed("434343")

    def test_a_body_that_is_not_an_object_is_400(self):
        status, _, data = self.post(b"[]")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["error"], "invalid_body")
        status, _, data = self.post(b"{oops")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["error"], "invalid_json")

    def test_get_me_is_asked_once(self):
        self.assert_success(text_update("first", chat_id=1005))
        self.assert_success(text_update("second", chat_id=1005))
        getme = self.calls("getMe")
        self.assertEqual(len(getme), 1)
        self.assert_bot_call(getme[0], "getMe")


class SecretTokenTests(TelegramTestCase):
    def test_right_secret(self):
        self.assert_success(text_update("right secret", chat_id=2001))
        self.bot_got("right secret")

    def refused(self, marker, **kw):
        status, headers, data = self.post(text_update(marker, chat_id=2002), **kw)
        self.assertEqual(status, 403)
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(json.loads(data)["error"], "forbidden")
        self.assert_not_processed(marker)

    def test_wrong_secret(self):
        self.refused("marker wrong secret", secret="s3cr3t-T0ken_y")

    def test_missing_secret(self):
        self.refused("marker missing secret", secret=None)

    def test_empty_secret(self):
        self.refused("marker empty secret", secret="")


class StartupWebhookTests(unittest.TestCase):
    """webhook_url is registered once per load (not once per worker), and again on a reload."""

    def test_registered_once_at_startup_and_again_after_a_reload(self):
        state = TelegramApi(USERNAME)
        with StandIn(state) as api:
            with serve_bot(credentials(api, verify=USERNAME, webhook_url=PUBLIC_URL,
                                       secret_token=SECRET), BOT, workers=2) as host:
                registered = [r for r in api.snapshot() if r.path.endswith("/setWebhook")]
                self.assertEqual(len(registered), 1, registered)
                self.assertEqual(registered[0].json, {"url": PUBLIC_URL, "secret_token": SECRET})
                host.wait_for_log(r"telegram: webhook set")
                os.kill(host.proc.pid, signal.SIGHUP)
                host.wait_for_log(r"configuration reloaded \(generation 2\)")
                registered = [r for r in api.snapshot() if r.path.endswith("/setWebhook")]
                self.assertEqual(len(registered), 2, registered)

    def test_a_platform_that_is_down_does_not_stop_the_host(self):
        with serve({"credentials.yml": "telegram:\n  access_token: \"123:abc\"\n  verify: %s\n"
                                       "  webhook_url: %s\n  api_url: http://127.0.0.1:9\n"
                                       % (USERNAME, PUBLIC_URL)}) as host:
            host.wait_for_log(r"ERROR .*setWebhook failed")
            self.assertEqual(host.request("GET", "/webhooks/telegram/")[0], 200)


class SetWebhookTests(TelegramTestCase):
    def test_set_webhook_registers_url_and_secret(self):
        self.api_state.set_webhook_ok = True
        status, headers, data = self.host.request("GET", "/webhooks/telegram/set_webhook")
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data),
                         {"ok": True, "result": True, "description": "Webhook was set"})
        rec = self.calls("setWebhook")[-1]
        self.assert_bot_call(rec, "setWebhook")
        self.assertEqual(rec.json, {"url": PUBLIC_URL, "secret_token": SECRET})

    def test_a_refused_webhook_is_reported(self):
        self.api_state.set_webhook_ok = False
        try:
            status, _, data = self.host.request("POST", "/webhooks/telegram/set_webhook/")
        finally:
            self.api_state.set_webhook_ok = True
        self.assertEqual(status, 502, data)
        answer = json.loads(data)
        self.assertEqual(answer["ok"], False)
        self.assertIn("HTTPS url must be provided", answer["description"])


class ReplyTests(TelegramTestCase):
    def command(self, text, chat_id):
        headers = self.assert_success(text_update(text, chat_id=chat_id))
        return headers, self.calls(predicate=lambda b: b.get("chat_id") == chat_id)

    def test_text_is_split_on_blank_lines(self):
        _, recs = self.command("do:split", 3001)
        self.assertEqual([r.json for r in recs], [{"chat_id": 3001, "text": "first part"},
                                                  {"chat_id": 3001, "text": "second part"}])
        for rec in recs:
            self.assert_bot_call(rec, "sendMessage")

    def test_image_with_send_photo(self):
        _, recs = self.command("do:image", 3002)
        self.assertEqual(len(recs), 1)
        self.assert_bot_call(recs[0], "sendPhoto")
        self.assertEqual(recs[0].json, {"chat_id": 3002, "photo": "https://example.com/cat.png"})

    def test_buttons_default_to_one_inline_row(self):
        _, recs = self.command("do:inline", 3003)
        self.assert_bot_call(recs[0], "sendMessage")
        self.assertEqual(recs[0].json, {"chat_id": 3003, "text": "Inline?", "reply_markup": {
            "inline_keyboard": [[{"text": "Yes", "callback_data": "/affirm"},
                                 {"text": "No", "callback_data": "/deny"}]]}})

    def test_vertical_buttons(self):
        _, recs = self.command("do:vertical", 3004)
        self.assertEqual(recs[0].json["reply_markup"], {
            "inline_keyboard": [[{"text": "Yes", "callback_data": "/affirm"}],
                                [{"text": "No", "callback_data": "/deny"}]]})

    def test_reply_keyboard(self):
        # As Rasa's TelegramOutput builds it: resize_keyboard false, one_time_keyboard true.
        _, recs = self.command("do:reply", 3005)
        self.assertEqual(recs[0].json, {"chat_id": 3005, "text": "Reply?", "reply_markup": {
            "keyboard": [[{"text": "Yes"}], [{"text": "Left"}, {"text": "Right"}]],
            "resize_keyboard": False, "one_time_keyboard": True}})

    def test_quick_replies_keep_their_button_type(self):
        _, recs = self.command("do:quick", 3006)
        self.assertEqual(recs[0].json["reply_markup"], {
            "inline_keyboard": [[{"text": "Yes", "callback_data": "/affirm"}],
                                [{"text": "No", "callback_data": "/deny"}]]})

    def test_an_unknown_button_type_is_logged_and_nothing_is_sent(self):
        headers, recs = self.command("do:badtype", 3007)
        self.assertEqual([r.json["text"] for r in recs], ["after the bad type"])
        error_line(self.host, headers["x-request-id"], "diagonal")

    def test_custom_json_calls_the_method_its_keys_name(self):
        headers, recs = self.command("do:custom", 3008)
        sticker = self.calls("sendSticker", lambda b: b.get("chat_id") == 555)
        got = [(r.path.rsplit("/", 1)[-1], r.json) for r in recs]
        self.assertEqual(got, [
            ("sendMessage", {"chat_id": 3008, "text": "*bold*", "parse_mode": "MarkdownV2"}),
            ("sendPhoto", {"chat_id": 3008, "photo": "https://example.com/p.jpg",
                           "caption": "A photo"}),
            ("sendLocation", {"chat_id": 3008, "latitude": 52.5, "longitude": 13.4}),
            ("sendVenue", {"chat_id": 3008, "latitude": 52.5, "longitude": 13.4,
                           "title": "Museum", "address": "Island 1"}),
            ("sendContact", {"chat_id": 3008, "phone_number": "+4930123456",
                             "first_name": "Ada"}),
            ("sendDocument", {"chat_id": 3008, "document": "https://example.com/r.pdf"}),
            ("sendMessage", {"chat_id": 3008, "text": "custom done"}),
        ])
        for rec in recs:
            self.assert_bot_call(rec, rec.path.rsplit("/", 1)[-1])
        self.assertEqual([r.json for r in sticker],
                         [{"chat_id": 555, "sticker": "CAACAgIAAxkBAAIBYmVg"}])

    def test_a_bot_api_error_is_logged_and_later_replies_are_sent(self):
        headers, recs = self.command("do:fail", 3009)
        self.assertEqual([r.json["text"] for r in recs], ["after the failure"])
        self.assertEqual(len(self.calls("sendMessage", lambda b: b.get("chat_id") == 999)), 1)
        error_line(self.host, headers["x-request-id"], "chat not found")


class NoVerifyTests(TelegramTestCase):
    """Without verify, secret_token and webhook_url: no getMe, no header needed."""
    params = {}

    def test_updates_without_secret_header_are_processed_without_get_me(self):
        self.assert_success(text_update("no checks", chat_id=4001), secret=None)
        self.bot_got("no checks")
        self.assertEqual(self.calls("getMe"), [])

    def test_set_webhook_without_webhook_url(self):
        status, _, data = self.host.request("GET", "/webhooks/telegram/set_webhook")
        self.assertEqual(status, 500)
        self.assertEqual(json.loads(data)["error"], "not_configured")
        self.assertEqual(self.calls("setWebhook"), [])


class WrongUsernameTests(TelegramTestCase):
    """The token belongs to another bot than `verify` names: Rasa answers "failed"."""
    params = {"verify": "@Someone_Else_Bot"}

    def test_updates_are_answered_failed_and_dropped(self):
        status, _, data = self.post(text_update("marker wrong bot", chat_id=5001))
        self.assertEqual((status, data), (200, b"failed"))
        self.assert_not_processed("marker wrong bot")
        self.assertEqual(len(self.calls("getMe")), 1)


class UsernameCaseTests(TelegramTestCase):
    params = {"verify": "@Switchboard_Test_Bot"}

    def test_verify_ignores_case_and_at_sign(self):
        self.assert_success(text_update("case ok", chat_id=6001))
        self.bot_got("case ok")


class RedeliveryTests(TelegramTestCase):
    """Telegram delivers an update again when it got no answer in time: each update_id is handed
    to the bot once; a repeat is answered "success" and not processed (docs/channels/telegram.md,
    "Redeliveries")."""
    params = {}

    def sent_for(self, chat_id):
        return [r.json["text"] for r in self.calls("sendMessage",
                                                   lambda b: b.get("chat_id") == chat_id)]

    def got_for(self, chat_id):
        """What the bot got from this chat, once the host is done with the updates sent so far:
        a last update of the chat is processed and logged after them."""
        sentinel = "sentinel %d" % next(UPDATE_IDS)
        self.assert_success(text_update(sentinel, chat_id=chat_id), secret=None)
        self.bot_got(sentinel)
        return [g["text"] for g in self.bot_got_all()
                if g["sender_id"] == str(chat_id) and not g["text"].startswith("sentinel ")]

    def test_the_same_update_twice_is_processed_once(self):
        body = text_update("once please", chat_id=7001)
        self.assert_success(body, secret=None)
        self.assert_success(body, secret=None)  # answered as the first, after nothing was done
        self.assertEqual(self.got_for(7001), ["once please"])
        self.assertEqual([t for t in self.sent_for(7001) if "sentinel" not in t],
                         ["echo: once please"])

    def test_two_updates_with_the_same_text_and_other_ids_are_both_processed(self):
        self.assert_success(text_update("twice please", chat_id=7002), secret=None)
        self.assert_success(text_update("twice please", chat_id=7002), secret=None)
        self.assertEqual(self.got_for(7002), ["twice please", "twice please"])
        self.assertEqual([t for t in self.sent_for(7002) if "sentinel" not in t],
                         ["echo: twice please", "echo: twice please"])

    def test_a_restart_sent_twice_is_restart_then_start_once(self):
        body = text_update("/restart", chat_id=7003)
        self.assert_success(body, secret=None)
        self.assert_success(body, secret=None)
        self.assertEqual(self.got_for(7003), ["/restart", "/start"])

    def test_the_same_update_at_once_on_two_connections(self):
        body = text_update("at once", chat_id=7004)
        results = in_threads([lambda: self.post(body, secret=None)] * 2)
        self.assertEqual([(r[0], r[2]) for r in results], [(200, b"success")] * 2)
        self.assertEqual(self.got_for(7004), ["at once"])

    def test_an_ignored_update_does_not_take_the_id_of_a_later_one(self):
        # A sticker (ignored) is not remembered, so its id is no concern; the same id on a
        # text update (which Telegram never sends) is processed.
        sticker = fresh(json.loads(fixture("sticker.json")))
        sticker["message"]["chat"]["id"] = 7005
        self.assert_success(json.dumps(sticker).encode(), secret=None)
        self.assert_success(text_update("after a sticker", chat_id=7005,
                                        update_id=sticker["update_id"]), secret=None)
        self.assertEqual(self.got_for(7005), ["after a sticker"])

    def test_an_update_id_too_long_for_a_store_key_is_still_answered_once(self):
        # The store's keys have at most 1024 bytes: a longer id is kept as its digest.
        long_id = "9" * 3000
        body = text_update("long id", chat_id=7006, update_id=long_id)
        self.assert_success(body, secret=None)
        self.assert_success(body, secret=None)
        self.assertEqual(self.got_for(7006), ["long id"])
        other = text_update("long id", chat_id=7006, update_id=long_id[:-1] + "8")
        self.assert_success(other, secret=None)
        self.assertEqual(self.got_for(7006), ["long id", "long id"])


class RedeliveryTtlTests(TelegramTestCase):
    """dedupe_ttl: how long an update_id is remembered."""
    params = {"dedupe_ttl": 0.5}

    def test_an_update_is_forgotten_after_dedupe_ttl(self):
        body = text_update("short memory", chat_id=7101)
        self.assert_success(body, secret=None)
        self.assert_success(body, secret=None)
        self.bot_got("short memory")
        got = [g for g in self.bot_got_all() if g["sender_id"] == "7101"]
        self.assertEqual(len(got), 1)
        deadline = time.monotonic() + 10
        while True:  # the store's clock, not ours: retry until the id has expired
            time.sleep(0.2)
            self.assert_success(body, secret=None)
            got = [g for g in self.bot_got_all() if g["sender_id"] == "7101"]
            if len(got) >= 2 or time.monotonic() > deadline:
                break
        self.assertGreaterEqual(len(got), 2)

    def test_startup_refuses_a_dedupe_ttl_that_is_not_a_number_of_seconds(self):
        assert_refused(self, 'telegram:\n  access_token: "1:A"\n  dedupe_ttl: soon\n',
                       "dedupe_ttl")
        assert_refused(self, 'telegram:\n  access_token: "1:A"\n  dedupe_ttl: 0\n', "dedupe_ttl")


class FullStoreTests(unittest.TestCase):
    """A full store (server.store_max_bytes) evicts the ids that expire soonest, the oldest: a
    redelivery of an evicted update is processed again, a recent one still is not. Nothing
    fails."""

    def test_the_oldest_ids_are_forgotten_first(self):
        state = TelegramApi(USERNAME)
        with StandIn(state) as api:
            with serve_bot(credentials(api), BOT, store_max_bytes=65536) as host:
                bodies = [text_update("fill %d" % i, chat_id=7200) for i in range(400)]
                for body in bodies:
                    status, _, data = host.request("POST", WEBHOOK, body=body, headers={
                        "Content-Type": "application/json"})
                    self.assertEqual((status, data), (200, b"success"))
                for body in (bodies[0], bodies[-1]):
                    status, _, data = host.request("POST", WEBHOOK, body=body, headers={
                        "Content-Type": "application/json"})
                    self.assertEqual((status, data), (200, b"success"))
                deadline = time.monotonic() + 5  # the log is read by another thread
                while True:
                    texts = [g["text"] for g in bot_got_all(host) if g["sender_id"] == "7200"]
                    if len(texts) >= 401 or time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                self.assertEqual(len(texts), 401, texts[-3:])
                self.assertEqual(texts[-1], "fill 0")  # evicted, so processed again
                self.assertEqual(texts.count("fill 399"), 1)


CASES = """\
credentials:
  telegram:
    access_token: "123:abc"
platform:
  - method: POST
    url_pattern: "/sendMessage$"
    json: {ok: true, result: {message_id: 1}}
cases:
  - name: an update is processed
    request:
      json: {update_id: 42, message: {message_id: 5, date: 1, chat: {id: 42, type: private},
             text: hello}}
    expect:
      status: 200
      body: success
      messages: [{sender_id: "42", text: hello}]
      calls: [{url: "https://api.telegram.org/bot123:abc/sendMessage",
               json: {chat_id: 42, text: hello}}]
  - name: its redelivery is answered and not processed
    request:
      json: {update_id: 42, message: {message_id: 5, date: 1, chat: {id: 42, type: private},
             text: hello}}
    expect: {status: 200, body: success, messages: [], calls: []}
  - name: the next update is processed
    request:
      json: {update_id: 43, message: {message_id: 6, date: 1, chat: {id: 42, type: private},
             text: hello}}
    expect: {status: 200, body: success, messages: [{text: hello}]}
"""


class CaseFileTests(unittest.TestCase):
    def test_switchboard_test_sees_a_redelivery(self):
        folder = project({"telegram.cases.yml": CASES})
        result = run_to_exit(["test", "telegram.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("3 passed, 0 failed\n"), result.stdout)

    def test_each_repeat_pass_starts_with_an_empty_store(self):
        # The second pass sends the same updates again: a store kept from the first pass would
        # take them for redeliveries.
        folder = project({"telegram.cases.yml": "repeat: 2\n" + CASES})
        result = run_to_exit(["test", "telegram.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("6 passed, 0 failed\n"), result.stdout)


# A push channel of a project with its own send_text_with_buttons and no send_quick_replies: quick
# replies reach it through the host's fallback. Each call is POSTed to `api_url`.
QR_CHANNEL = """\
local sb = require "switchboard"
local c = { name = "qr" }
function c.init(config) c.api = config.api_url end
local function post(body) assert(sb.http.request({ url = c.api, json = body })) end
function c.send_text_message(to, text, extras) post({ to = to, text = text, extras = extras }) end
function c.send_text_with_buttons(to, text, buttons, extras)
  post({ to = to, text = text, buttons = buttons, extras = extras })
end
return c
"""

QR_BOT = """\
local b = {}
function b.handle(msg, out)
  out:send_response({ text = "Quick?", quick_replies = { { title = "Yes", payload = "/y" } },
                      button_type = "vertical" })
end
return b
"""


class QuickReplyFallbackTests(unittest.TestCase):
    """Telegram has its own send_quick_replies (the message's button_type is kept). A channel
    without one gets the host's fallback, Rasa's OutputChannel.send_quick_replies: the quick
    replies go to send_text_with_buttons without the message's other keys (button_type here),
    as in Rasa 3."""

    def test_the_fallback_drops_the_extras(self):
        with StandIn(Reply(json={"ok": True})) as api:
            with serve({"credentials.yml": "qr.lua:\n  api_url: %s\n" % api.url("/qr"),
                        "qr.lua": QR_CHANNEL}, bot=QR_BOT) as host:
                status, _, data = host.request("POST", "/webhooks/qr/webhook",
                                               body={"sender": "q1", "message": "hi"})
                self.assertEqual((status, data), (200, b"success"))
                [rec] = api.wait_for(1)
                self.assertEqual(rec.json["text"], "Quick?")
                self.assertEqual(rec.json["buttons"], [{"title": "Yes", "payload": "/y"}])
                self.assertIn(rec.json["extras"], ({}, []))


if __name__ == "__main__":
    unittest.main()
