# SPDX-License-Identifier: MIT
"""Streaming through the rest channel (docs/contract.md §4 item 2): tests/lua/cases/stream.json,
the deadline table tests/lua/cases/timeout.json, and the timing of the lines."""
import json
import time
import unittest

import cases


class Stream(cases.table_tests("stream", "Stream")):

    def test_4_lines_arrive_as_the_bot_produces_them(self):
        """Each line is written the moment the bot produces it, not when processing ends."""
        body = json.dumps({"sender": "timing", "metadata": {"script": [
            {"call": "send_text_message", "args": ["one"]},
            {"sleep": 0.5},
            {"call": "send_text_message", "args": ["two"]}]}})
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


Timeout = cases.table_tests("timeout", "Timeout")

if __name__ == "__main__":
    unittest.main()
