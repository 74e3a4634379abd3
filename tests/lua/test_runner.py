# SPDX-License-Identifier: MIT
"""The table runner's own matchers (tests/lua/cases.py): a runner that matched everything
would make every table pass, so its comparisons are checked here without a host."""
import unittest

import cases


class Matchers(unittest.TestCase):

    def ok(self, expected, actual):
        self.assertEqual(cases.mismatches(expected, actual), [])

    def bad(self, expected, actual):
        self.assertNotEqual(cases.mismatches(expected, actual), [], (expected, actual))

    def test_exact_values(self):
        self.ok([], [])
        self.bad([], {})
        self.bad({}, [])
        self.ok({"a": [1, "x", None, True]}, {"a": [1, "x", None, True]})
        self.bad({"a": 1}, {"a": 1, "b": 2})
        self.bad({"a": 1, "b": 2}, {"a": 1})
        self.bad([1, 2], [2, 1])
        self.bad("1", 1)
        self.bad(True, 1)
        self.bad(1, True)
        self.ok(2, 2.0)
        self.bad(None, {})

    def test_matchers(self):
        self.ok({"$re": "[0-9a-f]{32}"}, "0123456789abcdef0123456789abcdef")
        self.bad({"$re": "[0-9a-f]{32}"}, "0123456789ABCDEF0123456789abcdef")
        self.bad({"$re": "[0-9a-f]{32}"}, "0123456789abcdef0123456789abcdef0")
        self.ok({"$type": "string"}, "x")
        self.bad({"$type": "string"}, 1)
        self.bad({"$type": "number"}, True)
        self.ok({"$json": {"a": [1]}}, '{"a": [1]}')
        self.bad({"$json": {"a": [1]}}, '{"a": [2]}')
        self.ok({"$contains": {"a": 1, "z": {"$absent": True}}}, {"a": 1, "b": 2})
        self.bad({"$contains": {"a": 1}}, {"b": 2})
        self.bad({"$contains": {"z": {"$absent": True}}}, {"z": None})
        self.ok({"$keys_re": "[^A-Z]+"}, {"x-a": "B"})
        self.bad({"$keys_re": "[^A-Z]+"}, {"X-a": "b"})
        self.ok({"a": {"$absent": True}}, {})
        self.bad({"a": {"$absent": True}}, {"a": 1})
        self.ok({"$any": True}, None)

    def test_compact_json_lines(self):
        self.assertTrue(cases.is_compact_json('{"a":"x y","b":[1,2]}'))
        self.assertFalse(cases.is_compact_json('{"a": 1}'))
        self.assertFalse(cases.is_compact_json('{"a":1} '))

    def test_answers(self):
        answer = cases.Answer(200, {"content-type": "text/event-stream"},
                              b'{"a":1}\n{"b":2}\n', 0.1)
        self.assertEqual(cases.check_answer(self, {"status": 200, "content_type": "text/event-stream",
                                                   "lines": [{"a": 1}, {"b": 2}]}, answer), [])
        self.assertNotEqual(cases.check_answer(self, {"lines": [{"a": 1}]}, answer), [])
        self.assertNotEqual(cases.check_answer(self, {"status": 201}, answer), [])
        self.assertNotEqual(cases.check_answer(self, {"content_type": "application/json"}, answer), [])
        self.assertNotEqual(cases.check_answer(self, {"max_seconds": 0.05}, answer), [])
        received = cases.Answer(200, {"content-type": "application/json"},
                                b'[{"recipient_id":"u","custom":{"received":{"sender_id":"u"}}}]', 0.1)
        self.assertEqual(cases.check_answer(self, {"bot_received": {"sender_id": "u", "text": {"$absent": True}}}, received), [])
        self.assertNotEqual(cases.check_answer(self, {"bot_received": {"sender_id": "v"}}, received), [])
        self.assertNotEqual(cases.check_answer(self, {"bot_received": {"text": "x"}}, received), [])
        self.assertNotEqual(cases.check_answer(self, {"bot_received": [{}, {}]}, received), [])

    def test_tables_load(self):
        for name in ("rest_message", "dispatch", "push_fallbacks", "stream", "timeout",
                     "myio_demo", "myio_recording"):
            table = cases.load_table(name)
            for case in table["cases"]:
                self.assertTrue(case.get("channel"), case["name"])
                if "bug" in case:
                    self.assertTrue(case["bug"].startswith(("BUG: ", "KNOWN LIMITATION")), case["name"])


if __name__ == "__main__":
    unittest.main()
