# SPDX-License-Identifier: MIT
"""Typos are caught (docs/contract.md §1, §3.2, docs/lua-api.md "parameters"): unknown keys in a
channel's credentials.yml map (an error naming file:line and the nearest declared parameter for a
channel that declares its parameters, a warning for one that does not), hook names one slip away
from a known hook, unknown channel keys, a missing `require`, and parameters declared secret kept
out of the log and /status. Each through `switchboard check`, `switchboard run` and a reload."""
import json
import os
import re
import unittest

from harness import SOURCE_DIR, project
from reload_util import get_status, rewrite, sighup, wait_for_status
from util import ECHO_BOT, QuietHost as Host, endpoints_yml, error_lines, final_log, run_to_exit

ONE = endpoints_yml()
TELEGRAM_TYPO = ('telegram:\n'
                 '  access_token: "123:abc"\n'
                 '  webhok_url: "https://example.com/webhooks/telegram/webhook"\n')
TELEGRAM_MESSAGE = ("credentials.yml:3:3: channel 'telegram': unknown parameter 'webhok_url' "
                    "(did you mean 'webhook_url'?)")

# A channel without a declaration that reads `username` (as docs/writing-a-channel.md's myio).
UNDECLARED = """\
local c = { name = "undeclared" }
function c.init(config) c.username = config and config.username end
function c.receive(req) return {}, { json = { username = c.username } } end
return c
"""

# A channel with a declaration, reading every value at once; one secret of each type the readers
# echo when wrong.
DECLARED = """\
local util = require "switchboard.channel"
local c = { name = "declared" }
c.parameters = {
  token = { type = "string", required = true, secret = true },
  retries = { type = "number", default = 3 },
  hook_url = { type = "url", secret = true },
  pin = { type = "number", secret = true },
  mode = { type = "string", default = "fast", choices = { "fast", "slow" }, secret = true },
  threads = { type = "flag", default = false },
}
function c.init(config)
  c.values = util.params(config, c):values()
end
function c.receive(req) return {}, { json = c.values } end
return c
"""


def check(files):
    folder = project(files)
    result = run_to_exit(["check"], cwd=folder)
    return result, folder


class UnknownParameters(unittest.TestCase):
    def test_check_names_the_key_its_line_and_the_nearest_parameter(self):
        result, _ = check({"credentials.yml": TELEGRAM_TYPO, "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(TELEGRAM_MESSAGE, result.stderr)

    def test_run_fails_the_same_way(self):
        folder = project({"credentials.yml": TELEGRAM_TYPO, "endpoints.yml": ONE})
        result = run_to_exit(["run", "-p", "0"], cwd=folder)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(TELEGRAM_MESSAGE, result.stderr)

    def test_a_key_far_from_every_parameter_lists_them(self):
        result, _ = check({"credentials.yml": 'twilio:\n  account_sid: "AC1"\n  auth_token: "t"\n'
                           '  twilio_number: "+1"\n  colour: blue\n', "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertRegex(result.stderr, r"credentials\.yml:5:3: channel 'twilio': unknown parameter "
                         r"'colour' \(the twilio channel's parameters: account_sid, api_url, auth_token, "
                         r"dedupe_ttl, timeout, twilio_number\)")

    def test_a_reload_with_a_typo_is_rejected(self):
        folder = project({"credentials.yml": 'telegram:\n  access_token: "123:abc"\n',
                          "endpoints.yml": ONE})
        with Host(cwd=folder) as host:
            rewrite(os.path.join(folder, "credentials.yml"), TELEGRAM_TYPO)
            sighup(host)
            st = wait_for_status(host, lambda s: s["last_reload_error"])
            self.assertIn("unknown parameter 'webhok_url' (did you mean 'webhook_url'?)",
                          st["last_reload_error"])
            self.assertEqual(st["generation"], 1)
            status, _, _ = host.request("GET", "/webhooks/telegram/")
            self.assertEqual(status, 200)

    def test_an_undeclared_channel_gets_a_warning_once_per_load(self):
        files = {"credentials.yml": "undeclared.lua:\n  usernmae: bob\n",
                 "undeclared.lua": UNDECLARED, "endpoints.yml": endpoints_yml(workers=2)}
        result, folder = check(files)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("unknown parameter 'usernmae' (did you mean 'username'?)", result.stderr)
        with Host(cwd=folder) as host:
            status, _, body = host.post_json("/webhooks/undeclared/webhook", {})
            self.assertEqual((status, body), (200, {}))
            sighup(host)
            wait_for_status(host, lambda s: s["generation"] == 2)
            log = final_log(host)
        lines = [l for l in log.splitlines() if "unknown parameter 'usernmae'" in l]
        self.assertEqual(len(lines), 2, log)  # one per load: startup and the SIGHUP, 2 workers
        self.assertIn("WARN", lines[0])
        self.assertIn("credentials.yml:2:3", lines[0])

    def test_a_channel_without_init_warns_about_every_parameter(self):
        result, _ = check({"credentials.yml": "rest2.lua:\n  anything: 1\n",
                           "rest2.lua": 'return { name = "rest2" }\n', "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stderr, r"credentials\.yml:2:3: channel 'rest2.lua': parameter "
                         r"'anything' is not used")

    def test_the_bundled_rest_channel_takes_no_parameters(self):
        result, _ = check({"credentials.yml": "rest:\n  port: 1\n", "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("unknown parameter 'port' (the rest channel takes no parameters)",
                      result.stderr)


class Declarations(unittest.TestCase):
    def test_values_come_from_the_declaration(self):
        files = {"credentials.yml": 'declared.lua:\n  token: "t0k"\n  retries: "5"\n',
                 "declared.lua": DECLARED, "endpoints.yml": ONE}
        with Host(cwd=project(files)) as host:
            status, _, body = host.post_json("/webhooks/declared/webhook", {})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"token": "t0k", "retries": 5, "mode": "fast", "threads": False})

    def test_a_missing_required_parameter(self):
        result, _ = check({"credentials.yml": "declared.lua:\n  retries: 1\n",
                           "declared.lua": DECLARED, "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("the declared channel needs the `token` parameter", result.stderr)

    def test_a_bad_declaration_is_a_load_error(self):
        bad = DECLARED.replace('type = "number", default = 3', 'type = "integer", default = 3')
        result, _ = check({"credentials.yml": 'declared.lua:\n  token: "t"\n',
                           "declared.lua": bad, "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertRegex(result.stderr, r"channel\.parameters\.retries: unknown type 'integer' "
                         r"\(string, url, base_url, flag, number, seconds, list or map\)")


class Secrets(unittest.TestCase):
    SECRET_VALUES = {"hook_url": "not-a-url-SEKRIT1", "pin": "SEKRIT2", "mode": "SEKRIT3"}

    def test_a_wrong_secret_value_is_not_shown(self):
        for key, value in self.SECRET_VALUES.items():
            with self.subTest(key=key):
                creds = 'declared.lua:\n  token: "t"\n  %s: "%s"\n' % (key, value)
                result, _ = check({"credentials.yml": creds, "declared.lua": DECLARED,
                                   "endpoints.yml": ONE})
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("declared: `%s`" % key, result.stderr)
                self.assertNotIn("SEKRIT", result.stderr)

    def test_nor_in_the_log_or_status_after_a_rejected_reload(self):
        folder = project({"credentials.yml": 'declared.lua:\n  token: "t"\n',
                          "declared.lua": DECLARED, "endpoints.yml": ONE})
        with Host(cwd=folder) as host:
            rewrite(os.path.join(folder, "credentials.yml"),
                    'declared.lua:\n  token: "t"\n  pin: "SEKRIT9"\n')
            sighup(host)
            st = wait_for_status(host, lambda s: s["last_reload_error"])
            self.assertIn("`pin` must be a number", st["last_reload_error"])
            self.assertNotIn("SEKRIT", json.dumps(st))
            log = final_log(host)
        self.assertNotIn("SEKRIT", log)

    def test_a_value_that_is_not_secret_is_still_shown(self):
        creds = 'declared.lua:\n  token: "t"\n  retries: "lots"\n'
        result, _ = check({"credentials.yml": creds, "declared.lua": DECLARED,
                           "endpoints.yml": ONE})
        self.assertIn("declared: `retries` must be a number, not lots", result.stderr)


HOOK_TYPOS = [("recieve", "receive"), ("verfy", "verify"),
              ("send_text_mesage", "send_text_message"), ("on_bot_eror", "on_bot_error")]


def typo_channel(field):
    return ('local c = { name = "typo", token = "x", messages = {}, sending = true }\n'
            'function c.%s() end\n'
            'function c.helper() end\n'
            'return c\n' % field)


class HookTypos(unittest.TestCase):
    def test_check_names_the_field_and_the_hook(self):
        for field, hook in HOOK_TYPOS:
            with self.subTest(field=field):
                result, _ = check({"credentials.yml": "typo.lua:\n", "typo.lua": typo_channel(field),
                                   "endpoints.yml": ONE})
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("channel.%s is not a channel hook: did you mean '%s'?"
                              % (field, hook), result.stderr)
                self.assertIn("typo.lua", result.stderr)

    def test_fields_far_from_any_hook_stay_allowed(self):
        result, _ = check({"credentials.yml": "typo.lua:\n", "typo.lua": typo_channel("helper2"),
                           "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_run_and_a_reload(self):
        folder = project({"credentials.yml": "typo.lua:\n", "typo.lua": typo_channel("recieve"),
                          "endpoints.yml": ONE})
        result = run_to_exit(["run", "-p", "0"], cwd=folder)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("did you mean 'receive'?", result.stderr)
        rewrite(os.path.join(folder, "typo.lua"), typo_channel("receive"))
        with Host(cwd=folder) as host:
            rewrite(os.path.join(folder, "typo.lua"), typo_channel("verfy"))
            st = wait_for_status(host, lambda s: s["last_reload_error"])
            self.assertIn("channel.verfy is not a channel hook: did you mean 'verify'?",
                          st["last_reload_error"])
            self.assertEqual(st["generation"], 1)


class UnknownChannels(unittest.TestCase):
    BUNDLED = ("bundled channels: botframework, callback, facebook, hangouts, mattermost, rest, "
               "rocketchat, slack, socketio, telegram, twilio, twilio_voice, webchat, webexteams")

    def test_a_bundled_name_is_suggested(self):
        result, _ = check({"credentials.yml": "rest:\ntelegam:\n", "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("credentials.yml:2:1: unknown channel 'telegam' (did you mean 'telegram'?)",
                      result.stderr)
        self.assertIn(self.BUNDLED, result.stderr)

    def test_a_local_name_is_suggested(self):
        result, _ = check({"credentials.yml": "mypackage.mychanel:\n",
                           "mypackage/mychannel.lua": 'return { name = "m" }\n',
                           "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("unknown channel 'mypackage.mychanel' (did you mean 'mypackage.mychannel'?)",
                      result.stderr)
        self.assertIn(self.BUNDLED, result.stderr)

    def test_a_reload_with_an_unknown_channel_is_rejected(self):
        folder = project({"credentials.yml": "rest:\n", "endpoints.yml": ONE})
        with Host(cwd=folder) as host:
            rewrite(os.path.join(folder, "credentials.yml"), "rest:\nslak:\n")
            sighup(host)
            st = wait_for_status(host, lambda s: s["last_reload_error"])
            self.assertIn("(did you mean 'slack'?)", st["last_reload_error"])


class MissingRequire(unittest.TestCase):
    def test_the_paths_searched_are_listed(self):
        result, folder = check({"credentials.yml": "needs.lua:\n",
                                "needs.lua": 'local h = require "helpers.missing"\n'
                                             'return { name = "needs" }\n',
                                "endpoints.yml": ONE})
        self.assertEqual(result.returncode, 1, result.stderr)
        line = error_lines(result.stderr)[-1]
        self.assertIn("needs.lua:1: module 'helpers.missing' not found", line)
        real = os.path.realpath(folder)
        self.assertTrue(real + "/helpers/missing.lua" in line or
                        folder + "/helpers/missing.lua" in line, line)
        self.assertRegex(line, r"/lua/helpers/missing\.lua")
        self.assertRegex(line, r"/channels/helpers/missing\.lua")


class DocsMatchDeclarations(unittest.TestCase):
    """docs/channels/<name>.md's parameters table lists what channels/<name>.lua declares."""

    DECL_RE = re.compile(r'^  (\w+|\["[^"]+"\]) = \{ type = "(\w+)"(.*)$', re.M)

    def declared(self, name):
        with open(os.path.join(SOURCE_DIR, "channels", name + ".lua")) as f:
            text = f.read()
        block = text[text.index("channel.parameters = {"):]
        block = block[:block.index("\n}\n")]
        out = {}
        for key, typ, rest in self.DECL_RE.findall(block):
            out[key.strip('[]"')] = (typ, "secret = true" in rest)
        return out

    def documented(self, name):
        with open(os.path.join(SOURCE_DIR, "docs", "channels", name + ".md")) as f:
            text = f.read()
        table = text[text.index("## Parameters"):].split("\n\n")[1]
        out = {}
        for row in table.splitlines()[2:]:
            cells = [c.strip() for c in row.strip("|").split("|")]
            for key in re.findall(r"`([^`]+)`", cells[0]):
                out[key] = (cells[1].split(",")[0], "secret" in cells[1])
        return out

    def test_each_platform_channel(self):
        for name in ("facebook", "slack", "telegram", "twilio", "twilio_voice", "mattermost",
                     "rocketchat", "webexteams"):
            with self.subTest(channel=name):
                self.assertEqual(self.documented(name), self.declared(name))


if __name__ == "__main__":
    unittest.main()
