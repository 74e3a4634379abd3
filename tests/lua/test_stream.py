# SPDX-License-Identifier: MIT
"""What the rest channel's answers need a socket and a clock for (docs/contract.md §4 item 2,
§5): a stream is sent chunked and each line as the bot produces it, a collected answer is not
chunked, and the response deadline cuts both. Everything else about streams runs offline in
tests/lua/cases/stream.yml (`switchboard test`)."""
import json
import os
import re
import shutil
import time
import unittest

from util import QuietHost as Host, make_project

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def scripted_project(**server):
    """A project whose bot is tests/lua/fixtures/scripted_bot.lua (it follows metadata.script)."""
    folder = make_project({"credentials.yml": "rest:\n"}, **server)
    with open(os.path.join(folder, "endpoints.yml"), "a") as f:
        f.write("bot:\n  script: scripted_bot.lua\n")
    shutil.copy(os.path.join(FIXTURES, "scripted_bot.lua"), folder)
    return folder


def script_body(sender, *steps):
    return json.dumps({"sender": sender, "metadata": {"script": list(steps)}})


def post(host, path, body, timeout=10):
    """POST; returns (status, headers lower-cased, body text, seconds until the body ended)."""
    conn = host.connection(timeout=timeout)
    try:
        started = time.monotonic()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                data.decode("utf-8"), time.monotonic() - started)
    finally:
        conn.close()


def lines(text):
    return [json.loads(line) for line in text.splitlines()]


class Stream(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.host = Host(args=[], cwd=scripted_project())

    @classmethod
    def tearDownClass(cls):
        cls.host.stop(expect_code=0)

    def test_a_stream_is_chunked_and_a_collected_answer_is_not(self):
        body = script_body("s1", {"send": {"text": "one\n\ntwo"}})
        status, headers, text, _ = post(self.host, "/webhooks/rest/webhook?stream=true", body)
        self.assertEqual(status, 200, text)
        self.assertEqual(headers["content-type"].split(";")[0], "text/event-stream")
        self.assertEqual(headers.get("transfer-encoding"), "chunked")
        self.assertEqual(lines(text), [{"recipient_id": "s1", "text": "one"},
                                       {"recipient_id": "s1", "text": "two"}])
        status, headers, text, _ = post(self.host, "/webhooks/rest/webhook", body)
        self.assertEqual(status, 200, text)
        self.assertNotIn("transfer-encoding", headers)
        self.assertEqual(json.loads(text), [{"recipient_id": "s1", "text": "one"},
                                            {"recipient_id": "s1", "text": "two"}])

    def test_lines_arrive_as_the_bot_produces_them(self):
        """Each line is written the moment the bot produces it, not when processing ends."""
        body = script_body("timing", {"call": "send_text_message", "args": ["one"]},
                           {"sleep": 0.5}, {"call": "send_text_message", "args": ["two"]})
        conn = self.host.connection(timeout=10)
        try:
            started = time.monotonic()
            conn.request("POST", "/webhooks/rest/webhook?stream=true", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Content-Type", "").split(";")[0], "text/event-stream")
            first = resp.readline()
            first_at = time.monotonic() - started
            second = resp.readline()
            second_at = time.monotonic() - started
            rest = resp.read()
            end_at = time.monotonic() - started
        finally:
            conn.close()
        self.assertEqual(json.loads(first), {"recipient_id": "timing", "text": "one"})
        self.assertEqual(json.loads(second), {"recipient_id": "timing", "text": "two"})
        self.assertEqual(rest, b"")
        self.assertLess(first_at, 0.4, "the first line came only after %.2f s" % first_at)
        self.assertGreaterEqual(second_at, 0.45, "the second line came after %.2f s" % second_at)
        self.assertGreaterEqual(second_at - first_at, 0.3)
        self.assertLess(end_at, 3.0, "the stream did not end after the last message")


class Timeout(unittest.TestCase):
    """--response-timeout 1 (docs/contract.md §5): the answer carries what was collected before
    the deadline, a stream ends at the deadline with the lines written so far, and the deadline
    is logged as an ERROR with the request's id. The bot sleeps 3 s between two messages."""

    @classmethod
    def setUpClass(cls):
        cls.host = Host(args=["--response-timeout", "1"], cwd=scripted_project())

    @classmethod
    def tearDownClass(cls):
        cls.host.stop(expect_code=0)

    def check(self, sender, query, content_type, decode_answer):
        start = len(self.host.log())
        body = script_body(sender, {"send": {"text": "early"}}, {"sleep": 3},
                           {"send": {"text": "late"}})
        conn = self.host.connection(timeout=10)
        try:
            started = time.monotonic()
            conn.request("POST", "/webhooks/rest/webhook" + query, body=body,
                         headers={"Content-Type": "application/json", "X-Request-Id": sender})
            resp = conn.getresponse()
            text = resp.read().decode("utf-8")
            elapsed = time.monotonic() - started
            self.assertEqual(resp.status, 200, text)
            self.assertEqual(resp.getheader("Content-Type", "").split(";")[0], content_type)
            self.assertEqual(resp.getheader("X-Request-Id"), sender)
        finally:
            conn.close()
        self.assertEqual(decode_answer(text), [{"recipient_id": sender, "text": "early"}])
        self.assertLess(elapsed, 2.5, "the answer took %.2f s" % elapsed)
        deadline = time.monotonic() + 3
        pattern = re.compile(r"^\S+ ERROR .*\[%s\]" % re.escape(sender), re.M)
        while not pattern.search(self.host.log()[start:]):
            self.assertLess(time.monotonic(), deadline, "no ERROR line with the request id:\n"
                            + self.host.log()[start:])
            time.sleep(0.02)

    def test_collected_answer_at_the_deadline(self):
        self.check("deadline-t1", "", "application/json", json.loads)

    def test_stream_ends_at_the_deadline(self):
        self.check("deadline-t2", "?stream=true", "text/event-stream", lines)


if __name__ == "__main__":
    unittest.main()
