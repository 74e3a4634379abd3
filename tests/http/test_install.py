# SPDX-License-Identifier: MIT
"""After `cmake --install`, the binary finds its bundled channels and demo bot from anywhere; the
Debian package `cpack` makes from the build folder holds a working install, the man page and a
systemd unit that `systemd-analyze verify` accepts (docs/install.md)."""
import glob
import os
import re
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

    def test_the_unit_runs_the_installed_binary(self):
        with open(os.path.join(self.prefix, "lib", "systemd", "system",
                               "switchboard.service")) as f:
            unit = f.read()
        self.assertRegex(unit, r"(?m)^ExecStart=%s run " % re.escape(self.binary))
        self.assertIn("file://%s/share/doc/switchboard/install.md" % self.prefix, unit)

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


def build_folder():
    return os.path.dirname(harness.BINARY)


class DebianPackage(unittest.TestCase):
    """`cpack` in the build folder (packaging to a scratch folder), then `dpkg-deb -x` into a
    scratch root: what `dpkg -i` would install, without touching the machine."""

    @classmethod
    def setUpClass(cls):
        config = os.path.join(build_folder(), "CPackConfig.cmake")
        if not os.path.exists(config):
            raise unittest.SkipTest("SB_BINARY is not in a CMake build folder")
        for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
            if not shutil.which(tool):
                raise unittest.SkipTest(tool + " is not installed")
        cls.work = tempfile.mkdtemp(prefix="sb-deb-")
        out = subprocess.run(["cpack", "--config", config, "-B", os.path.join(cls.work, "pkg")],
                             cwd=build_folder(), capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            shutil.rmtree(cls.work, True)
            raise AssertionError("cpack failed:\n" + out.stdout + out.stderr)
        debs = glob.glob(os.path.join(cls.work, "pkg", "*.deb"))
        assert len(debs) == 1, debs
        cls.deb = debs[0]
        cls.root = os.path.join(cls.work, "root")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True, timeout=60)
        cls.binary = os.path.join(cls.root, "usr", "bin", "switchboard")
        cls.data = os.path.join(cls.root, "usr", "share", "switchboard")
        cls.examples = os.path.join(cls.root, "usr", "share", "doc", "switchboard", "examples")
        cls.env = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_HOME"}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, True)

    def field(self, name):
        return subprocess.run(["dpkg-deb", "-f", self.deb, name], check=True, capture_output=True,
                              text=True).stdout.strip()

    def test_control_fields(self):
        self.assertEqual(self.field("Package"), "switchboard")
        self.assertEqual(os.path.basename(self.deb),
                         "switchboard_%s_%s.deb" % (self.field("Version"),
                                                    self.field("Architecture")))
        depends = [d.split()[0] for d in self.field("Depends").split(", ")]
        for package in ("libmicrohttpd12", "libyaml-0-2", "libcurl4", "libssl3",
                        "libhiredis0.14"):
            self.assertIn(package, depends)
        # Lua and lua-cjson are linked in.
        self.assertFalse([d for d in depends if "lua" in d], depends)

    def test_version(self):
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "Switchboard %s\n" % self.field("Version"))

    def test_files_are_where_the_docs_say(self):
        for rel in ("usr/share/switchboard/lua/switchboard/pipeline.lua",
                    "usr/share/switchboard/channels/slack.lua",
                    "usr/share/switchboard/annotations/switchboard.lua",
                    "usr/share/man/man1/switchboard.1",
                    "usr/lib/systemd/system/switchboard.service",
                    "usr/share/doc/switchboard/install.md",
                    "usr/share/doc/switchboard/examples/.luarc.json",
                    "usr/share/doc/switchboard/examples/credentials.yml",
                    "usr/share/doc/switchboard/examples/endpoints.yml"):
            self.assertTrue(os.path.isfile(os.path.join(self.root, rel)), rel)
        # Every annotation file ships, and none lands where `require` looks.
        source = sorted(os.listdir(os.path.join(harness.SOURCE_DIR, "annotations")))
        self.assertEqual(sorted(os.listdir(os.path.join(self.data, "annotations"))), source)
        self.assertFalse(os.path.exists(os.path.join(self.data, "lua", "annotations")))

    def test_check_against_the_installed_examples(self):
        out = subprocess.run([self.binary, "check", "--credentials", "credentials.yml",
                              "--endpoints", "endpoints.yml"], cwd=self.examples, env=self.env,
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("configuration OK: 4 channels (rest, webchat, socketio, myio)", out.stdout)
        self.assertIn(os.path.join(os.path.realpath(self.data), "lua/switchboard/demo_bot.lua"),
                      out.stdout)

    def test_installed_host_answers_with_the_demo_bot(self):
        saved = harness.BINARY
        harness.BINARY = self.binary
        try:
            with harness.Host(["--credentials", os.path.join(self.examples, "credentials.yml"),
                               "--endpoints", os.path.join(self.examples, "endpoints.yml")],
                              env={"SWITCHBOARD_HOME": ""}) as host:
                status, _, body = host.post_json("/webhooks/rest/webhook",
                                                 {"sender": "u1", "message": "hi"})
        finally:
            harness.BINARY = saved
        self.assertEqual(status, 200, body)
        self.assertTrue(body[0]["text"].startswith("Hello! I am the Switchboard demo bot."), body)

    def test_man_page_renders_and_documents_every_flag(self):
        page = os.path.join(self.root, "usr", "share", "man", "man1", "switchboard.1")
        with open(page) as f:
            source = f.read().replace("\\-", "-")
        usage = subprocess.run([self.binary, "--help"], capture_output=True, text=True,
                               timeout=30).stdout
        flags = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage))
        self.assertIn("--ssl-keyfile", flags)
        self.assertEqual(sorted(f for f in flags if not re.search(r"(?<![\w-])%s(?![\w-])"
                                                                   % re.escape(f), source)), [],
                         "flags of `switchboard --help` missing from the man page")
        if not shutil.which("man"):
            self.skipTest("man (man-db) is not installed")
        out = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                             env=dict(self.env, MANWIDTH="80", LC_ALL="C.UTF-8"), timeout=30)
        self.assertEqual((out.returncode, out.stderr), (0, ""))
        for heading in ("NAME", "SYNOPSIS", "OPTIONS", "FILES", "SIGNALS", "EXIT STATUS"):
            self.assertRegex(out.stdout, r"(?m)^%s$" % heading)
        self.assertIn("SWITCHBOARD(1)", out.stdout)

    def test_unit_file(self):
        path = os.path.join(self.root, "usr", "lib", "systemd", "system", "switchboard.service")
        with open(path) as f:
            unit = f.read()
        start = re.search(r"(?m)^ExecStart=(\S+) run (.*)$", unit)
        self.assertIsNotNone(start)
        self.assertTrue(os.access(os.path.join(self.root, start.group(1).lstrip("/")), os.X_OK))
        self.assertEqual(start.group(2), "--credentials /etc/switchboard/credentials.yml "
                         "--endpoints /etc/switchboard/endpoints.yml")
        for line in ("ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes",
                     "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                     "NoNewPrivileges=yes", "MemoryDenyWriteExecute=yes",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"):
            self.assertRegex(unit, r"(?m)^%s$" % re.escape(line))
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        # verify checks that ExecStart's program exists: point it at the extracted one.
        copy = os.path.join(self.work, "switchboard.service")
        with open(copy, "w") as f:
            f.write(unit.replace("ExecStart=/usr/bin/switchboard",
                                 "ExecStart=" + self.binary))
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", copy], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual([l for l in (out.stdout + out.stderr).splitlines()
                          if "switchboard.service" in l], [])


if __name__ == "__main__":
    unittest.main()
