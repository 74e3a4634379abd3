# SPDX-License-Identifier: MIT
"""Custom channels end to end (docs/contract.md §3.1-3.7): init and its parameters, where scripts
are found, verify/reject, receive, the request object, response tables and script errors."""
import os
import re
import unittest

from harness import project
from util import (ECHO_BOT, RELAY, TEXT_BOT, QuietHost as Host, assert_json_error,
                  chunked_request, decode, endpoints_yml, final_log, log_lines_with_id, serve,
                  shown_path, temp_dir)

# A channel that answers with what the test asks for: ?field=<name> answers {"value": req[name]}
# (?field=body answers the raw body bytes); ?mode=... exercises the error paths.
PROBE = """\
local c = { name = "probe" }
function c.init(config) c.config = config end

local function answer(req)
  local field = req.query.field
  if field == "body" then
    return { body = req.body, content_type = "application/octet-stream" }
  end
  return { json = { value = req[field] } }
end

function c.receive(req)
  local mode = req.query.mode
  if mode == "keep" then
    KEPT = req
    return {}, { json = { kept = true } }
  elseif mode == "stale" then
    return {}, { json = { method = KEPT.method } }
  elseif mode == "write" then
    req.method = "GET"
    return {}, { json = {} }
  elseif mode == "crash" then
    error("kaboom in receive")
  elseif mode == "badstatus" then
    return {}, { status = 42 }
  end
  return {}, answer(req)
end

c.routes = {
  ["PUT /field"] = function(req) return answer(req) end,
  ["GET /config"] = function(req)
    return { json = { config = c.config, is_nil = c.config == nil } }
  end,
}
return c
"""

PROBE_FILES = {"credentials.yml": "probe.lua:\n", "probe.lua": PROBE}

SLOW_FIRST_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  if msg.text == "one" then sb.sleep(0.05) end
  sb.log.info("BOT GOT %s", msg.text)
  out:send_text_message("echo: " .. msg.text)
end
return bot
"""


def probe_line(pattern):
    """1-based line of PROBE that contains `pattern`."""
    return next(i for i, line in enumerate(PROBE.splitlines(), 1) if pattern in line)


def field(host, name, method="POST", path="/webhooks/probe/webhook", query="", body=b"",
          headers=None):
    """Ask the probe channel for req[name]; returns the decoded {"value": ...}["value"]."""
    status, _, data = host.request(method, "%s?field=%s%s" % (path, name, query), body=body,
                                   headers=headers)
    assert status == 200, (status, data)
    return decode(data).get("value")


def assert_still_serving(test, host):
    """A good request right after an error is answered normally."""
    test.assertEqual(field(host, "method"), "POST")


class InitTests(unittest.TestCase):
    def config_of(self, credentials, env=None):
        with serve({"credentials.yml": credentials, "probe.lua": PROBE}, env=env) as host:
            status, _, body = host.request("GET", "/webhooks/probe/config")
            self.assertEqual(status, 200, body)
            return decode(body)

    def test_init_receives_the_parameters_map(self):
        got = self.config_of("probe.lua:\n  username: user_name\n  count: 3\n  flag: true\n"
                             "  list: [a, b]\n  nested:\n    key: value\n")
        self.assertFalse(got["is_nil"])
        self.assertEqual(got["config"], {"username": "user_name", "count": 3, "flag": True,
                                         "list": ["a", "b"], "nested": {"key": "value"}})

    def test_init_receives_nil_when_the_key_is_empty(self):
        got = self.config_of("probe.lua:\n")
        self.assertTrue(got["is_nil"], got)

    def test_variables_are_expanded_before_init(self):
        got = self.config_of('probe.lua:\n  token: "${SB_TEST_CHANNEL_TOKEN}"\n'
                             '  url: "https://api.example/${SB_TEST_CHANNEL_TOKEN}/x"\n',
                             env={"SB_TEST_CHANNEL_TOKEN": "tok-123"})
        self.assertEqual(got["config"], {"token": "tok-123", "url": "https://api.example/tok-123/x"})

    def test_expanded_secret_does_not_appear_in_the_log(self):
        files = {"credentials.yml": 'probe.lua:\n  token: "${SB_TEST_CHANNEL_SECRET}"\n',
                 "probe.lua": PROBE}
        with serve(files, args=["--log-level", "debug"],
                   env={"SB_TEST_CHANNEL_SECRET": "very-secret-value"}) as host:
            host.request("GET", "/webhooks/probe/config")
            host.request("POST", "/webhooks/probe/webhook?mode=crash", body=b"")
            self.assertNotIn("very-secret-value", final_log(host))


def serve_from_elsewhere(files):
    """A host started in an empty folder on conf/credentials.yml and conf/endpoints.yml (one
    worker) of a new project holding `files` under conf/; returns (host, the conf folder)."""
    files = dict(files, **{"endpoints.yml": endpoints_yml()})
    conf = os.path.join(project({"conf/" + rel: text for rel, text in files.items()}), "conf")
    return Host(args=["--credentials", os.path.join(conf, "credentials.yml"),
                      "--endpoints", os.path.join(conf, "endpoints.yml")], cwd=temp_dir()), conf


class ScriptLocationTests(unittest.TestCase):
    def served_script(self, host, name, project_dir=None):
        """The script /status names for a channel, as an absolute path (it shows "./..." for
        the project folder, the credentials file's)."""
        channels = decode(host.request("GET", "/status")[2])["channels"]
        shown = next(c["script"] for c in channels if c["name"] == name)
        return shown_path(shown, project_dir or host.cwd)

    def test_module_path_key_finds_a_lua_file(self):
        files = {"credentials.yml": "mypackage.myio:\n",
                 "mypackage/myio.lua": 'return { name = "myio" }\n'}
        with serve(files) as host:
            self.assertEqual(host.request("GET", "/webhooks/myio/")[0], 200)
            self.assertTrue(os.path.samefile(self.served_script(host, "myio"),
                                             os.path.join(host.cwd, "mypackage", "myio.lua")))

    def test_module_path_key_finds_an_init_lua(self):
        files = {"credentials.yml": "otherpkg.chan:\n",
                 "otherpkg/chan/init.lua": 'return { name = "chan" }\n'}
        with serve(files) as host:
            self.assertEqual(host.request("GET", "/webhooks/chan/")[0], 200)
            self.assertTrue(os.path.samefile(self.served_script(host, "chan"),
                                             os.path.join(host.cwd, "otherpkg", "chan", "init.lua")))

    def test_url_prefix_is_the_name_not_the_key(self):
        files = {"credentials.yml": "mypackage.myio:\n",
                 "mypackage/myio.lua": 'return { name = "myio" }\n'}
        with serve(files) as host:
            self.assertEqual(host.request("GET", "/webhooks/myio/")[0], 200)
            self.assertEqual(host.request("GET", "/webhooks/mypackage.myio/")[0], 404)

    def test_module_path_is_searched_next_to_the_credentials_file(self):
        host, _ = serve_from_elsewhere({"credentials.yml": "mypackage.myio:\n",
                                        "mypackage/myio.lua": 'return { name = "myio" }\n'})
        with host:
            self.assertEqual(host.request("GET", "/webhooks/myio/")[0], 200)

    def test_lua_file_key_is_relative_to_the_credentials_file(self):
        host, conf = serve_from_elsewhere({"credentials.yml": "scripts/mine.lua:\n",
                                           "scripts/mine.lua": 'return { name = "mine" }\n'})
        with host:
            self.assertEqual(host.request("GET", "/webhooks/mine/")[0], 200)
            self.assertTrue(os.path.samefile(self.served_script(host, "mine", conf),
                                             os.path.join(conf, "scripts", "mine.lua")))

    def test_project_file_shadows_a_bundled_channel(self):
        shadow = ('return { name = "rest", receive = function(req) '
                  'return {}, { json = { shadowed = true } } end }\n')
        with serve({"credentials.yml": "rest:\n", "rest.lua": shadow}) as host:
            status, _, body = host.post_json("/webhooks/rest/webhook", {"sender": "u", "message": "hi"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body, {"shadowed": True})
            self.assertTrue(os.path.samefile(self.served_script(host, "rest"),
                                             os.path.join(host.cwd, "rest.lua")))

    def test_channel_can_require_modules_of_the_project(self):
        helper = "return { shout = function(s) return s:upper() end }\n"
        channel = ('local h = require "helpers.text"\n'
                   'return { name = "req", receive = function(req) '
                   'return {}, { json = { said = h.shout("hi") } } end }\n')
        with serve({"credentials.yml": "req.lua:\n", "req.lua": channel,
                    "helpers/text.lua": helper}) as host:
            status, _, body = host.request("POST", "/webhooks/req/webhook", body=b"")
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body), {"said": "HI"})


class VerifyTests(unittest.TestCase):
    VERIFY = """\
local c = { name = "signed" }
function c.verify(req)
  if req.headers["x-signature"] == "good" then return true end
  return false, "signature mismatch"
end
return c
"""
    REJECT = """\
local c = { name = "signed" }
function c.verify(req) return false, "bad signature" end
function c.reject(req, reason)
  return { status = 403, json = { rejected = reason, path = req.path } }
end
return c
"""

    def host(self, script):
        return serve({"credentials.yml": "signed.lua:\n", "signed.lua": script}, bot=TEXT_BOT)

    def test_verify_false_answers_401_with_the_reason(self):
        with self.host(self.VERIFY) as host:
            answer = host.request("POST", "/webhooks/signed/webhook",
                                  body=b'{"sender":"u","message":"hi"}')
            doc = assert_json_error(self, answer, 401, "unauthorized")
            self.assertEqual(doc["message"], "signature mismatch")
            self.assertNotIn("BOT GOT", final_log(host))

    def test_verify_true_lets_the_request_through(self):
        with self.host(self.VERIFY) as host:
            status, _, body = host.post_json("/webhooks/signed/webhook",
                                             {"sender": "u", "message": "hi"},
                                             headers={"X-Signature": "good"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body, [{"recipient_id": "u", "text": "echo: hi"}])

    def test_reject_builds_the_answer_when_defined(self):
        with self.host(self.REJECT) as host:
            status, headers, body = host.request("POST", "/webhooks/signed/webhook",
                                                 body=b'{"sender":"u","message":"hi"}')
            self.assertEqual(status, 403, body)
            self.assertEqual(decode(body), {"rejected": "bad signature",
                                            "path": "/webhooks/signed/webhook"})
            self.assertNotIn("BOT GOT", final_log(host))

    def test_verify_false_without_a_reason_still_answers_401_json(self):
        script = 'return { name = "signed", verify = function(req) return false end }\n'
        with self.host(script) as host:
            answer = host.request("POST", "/webhooks/signed/webhook", body=b"{}")
            doc = assert_json_error(self, answer, 401, "unauthorized")
            self.assertTrue(doc["message"])


class ReceiveTests(unittest.TestCase):
    def test_several_messages_are_processed_in_order_into_one_answer(self):
        script = """\
local c = { name = "multi" }
function c.receive(req)
  return { { sender_id = "a", text = "one" }, { sender_id = "b", text = "two" },
           { sender_id = "a", text = "three" } }
end
return c
"""
        with serve({"credentials.yml": "multi.lua:\n", "multi.lua": script},
                   bot=SLOW_FIRST_BOT) as host:
            status, _, body = host.request("POST", "/webhooks/multi/webhook", body=b"")
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body), [{"recipient_id": "a", "text": "echo: one"},
                                            {"recipient_id": "b", "text": "echo: two"},
                                            {"recipient_id": "a", "text": "echo: three"}])
            order = re.findall(r"BOT GOT (\w+)", final_log(host))
            self.assertEqual(order, ["one", "two", "three"])

    def test_empty_messages_with_a_response_answer_a_handshake_without_the_bot(self):
        script = """\
local c = { name = "hs" }
function c.receive(req)
  return {}, { status = 200, json = { challenge = req.json.challenge } }
end
return c
"""
        with serve({"credentials.yml": "hs.lua:\n", "hs.lua": script}, bot=TEXT_BOT) as host:
            status, _, body = host.post_json("/webhooks/hs/webhook", {"challenge": "abc123"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body, {"challenge": "abc123"})
            self.assertNotIn("BOT GOT", final_log(host))

    def test_messages_with_a_response_reach_the_bot_and_the_response_is_the_answer(self):
        script = """\
local c = { name = "both" }
function c.receive(req)
  return { { sender_id = "u", text = "hi" } }, { status = 202, body = "accepted" }
end
return c
"""
        with serve({"credentials.yml": "both.lua:\n", "both.lua": script}, bot=TEXT_BOT) as host:
            status, _, body = host.request("POST", "/webhooks/both/webhook", body=b"")
            self.assertEqual((status, body), (202, b"accepted"))
            self.assertIn("BOT GOT hi", final_log(host))

    def test_no_messages_and_no_response_answer_an_empty_json_array(self):
        script = 'return { name = "none", receive = function(req) return {} end }\n'
        with serve({"credentials.yml": "none.lua:\n", "none.lua": script}) as host:
            status, headers, body = host.request("POST", "/webhooks/none/webhook", body=b"")
            self.assertEqual(status, 200, body)
            self.assertTrue(headers["content-type"].startswith("application/json"))
            self.assertEqual(decode(body), [])


class DefaultHookTests(unittest.TestCase):
    """A channel with only a name gets the rest channel's behaviour (docs/contract.md §3.2,
    §3.4)."""
    MINIMAL = {"credentials.yml": "minimal.lua:\n", "minimal.lua": 'return { name = "minimal" }\n'}

    def test_minimal_channel_reads_the_rest_json_body(self):
        with serve(self.MINIMAL, bot=ECHO_BOT) as host:
            status, _, body = host.post_json("/webhooks/minimal/webhook",
                                             {"sender": "u1", "message": " hi ", "message_id": "m1",
                                              "metadata": {"k": "v"}})
            self.assertEqual(status, 200, body)
            got = body[0]["custom"]
            self.assertEqual((got["sender_id"], got["text"], got["message_id"], got["metadata"],
                              got["input_channel"]), ("u1", "hi", "m1", {"k": "v"}, "minimal"))

    def test_default_hooks_answer_400_json_to_bodies_that_are_not_a_json_object(self):
        with serve(self.MINIMAL, bot=TEXT_BOT) as host:
            for body in (b"", b"{broken", b"[1, 2]", b'"text"', b"42", b"null"):
                with self.subTest(body=body):
                    status, headers, data = host.request("POST", "/webhooks/minimal/webhook", body=body)
                    self.assertEqual(status, 400, data)
                    self.assertTrue(headers.get("content-type", "").startswith("application/json"))
                    self.assertIn("error", decode(data))
            assert_still_serving_minimal(self, host)
            self.assertEqual(re.findall(r"BOT GOT (\S+)", final_log(host)), ["ok"])

    def test_per_field_hooks_feed_the_default_receive(self):
        script = """\
local c = { name = "hooks" }
function c.sender(req) return req.form.From end
function c.message(req) return req.form.Body end
function c.input_channel(req) return "sms" end
function c.metadata(req) return { to = req.form.To } end
function c.message_id(req) return req.form.MessageSid end
return c
"""
        with serve({"credentials.yml": "hooks.lua:\n", "hooks.lua": script}, bot=ECHO_BOT) as host:
            status, _, body = host.request("POST", "/webhooks/hooks/webhook",
                                           body=b"From=%2B15550001&Body=Hello+there&To=%2B1999&MessageSid=SM1",
                                           headers={"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(status, 200, body)
            got = decode(body)[0]["custom"]
            self.assertEqual((got["sender_id"], got["text"], got["input_channel"], got["metadata"],
                              got["message_id"]),
                             ("+15550001", "Hello there", "sms", {"to": "+1999"}, "SM1"))


def assert_still_serving_minimal(test, host):
    status, _, body = host.post_json("/webhooks/minimal/webhook", {"sender": "u", "message": "ok"})
    test.assertEqual(status, 200, body)


class UserMessageTests(unittest.TestCase):
    def bot_got(self, messages, headers=None):
        with serve({"credentials.yml": "relay.lua:\n", "relay.lua": RELAY}, bot=ECHO_BOT) as host:
            status, _, body = host.post_json("/webhooks/relay/webhook", {"messages": messages},
                                             headers=headers)
            self.assertEqual(status, 200, body)
            return [m["custom"] for m in body]

    def test_text_is_stripped_and_ids_become_strings(self):
        got = self.bot_got([{"sender_id": 123, "text": "  hi there \n", "message_id": 77}])[0]
        self.assertEqual(got["text"], "hi there")
        self.assertEqual(got["sender_id"], "123")
        self.assertEqual(got["message_id"], "77")

    def test_large_numeric_ids_become_integral_strings(self):
        got = self.bot_got([{"sender_id": 1234567890123, "message_id": 9876543210, "text": "x"}])[0]
        self.assertEqual(got["sender_id"], "1234567890123")
        self.assertEqual(got["message_id"], "9876543210")

    def test_missing_text_stays_missing(self):
        got = self.bot_got([{"sender_id": "u"}])[0]
        self.assertNotIn("text", got)

    def test_defaults_for_sender_message_id_and_input_channel(self):
        got = self.bot_got([{"text": "hi"}])[0]
        self.assertEqual(got["sender_id"], "default")
        self.assertRegex(got["message_id"], r"^[0-9a-f]{32}$")
        self.assertEqual(got["input_channel"], "relay")

    def test_metadata_and_request_headers_reach_the_bot(self):
        metadata = {"a": [1, 2], "b": {"c": "d"}}
        got = self.bot_got([{"sender_id": "u", "text": "hi", "metadata": metadata}],
                           headers={"X-Test-Header": "yes"})[0]
        self.assertEqual(got["metadata"], metadata)
        self.assertEqual(got["headers"].get("x-test-header"), "yes")

    def test_non_string_text_is_400_invalid_message(self):
        with serve({"credentials.yml": "relay.lua:\n", "relay.lua": RELAY}, bot=TEXT_BOT) as host:
            answer = host.request("POST", "/webhooks/relay/webhook",
                                  body=b'{"messages":[{"sender_id":"u","text":5}]}')
            assert_json_error(self, answer, 400, "invalid_message")
            self.assertNotIn("BOT GOT", final_log(host))


class BotConfigTests(unittest.TestCase):
    CONFIG_BOT = """\
local bot = {}
function bot.init(config) bot.config = config end
function bot.handle(msg, out) out:send_custom_json(bot.config) end
return bot
"""

    def test_other_keys_of_bot_reach_its_init_with_variables_expanded(self):
        files = {"credentials.yml": "rest:\n", "bots/b.lua": self.CONFIG_BOT,
                 "endpoints.yml": endpoints_yml() + "bot:\n  script: bots/b.lua\n"
                                  "  greeting: \"${SB_TEST_BOT_GREETING}\"\n  retries: 2\n"}
        with serve(files, env={"SB_TEST_BOT_GREETING": "hey there"}) as host:
            status, _, body = host.post_json("/webhooks/rest/webhook", {"sender": "u", "message": "hi"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body[0]["custom"], {"greeting": "hey there", "retries": 2})


class RequestObjectTests(unittest.TestCase):
    def test_method_of_the_webhook_and_of_a_route(self):
        with serve(PROBE_FILES) as host:
            self.assertEqual(field(host, "method"), "POST")
            self.assertEqual(field(host, "method", method="PUT", path="/webhooks/probe/field"), "PUT")

    def test_path_is_the_full_path_without_the_query(self):
        with serve(PROBE_FILES) as host:
            self.assertEqual(field(host, "path", query="&x=1"), "/webhooks/probe/webhook")

    def test_url_has_scheme_host_path_and_query(self):
        with serve(PROBE_FILES) as host:
            self.assertEqual(field(host, "url", query="&x=1&y=a%20b"),
                             "http://127.0.0.1:%d/webhooks/probe/webhook?field=url&x=1&y=a%%20b"
                             % host.port)

    def test_url_uses_the_host_header_as_the_client_sent_it(self):
        with serve(PROBE_FILES) as host:
            self.assertEqual(field(host, "url", headers={"Host": "bot.example.com:8443"}),
                             "http://bot.example.com:8443/webhooks/probe/webhook?field=url")

    def test_query_has_the_first_value_per_name_percent_decoded(self):
        with serve(PROBE_FILES) as host:
            query = field(host, "query", query="&a=1&a=2&b=hello%20world&c=%2Fslash%3F&d=%C3%A9")
            self.assertEqual(query, {"field": "query", "a": "1", "b": "hello world",
                                     "c": "/slash?", "d": "\u00e9"})

    def test_headers_have_lower_case_names(self):
        with serve(PROBE_FILES) as host:
            headers = field(host, "headers", headers={"X-Mixed-Case": "Value", "ACCEPT": "text/x"})
            self.assertEqual(headers.get("x-mixed-case"), "Value")
            self.assertEqual(headers.get("accept"), "text/x")
            self.assertFalse([name for name in headers if name != name.lower()], headers)

    def test_body_is_the_raw_bytes(self):
        raw = bytes(range(256)) + b"\r\n\x00end"
        with serve(PROBE_FILES) as host:
            status, _, body = host.request("POST", "/webhooks/probe/webhook?field=body", body=raw)
            self.assertEqual(status, 200)
            self.assertEqual(body, raw)

    def test_body_sent_chunked_is_the_raw_bytes(self):
        parts = [bytes(range(0, 128)), b"", bytes(range(128, 256)), b"tail\x00"]
        with serve(PROBE_FILES) as host:
            status, _, body = chunked_request(host, "POST", "/webhooks/probe/webhook?field=body",
                                              [p for p in parts if p])
            self.assertEqual(status, 200)
            self.assertEqual(body, b"".join(parts))

    def test_json_is_the_decoded_body(self):
        with serve(PROBE_FILES) as host:
            doc = {"a": [1, 2, "x"], "b": {"c": None, "d": True}, "e": "\u00e9/"}
            value = field(host, "json", body=b'{"a":[1,2,"x"],"b":{"c":null,"d":true},"e":"\\u00e9/"}')
            self.assertEqual(value, doc)

    def test_invalid_json_is_400_invalid_json(self):
        with serve(PROBE_FILES) as host:
            answer = host.request("POST", "/webhooks/probe/webhook?field=json", body=b"{not json")
            assert_json_error(self, answer, 400, "invalid_json")
            assert_still_serving(self, host)

    def test_empty_body_read_as_json_is_400_invalid_json(self):
        with serve(PROBE_FILES) as host:
            answer = host.request("POST", "/webhooks/probe/webhook?field=json", body=b"")
            assert_json_error(self, answer, 400, "invalid_json")

    def test_form_is_the_decoded_urlencoded_body(self):
        with serve(PROBE_FILES) as host:
            form = field(host, "form", body=b"a=1+2&b=%C3%A9%26x&a=3&empty=",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(form, {"a": "1 2", "b": "\u00e9&x", "empty": ""})

    def test_remote_addr_is_the_peer_address(self):
        with serve(PROBE_FILES) as host:
            self.assertEqual(field(host, "remote_addr"), "127.0.0.1")

    def test_id_matches_the_x_request_id_answer_header(self):
        with serve(PROBE_FILES) as host:
            status, headers, body = host.request("POST", "/webhooks/probe/webhook?field=id", body=b"")
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body)["value"], headers["x-request-id"])

    def test_req_is_read_only(self):
        with serve(PROBE_FILES) as host:
            answer = host.request("POST", "/webhooks/probe/webhook?mode=write", body=b"")
            assert_json_error(self, answer, 500, "channel_error")
            assert_still_serving(self, host)

    def test_req_used_after_its_call_fails_that_later_request(self):
        with serve(PROBE_FILES) as host:
            status, _, body = host.request("POST", "/webhooks/probe/webhook?mode=keep", body=b"")
            self.assertEqual(status, 200, body)
            answer = host.request("POST", "/webhooks/probe/webhook?mode=stale", body=b"")
            assert_json_error(self, answer, 500, "channel_error")
            assert_still_serving(self, host)
            lines = log_lines_with_id(host, answer[1]["x-request-id"])
            self.assertTrue(any("no longer valid" in line for line in lines),
                            "the log does not say why:\n" + host.log())


class ResponseTableTests(unittest.TestCase):
    def respond_with(self, lua_table):
        script = ('local c = { name = "resp" }\n'
                  'function c.receive(req) return { { sender_id = "u", text = "hi" } } end\n'
                  'function c.respond(messages, req)\n  return %s\nend\nreturn c\n' % lua_table)
        return serve({"credentials.yml": "resp.lua:\n", "resp.lua": script}, bot=TEXT_BOT)

    def test_respond_gets_the_collected_messages_and_returns_status_headers_json(self):
        table = ('{ status = 201, headers = { ["x-count"] = tostring(#messages) }, '
                 'json = { wrapped = messages, path = req.path } }')
        with self.respond_with(table) as host:
            status, headers, body = host.request("POST", "/webhooks/resp/webhook", body=b"")
            self.assertEqual(status, 201, body)
            self.assertTrue(headers["content-type"].startswith("application/json"), headers)
            self.assertEqual(headers.get("x-count"), "1")
            self.assertEqual(decode(body), {"wrapped": [{"recipient_id": "u", "text": "echo: hi"}],
                                            "path": "/webhooks/resp/webhook"})

    def test_respond_returns_body_and_content_type(self):
        with self.respond_with('{ status = 200, body = "a,b\\n1,2\\n", content_type = "text/csv" }') as host:
            status, headers, body = host.request("POST", "/webhooks/resp/webhook", body=b"")
            self.assertEqual(status, 200, body)
            self.assertTrue(headers["content-type"].startswith("text/csv"), headers)
            self.assertEqual(body, b"a,b\n1,2\n")

    def test_status_defaults_to_200(self):
        with self.respond_with('{ json = { ok = true } }') as host:
            status, _, body = host.request("POST", "/webhooks/resp/webhook", body=b"")
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body), {"ok": True})

    def test_bad_status_is_500_channel_error(self):
        with serve(PROBE_FILES) as host:
            answer = host.request("POST", "/webhooks/probe/webhook?mode=badstatus", body=b"")
            assert_json_error(self, answer, 500, "channel_error")
            assert_still_serving(self, host)


class ScriptErrorTests(unittest.TestCase):
    def test_runtime_error_in_receive_is_500_json_and_logged_with_the_request_id(self):
        with serve(PROBE_FILES) as host:
            answer = host.request("POST", "/webhooks/probe/webhook?mode=crash", body=b"")
            assert_json_error(self, answer, 500, "channel_error")
            lines = log_lines_with_id(host, answer[1]["x-request-id"])
            where = "probe.lua:%d:" % probe_line("kaboom in receive")
            self.assertTrue(any("kaboom in receive" in line and where in line for line in lines),
                            "no log line with the error, %s and the request id:\n%s"
                            % (where, host.log()))

    def test_runtime_error_in_verify_is_500_json(self):
        script = 'return { name = "v", verify = function(req) error("verify blew up") end }\n'
        with serve({"credentials.yml": "v.lua:\nprobe.lua:\n", "v.lua": script,
                    "probe.lua": PROBE}) as host:
            answer = host.request("POST", "/webhooks/v/webhook", body=b"{}")
            assert_json_error(self, answer, 500, "channel_error")
            assert_still_serving(self, host)
            self.assertIn("verify blew up", final_log(host))

    def test_host_keeps_serving_after_every_kind_of_error(self):
        with serve(PROBE_FILES) as host:
            for query, body, expected in (("mode=crash", b"", 500), ("field=json", b"{nope", 400),
                                          ("mode=badstatus", b"", 500), ("mode=write", b"", 500),
                                          ("mode=stale", b"", 500)):
                with self.subTest(query=query):
                    status = host.request("POST", "/webhooks/probe/webhook?" + query, body=body)[0]
                    self.assertEqual(status, expected)
                    assert_still_serving(self, host)
            self.assertEqual(host.request("GET", "/")[0], 200)


if __name__ == "__main__":
    unittest.main()
