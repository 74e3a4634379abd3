# SPDX-License-Identifier: MIT
"""`switchboard test` (docs/testing.md): case files run offline through the real binary: the
request goes through the real channel, pipeline and bot code, the platform's answers come from
the case, and the answer, the messages the bot got and the outbound calls are compared. One line
per case, the differences under a failing one, `N passed, M failed` last; exit 0, 1 or 2."""
import os
import unittest

from harness import project
from util import run_to_exit

REST_CASES = """\
credentials:
  rest:
bot:
  replies:
    - text: "Hello!"
cases:
  - name: a message reaches the bot
    request:
      json: {sender: u1, message: "  hi  "}
    expect:
      status: 200
      json: [{recipient_id: u1, text: "Hello!"}]
      messages: [{sender_id: u1, text: hi, input_channel: rest}]
"""

TELEGRAM_CASES = """\
credentials:
  telegram:
    access_token: "123:abc"
bot:
  replies:
    - text: "Pick one"
      buttons: [{title: "Yes", payload: /affirm}]
platform:
  - method: POST
    url_pattern: "/sendMessage$"
    json: {ok: true, result: {message_id: 1}}
cases:
  - name: a text message is answered through sendMessage
    request:
      json:
        update_id: 1
        message: {message_id: 5, date: 1, chat: {id: 42, type: private},
                  from: {id: 42, is_bot: false, first_name: A}, text: hello}
    expect:
      status: 200
      body: success
      messages: [{sender_id: "42", text: hello}]
      calls:
        - method: POST
          url: "https://api.telegram.org/bot123:abc/sendMessage"
          json: {chat_id: 42, text: "Pick one",
                 reply_markup: {inline_keyboard: [[{text: "Yes", callback_data: /affirm}]]}}
"""

MIXED_CASES = """\
credentials:
  rest:
  shout.lua:
bot:
  lua: bot.lua
cases:
  - name: streamed lines
    request: {channel: rest, query: {stream: "true"}, json: {sender: s, message: x}}
    expect:
      status: 200
      content_type: text/event-stream
      lines: [{recipient_id: s, text: "bot got x"}]
  - name: a custom channel next to the case file
    request: {channel: shout, json: {sender: s, message: quiet}}
    expect:
      json: [{recipient_id: s, text: "bot got QUIET"}]
      messages: [{text: QUIET}]
  - name: a channel that raises is a 500
    request: {channel: shout, json: {sender: s, message: boom}}
    expect: {status: 500, content_type: application/json}
  - name: this one fails on purpose
    request: {channel: rest, json: {sender: s, message: x}}
    expect:
      status: 201
      json: [{recipient_id: s, text: "something else"}]
"""

SIGNED_CASES = """\
credentials:
  slack:
    slack_token: xoxb-1
    slack_signing_secret: s3cr3t
    api_url: https://slack.test/api
  facebook:
    verify: v
    secret: fbsecret
    page-access-token: pat
    api_url: https://graph.test
  twilio:
    account_sid: AC1
    auth_token: tw
    twilio_number: "+15550001"
    api_url: https://twilio.test
  telegram:
    access_token: "1:t"
    secret_token: tgsecret
  twilio_voice:
    auth_token: twv
  webexteams:
    access_token: wx
    secret: wxsecret
    api_url: https://webex.test
platform:
  - {url_pattern: "/v1/people/me$", json: {id: BOT}}
  - {url_pattern: "/v1/messages/M1$", json: {id: M1, roomId: R1, personId: P1, text: hi}}
  - json: {ok: true}
cases:
  - name: slack, signed
    request: {channel: slack, sign: true, json: {type: url_verification, challenge: abc}}
    expect: {status: 200, json: {challenge: abc}}
  - name: slack, unsigned, is refused by the channel
    request: {channel: slack, json: {type: url_verification, challenge: abc}}
    expect: {status: 400}
  - name: facebook, signed
    request:
      channel: facebook
      sign: true
      json: {object: page, entry: [{id: "1", time: 1, messaging: [{sender: {id: u},
             recipient: {id: p}, timestamp: 1, message: {mid: m1, text: hi}}]}]}
    expect: {status: 200, messages: [{sender_id: u, text: hi}]}
  - name: twilio, signed over the URL and the sorted form
    request:
      channel: twilio
      sign: true
      query: {tenant: a}
      form: {From: "+15551234", Body: hello, MessageSid: SM1}
    expect: {status: 204, messages: [{sender_id: "+15551234", text: hello}]}
  - name: telegram, with its secret token
    request:
      channel: telegram
      sign: true
      json: {update_id: 1, message: {message_id: 5, date: 1, chat: {id: 42, type: private},
             text: hello}}
    expect: {status: 200, messages: [{sender_id: "42", text: hello}]}
  - name: twilio_voice, signed as twilio
    request:
      channel: twilio_voice
      sign: true
      form: {CallSid: CA1, From: "+15551234", To: "+15550001", CallStatus: ringing}
    expect: {status: 200, messages: [{sender_id: "+15551234"}]}
  - name: webexteams, with X-Spark-Signature
    request:
      channel: webexteams
      sign: true
      json: {resource: messages, event: created, data: {id: M1, roomId: R1, personId: P1}}
    expect: {status: 200, messages: [{text: hi}]}
  - name: webexteams, unsigned, is refused by the channel
    request:
      channel: webexteams
      json: {resource: messages, event: created, data: {id: M1, roomId: R1, personId: P1}}
    expect: {status: 403}
"""

SHOUT = """\
local c = { name = "shout" }
function c.receive(req)
  if req.json.message == "boom" then error("boom") end
  return { { sender_id = req.json.sender, text = req.json.message:upper() } }
end
return c
"""

BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  sb.sleep(5)   -- offline, a sleep returns at once
  out:send_text_message("bot got " .. msg.text)
end
return bot
"""


def run_test(folder, *paths):
    return run_to_exit(["test"] + list(paths), cwd=folder, timeout=60)


class CaseRunnerTests(unittest.TestCase):
    def test_passing_cases_print_one_line_each_and_exit_0(self):
        folder = project({"rest.cases.yml": REST_CASES, "telegram.cases.yml": TELEGRAM_CASES})
        result = run_test(folder)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(lines, [
            "ok    ./rest.cases.yml: a message reaches the bot",
            "ok    ./telegram.cases.yml: a text message is answered through sendMessage",
            "2 passed, 0 failed",
        ])

    def test_a_failing_case_shows_the_differences_and_exits_1(self):
        folder = project({"mixed.cases.yml": MIXED_CASES, "shout.lua": SHOUT, "bot.lua": BOT})
        result = run_test(folder, "mixed.cases.yml")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        out = result.stdout
        self.assertIn("ok    mixed.cases.yml: streamed lines\n", out)
        self.assertIn("ok    mixed.cases.yml: a custom channel next to the case file\n", out)
        self.assertIn("ok    mixed.cases.yml: a channel that raises is a 500\n", out)
        self.assertIn("FAIL  mixed.cases.yml: this one fails on purpose\n"
                      "        status: expected 201, got 200\n", out)
        self.assertIn('json.1.text: expected "something else", got "bot got x"', out)
        self.assertTrue(out.endswith("3 passed, 1 failed\n"), out)

    def test_expect_log_sees_info_and_warning_lines_which_are_not_printed(self):
        channel = ('local sb = require "switchboard"\n'
                   'local c = { name = "noisy" }\n'
                   'function c.receive(req)\n'
                   '  sb.log.info("noisy: got %s", req.json.message)\n'
                   '  sb.log.warn("noisy: careful")\n'
                   '  sb.log.debug("noisy: not captured")\n'
                   '  return {}\n'
                   'end\n'
                   'return c\n')
        cases = ("credentials:\n  noisy:\n"
                 "cases:\n"
                 "  - name: info and warning lines\n"
                 "    request: {channel: noisy, json: {message: hi}}\n"
                 "    expect: {status: 200, log: ['INFO .*noisy: got hi', 'WARNING .*careful']}\n"
                 "  - name: no debug line\n"
                 "    request: {channel: noisy, json: {message: hi}}\n"
                 "    expect: {log: ['not captured']}\n")
        folder = project({"noisy.cases.yml": cases, "noisy.lua": channel})
        result = run_test(folder)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("ok    ./noisy.cases.yml: info and warning lines\n", result.stdout)
        self.assertIn("FAIL  ./noisy.cases.yml: no debug line\n", result.stdout)
        # The host's own info lines stay off the terminal.
        self.assertNotIn("noisy: got hi", result.stderr)

    def test_a_call_the_case_has_no_answer_for_fails_in_the_script(self):
        # `verify` makes the channel ask getMe first, which the case does not answer: the
        # script gets nil and the message, as if the platform were unreachable.
        cases = TELEGRAM_CASES.replace('    access_token: "123:abc"\n',
                                       '    access_token: "123:abc"\n    verify: mybot\n')
        folder = project({"telegram.cases.yml": cases})
        result = run_test(folder)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("status: expected 200, got 502", result.stdout)
        self.assertIn("no answer in the case for POST https://api.telegram.org/bot123:abc/getMe",
                      result.stdout)
        self.assertIn('calls.1.url: expected "https://api.telegram.org/bot123:abc/sendMessage", '
                      'got "https://api.telegram.org/bot123:abc/getMe"', result.stdout)

    def test_signed_requests_pass_the_bundled_channels_checks(self):
        # `sign: true` signs as the platform does, with the channel's own secret: each bundled
        # channel's verify accepts it, and an unsigned request is still refused.
        folder = project({"signed.cases.yml": SIGNED_CASES})
        result = run_test(folder)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("8 passed, 0 failed\n"), result.stdout)

    def test_a_broken_case_file_is_an_error_and_exits_2(self):
        folder = project({"bad.cases.yml": "cases: [\n", "nochannels.cases.yml": "cases: []\n"})
        for name, message in (("bad.cases.yml", "bad.cases.yml:2:1"),
                              ("nochannels.cases.yml", "needs `credentials:`")):
            result = run_test(folder, name)
            self.assertEqual(result.returncode, 2, result.stdout)
            self.assertIn(message, result.stdout)
            self.assertTrue(result.stdout.endswith("0 passed, 1 failed\n"), result.stdout)

    def test_a_folder_runs_only_files_with_cases(self):
        folder = project({"suite/rest.cases.yml": REST_CASES,
                          "suite/credentials.yml": "rest:\n",
                          "suite/notes.json": "{\"not\": \"cases\"}"})
        result = run_test(folder, "suite")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.splitlines(),
                         ["ok    suite/rest.cases.yml: a message reaches the bot",
                          "1 passed, 0 failed"])

    def test_nulls_empty_arrays_once_answers_and_the_request_id(self):
        # `text: null` expects JSON null, `[]` stays an array, `once: true` answers one call, and
        # an X-Request-Id header is the request's id, as it is in the live host.
        channel = ('local sb = require "switchboard"\n'
                   'local c = { name = "twice" }\n'
                   'function c.receive(req)\n'
                   '  local a = sb.http.request{url = "https://p.test/n"}\n'
                   '  local b = sb.http.request{url = "https://p.test/n"}\n'
                   '  return {}, { status = 200, json = { a = a.json.n, b = b.json.n, id = req.id,\n'
                   '    none = sb.json.null, empty = sb.json.array() } }\n'
                   'end\n'
                   'return c\n')
        cases = """\
credentials:
  twice.lua:
platform:
  - {url: "https://p.test/n", once: true, json: {n: 1}}
  - {url: "https://p.test/n", json: {n: 2}}
cases:
  - name: in order, with nulls and arrays
    request: {headers: {X-Request-Id: rec-123}, json: {}}
    expect:
      json: {a: 1, b: 2, id: rec-123, none: null, empty: []}
  - name: a null is not an absent key
    request: {json: {}}
    expect:
      json: {a: 1, b: 2, id: offline, empty: []}
"""
        folder = project({"twice.lua": channel, "twice.cases.yml": cases})
        result = run_test(folder)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("ok    ./twice.cases.yml: in order, with nulls and arrays\n", result.stdout)
        self.assertIn("FAIL  ./twice.cases.yml: a null is not an absent key\n"
                      "        json.none: not expected, got null\n", result.stdout)


class TryTests(unittest.TestCase):
    CREDENTIALS = 'rest:\ntelegram:\n  access_token: "1:t"\n  secret_token: tgsecret\n'
    BOT = ('local bot = {}\n'
           'function bot.handle(m, out) out:send_text_message("you said " .. tostring(m.text)) end\n'
           'return bot\n')
    UPDATE = ('{"update_id": 1, "message": {"message_id": 5, "date": 1, '
              '"chat": {"id": 42, "type": "private"}, "text": "hello"}}')

    def folder(self):
        return project({"credentials.yml": self.CREDENTIALS, "bot.lua": self.BOT,
                        "endpoints.yml": "bot:\n  script: bot.lua\n", "update.json": self.UPDATE})

    def test_try_with_the_configured_bot(self):
        result = run_to_exit(["try", "rest", "--data", '{"sender": "u1", "message": "hi"}'],
                             cwd=self.folder())
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        out = result.stdout
        self.assertTrue(out.startswith("POST /webhooks/rest/webhook\n"), out)
        self.assertRegex(out, r'UserMessages the bot got \(1\):\n  1\. \{[^\n]*"sender_id":"u1"'
                              r'[^\n]*"text":"hi"')
        self.assertIn("Outbound calls (0", out)
        self.assertIn('Answer: 200 application/json\n', out)
        self.assertIn('[{"recipient_id":"u1","text":"you said hi"}]', out)

    def test_try_a_push_channel_signed_with_an_echo_bot_from_a_file(self):
        result = run_to_exit(["try", "telegram", "--sign", "--echo", "--data", "@update.json",
                              "-H", "X-Extra: 1", "--query", "a=b"], cwd=self.folder())
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        out = result.stdout
        self.assertIn('"sender_id":"42"', out)
        self.assertIn("1. POST https://api.telegram.org/bot1:t/sendMessage\n"
                      '     {"chat_id":42,"text":"hello"}\n', out)
        self.assertIn("Answer: 200 text/plain", out)
        self.assertIn("success", out)
        # Without --sign the channel refuses: the secret token is missing.
        result = run_to_exit(["try", "telegram", "--echo", "--data", "@update.json"],
                             cwd=self.folder())
        self.assertIn("Answer: 403", result.stdout)

    def test_try_signs_a_form_given_as_text(self):
        folder = project({"credentials.yml": 'twilio:\n  account_sid: AC1\n  auth_token: tw\n'
                                             '  twilio_number: "+15550001"\n'})
        args = ["try", "twilio", "--echo", "-H", "Content-Type: application/x-www-form-urlencoded",
                "--data", "From=%2B15551234&Body=hello&MessageSid=SM1"]
        result = run_to_exit(args + ["--sign"], cwd=folder)
        self.assertIn("Answer: 204", result.stdout)
        self.assertIn('"sender_id":"+15551234"', result.stdout)
        self.assertIn("Body=hello&From=%2B15550001&To=%2B15551234", result.stdout)
        result = run_to_exit(args, cwd=folder)
        self.assertIn("Answer: 403", result.stdout)

    def test_try_names_the_channels_when_it_does_not_know_one(self):
        result = run_to_exit(["try", "slak"], cwd=self.folder())
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertIn("no channel \"slak\" in the credentials (channels: rest, telegram)",
                      result.stdout)
        self.assertEqual(result.stderr, "")  # nothing more, in particular no stale error text


if __name__ == "__main__":
    unittest.main()
