# SPDX-License-Identifier: MIT
"""req.url behind a proxy: X-Forwarded-Proto/-Host are used unless server.trust_forwarded_headers
is false (docs/contract.md §3.3: signature schemes such as Twilio's sign the URL the platform
called)."""
import json
import unittest

from harness import Host, project, run_command

CHANNEL = """
local c = { name = "t" }
c.routes = { ["GET /u"] = function(req) return { json = { url = req.url } } end }
return c
"""
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bots.example.com"}


def url_seen(server_section, headers):
    folder = project({"credentials.yml": "t.lua:\n", "t.lua": CHANNEL,
                      "endpoints.yml": "server:\n  workers: 1\n" + server_section})
    with Host(cwd=folder) as host:
        status, _, body = host.request("GET", "/webhooks/t/u?x=1&y=a%20b", headers=headers)
        return status, json.loads(body)["url"], host.port


class ForwardedHeaders(unittest.TestCase):
    def test_trusted_by_default(self):
        status, url, _ = url_seen("", FORWARDED)
        self.assertEqual(status, 200)
        self.assertEqual(url, "https://bots.example.com/webhooks/t/u?x=1&y=a%20b")

    def test_without_them_the_host_header_is_used(self):
        status, url, port = url_seen("", {})
        self.assertEqual(url, "http://127.0.0.1:%d/webhooks/t/u?x=1&y=a%%20b" % port)

    def test_ignored_when_not_trusted(self):
        status, url, port = url_seen("  trust_forwarded_headers: false\n", FORWARDED)
        self.assertEqual(url, "http://127.0.0.1:%d/webhooks/t/u?x=1&y=a%%20b" % port)

    def test_the_setting_must_be_a_boolean(self):
        folder = project({"endpoints.yml": "server:\n  trust_forwarded_headers: maybe\n"})
        result = run_command(["check"], cwd=folder)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("endpoints.yml:2:28: server: 'trust_forwarded_headers' must be true or false",
                      result.stderr)


if __name__ == "__main__":
    unittest.main()
