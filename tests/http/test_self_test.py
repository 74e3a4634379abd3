# SPDX-License-Identifier: MIT
"""Reloads that test themselves (docs/testing.md, docs/reloading-and-guards.md): a channel whose
script X.lua has a folder X.cases/ beside it passes those cases before a new generation is
adopted; a failing case rejects the reload like a syntax error (the old code keeps serving, the
log and /status name the case), and `switchboard check` runs them too."""
import json
import os
import time
import unittest

from harness import project
from util import QuietHost, run_to_exit

CHANNEL = """\
local c = { name = "ver" }
function c.receive(req) return {}, { json = { version = "%s" } } end
return c
"""

CASES = """\
credentials:
  ../chan.lua:
cases:
  - name: answers with its version
    request: {json: {}}
    expect: {status: 200, json: {version: v1}}
"""

FILES = {"credentials.yml": "chan.lua:\n", "chan.lua": CHANNEL % "v1",
         "chan.cases/version.yml": CASES, "endpoints.yml": "server:\n  workers: 1\n"}


def write(folder, name, text):
    path = os.path.join(folder, name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


class SelfTestTests(unittest.TestCase):
    def test_check_runs_the_cases_beside_a_channel(self):
        folder = project(FILES)
        result = run_to_exit(["check"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        write(folder, "chan.lua", CHANNEL % "v2")
        result = run_to_exit(["check"], cwd=folder)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("channel 'chan.lua': its cases failed (1 of 1): ", result.stderr)
        self.assertIn("case 'answers with its version' failed: json.version: expected \"v1\", "
                      "got \"v2\"", result.stderr)

    def test_a_reload_whose_cases_fail_is_rejected_and_the_old_code_keeps_serving(self):
        folder = project(FILES)
        with QuietHost(cwd=folder) as host:
            def version():
                status, _, body = host.request("POST", "/webhooks/ver/webhook", b"{}")
                self.assertEqual(status, 200, body)
                return json.loads(body)["version"]

            self.assertEqual(version(), "v1")
            write(folder, "chan.lua", CHANNEL % "v2")
            host.wait_for_log(r"script change rejected, generation 1 keeps serving: .*"
                              r"case 'answers with its version' failed", timeout=10)
            self.assertEqual(version(), "v1")
            status = json.loads(host.request("GET", "/status")[2])
            self.assertEqual(status["generation"], 1)
            self.assertIn("its cases failed", status["last_reload_error"])
            self.assertIn("answers with its version", status["channels"][0]["last_reload_error"])
            # A change the cases accept is adopted.
            write(folder, "chan.cases/version.yml", CASES.replace("v1", "v3"))
            write(folder, "chan.lua", CHANNEL % "v3")
            deadline = time.monotonic() + 10
            while version() != "v3" and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(version(), "v3")

    def test_a_cases_parameter_names_the_folder_and_reaches_no_script(self):
        # `cases:` is the host's: valid under a channel that declares its parameters (telegram)
        # and under one that does not, never given to init, and relative to credentials.yml.
        cases = CASES.replace("../chan.lua:", "../chan.lua:\n    cases: elsewhere")
        telegram_cases = """\
credentials:
  telegram:
    access_token: "1:t"
cases:
  - name: a GET is not the webhook
    request: {method: GET}
    expect: {status: 405}
"""
        channel = CHANNEL.replace("function c.receive",
                                  "function c.init(config) assert(config.cases == nil) end\n"
                                  "function c.receive")
        folder = project({"config/credentials.yml": "../chan.lua:\n  cases: ../suite\n"
                                                    "telegram:\n  access_token: \"1:t\"\n"
                                                    "  cases: ../tg-suite\n",
                          "chan.lua": channel % "v1", "suite/version.yml": cases,
                          "tg-suite/get.yml": telegram_cases})
        check = ["check", "--credentials", "config/credentials.yml"]
        result = run_to_exit(check, cwd=folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("cases", result.stderr)
        write(folder, "chan.lua", channel % "v2")
        result = run_to_exit(check, cwd=folder)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("its cases failed (1 of 1): ", result.stderr)
        self.assertIn("suite/version.yml: case 'answers with its version' failed", result.stderr)
        # A folder that is not there is an error, not a silent pass.
        write(folder, "config/credentials.yml", "../chan.lua:\n  cases: ../nowhere\n")
        result = run_to_exit(check, cwd=folder)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cases: config/../nowhere is not a folder", result.stderr)


class NewChannelTests(unittest.TestCase):
    def test_a_new_channel_passes_its_cases_checks_and_answers(self):
        folder = project({})
        result = run_to_exit(["new", "channel", "mattermost"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        for name in ("mattermost.lua", "mattermost.cases/basic.yml", ".luarc.json"):
            self.assertTrue(os.path.exists(os.path.join(folder, name)), name)
        self.assertIn("switchboard test ./mattermost.cases\n", result.stdout)
        # The .luarc.json points editors at the annotations the host ships.
        with open(os.path.join(folder, ".luarc.json")) as f:
            library = json.load(f)["workspace.library"][0]
        self.assertTrue(os.path.exists(os.path.join(library, "switchboard.lua")), library)
        result = run_to_exit(["test", "mattermost.cases"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("1 passed, 0 failed\n"), result.stdout)
        write(folder, "credentials.yml", "mattermost.lua:\n")
        result = run_to_exit(["check"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        result = run_to_exit(["try", "mattermost", "--echo", "--data",
                              '{"sender": "u1", "message": "hi"}'], cwd=folder)
        self.assertIn('[{"recipient_id":"u1","text":"hi"}]', result.stdout)
        # Nothing is overwritten, and a name that cannot be a URL prefix is refused.
        result = run_to_exit(["new", "channel", "mattermost"], cwd=folder)
        self.assertEqual(result.returncode, 1)
        self.assertIn("already exists: nothing was written", result.stderr)
        result = run_to_exit(["new", "channel", "Bad Name"], cwd=folder)
        self.assertEqual(result.returncode, 1)
        self.assertIn("is not a channel name", result.stderr)

    def test_the_whole_loop_scaffold_try_record_test_and_a_rejected_reload(self):
        # The walkthrough's loop (docs/writing-a-channel.md, docs/testing.md), each step through
        # the binary: a recorded request becomes a case that guards the next reload.
        folder = project({"credentials.yml": "mattermost.lua:\n",
                          "endpoints.yml": "server:\n  workers: 1\n"})
        self.assertEqual(run_to_exit(["new", "channel", "mattermost"], cwd=folder).returncode, 0)
        result = run_to_exit(["try", "mattermost", "--data",
                              '{"sender": "u1", "message": "hi"}'], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        recorded = os.path.join(folder, "mattermost.cases", "recorded")
        with QuietHost(["--record", recorded], cwd=folder) as host:
            status, _, body = host.request("POST", "/webhooks/mattermost/webhook",
                                           b'{"sender": "u2", "message": "from the platform"}',
                                           {"Content-Type": "application/json"})
            self.assertEqual(status, 200, body)
            host.wait_for_log("recorded as")
        (name,) = os.listdir(recorded)
        result = run_to_exit(["test", "mattermost.cases"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("2 passed, 0 failed\n"), result.stdout)
        with QuietHost(cwd=folder) as host:
            with open(os.path.join(folder, "mattermost.lua")) as f:
                source = f.read()
            self.assertIn("sender_id = body.sender", source)
            write(folder, "mattermost.lua", source.replace("sender_id = body.sender",
                                                           "sender_id = body.user"))
            host.wait_for_log(r"script change rejected, generation 1 keeps serving: channel "
                              r"'mattermost.lua': its cases failed \(2 of 2\)", timeout=10)
            status, _, body = host.request("POST", "/webhooks/mattermost/webhook",
                                           b'{"sender": "u3", "message": "still served"}',
                                           {"Content-Type": "application/json"})
            self.assertEqual(status, 200, body)
            self.assertIn(b'"recipient_id":"u3"', body)


if __name__ == "__main__":
    unittest.main()
