# SPDX-License-Identifier: MIT
"""The command line (docs/contract.md §1): --version/--help, usage errors, `check`, startup
failures for `run` and `check`, --connector, running without credentials and from another working
directory."""
import http.client
import os
import re
import signal
import socket
import time
import unittest

from harness import project, run_command, SOURCE_DIR
from util import (ECHO_BOT, ONE_WORKER, QuietHost as Host, decode, endpoints_yml, error_lines,
                  log_lines_with_id, make_project, run_to_exit, serve, start_without_harness,
                  shown_path, stop_process, temp_dir, version)

BUNDLED_CHANNELS = os.path.realpath(os.path.join(SOURCE_DIR, "channels"))

# The custom channel of the README: key mypackage.myio, name myio, puts its `username`
# parameter into the metadata.
MYIO = """\
local channel = { name = "myio" }
function channel.init(config) channel.username = config and config.username end
function channel.metadata(req) return { received_by = channel.username } end
return channel
"""

CHANNEL_INIT_RAISES = """\
local c = { name = "boom" }
function c.init(config)
  error("init exploded")
end
return c
"""

CHANNEL_SYNTAX_ERROR = """\
local c = {
  name = "broken"
  oops(
return c
"""


def run_args(*extra):
    return ["run", "-p", "0", "-i", "127.0.0.1"] + list(extra)


class UsageTests(unittest.TestCase):
    def test_version_prints_the_version_and_exits_0(self):
        result = run_command(["--version"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(version(), result.stdout)
        self.assertIn("Switchboard", result.stdout)

    def test_help_prints_the_usage_of_both_commands_and_exits_0(self):
        result = run_command(["--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        for word in ("run", "check", "--credentials", "--endpoints", "--port", "--connector",
                     "--cors", "--ssl-certificate", "--ssl-keyfile", "--response-timeout",
                     "--log-level"):
            self.assertIn(word, result.stdout)

    def test_help_after_a_command_prints_the_usage(self):
        result = run_command(["run", "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("check", result.stdout)

    def test_no_command_exits_2_with_a_message(self):
        result = run_command([])
        self.assertEqual(result.returncode, 2)
        self.assertIn("run, check, test, try or new", result.stderr)

    def test_unknown_command_exits_2_and_names_it(self):
        result = run_command(["serve"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("unknown command", result.stderr)
        self.assertIn("'serve'", result.stderr)

    def test_unknown_option_exits_2_and_names_it(self):
        result = run_command(["run", "--bogus", "x"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("unknown option", result.stderr)
        self.assertIn("--bogus", result.stderr)

    def test_unknown_option_as_last_argument_is_reported_as_unknown(self):
        result = run_command(["run", "--bogus"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("unknown option", result.stderr)
        self.assertIn("--bogus", result.stderr)

    def test_run_option_given_to_check_exits_2(self):
        result = run_command(["check", "--port", "5005"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("--port", result.stderr)

    def test_port_that_is_not_a_number_exits_2(self):
        result = run_command(["run", "-p", "http"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("--port", result.stderr)
        self.assertIn("'http'", result.stderr)

    def test_ssl_certificate_without_keyfile_exits_2(self):
        result = run_command(["run", "--ssl-certificate", "cert.pem"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("--ssl-keyfile", result.stderr)


class CheckTests(unittest.TestCase):
    def test_check_on_a_good_config_exits_0_and_says_configuration_ok(self):
        folder = make_project({"credentials.yml": "rest:\nmypackage.myio:\n  username: u\n",
                               "mypackage/myio.lua": MYIO})
        result = run_to_exit(["check"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("configuration OK", result.stdout)
        self.assertIn("rest", result.stdout)
        self.assertIn("myio", result.stdout)

    def test_check_accepts_the_bundled_examples(self):
        result = run_to_exit(["check"], cwd=os.path.join(SOURCE_DIR, "examples"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("configuration OK", result.stdout)

    def test_check_names_the_lua_bot(self):
        folder = make_project({"credentials.yml": "rest:\n"}, bot=ECHO_BOT)
        result = run_to_exit(["check"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("bot.lua", result.stdout)

    def test_check_accepts_an_http_bot(self):
        folder = project({"credentials.yml": "rest:\n",
                          "endpoints.yml": ONE_WORKER + "bot:\n  url: http://127.0.0.1:9/webhook\n"
                                           "  timeout: 5\n"})
        result = run_to_exit(["check"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("configuration OK", result.stdout)

    def test_a_map_of_300000_keys_is_checked_in_linear_time(self):
        # The duplicate-key check once compared every key with every earlier one: minutes for
        # this file. A hash set makes it well under a second (the bound is loose for sanitizers).
        # A channel that declares no parameters (unknown keys are only warnings for it).
        keys = 300000
        big = {"big.lua": 'return { name = "big" }\n'}
        lines = ["big.lua:\n"] + ["  key%d: value%d\n" % (i, i) for i in range(keys)]
        folder = make_project(dict(big, **{"credentials.yml": "".join(lines)}))
        result = run_to_exit(["check"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("configuration OK", result.stdout)
        # The last key repeating the first is still found, with both lines.
        lines.append("  key0: again\n")
        folder = make_project(dict(big, **{"credentials.yml": "".join(lines)}))
        result = run_to_exit(["check"], cwd=folder, timeout=60)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("credentials.yml:%d:3: duplicate key 'key0' (first at line 2)" % (keys + 2),
                      result.stderr)


class StartupFailureTests(unittest.TestCase):
    """Each failure: non-zero exit, exactly one error line naming file, key and reason, and
    nothing served (docs/contract.md §1), for `run` and for `check`."""

    def assert_fails(self, folder, parts, commands=("run", "check"), args=(), env=None):
        for command in commands:
            with self.subTest(command=command):
                argv = run_args(*args) if command == "run" else ["check"] + list(args)
                result = run_to_exit(argv, cwd=folder, env=env)
                self.assertIsNotNone(result.returncode,
                                     "`%s` started serving instead of failing:\n%s"
                                     % (command, result.stderr))
                self.assertNotEqual(result.returncode, 0, result.stderr)
                self.assertNotIn("listening on", result.stderr)
                lines = error_lines(result.stderr)
                self.assertEqual(len(lines), 1, "expected one error line, got:\n" + result.stderr)
                for part in parts:
                    self.assertIn(part, lines[0])
        return lines[0]

    def channel_project(self, script, key="bad.lua", extra=None):
        files = {"credentials.yml": "rest:\n%s:\n" % key, "bad.lua": script}
        files.update(extra or {})
        return make_project(files)

    def test_malformed_credentials_yaml_names_line_and_column(self):
        folder = make_project({"credentials.yml": "rest:\n  a: 1\n b: 2\n"})
        self.assert_fails(folder, ["credentials.yml:3:2", "did not find expected key"])

    def test_malformed_endpoints_yaml_names_line_and_column(self):
        folder = project({"credentials.yml": "rest:\n", "endpoints.yml": "server:\n  a: 1\n b: 2\n"})
        self.assert_fails(folder, ["endpoints.yml:3:2", "did not find expected key"])

    def test_unreadable_credentials_file_is_named(self):
        folder = make_project({})
        self.assert_fails(folder, ["no-such-credentials.yml"],
                          args=["--credentials", "no-such-credentials.yml"])

    def test_credentials_top_level_that_is_not_a_map(self):
        folder = make_project({"credentials.yml": "- rest\n- slack\n"})
        self.assert_fails(folder, ["credentials.yml:1:1", "map"])

    def test_channel_parameters_that_are_not_a_map(self):
        folder = make_project({"credentials.yml": "rest: 5\n"})
        self.assert_fails(folder, ["credentials.yml:1:", "'rest'", "map"])

    def test_duplicate_channel_key(self):
        folder = make_project({"credentials.yml": "rest:\nrest:\n"})
        self.assert_fails(folder, ["credentials.yml:2:1", "duplicate key 'rest'"])

    def test_unknown_channel_key_lists_where_it_looked(self):
        folder = make_project({"credentials.yml": "rest:\nnosuch.thing:\n"})
        line = self.assert_fails(folder, ["credentials.yml:2:1", "nosuch.thing",
                                          "nosuch/thing.lua", "nosuch/thing/init.lua"])
        self.assertIn(os.path.realpath(folder), line)
        self.assertIn(BUNDLED_CHANNELS, line)

    def test_missing_lua_file_key_is_named(self):
        folder = make_project({"credentials.yml": "rest:\nmissing.lua:\n"})
        self.assert_fails(folder, ["credentials.yml:2:1", "missing.lua"])

    def test_channel_script_syntax_error_names_file_and_line(self):
        folder = self.channel_project(CHANNEL_SYNTAX_ERROR)
        self.assert_fails(folder, [os.path.join(os.path.realpath(folder), "bad.lua") + ":3:",
                                   "'bad.lua'", "credentials.yml:2:1"])

    def test_channel_init_raising_names_file_and_line(self):
        folder = self.channel_project(CHANNEL_INIT_RAISES)
        self.assert_fails(folder, [os.path.join(os.path.realpath(folder), "bad.lua") + ":3:",
                                   "init exploded", "'bad.lua'", "init"])

    def test_channel_script_that_does_not_return_a_table(self):
        folder = self.channel_project("return 42\n")
        self.assert_fails(folder, ["bad.lua", "'bad.lua'", "must return a table"])

    def test_channel_without_a_name(self):
        folder = self.channel_project("return { }\n")
        self.assert_fails(folder, ["bad.lua", "'bad.lua'", "`name`"])

    def test_channel_with_an_invalid_name(self):
        folder = self.channel_project('return { name = "has space/slash" }\n')
        self.assert_fails(folder, ["bad.lua", "'bad.lua'", "`name`"])

    def test_channel_field_of_the_wrong_type(self):
        folder = self.channel_project('return { name = "typed", verify = "yes" }\n')
        self.assert_fails(folder, ["bad.lua", "verify", "function"])

    def test_two_channels_with_the_same_name(self):
        folder = self.channel_project('return { name = "rest" }\n')
        self.assert_fails(folder, ["credentials.yml:2:1", "'bad.lua'", "'rest'", "name"])

    def test_unset_variable_in_credentials_is_named(self):
        folder = make_project({"credentials.yml": "rest:\nmypackage.myio:\n"
                                                  "  username: \"${SB_TEST_SURELY_UNSET_1}\"\n",
                               "mypackage/myio.lua": MYIO})
        self.assert_fails(folder, ["credentials.yml:3:", "SB_TEST_SURELY_UNSET_1", "username"])

    def test_unset_variable_in_endpoints_is_named(self):
        folder = project({"credentials.yml": "rest:\n",
                          "endpoints.yml": ONE_WORKER + "bot:\n  script: \"${SB_TEST_SURELY_UNSET_2}\"\n"})
        self.assert_fails(folder, ["endpoints.yml:4:", "SB_TEST_SURELY_UNSET_2", "script"])

    def test_missing_bot_script(self):
        folder = project({"credentials.yml": "rest:\n",
                          "endpoints.yml": endpoints_yml("no_such_bot.lua")})
        self.assert_fails(folder, ["no_such_bot.lua", "endpoints.yml"])

    def test_bot_init_raising_names_file_and_line(self):
        bot = "local b = {}\nfunction b.handle() end\nfunction b.init(c)\n  error('bot init failed')\nend\nreturn b\n"
        folder = make_project({"credentials.yml": "rest:\n"}, bot=bot)
        self.assert_fails(folder, [os.path.join(os.path.realpath(folder), "bot.lua") + ":4:",
                                   "bot init failed", "endpoints.yml"])

    def test_bot_without_handle(self):
        folder = make_project({"credentials.yml": "rest:\n"}, bot="return { }\n")
        self.assert_fails(folder, ["bot.lua", "handle"])

    def test_unknown_server_key_lists_the_known_ones(self):
        folder = project({"credentials.yml": "rest:\n", "endpoints.yml": "server:\n  frobnicate: 1\n"})
        self.assert_fails(folder, ["endpoints.yml:2:3", "frobnicate", "max_body_size"])

    def test_negative_max_body_size(self):
        folder = project({"credentials.yml": "rest:\n", "endpoints.yml": "server:\n  max_body_size: -3\n"})
        self.assert_fails(folder, ["endpoints.yml:2:", "max_body_size"])

    def test_server_value_of_the_wrong_type(self):
        folder = project({"credentials.yml": "rest:\n",
                          "endpoints.yml": "server:\n  connection_timeout: soon\n"})
        self.assert_fails(folder, ["endpoints.yml:2:", "connection_timeout"])

    def test_port_in_use(self):
        folder = make_project({"credentials.yml": "rest:\n"})
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            result = run_to_exit(["run", "-p", str(port), "-i", "127.0.0.1"], cwd=folder)
        self.assertIsNotNone(result.returncode, "started on a taken port:\n" + result.stderr)
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("listening on", result.stderr)
        lines = error_lines(result.stderr)
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(str(port), lines[0])
        self.assertIn("in use", lines[0])

    def test_connector_that_matches_nothing(self):
        folder = make_project({"credentials.yml": "rest:\n"})
        self.assert_fails(folder, ["--connector", "nope", "credentials.yml", "rest"],
                          commands=("run",), args=["--connector", "nope"])


class ConnectorTests(unittest.TestCase):
    FILES = {"credentials.yml": "rest:\nmypackage.myio:\n  username: the_user\n",
             "mypackage/myio.lua": MYIO}

    def assert_only_myio(self, host):
        self.assertEqual(host.request("GET", "/webhooks/myio/")[0], 200)
        self.assertEqual(host.request("GET", "/webhooks/rest/")[0], 404)
        status, _, _ = host.post_json("/webhooks/rest/webhook", {"sender": "u", "message": "hi"})
        self.assertEqual(status, 404)

    def test_connector_by_key_serves_only_that_channel(self):
        with serve(self.FILES, args=["--connector", "mypackage.myio"]) as host:
            self.assert_only_myio(host)

    def test_connector_by_name_serves_only_that_channel(self):
        with serve(self.FILES, args=["--connector", "myio"]) as host:
            self.assert_only_myio(host)

    def test_connector_keeps_the_parameters_of_the_credentials_file(self):
        with serve(self.FILES, args=["--connector", "myio"], bot=ECHO_BOT) as host:
            status, _, body = host.post_json("/webhooks/myio/webhook",
                                             {"sender": "u", "message": "hi"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body[0]["custom"]["metadata"], {"received_by": "the_user"})

    def test_connector_rest_serves_only_rest(self):
        with serve(self.FILES, args=["--connector", "rest"]) as host:
            self.assertEqual(host.request("GET", "/webhooks/rest/")[0], 200)
            self.assertEqual(host.request("GET", "/webhooks/myio/")[0], 404)


class DefaultsTests(unittest.TestCase):
    def test_no_credentials_warns_once_and_serves_rest_only(self):
        with serve({}) as host:
            self.assertEqual(host.request("GET", "/webhooks/rest/")[0], 200)
            status, _, body = host.post_json("/webhooks/rest/webhook", {"sender": "u", "message": "hi"})
            self.assertEqual(status, 200, body)
            self.assertIsInstance(body, list)
            self.assertTrue(body and body[0]["recipient_id"] == "u", body)
            status, _, body = host.request("GET", "/status")
            names = [c["name"] for c in decode(body)["channels"]]
            self.assertEqual(names, ["rest"])
            warnings = [line for line in host.log().splitlines()
                        if "WARNING" in line and "credentials" in line]
            self.assertEqual(len(warnings), 1, host.log())

    def test_run_from_another_directory_finds_the_bundled_channels_and_demo_bot(self):
        endpoints = os.path.join(make_project({}), "endpoints.yml")
        elsewhere = temp_dir()
        with Host(args=["--endpoints", endpoints], cwd=elsewhere) as host:
            status, _, body = host.post_json("/webhooks/rest/webhook", {"sender": "u", "message": "hello"})
            self.assertEqual(status, 200, body)
            self.assertTrue(body and all(m["recipient_id"] == "u" for m in body), body)
            self.assertTrue(any(m.get("text") for m in body), body)
            status, _, body = host.request("GET", "/status")
            script = decode(body)["channels"][0]["script"]
            self.assertEqual(script, "$SWITCHBOARD_HOME/channels/rest.lua")
            self.assertEqual(os.path.realpath(shown_path(script, elsewhere)),
                             os.path.join(BUNDLED_CHANNELS, "rest.lua"))

    def test_check_from_another_directory_finds_the_demo_bot(self):
        result = run_to_exit(["check"], cwd=temp_dir())
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("configuration OK", result.stdout)
        self.assertIn("demo", result.stdout)

    def test_files_given_on_the_command_line_resolve_paths_from_their_own_folder(self):
        folder = project({"conf/credentials.yml": "local.lua:\n",
                          "conf/local.lua": 'return { name = "local" }\n',
                          "conf/endpoints.yml": endpoints_yml("bots/bot.lua"),
                          "conf/bots/bot.lua": ECHO_BOT})
        conf = os.path.join(folder, "conf")
        with Host(args=["--credentials", os.path.join(conf, "credentials.yml"),
                        "--endpoints", os.path.join(conf, "endpoints.yml")],
                  cwd=temp_dir()) as host:
            status, _, body = host.post_json("/webhooks/local/webhook", {"sender": "u", "message": "hi"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body[0]["custom"]["text"], "hi")


LOGGING_CHANNEL = """\
local sb = require "switchboard"
local c = { name = "logs" }
function c.receive(req)
  sb.log.debug("MARK debug")
  sb.log.info("MARK info")
  sb.log.warn("MARK warning")
  sb.log.error("MARK error")
  return {}, { json = { ok = true } }
end
return c
"""


class LogLevelTests(unittest.TestCase):
    FILES = {"credentials.yml": "logs.lua:\n", "logs.lua": LOGGING_CHANNEL}

    def marks(self, log):
        return sorted(set(re.findall(r"MARK (\w+)", log)))

    def test_default_level_is_info(self):
        with serve(self.FILES) as host:
            self.assertEqual(host.request("POST", "/webhooks/logs/webhook", body=b"")[0], 200)
            host.wait_for_log("MARK error")
            self.assertEqual(self.marks(host.log()), ["error", "info", "warning"])

    def test_debug_level_shows_debug_lines(self):
        with serve(self.FILES, args=["--log-level", "debug"]) as host:
            self.assertEqual(host.request("POST", "/webhooks/logs/webhook", body=b"")[0], 200)
            host.wait_for_log("MARK error")
            self.assertEqual(self.marks(host.log()), ["debug", "error", "info", "warning"])

    def test_error_level_hides_info_and_warning_lines(self):
        proc, port = start_without_harness(["--log-level", "error"], cwd=make_project(self.FILES))
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/webhooks/logs/webhook", body=b"")
            self.assertEqual(conn.getresponse().status, 200)
            conn.close()
        finally:
            code, log = stop_process(proc)
        self.assertEqual(code, 0, log)
        self.assertEqual(self.marks(log), ["error"])
        self.assertNotIn(" INFO ", log)

    def test_unknown_log_level_exits_2(self):
        result = run_command(["run", "--log-level", "loud"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("--log-level", result.stderr)


class ResponseTimeoutTests(unittest.TestCase):
    SLOW_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  out:send_text_message("first")
  sb.sleep(10)
  out:send_text_message("second")
end
return bot
"""

    def test_response_timeout_answers_with_what_was_collected_and_logs_the_request_id(self):
        with serve({"credentials.yml": "rest:\n"}, bot=self.SLOW_BOT,
                   args=["--response-timeout", "0.3"]) as host:
            started = time.monotonic()
            status, headers, body = host.post_json("/webhooks/rest/webhook",
                                                   {"sender": "u", "message": "hi"})
            self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(status, 200, body)
            self.assertEqual(body, [{"recipient_id": "u", "text": "first"}])
            request_id = headers["x-request-id"]
            self.assertTrue(any("ERROR" in line for line in log_lines_with_id(host, request_id)),
                            host.log())

    def test_response_timeout_must_be_a_positive_number(self):
        result = run_command(["run", "--response-timeout", "0"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("--response-timeout", result.stderr)


class ShutdownTests(unittest.TestCase):
    def test_sigterm_stops_with_exit_0(self):
        host = serve({"credentials.yml": "rest:\n"})
        self.assertEqual(host.request("GET", "/")[0], 200)
        self.assertEqual(host.stop(expect_code=None), 0, host.log())

    def test_sigint_stops_with_exit_0(self):
        host = serve({"credentials.yml": "rest:\n"})
        self.assertEqual(host.request("GET", "/")[0], 200)
        host.proc.send_signal(signal.SIGINT)
        self.assertEqual(host.stop(expect_code=None), 0, host.log())

    def test_sigterm_stops_with_exit_0_with_several_workers(self):
        host = serve({"credentials.yml": "rest:\n"}, workers=2)
        self.assertEqual(host.request("GET", "/")[0], 200)
        self.assertEqual(host.stop(expect_code=None), 0, host.log())


if __name__ == "__main__":
    unittest.main()
