# SPDX-License-Identifier: MIT
"""After `cmake --install`, the binary finds its bundled channels and demo bot from anywhere."""
import os
import shutil
import subprocess
import tempfile
import unittest

import harness


class InstalledBinary(unittest.TestCase):
    def setUp(self):
        build_dir = os.path.dirname(harness.BINARY)
        if not os.path.exists(os.path.join(build_dir, "cmake_install.cmake")):
            self.skipTest("SB_BINARY is not in a CMake build folder")
        self.prefix = tempfile.mkdtemp(prefix="sb-install-")
        self.addCleanup(shutil.rmtree, self.prefix, True)
        subprocess.run(["cmake", "--install", build_dir, "--prefix", self.prefix],
                       check=True, capture_output=True)
        self.binary = os.path.join(self.prefix, "bin", "switchboard")
        self.data = os.path.join(self.prefix, "share", "switchboard")

    def test_bundled_files_are_installed(self):
        for rel in ("channels/rest.lua", "channels/callback.lua", "lua/switchboard/pipeline.lua",
                    "lua/switchboard/demo_bot.lua"):
            self.assertTrue(os.path.isfile(os.path.join(self.data, rel)), rel)

    def test_check_uses_the_installed_files_from_any_folder(self):
        env = dict(os.environ)
        env.pop("SWITCHBOARD_HOME", None)
        out = subprocess.run([self.binary, "check"], cwd="/", env=env, capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("configuration OK: 1 channel (rest)", out.stdout)
        self.assertIn(os.path.join(os.path.realpath(self.data), "lua/switchboard/demo_bot.lua"),
                      out.stdout)

    def test_installed_host_answers_with_the_demo_bot(self):
        saved = harness.BINARY
        harness.BINARY = self.binary
        try:
            with harness.Host(cwd=tempfile.mkdtemp(prefix="sb-elsewhere-")) as host:
                status, _, body = host.post_json("/webhooks/rest/webhook",
                                                 {"sender": "u1", "message": "hi"})
        finally:
            harness.BINARY = saved
        self.assertEqual(status, 200)
        self.assertTrue(body[0]["text"].startswith("Hello! I am the Switchboard demo bot."))


if __name__ == "__main__":
    unittest.main()
