# SPDX-License-Identifier: MIT
"""`switchboard run --record DIR` (docs/testing.md, "Recording live traffic"): each request a
channel receives, with everything it caused, becomes a case file; secrets are redacted (the
channel's secret parameters everywhere, Authorization, cookies, signature headers, which `sign:`
re-creates at replay); `switchboard test DIR` passes on the recording as it is and fails once the
channel behaves differently."""
import base64
import hashlib
import hmac
import json
import os
import time
import unittest
import urllib.parse

import channel_fixtures
from harness import project
from standins import Reply, StandIn, dead_port, echo_rasa_bot
from util import QuietHost as Host, run_to_exit

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
FB_SECRET, FB_TOKEN, FB_VERIFY = "fb-app-secret-42", "EAAB-page-token-42", "verify-me-42"
TW_SID, TW_TOKEN = "AC0123456789abcdef0123456789abcdef", "twilio-auth-token-42"
TG_TOKEN, TG_SECRET = "123456:AAF-telegram-token", "tg-secret-token-42"
SECRETS = (SLACK_SECRET, SLACK_TOKEN, FB_SECRET, FB_TOKEN, FB_VERIFY, TW_TOKEN, TG_TOKEN,
           TG_SECRET)


def credentials(api):
    return (
        "rest:\n"
        "slack:\n  slack_token: %s\n  slack_signing_secret: %s\n  api_url: %s\n"
        "facebook:\n  verify: %s\n  secret: %s\n  page-access-token: %s\n  api_url: %s\n"
        "twilio:\n  account_sid: %s\n  auth_token: %s\n  twilio_number: \"+15550001\"\n"
        "  api_url: %s\n"
        "telegram:\n  access_token: \"%s\"\n  secret_token: %s\n  api_url: %s\n"
    ) % (SLACK_TOKEN, SLACK_SECRET, api.url("/slack"), FB_VERIFY, FB_SECRET, FB_TOKEN,
         api.url("/graph"), TW_SID, TW_TOKEN, api.url("/twilio"), TG_TOKEN, TG_SECRET,
         api.url("/telegram"))


def platform_answer(rec):
    if "/twilio" in rec.path:
        return Reply(status=201, json={"sid": "SM1", "status": "queued"})
    if "/graph" in rec.path:
        return Reply(json={"recipient_id": "u", "message_id": "m.1"})
    return Reply(json={"ok": True, "result": {"message_id": 1}, "ts": "1.2", "channel": "D1"})


def slack_headers(body):
    ts = str(int(time.time()))
    sig = hmac.new(SLACK_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + sig.hexdigest()}


def twilio_headers(url, form):
    data = url + "".join(k + v for k, v in sorted(form.items()))
    sig = base64.b64encode(hmac.new(TW_TOKEN.encode(), data.encode(), hashlib.sha1).digest())
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sig.decode()}


def recorded(folder):
    """The files of a recording folder: name -> text."""
    files = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            files[name] = f.read()
    return files


def run_test(folder, *paths):
    return run_to_exit(["test"] + list(paths), cwd=folder, timeout=60)


class RecordTests(unittest.TestCase):
    def test_a_session_on_every_bundled_channel_replays_as_recorded(self):
        with StandIn(platform_answer) as api, StandIn(echo_rasa_bot()) as rasa:
            folder = project({
                "credentials.yml": credentials(api),
                "endpoints.yml": "bot:\n  url: %s\n" % rasa.url("/webhooks/rest/webhook")})
            with Host(["--record", "recorded"], cwd=folder) as host:
                base = "http://127.0.0.1:%d" % host.port
                # rest: collected, and streamed
                status, _, body = host.post_json("/webhooks/rest/webhook",
                                                 {"sender": "u1", "message": "hi"})
                self.assertEqual((status, body), (200, [{"recipient_id": "u1",
                                                         "text": "echo: hi"}]))
                status, _, _ = host.request("POST", "/webhooks/rest/webhook?stream=true",
                                            body={"sender": "u1", "message": "streamed"})
                self.assertEqual(status, 200)
                # slack, signed
                slack = channel_fixtures.fixture("slack", "message_im.json")
                status, _, _ = host.request("POST", "/webhooks/slack/webhook", body=slack,
                                            headers=slack_headers(slack))
                self.assertEqual(status, 200)
                # facebook: the verification GET (the token in the query), then a signed POST
                query = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.challenge": "987",
                                                "hub.verify_token": FB_VERIFY})
                status, _, body = host.request("GET", "/webhooks/facebook/webhook?" + query)
                self.assertEqual((status, body), (200, b"987"))
                fb = channel_fixtures.fixture("facebook", "text.json")
                sig = hmac.new(FB_SECRET.encode(), fb, hashlib.sha256).hexdigest()
                status, _, _ = host.request("POST", "/webhooks/facebook/webhook", body=fb,
                                            headers={"Content-Type": "application/json",
                                                     "X-Hub-Signature-256": "sha256=" + sig})
                self.assertEqual(status, 200)
                # twilio, signed over the URL and the form
                form = {"From": "+15551234", "To": "+15550001", "Body": "hello",
                        "MessageSid": "SM9", "AccountSid": TW_SID}
                status, _, _ = host.request(
                    "POST", "/webhooks/twilio/webhook", body=urllib.parse.urlencode(form),
                    headers=twilio_headers(base + "/webhooks/twilio/webhook", form))
                self.assertIn(status, (200, 204))
                # telegram, with its secret token
                tg = channel_fixtures.fixture("telegram", "message_text.json")
                status, _, _ = host.request("POST", "/webhooks/telegram/webhook", body=tg,
                                            headers={"Content-Type": "application/json",
                                                     "X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
                self.assertEqual(status, 200)
                host.wait_for_log(r"(?s)(recorded as .*){7}")
            files = recorded(os.path.join(folder, "recorded"))
            self.assertEqual(len(files), 7, list(files))
            for name, text in files.items():
                json.loads(text)
                for secret in SECRETS:
                    self.assertNotIn(secret, text, name)
                    self.assertNotIn(urllib.parse.quote(secret, safe=""), text, name)
            # The platform's calls are recorded, the bot's own call to Rasa is not.
            all_text = "".join(files.values())
            self.assertIn("/botredacted-access_token/sendMessage", all_text)
            self.assertIn("chat.postMessage", all_text)
            self.assertNotIn(rasa.url("/webhooks/rest/webhook"), all_text)

            result = run_test(folder, "recorded")
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertTrue(result.stdout.endswith("7 passed, 0 failed\n"), result.stdout)

    def test_a_changed_channel_fails_its_recording(self):
        # A channel of the project with parameters it does not declare: every value that is not
        # a URL counts as secret. Authorization and cookies of the request are hidden.
        channel = """\
local sb = require "switchboard"
local c = { name = "acme" }
function c.init(config) c.token, c.api = config.token, config.api_url end
function c.receive(req)
  if req.headers.authorization ~= "Bearer " .. c.token then
    return {}, { status = 401, json = { error = "who are you" } }
  end
  return { { sender_id = req.json.user, text = req.json.text } }
end
function c.send_text_message(to, text)
  local res = sb.http.request{ method = "POST", url = c.api .. "/v1/send",
    headers = { Authorization = "Bearer " .. c.token }, json = { to = to, text = text } }
  if not res then error("the platform is down") end
end
return c
"""
        with StandIn(Reply(json={"id": 7})) as api:
            folder = project({
                "acme.lua": channel,
                "credentials.yml": "acme.lua:\n  token: acme-token-1234\n  api_url: %s\n"
                                   % api.url(""),
                "endpoints.yml": "bot:\n  script: bot.lua\n",
                "bot.lua": "local b = {}\nfunction b.handle(m, out)\n"
                           "  out:send_text_message('got ' .. m.text)\nend\nreturn b\n"})
            with Host(["--record", "rec"], cwd=folder) as host:
                status, _, _ = host.request(
                    "POST", "/webhooks/acme/webhook", body={"user": "u7", "text": "ping"},
                    headers={"Authorization": "Bearer acme-token-1234",
                             "Cookie": "session=abcdef123"})
                self.assertEqual(status, 200)
                host.wait_for_log("recorded as")
            (text,) = recorded(os.path.join(folder, "rec")).values()
            for secret in ("acme-token-1234", "abcdef123"):
                self.assertNotIn(secret, text)
            case = json.loads(text)
            self.assertEqual(list(case["credentials"]), ["../acme.lua"])
            self.assertEqual(case["credentials"]["../acme.lua"],
                             {"token": "redacted-token", "api_url": api.url("")})
            headers = case["cases"][0]["request"]["headers"]
            self.assertEqual(headers["authorization"], "Bearer redacted-token")
            self.assertEqual(headers["cookie"], "REDACTED")
            self.assertEqual(case["cases"][0]["expect"]["calls"],
                             [{"method": "POST", "url": api.url("/v1/send"),
                               "json": {"to": "u7", "text": "got ping"}}])

            result = run_test(folder, "rec")
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            with open(os.path.join(folder, "acme.lua"), "w") as f:
                f.write(channel.replace("json = { to = to, text = text }",
                                        "json = { to = to, text = text:upper() }"))
            result = run_test(folder, "rec")
            self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
            self.assertIn('calls.1.json.text: expected "got ping", got "GOT PING"', result.stdout)
            self.assertTrue(result.stdout.endswith("0 passed, 1 failed\n"), result.stdout)

    def test_a_bot_failure_replays_with_the_channels_apology(self):
        sorry = ('local c = { name = "sorry" }\n'
                 'function c.on_bot_error(msg, out, err)\n'
                 '  out:send_text_message(("sorry (%s)"):format(err.kind))\n'
                 'end\nreturn c\n')
        folder = project({"sorry.lua": sorry, "credentials.yml": "sorry.lua:\n",
                          "endpoints.yml": "bot:\n  url: http://127.0.0.1:%d/webhook\n"
                                           % dead_port()})
        with Host(["--record", "rec"], cwd=folder) as host:
            status, _, body = host.post_json("/webhooks/sorry/webhook",
                                             {"sender": "u", "message": "hi"})
            self.assertEqual((status, body), (200, [{"recipient_id": "u",
                                                     "text": "sorry (refused)"}]))
            host.wait_for_log("recorded as")
        (text,) = recorded(os.path.join(folder, "rec")).values()
        turn = json.loads(text)["bot"]["turns"][0]
        self.assertEqual(turn["replies"], [])
        self.assertEqual(turn["fail"]["kind"], "refused")
        result = run_test(folder, "rec")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        # The apology changes: the recording notices.
        with open(os.path.join(folder, "sorry.lua"), "w") as f:
            f.write(sorry.replace("sorry (%s)", "oops (%s)"))
        result = run_test(folder, "rec")
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn('json.1.text: expected "sorry (refused)", got "oops (refused)"',
                      result.stdout)

    def test_a_folder_that_cannot_be_written_is_refused_at_startup(self):
        folder = project({"credentials.yml": "rest:\n", "file": "not a folder\n"})
        result = run_to_exit(["run", "-p", "0", "--record", "file/sub"], cwd=folder)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("--record file/sub:", result.stderr)


if __name__ == "__main__":
    unittest.main()
