# SPDX-License-Identifier: MIT
"""The case runner's own comparisons (`switchboard test`, lua/switchboard/cases.lua): a runner
that matched everything would make every case of tests/lua/cases pass, so small case files run
through the real binary here, and each case that must fail has to fail with exactly the
difference lines written next to it; the ones that must pass have to pass."""
import os
import unittest

from harness import project
from util import run_to_exit

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTED_BOT = os.path.join(HERE, "fixtures", "scripted_bot.lua")
PUSH_CHANNEL = os.path.join(HERE, "fixtures", "push_channel.lua")

# A channel answering by itself: a text body, a header, and nothing for the bot.
PLAIN = """\
local c = { name = "plain" }
function c.receive(req)
  return {}, { status = 200, body = "hi", headers = { ["X-A"] = "1" } }
end
return c
"""

HEADER = """\
credentials:
  rest:
  plain.lua:
  %s:
bot: {lua: %s}
platform:
  - {url: "https://push.test/send_text_message", json: {ok: true}}
""" % (PUSH_CHANNEL, SCRIPTED_BOT)

# The bot answers every request of the json cases with this custom payload: one value of each
# kind to compare against.
CUSTOM = ('{s: abc, n: 3, f: 2.5, b: true, z: null, arr: [1, two], obj: {k: v}, empty_arr: [], '
          'empty_obj: {}, hex: 0123456789abcdef0123456789abcdef, text_json: \'{"a":[1]}\'}')
SEND_CUSTOM = ("{channel: rest, json: {sender: u1, message: hi, metadata: {script: "
               "[{send: {custom: %s}}]}}}" % CUSTOM)
RECORD = "{channel: rest, json: {sender: u1, message: hi, metadata: {k: v, extra: 1}}}"
RAISE = ("{channel: rest, json: {sender: u1, metadata: {script: "
         "[{raise: scripted failure 4d2e}]}}}")
STREAM = ("{channel: rest, query: {stream: 'true'}, json: {sender: u1, metadata: {script: "
          "[{send: {text: one}}, {send: {text: two}}]}}}")
PUSH = ("{channel: pushtest, json: {sender: p1, metadata: {script: [{send: {text: hi}}]}}}")
PLAIN_REQUEST = "{channel: plain, json: {}}"


def case_file(cases):
    """A case file: HEADER and the cases, each (name, request, expect as YAML flow text)."""
    text = HEADER + "cases:\n"
    for name, request, expect in cases:
        text += "  - name: %s\n    request: %s\n    expect: %s\n" % (name, request, expect)
    return text


def custom(fields):
    """An expectation on the custom payload: json: [{recipient_id: u1, custom: fields}]."""
    return "{json: [{recipient_id: u1, custom: %s}]}" % fields


# Cases that must pass.
PASSING = [
    ("the whole value", SEND_CUSTOM, custom(CUSTOM)),
    ("integers equal floats", SEND_CUSTOM, custom("{$contains: {n: 3.0}}")),
    ("pattern and length", SEND_CUSTOM,
     custom("{$contains: {hex: {$pattern: '[0-9a-f]+', $length: 32}, s: {$pattern: 'a.c'}}}")),
    ("types", SEND_CUSTOM, custom(
        "{$contains: {s: {$type: string}, n: {$type: integer}, f: {$type: number}, "
        "b: {$type: boolean}, z: {$type: null}, arr: {$type: array}, obj: {$type: object}, "
        "empty_arr: {$type: array}, empty_obj: {$type: object}}}")),
    ("json in a string", SEND_CUSTOM, custom("{$contains: {text_json: {$json: {a: [1]}}}}")),
    ("keys and key patterns", SEND_CUSTOM,
     custom("{$contains: {obj: {$keys: [k], $key_pattern: '[a-z]+'}}}")),
    ("any, absent and null", SEND_CUSTOM,
     custom("{$contains: {z: null, s: {$any: true}, nope: {$absent: true}}}")),
    ("fields mixed with matchers", SEND_CUSTOM,
     custom("{s: abc, n: 3, $keys: [s, n, f, b, z, arr, obj, empty_arr, empty_obj, hex, "
            "text_json]}")),
    ("messages compare the fields named", RECORD,
     "{messages: [{sender_id: u1, metadata: {k: v}}]}"),
    ("exact inside messages", RECORD,
     "{messages: [{metadata: {$exact: {k: v, extra: 1}}, message_id: {$type: string}}]}"),
    ("a content type without parameters is the media type", PLAIN_REQUEST,
     "{status: 200, content_type: TEXT/PLAIN, body: hi, "
     "headers: {X-A: '1', x-b: {$absent: true}}}"),
    ("the whole content type", PLAIN_REQUEST, "{content_type: 'text/plain; charset=utf-8'}"),
    ("log lines", RAISE, "{status: 200, json: [], log: ['ERROR.*%[offline%].*failure 4d2e']}"),
    ("streamed lines", STREAM,
     "{content_type: text/event-stream, lines: [{recipient_id: u1, text: one}, "
     "{recipient_id: u1, text: two}]}"),
    ("calls", PUSH, "{body: success, calls: [{method: POST, url: "
     "'https://push.test/send_text_message', json: {$exact: {recipient_id: p1, text: hi, "
     "extras: {}}}}]}"),
    ("no calls", PLAIN_REQUEST, "{calls: [], messages: []}"),
]

# Cases that must fail, each with exactly the difference lines it must print (a line ending in
# "..." is a prefix).
FAILING = [
    ("a different string", SEND_CUSTOM, custom("{$contains: {s: abd}}"),
     ['json.1.custom.s: expected "abd", got "abc"']),
    ("a string is not a number", SEND_CUSTOM, custom("{$contains: {n: '3'}}"),
     ['json.1.custom.n: expected "3", got 3']),
    ("a number is not a boolean", SEND_CUSTOM, custom("{$contains: {b: 1}}"),
     ["json.1.custom.b: expected 1, got true"]),
    ("a missing key", SEND_CUSTOM, custom("{$contains: {nope: 1}}"),
     ["json.1.custom.nope: expected 1, got nil"]),
    ("a key not expected", SEND_CUSTOM, "{json: [{recipient_id: u1}]}",
     ['json.1.custom: not expected, got {"arr":[1,"two"]...']),
    ("an array of another length", SEND_CUSTOM, custom("{$contains: {arr: [1]}}"),
     ['json.1.custom.arr: expected 1 items, got 2: [1,"two"]']),
    ("an array in another order", SEND_CUSTOM, custom("{$contains: {arr: [two, 1]}}"),
     ['json.1.custom.arr.1: expected "two", got 1', 'json.1.custom.arr.2: expected 1, got "two"']),
    ("an empty array is not an empty object", SEND_CUSTOM,
     custom("{$contains: {empty_arr: {}, empty_obj: []}}"),
     ["json.1.custom.empty_arr: expected {}, got []",
      "json.1.custom.empty_obj: expected [], got {}"]),
    ("null is not absent", SEND_CUSTOM, custom("{$contains: {z: {$absent: true}, nope: null}}"),
     ["json.1.custom.nope: expected null, got nil",
      "json.1.custom.z: expected no value, got null"]),
    ("a pattern matches the whole string", SEND_CUSTOM, custom("{$contains: {s: {$pattern: ab}}}"),
     ['json.1.custom.s: "abc" does not match the pattern "ab"']),
    ("a pattern that does not match", SEND_CUSTOM,
     custom("{$contains: {hex: {$pattern: '[0-9a-e]+'}}}"),
     ['json.1.custom.hex: "0123456789abcdef0123456789abcdef" does not match the pattern '
      '"[0-9a-e]+"']),
    ("a pattern on a number", SEND_CUSTOM, custom("{$contains: {n: {$pattern: '3'}}}"),
     ['json.1.custom.n: expected a string matching "3", got 3']),
    ("another length", SEND_CUSTOM, custom("{$contains: {hex: {$length: 31}}}"),
     ["json.1.custom.hex: expected a length of 31, got 32"]),
    ("other types", SEND_CUSTOM, custom(
        "{$contains: {n: {$type: string}, b: {$type: number}, f: {$type: integer}, "
        "arr: {$type: object}, empty_obj: {$type: array}, z: {$type: object}}}"),
     ["json.1.custom.arr: expected a value of type object, got [1,\"two\"]",
      "json.1.custom.b: expected a value of type number, got true",
      "json.1.custom.empty_obj: expected a value of type array, got {}",
      "json.1.custom.f: expected a value of type integer, got 2.5",
      "json.1.custom.n: expected a value of type string, got 3",
      "json.1.custom.z: expected a value of type object, got null"]),
    ("other JSON in a string", SEND_CUSTOM,
     custom("{$contains: {text_json: {$json: {a: [2]}}, s: {$json: 1}}}"),
     ['json.1.custom.s: expected a JSON text, got "abc"',
      "json.1.custom.text_json<json>.a.1: expected 2, got 1"]),
    ("other keys", SEND_CUSTOM, custom("{$contains: {obj: {$keys: [k, x]}, s: {$keys: [s]}}}"),
     ["json.1.custom.obj: expected the keys k, x; missing: x; not expected: none",
      'json.1.custom.s: expected an object, got "abc"']),
    ("keys against a pattern", SEND_CUSTOM,
     custom("{$contains: {obj: {$key_pattern: '[A-Z]+'}}}"),
     ['json.1.custom.obj: keys k do not match the pattern "[A-Z]+"']),
    ("any value is not no value", SEND_CUSTOM, custom("{$contains: {nope: {$any: true}}}"),
     ["json.1.custom.nope: expected any value, got nil"]),
    ("contains wants an object", SEND_CUSTOM, custom("{$contains: {arr: {$contains: {a: 1}}}}"),
     ['json.1.custom.arr: expected an object, got [1,"two"]']),
    ("an unknown matcher", SEND_CUSTOM, custom("{$contains: {s: {$regex: x}}}"),
     ["json.1.custom.s: unknown matcher $regex"]),
    ("a bad pattern", SEND_CUSTOM, custom("{$contains: {s: {$pattern: '[a'}}}"),
     ['json.1.custom.s: bad pattern "[a": ...']),
    ("another sender", RECORD, "{messages: [{sender_id: u2}]}",
     ['messages.1.sender_id: expected "u2", got "u1"']),
    ("no message expected", RECORD, "{messages: []}",
     ["messages: expected 0 items, got 1: ..."]),
    ("exact inside messages", RECORD, "{messages: [{metadata: {$exact: {k: v}}}]}",
     ["messages.1.metadata.extra: not expected, got 1"]),
    ("fields and matchers both hold", RECORD, "{messages: [{sender_id: u1, $keys: [sender_id]}]}",
     ["messages.1: expected the keys sender_id; missing: none; not expected: "
      "headers, input_channel, message_id, metadata, text"]),
    ("another status", PLAIN_REQUEST, "{status: 201}", ["status: expected 201, got 200"]),
    ("another content type", PLAIN_REQUEST, "{content_type: text/html}",
     ['content_type: expected "text/html", got "text/plain; charset=utf-8"']),
    ("other parameters of the content type", PLAIN_REQUEST,
     "{content_type: 'text/plain; charset=latin-1'}",
     ['content_type: expected "text/plain; charset=latin-1", got "text/plain; charset=utf-8"']),
    ("a header that must be absent", PLAIN_REQUEST, "{headers: {x-a: {$absent: true}}}",
     ['headers.x-a: expected no value, got "1"']),
    ("another body", PLAIN_REQUEST, "{body: hi!}", ['body: expected "hi!", got "hi"']),
    ("other lines", STREAM, "{lines: [{recipient_id: u1, text: x}, {recipient_id: u1, text: two}]}",
     ['lines.1.text: expected "x", got "one"']),
    ("a line too many", STREAM, "{lines: [{recipient_id: u1, text: one}]}",
     ["lines: expected 1 items, got 2: ..."]),
    ("a log line that is not there", RAISE, "{log: ['ERROR.*nothing like this']}",
     ['log.1: no line matches "ERROR.*nothing like this"; 1 lines logged: ...']),
    ("nothing was logged", PLAIN_REQUEST, "{log: [ERROR]}",
     ['log.1: no line matches "ERROR"; nothing was logged']),
    ("another call", PUSH, "{calls: [{json: {text: hey}}]}",
     ['calls.1.json.text: expected "hey", got "hi"']),
    ("no call expected", PUSH, "{calls: []}", ["calls: expected 0 items, got 1: ..."]),
]

# $unique over the passes of `repeat: 2`: a generated message id is new each time, the sender is
# not.
REPEATED = HEADER + """\
repeat: 2
cases:
  - name: a fresh message id
    request: %s
    expect: {messages: [{message_id: {$unique: true}}]}
  - name: the same sender
    request: %s
    expect: {messages: [{sender_id: {$unique: true}}]}
""" % (RECORD, RECORD)


def results(stdout):
    """{case name: [difference lines]} for every case line of a `switchboard test` output."""
    out, current = {}, None
    for line in stdout.splitlines():
        if line.startswith(("ok    ", "FAIL  ")):
            current = line[6:].split(": ", 1)[1]
            out[current] = [] if line.startswith("ok") else ["FAIL"]
        elif line.startswith("        ") and current is not None:
            out[current].append(line[8:])
    return out


class Runner(unittest.TestCase):
    maxDiff = None

    def run_cases(self, text):
        folder = project({"cases.yml": text, "plain.lua": PLAIN})
        result = run_to_exit(["test", "cases.yml"], cwd=folder, timeout=60)
        return result, results(result.stdout)

    def test_passing_cases_pass(self):
        result, got = self.run_cases(case_file(PASSING))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(got, {name: [] for name, _, _ in PASSING})
        self.assertTrue(result.stdout.endswith("%d passed, 0 failed\n" % len(PASSING)))

    def test_failing_cases_fail_with_their_differences(self):
        result, got = self.run_cases(case_file([(n, r, e) for n, r, e, _ in FAILING]))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("0 passed, %d failed\n" % len(FAILING)),
                        result.stdout)
        for name, _, _, want in FAILING:
            with self.subTest(name):
                self.assertIn(name, got, result.stdout)
                lines = got[name]
                self.assertEqual(lines[0], "FAIL")
                lines = sorted(lines[1:])
                self.assertEqual(len(lines), len(want), lines)
                for line, expected in zip(lines, sorted(want)):
                    if expected.endswith("..."):
                        self.assertTrue(line.startswith(expected[:-3]), (line, expected))
                    else:
                        self.assertEqual(line, expected)

    def test_repeat_runs_the_cases_again_and_unique_sees_both_passes(self):
        result, got = self.run_cases(REPEATED)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertEqual(got, {
            "a fresh message id (pass 1)": [],
            "the same sender (pass 1)": [],
            "a fresh message id (pass 2)": [],
            "the same sender (pass 2)": ["FAIL", 'messages.1.sender_id: "u1" was seen before '
                                                 "in this file"],
        })

    def test_a_bad_repeat_is_an_error(self):
        result, _ = self.run_cases(HEADER + "repeat: 0\ncases: []\n")
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn("repeat: wants a whole number of passes, 1 or more", result.stdout)


if __name__ == "__main__":
    unittest.main()
