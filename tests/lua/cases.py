# SPDX-License-Identifier: MIT
"""Channel scripts against recorded requests: the table runner of tests/lua.

A case table is a JSON file in tests/lua/cases/ (see cases/README.md for the format):

    {"setup": {...how to start the host...},
     "cases": [{"name": ..., "channel": ..., "request": {...}, "expect": {...}}, ...]}

`table_tests(name)` turns a table into a unittest.TestCase class. One host serves the whole
table; every case becomes two tests, `test_1_NN_<name>` and `test_2_NN_<name>`: unittest runs
methods in name order, so the whole table runs once and then a second time on the same host,
and every case must give the same result both times (state leaking from one request into a
later one is a bug), as OpenResty's Test::Nginx does with `repeat_each(2)`. A last test checks
that the host is still running after both passes.

A case with "bug": "BUG: ..." (or "KNOWN LIMITATION ...", for what docs/ describe as such) marks a
place where the host differs from docs/contract.md: its tests are marked unittest.expectedFailure
(the text is the test's description in the verbose output). "bug_passes": [2] limits the mark to one
pass (a bug that shows only on the second pass).
"""
import http.client
import json
import os
import re
import shutil
import sys
import time
import unittest
import urllib.parse

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE_DIR = os.path.join(HERE, "cases")
FIXTURE_DIR = os.path.join(HERE, "fixtures")
SOURCE_DIR = harness.SOURCE_DIR

DEFAULT_ENDPOINTS = "bot:\n  script: scripted_bot.lua\n"
LOG_WAIT = 3.0  # seconds a case waits for an expected log line


def load_table(name):
    with open(os.path.join(TABLE_DIR, name + ".json"), encoding="utf-8") as f:
        table = json.load(f)
    names = [case["name"] for case in table["cases"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError("table %s: duplicate case names %s" % (name, dupes))
    return table


# ---- the host ------------------------------------------------------------------------------

def start_host(setup):
    """Start a host for a table's "setup":

    credentials   YAML text of credentials.yml ("{project}" is the project folder), or
    credentials_from   a path below the repository root to use as it is
    endpoints     YAML text of endpoints.yml (default: the scripted bot), or endpoints_from
    copy          {path in the project: path below the repository root} files to copy
    touch         files to create empty in the project
    args          extra command-line arguments
    Every file of tests/lua/fixtures is copied into the project folder.
    """
    folder = harness.project({})
    for entry in os.listdir(FIXTURE_DIR):
        if entry.endswith(".lua"):
            shutil.copy(os.path.join(FIXTURE_DIR, entry), os.path.join(folder, entry))
    for dest, src in setup.get("copy", {}).items():
        dest = os.path.join(folder, dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy(os.path.join(SOURCE_DIR, src), dest)
    for rel in setup.get("touch", []):
        open(os.path.join(folder, rel), "w").close()

    def config_file(key, default):
        if key + "_from" in setup:
            return os.path.join(SOURCE_DIR, setup[key + "_from"])
        path = os.path.join(folder, key + ".yml")
        with open(path, "w") as f:
            f.write(setup.get(key, default).replace("{project}", folder))
        return path

    args = ["--credentials", config_file("credentials", "rest:\n"),
            "--endpoints", config_file("endpoints", DEFAULT_ENDPOINTS)]
    return harness.Host(args + list(setup.get("args", [])), cwd=folder)


class Answer:
    def __init__(self, status, headers, body, elapsed):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "%d %s %r" % (self.status, self.headers.get("content-type"), self.text()[:2000])


def send(host, request, channel=None, timeout=10.0):
    """Send a case's request: {method, path, query, headers, body (raw text) | json}.
    The path defaults to the webhook of `channel` (POST /webhooks/<channel>/webhook)."""
    method = request.get("method", "POST")
    path = request.get("path") or "/webhooks/%s/webhook" % channel
    if request.get("query"):
        path += "?" + urllib.parse.urlencode(request["query"])
    headers = dict(request.get("headers", {}))
    body = None
    if "json" in request:
        body = json.dumps(request["json"]).encode("utf-8")
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    elif "body" in request:
        body = request["body"].encode("utf-8")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        headers.setdefault("Content-Length", str(len(body or b"")))
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=timeout)
    try:
        started = time.monotonic()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.monotonic() - started
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, elapsed)
    finally:
        conn.close()


# ---- matching ------------------------------------------------------------------------------
#
# Expected JSON is compared exactly (same types, same keys, same array lengths), except for
# matcher objects, whose keys all start with "$":
#   {"$re": "..."}         a string the regex matches whole
#   {"$type": "string"}    any value of that JSON type (string, number, integer, object, array,
#                          boolean, null)
#   {"$json": v}           a string holding JSON that matches v
#   {"$contains": {...}}   an object holding at least these keys, each matching
#   {"$keys_re": "..."}    an object whose every key the regex matches whole
#   {"$absent": true}      (as the value of a key) the key must not be there
#   {"$any": true}         anything
# Several matcher keys in one object must all hold.

JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def is_matcher(v):
    return isinstance(v, dict) and v != {} and all(k.startswith("$") for k in v)


def mismatches(expected, actual, where="$"):
    """A list of human-readable differences (empty when actual matches expected)."""
    if is_matcher(expected):
        out = []
        for key, arg in expected.items():
            if key == "$any":
                continue
            elif key == "$re":
                if not isinstance(actual, str) or not re.fullmatch(arg, actual, re.S):
                    out.append("%s: %r does not match /%s/" % (where, actual, arg))
            elif key == "$type":
                if not JSON_TYPES[arg](actual):
                    out.append("%s: %r is not of type %s" % (where, actual, arg))
            elif key == "$json":
                try:
                    decoded = json.loads(actual)
                except (TypeError, ValueError):
                    out.append("%s: %r is not a JSON text" % (where, actual))
                else:
                    out += mismatches(arg, decoded, where + "<json>")
            elif key == "$contains":
                if not isinstance(actual, dict):
                    out.append("%s: %r is not an object" % (where, actual))
                else:
                    out += object_mismatches(arg, actual, where, exact=False)
            elif key == "$keys_re":
                if not isinstance(actual, dict):
                    out.append("%s: %r is not an object" % (where, actual))
                else:
                    out += ["%s: key %r does not match /%s/" % (where, k, arg)
                            for k in actual if not re.fullmatch(arg, k)]
            elif key == "$absent":
                out.append("%s: $absent is only allowed as the value of a key" % where)
            else:
                raise ValueError("unknown matcher %s at %s" % (key, where))
        return out
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return ["%s: expected an object, got %r" % (where, actual)]
        return object_mismatches(expected, actual, where, exact=True)
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return ["%s: expected an array, got %r" % (where, actual)]
        if len(expected) != len(actual):
            return ["%s: expected %d elements, got %d: %r" % (where, len(expected), len(actual), actual)]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += mismatches(e, a, "%s[%d]" % (where, i))
        return out
    if type(expected) is not type(actual) and not (
            JSON_TYPES["number"](expected) and JSON_TYPES["number"](actual)):
        return ["%s: expected %r, got %r" % (where, expected, actual)]
    if expected != actual:
        return ["%s: expected %r, got %r" % (where, expected, actual)]
    return []


def object_mismatches(expected, actual, where, exact):
    out = []
    for key, e in expected.items():
        sub = "%s.%s" % (where, key)
        if isinstance(e, dict) and e.get("$absent"):
            if key in actual:
                out.append("%s: expected no such key, got %r" % (sub, actual[key]))
        elif key not in actual:
            out.append("%s: missing" % sub)
        else:
            out += mismatches(e, actual[key], sub)
    if exact:
        out += ["%s.%s: unexpected key (value %r)" % (where, k, actual[k])
                for k in actual if k not in expected]
    return out


COMPACT_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def is_compact_json(line):
    return not re.search(r"\s", COMPACT_STRINGS.sub('""', line))


# ---- one case ------------------------------------------------------------------------------

def check_answer(tc, expect, answer, received_ids=None):
    """Assert one answer against an "expect" object; returns the list of problems."""
    problems = []
    if "status" in expect and answer.status != expect["status"]:
        problems.append("status: expected %s, got %s" % (expect["status"], answer.status))
    if "content_type" in expect:
        got = answer.headers.get("content-type")
        want = expect["content_type"]
        if got is not None and ";" not in want:
            got = got.split(";")[0].strip()
        if got is None or got.lower() != want.lower():
            problems.append("Content-Type: expected %r, got %r" % (want, answer.headers.get("content-type")))
    for name, want in expect.get("headers", {}).items():
        got = answer.headers.get(name.lower())
        if isinstance(want, dict) and want.get("$absent"):
            if got is not None:
                problems.append("header %s: expected none, got %r" % (name, got))
        else:
            problems += ["header " + p for p in mismatches(want, got, name)]
    if "max_seconds" in expect and answer.elapsed > expect["max_seconds"]:
        problems.append("the answer took %.2f s, more than %s s" % (answer.elapsed, expect["max_seconds"]))
    if "body" in expect and answer.text() != expect["body"]:
        problems.append("body: expected %r, got %r" % (expect["body"], answer.text()))
    decoded = None
    if "json" in expect or "bot_received" in expect:
        try:
            decoded = answer.json()
        except ValueError:
            problems.append("body is not JSON: %r" % answer.text()[:500])
            return problems
    if "json" in expect:
        problems += mismatches(expect["json"], decoded)
    if "lines" in expect:
        text = answer.text()
        if text and not text.endswith("\n"):
            problems.append("the stream does not end with a newline: %r" % text[-200:])
        lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []
        values = []
        for i, line in enumerate(lines):
            if not is_compact_json(line):
                problems.append("line %d is not compact JSON: %r" % (i, line))
            try:
                values.append(json.loads(line))
            except ValueError:
                problems.append("line %d is not JSON: %r" % (i, line))
                values.append(line)
        problems += mismatches(expect["lines"], values, "lines")
    if "bot_received" in expect:
        want = expect["bot_received"]
        want = want if isinstance(want, list) else [want]
        got = [m["custom"]["received"] for m in decoded if isinstance(m, dict)
               and isinstance(m.get("custom"), dict) and "received" in m["custom"]] \
            if isinstance(decoded, list) else []
        if len(got) != len(want):
            problems.append("the bot got %d messages, expected %d; answer %r" % (len(got), len(want), decoded))
        else:
            for i, (w, g) in enumerate(zip(want, got)):
                problems += object_mismatches(w, g, "bot_received[%d]" % i, exact=False)
                if "received_keys" in expect and sorted(g) != sorted(expect["received_keys"]):
                    problems.append("bot_received[%d] keys: expected %s, got %s"
                                    % (i, sorted(expect["received_keys"]), sorted(g)))
                if expect.get("fresh_message_id") and received_ids is not None:
                    mid = g.get("message_id")
                    if mid in received_ids:
                        problems.append("message_id %r was generated before in this table" % mid)
                    received_ids.add(mid)
    return problems


def wait_for_log(host, start, patterns, request_id):
    """Problems for each regex that no log line written after offset `start` matches."""
    problems = []
    for pattern in patterns:
        pattern = pattern.replace("{request_id}", re.escape(request_id or "<no X-Request-Id>"))
        deadline = time.monotonic() + LOG_WAIT
        while not re.search(pattern, host.log()[start:], re.M):
            if time.monotonic() > deadline:
                problems.append("no log line matches %r" % pattern)
                break
            time.sleep(0.02)
    return problems


def run_case(tc, host, case, received_ids=None):
    start = len(host.log())
    answer = send(host, case["request"], case.get("channel"))
    expect = case["expect"]
    problems = check_answer(tc, expect, answer, received_ids)
    problems += wait_for_log(host, start, expect.get("log", []), answer.headers.get("x-request-id"))
    for i, step in enumerate(case.get("then", [])):
        follow = send(host, step["request"], case.get("channel"))
        problems += ["then[%d] (%s %s): %s" % (i, step["request"].get("method", "POST"),
                                               step["request"].get("path"), p)
                     for p in check_answer(tc, step["expect"], follow)]
    if problems:
        tc.fail("case %r:\n  %s\nrequest: %s\nanswer: %r\nlog since the request:\n%s" % (
            case["name"], "\n  ".join(problems), json.dumps(case["request"])[:1500], answer,
            host.log()[start:][-3000:]))
    return answer


# ---- a table as a TestCase class ------------------------------------------------------------

def slug(name):
    return re.sub(r"\W+", "_", name).strip("_")


def table_tests(name, class_name=None):
    """A unittest.TestCase class running table `name` twice on one host (see the module doc)."""
    table = load_table(name)

    class TableTest(unittest.TestCase):
        maxDiff = None
        table_name = name

        @classmethod
        def setUpClass(cls):
            cls.table = table
            cls.received_ids = set()
            cls.host = start_host(table.get("setup", {}))

        @classmethod
        def tearDownClass(cls):
            # Exit code 0 after SIGTERM; under ASan a leak on any path the table took makes it
            # non-zero (reported as an error of the class).
            cls.host.stop(expect_code=0)

        def test_3_host_survived_both_passes(self):
            self.assertIsNone(self.host.proc.poll(), "the host died during the table; log:\n"
                              + self.host.log()[-5000:])

    for index, case in enumerate(table["cases"]):
        for pass_no in (1, 2):
            def test(self, case=case):
                run_case(self, self.host, case, self.received_ids)
            label = "pass %d: %s" % (pass_no, case["name"])
            bug = case.get("bug")
            if bug and pass_no in case.get("bug_passes", (1, 2)):
                label += " -- " + bug
                test = unittest.expectedFailure(test)
            test.__doc__ = label
            setattr(TableTest, "test_%d_%02d_%s" % (pass_no, index, slug(case["name"])), test)
    TableTest.__name__ = TableTest.__qualname__ = class_name or "Table_" + slug(name)
    TableTest.__module__ = sys._getframe(1).f_globals.get("__name__", __name__)
    return TableTest
