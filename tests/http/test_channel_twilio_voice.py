# SPDX-License-Identifier: MIT
"""The bundled `twilio_voice` channel (docs/channels/twilio_voice.md), Rasa's TwilioVoiceInput:
Twilio's voice webhook (a form signed with X-Twilio-Signature) answered with TwiML. Every inbound
request is signed by the official `twilio` library, and each expected TwiML document is built by
its `twilio.twiml.VoiceResponse` (tests/sdk/twiml_check.js) from the verbs Rasa's
_build_twilio_voice_response appends for the same bot messages: the channel's answer must be
the library's text byte for byte."""
import json
import os
import time
import unittest
import urllib.parse

import channel_fixtures
from channel_fixtures import assert_refused, bot_got_all, check, sdk, serve_bot, startup_error
from harness import project
from standins import StandInHostCase, in_threads
from util import run_to_exit

NAME = "twilio_voice"
WEBHOOK = "/webhooks/twilio_voice/webhook"
AUTH_TOKEN = "voice-auth-token-7c41d0"
FALLBACK = "I'm sorry I didn't get that could you rephrase."

# A Lua bot (recording_bot logs "BOT GOT {...}") with a reply per text under test; any other
# text is answered "You said: <text>".
BOT = r"""
local sb = require "switchboard"
local replies = {}

replies["hello"] = function(out) out:send_text_message("Hi! How can I help?") end
replies["start"] = function(out) out:send_text_message("Options host here.") end

replies["several"] = function(out)
  out:send_text_message("First.\n\nSecond.")
  out:send_text_message("Third & last <ok>?")
end

replies["buttons"] = function(out)
  out:send_text_with_buttons("Pick one", { { title = "Yes", payload = "/affirm" },
                                           { title = "No", payload = "/deny" } })
end

replies["quick"] = function(out)
  out:send_quick_replies("Quick?", { { title = "Sure", payload = "/affirm" } })
end

replies["image"] = function(out)
  out:send_text_message("Look at this")
  out:send_image_url("https://example.com/cat.png")
end

replies["custom"] = function(out)
  out:send_text_message("Before")
  out:send_custom_json({ widget = "map" })
  out:send_attachment("https://example.com/file.pdf")
end

replies["escape"] = function(out)
  out:send_text_message([[Tom & Jerry say "hi" <b>it's</b> > 3]])
end

replies["control"] = function(out)
  out:send_text_message("bell\7 and \1 gone\r\n ok")
end

replies["bye"] = function(out)
  out:send_text_message("Goodbye!")
  out:send_custom_json({ hangup = true })
  out:send_text_message("never said")
end

replies["nothing"] = function(out) end

replies["emoji"] = function(out) out:send_text_message("Great \u{1F600}") end

replies["slow"] = function(out)
  sb.sleep(1.5)
  out:send_text_message("Done slowly.")
end

return require("recording_bot").commands(replies, function(out, msg)
  out:send_text_message("You said: " .. tostring(msg.text))
end)
"""


def fixture(name):
    return channel_fixtures.fixture_json(NAME, name)


def credentials(*lines):
    return "twilio_voice:\n" + "".join("  %s\n" % line for line in
                                       ('auth_token: "%s"' % AUTH_TOKEN,) + lines)


# ---- what the official library says ------------------------------------------------------------

def official(sign=(), twiml=()):
    """(signatures, TwiML texts) from tests/sdk/twiml_check.js."""
    out = sdk("twiml_check.js", {"auth_token": AUTH_TOKEN,
                                 "sign": [{"url": u, "params": p} for u, p in sign],
                                 "twiml": list(twiml)})
    return out["signatures"], out["twiml"]


def rasa_verbs(texts, voice="woman", speech_timeout="5", speech_model="default",
               enhanced="false", hangup=False):
    """The verbs Rasa's _build_twilio_voice_response appends for these texts (its Gather's
    attributes in the sorted order the Python library writes them); with `hangup`, the
    Switchboard extension: every text said, a pause between two, then <Hangup/>."""
    gather = {"action": WEBHOOK, "actionOnEmptyResult": True, "enhanced": enhanced,
              "input": "speech", "speechModel": speech_model, "speechTimeout": speech_timeout}
    verbs = []
    for i, text in enumerate(texts):
        say = {"verb": "say", "attrs": {"voice": voice}, "text": text}
        last = i + 1 == len(texts)
        if last and not hangup:
            verbs.append({"verb": "gather", "attrs": gather, "children": [say]})
        else:
            verbs.append(say)
            if not last:
                verbs.append({"verb": "pause", "attrs": {"length": 1}})
    if hangup:
        verbs.append({"verb": "hangup"})
    return verbs


def expected_twiml(*docs):
    _, texts = official(twiml=docs)
    for text in texts:
        assert isinstance(text, str), text
    return texts if len(texts) > 1 else texts[0]


class VoiceHostCase(StandInHostCase):
    """A host serving the channel with BOT; post() signs with the official library."""

    CREDENTIALS = credentials()
    calls = 0

    @classmethod
    def start(cls):
        cls.host = serve_bot(cls.CREDENTIALS, BOT)
        cls.url = "http://127.0.0.1:%d%s" % (cls.host.port, WEBHOOK)

    @classmethod
    def call(cls, **changes):
        """A fresh call's form: the ringing fixture with a CallSid of its own."""
        cls.calls += 1
        form = dict(fixture("ringing.json"), CallSid="CA%032x" % (cls.calls + id(cls) % 4096))
        form.update(changes)
        return form

    def post(self, params, signature=None, token=None, headers=None):
        """POST the form `params`, signed by the official library over the URL it is posted to
        unless `signature` is given ("" sends none); `token` is I-Twilio-Idempotency-Token."""
        if signature is None:
            [signature], _ = official(sign=[(self.url, params)])
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature:
            hdrs["X-Twilio-Signature"] = signature
        if token:
            hdrs["I-Twilio-Idempotency-Token"] = token
        hdrs.update(headers or {})
        return self.host.request("POST", WEBHOOK, body=urllib.parse.urlencode(params),
                                 headers=hdrs)

    def twiml(self, params, **kw):
        """The TwiML the webhook answers to `params`, after checking status and content type."""
        status, headers, body = self.post(params, **kw)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("content-type"), "application/xml")
        return body.decode("utf-8")

    def said(self, params, **kw):
        return self.twiml(dict(params, CallStatus="in-progress", **kw))

    def bot_got(self, sender):
        """Every message of `sender` the bot got, once the log has all of them: a last "marker"
        turn of the sender is sent and waited for (the log is read by another thread, so a line
        can come after the answer), then left out."""
        status, _, _ = self.post(self.call(From=sender, CallStatus="in-progress",
                                           SpeechResult="marker"))
        self.assertEqual(status, 200)
        deadline = time.monotonic() + 5
        while True:
            got = [g for g in bot_got_all(self.host) if g.get("sender_id") == sender]
            if got and got[-1]["text"] == "marker":
                return got[:-1]
            if time.monotonic() > deadline:
                raise AssertionError("no marker from %s in the log:\n%s" % (sender,
                                                                            self.host.log()))
            time.sleep(0.02)

    def bot_texts(self, sender):
        return [g["text"] for g in self.bot_got(sender)]


class VoiceTests(VoiceHostCase):

    # -- a call, turn by turn -------------------------------------------------------------------

    def test_a_new_call_sends_the_initial_prompt(self):
        call = self.call(From="+14155550101")
        body = self.twiml(call)
        self.assertEqual(body, expected_twiml(rasa_verbs(["Hi! How can I help?"])))
        [got] = self.bot_got("+14155550101")
        self.assertEqual(got, {"text": "hello", "sender_id": "+14155550101",
                               "input_channel": NAME, "metadata": {
                                   "call_sid": call["CallSid"], "call_status": "ringing",
                                   "to": "+15005550006"}})

    def test_the_speech_result_is_the_text(self):
        form = dict(fixture("speech.json"), CallSid="CAspeech0001", From="+14155550102")
        body = self.twiml(form)
        self.assertEqual(body, expected_twiml(rasa_verbs(
            ["You said: I would like to book a table."])))
        [got] = self.bot_got("+14155550102")
        self.assertEqual(got["text"], "I would like to book a table.")
        self.assertEqual(got["metadata"], {"call_sid": "CAspeech0001", "call_status": "in-progress",
                                           "to": "+15005550006", "confidence": 0.9234567})

    def test_several_messages_are_said_with_pauses_the_last_inside_gather(self):
        call = self.call(From="+14155550103")
        self.twiml(call)
        body = self.said(call, SpeechResult="several")
        self.assertEqual(body, expected_twiml(rasa_verbs(
            ["First.", "Second.", "Third & last <ok>?"])))
        self.assertIn("<Pause length=\"1\"/>", body)
        self.assertIn("Third &amp; last &lt;ok&gt;?</Say></Gather></Response>", body)

    def test_buttons_and_quick_replies_say_their_titles(self):
        call = self.call(From="+14155550104")
        self.assertEqual(self.said(call, SpeechResult="buttons"),
                         expected_twiml(rasa_verbs(["Pick one", "Yes", "No"])))
        self.assertEqual(self.said(call, SpeechResult="quick"),
                         expected_twiml(rasa_verbs(["Quick?", "Sure"])))

    def test_an_image_is_left_out_with_a_warning(self):
        call = self.call(From="+14155550105")
        status, headers, body = self.post(dict(call, CallStatus="in-progress",
                                               SpeechResult="image"))
        self.assertEqual(status, 200)
        self.assertEqual(body.decode(), expected_twiml(rasa_verbs(["Look at this"])))
        self.host.wait_for_log(r"WARNING\s+\[%s\] twilio_voice: an image was left out of the "
                               r"answer" % headers["x-request-id"])

    def test_custom_json_and_attachments_are_left_out_with_a_warning(self):
        call = self.call(From="+14155550106")
        status, headers, body = self.post(dict(call, CallStatus="in-progress",
                                               SpeechResult="custom"))
        self.assertEqual(status, 200)
        self.assertEqual(body.decode(), expected_twiml(rasa_verbs(["Before"])))
        rid = headers["x-request-id"]
        self.host.wait_for_log(r"WARNING\s+\[%s\] twilio_voice: a custom payload" % rid)
        self.host.wait_for_log(r"WARNING\s+\[%s\] twilio_voice: an attachment" % rid)

    def test_an_emoji_is_said_with_a_warning(self):
        call = self.call(From="+14155550107")
        status, headers, body = self.post(dict(call, CallStatus="in-progress",
                                               SpeechResult="emoji"))
        self.assertEqual(body.decode(), expected_twiml(rasa_verbs(["Great \U0001F600"])))
        self.host.wait_for_log(r"WARNING\s+\[%s\] twilio_voice: a text has an emoji"
                               % headers["x-request-id"])

    # -- no speech: the reprompt ------------------------------------------------------------------

    def test_no_speech_repeats_the_last_message_of_the_call_without_the_bot(self):
        call = self.call(From="+14155550110")
        self.twiml(call)
        self.said(call, SpeechResult="several")
        reprompt = expected_twiml(rasa_verbs(["Third & last <ok>?"]))
        self.assertEqual(self.said(call), reprompt)
        self.assertEqual(self.said(call, SpeechResult=""), reprompt)   # empty: no speech either
        self.assertEqual(self.said(call, SpeechResult="  "), reprompt)
        self.assertEqual(self.bot_texts("+14155550110"), ["hello", "several"])

    def test_no_speech_on_a_call_without_a_last_message_says_the_fallback_phrase(self):
        fallback = expected_twiml(rasa_verbs([FALLBACK]))
        self.assertEqual(self.said(self.call(From="+14155550111")), fallback)
        self.assertEqual(self.said({"From": "+14155550111"}), fallback)      # no CallSid at all
        # The last message belongs to its call: another call of the same caller does not get it.
        first = self.call(From="+14155550112")
        self.said(first, SpeechResult="buttons")
        self.assertEqual(self.said(first), expected_twiml(rasa_verbs(["No"])))
        self.assertEqual(self.said(self.call(From="+14155550112")), fallback)
        self.assertEqual(self.bot_texts("+14155550111"), [])

    # -- ending the call ----------------------------------------------------------------------

    def test_a_bot_that_says_nothing_ends_the_call_as_in_rasa(self):
        call = self.call(From="+14155550120")
        self.assertEqual(self.said(call, SpeechResult="nothing"), expected_twiml([]))

    def test_a_hangup_payload_says_what_came_before_and_hangs_up(self):
        call = self.call(From="+14155550121")
        self.said(call, SpeechResult="several")
        status, headers, body = self.post(dict(call, CallStatus="in-progress", SpeechResult="bye"))
        self.assertEqual(body.decode(), expected_twiml(rasa_verbs(["Goodbye!"], hangup=True)))
        self.host.wait_for_log(r"WARNING\s+\[%s\] twilio_voice: 1 message after the hangup "
                               r"was left out" % headers["x-request-id"])
        # The call is over: nothing is kept for a reprompt.
        self.assertEqual(self.said(call), expected_twiml(rasa_verbs([FALLBACK])))

    # -- XML ------------------------------------------------------------------------------------

    def test_texts_are_escaped_as_the_library_escapes_them(self):
        call = self.call(From="+14155550130")
        body = self.said(call, SpeechResult="escape")
        self.assertEqual(body, expected_twiml(rasa_verbs(
            ["Tom & Jerry say \"hi\" <b>it's</b> > 3"])))
        self.assertIn("Tom &amp; Jerry say \"hi\" &lt;b&gt;it's&lt;/b&gt; &gt; 3", body)

    def test_characters_xml_cannot_carry_are_dropped(self):
        # The library refuses such a text outright; the channel drops the characters (a bell,
        # \1) and writes a carriage return as &#xD;, as the library does.
        _, [refused] = official(twiml=[rasa_verbs(["bell\x07"])])
        self.assertIn("error", refused)
        call = self.call(From="+14155550131")
        body = self.said(call, SpeechResult="control")
        self.assertEqual(body, expected_twiml(rasa_verbs(["bell and  gone\r\n ok"])))
        self.assertIn("gone&#xD;\n ok", body)

    # -- signatures -----------------------------------------------------------------------------

    def test_a_wrong_or_missing_signature_is_refused_and_the_bot_sees_nothing(self):
        call = self.call(From="+14155550140", CallStatus="in-progress", SpeechResult="secret")
        [good, other_token, other_url], _ = official(sign=[
            (self.url, call), (self.url, call), (self.url + "?x=1", call)])
        wrong = sdk("twilio_check.js", {"auth_token": "not-the-token", "cases": [
            {"signed_url": self.url, "url": self.url, "params": call}]})[0]["signature"]
        cases = [
            ("another auth token", call, wrong),
            ("tampered SpeechResult", dict(call, SpeechResult="other"), good),
            ("other URL", call, other_url),
            ("missing header", call, ""),
        ]
        for name, sent, signature in cases:
            status, _, body = self.post(sent, signature=signature)
            self.assertEqual(status, 403, name)
            self.assertEqual(json.loads(body)["error"], "forbidden", name)
        status, _, _ = self.post(call, signature=good)
        self.assertEqual(status, 200)
        self.assertEqual(self.bot_texts("+14155550140"), ["secret"])

    def test_the_public_url_behind_a_proxy_is_the_signed_one(self):
        call = self.call(From="+14155550141")
        public = "https://voice.example.com" + WEBHOOK
        [signature], _ = official(sign=[(public, call)])
        status, _, _ = self.post(call, signature=signature, headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.com"})
        self.assertEqual(status, 200)
        status, _, _ = self.post(call, signature=signature)
        self.assertEqual(status, 403)

    def test_health_check(self):
        status, _, body = self.host.request("GET", "/webhooks/twilio_voice/")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))


class RetryTests(VoiceHostCase):
    """Twilio calls a voice webhook again when a try fails, as its connection overrides say
    (#rc retries; #rp which failures: a read timeout or a 5xx reaches the host), with the same
    I-Twilio-Idempotency-Token: a turn goes to the bot once, and every try gets its TwiML."""

    def test_a_retried_turn_reaches_the_bot_once_and_gets_the_same_answer(self):
        call = self.call(From="+14155550150", CallStatus="in-progress", SpeechResult="several")
        first = self.twiml(call, token="idem-150-1")
        again = self.twiml(call, token="idem-150-1")
        self.assertEqual(again, first)
        self.host.wait_for_log(r"twilio_voice: turn %s:idem-150-1 was already received"
                               % call["CallSid"])
        # Another token is another turn (the caller said the same words again).
        self.twiml(call, token="idem-150-2")
        self.assertEqual(self.bot_texts("+14155550150"), ["several", "several"])

    def test_a_retry_while_the_first_try_still_runs_waits_for_its_answer(self):
        call = self.call(From="+14155550151", CallStatus="in-progress", SpeechResult="slow")
        [signature], _ = official(sign=[(self.url, call)])
        results = in_threads([lambda: self.post(call, signature=signature, token="idem-151")] * 2,
                             stagger=0.3)
        self.assertFalse([r for r in results if isinstance(r, Exception)], results)
        bodies = [r[2].decode() for r in results]
        self.assertEqual(bodies, [expected_twiml(rasa_verbs(["Done slowly."]))] * 2)
        self.assertEqual(self.bot_texts("+14155550151"), ["slow"])

    def test_a_new_call_retried_is_answered_once(self):
        call = self.call(From="+14155550152")
        self.assertEqual(self.twiml(call, token="idem-152"), self.twiml(call, token="idem-152"))
        self.assertEqual(self.bot_texts("+14155550152"), ["hello"])

    def test_without_a_token_each_try_is_processed(self):
        call = self.call(From="+14155550153", CallStatus="in-progress", SpeechResult="yes")
        self.twiml(call)
        self.twiml(call)
        self.assertEqual(self.bot_texts("+14155550153"), ["yes", "yes"])


class OptionsTests(VoiceHostCase):
    """Rasa's options reach the TwiML; the last message is kept `call_ttl` seconds (3: long
    enough that a loaded machine still asks again before it expires)."""

    CREDENTIALS = credentials('initial_prompt: "start"', 'reprompt_fallback_phrase: "Again?"',
                              'assistant_voice: "Polly.Joanna-Neural"', "speech_timeout: auto",
                              "speech_model: numbers_and_commands", "call_ttl: 3")

    def test_the_options_are_the_gather_and_say_attributes(self):
        call = self.call(From="+14155550160")
        self.assertEqual(self.twiml(call), expected_twiml(rasa_verbs(
            ["Options host here."], voice="Polly.Joanna-Neural", speech_timeout="auto",
            speech_model="numbers_and_commands")))
        self.assertEqual(self.bot_texts("+14155550160"), ["start"])

    def test_the_last_message_expires_after_call_ttl(self):
        call = self.call(From="+14155550161")
        self.twiml(call)
        kw = dict(voice="Polly.Joanna-Neural", speech_timeout="auto",
                  speech_model="numbers_and_commands")
        repeat, fallback = expected_twiml(rasa_verbs(["Options host here."], **kw),
                                          rasa_verbs(["Again?"], **kw))
        self.assertEqual(self.said(call), repeat)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the store's clock, not ours: ask until it expired
            body = self.said(call)
            if body == fallback:
                break
            self.assertEqual(body, repeat)
            time.sleep(0.2)
        self.assertEqual(body, fallback)


class EnhancedTests(VoiceHostCase):
    CREDENTIALS = credentials("speech_model: phone_call", "enhanced: true", "speech_timeout: 3")

    def test_enhanced_phone_call_and_an_integer_timeout(self):
        call = self.call(From="+14155550170")
        self.assertEqual(self.twiml(call), expected_twiml(rasa_verbs(
            ["Hi! How can I help?"], speech_model="phone_call", enhanced="true",
            speech_timeout="3")))


class StartupTests(unittest.TestCase):
    """Rasa's checks of the options, at startup and in `switchboard check`, one line each."""

    def refused(self, *lines):
        return startup_error(self, check(credentials(*lines)))

    def test_auth_token_is_required(self):
        line = startup_error(self, check("twilio_voice:\n  initial_prompt: hi\n"))
        self.assertIn("auth_token", line)
        self.assertIn("X-Twilio-Signature", line)

    def test_an_unknown_voice_names_the_nearest(self):
        line = self.refused("assistant_voice: Polly.Jonna")
        self.assertIn("`assistant_voice`", line)
        self.assertIn("Polly.Jonna", line)
        self.assertIn("did you mean Polly.Joanna?", line)
        line = self.refused("assistant_voice: robot")
        self.assertIn("man, woman, alice or one of Rasa's Polly voices", line)

    def test_speech_model_speech_timeout_and_enhanced(self):
        cases = [
            (["speech_model: fast"], "`speech_model` must be default, numbers_and_commands or "
                                     "phone_call, not fast"),
            (["speech_timeout: soon"], "`speech_timeout` must be a whole number of seconds or "
                                       "auto, not soon"),
            (["speech_timeout: 2.5"], "not 2.5"),
            (["speech_timeout: -1"], "not -1"),
            (["speech_timeout: auto"], "`speech_timeout: auto` needs `speech_model: "
                                       "numbers_and_commands`, not default"),
            (["enhanced: maybe"], "`enhanced` must be true or false, not maybe"),
            (["enhanced: true"], "`enhanced: true` needs `speech_model: phone_call`, not default"),
            (["enhanced: true", "speech_model: numbers_and_commands"], "not numbers_and_commands"),
        ]
        for lines, message in cases:
            line = self.refused(*lines)
            self.assertIn(message, line, lines)
            self.assertIn("twilio_voice", line, lines)

    def test_valid_option_sets(self):
        for lines in (["speech_timeout: auto", "speech_model: numbers_and_commands"],
                      ["enhanced: true", "speech_model: phone_call"],
                      ['enhanced: "false"', 'speech_timeout: "10"', "assistant_voice: alice"],
                      ["speech_timeout: 0", "assistant_voice: Polly.Gwyneth"]):
            result = check(credentials(*lines))
            self.assertEqual(result.returncode, 0, (lines, result.stderr))

    def test_an_unknown_parameter_and_a_bad_call_ttl(self):
        assert_refused(self, credentials("assistant_voise: man"), "assistant_voice")
        assert_refused(self, credentials("call_ttl: 0"), "call_ttl")
        assert_refused(self, credentials("dedupe_ttl: soon"), "dedupe_ttl")


CASES = os.path.join(channel_fixtures.FIXTURES, NAME, "twilio_voice.cases.yml")


class CaseFileTests(unittest.TestCase):
    def test_switchboard_test_runs_the_case_file(self):
        with open(CASES) as f:
            text = f.read()
        folder = project({"twilio_voice.cases.yml": text})
        result = run_to_exit(["test", "twilio_voice.cases.yml"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("8 passed, 0 failed\n"), result.stdout)
        self.assertNotIn("FAIL", result.stdout)


if __name__ == "__main__":
    unittest.main()
