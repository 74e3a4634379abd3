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


if __name__ == "__main__":
    unittest.main()
