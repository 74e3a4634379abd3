# SPDX-License-Identifier: MIT
"""GET /metrics (docs/operations.md#metrics): the Prometheus text format, checked whole by
`promtool check metrics` (Debian's prometheus package) and by a strict parser of its own, with
values that match the traffic sent (requests by channel and status class, latency histograms, a
failing HTTP bot, outbound calls by host, reloads, Lua memory, in-flight gauges); and the admin
routes (docs/operations.md#admin-access): loopback only without server.admin_token, the bearer
token with it, X-Forwarded-For never trusted. The non-loopback cases run the host and the client
in a network namespace of their own (unshare -n), on an address the test gives its loopback
interface there."""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

from harness import project
from standins import Reply, StandIn, dead_port, http_bot_endpoints
from util import QuietHost as Host, decode

# A channel whose route makes one outbound call: POST /webhooks/out/call {"url": ...}.
CALLER = """\
local sb = require "switchboard"
local c = { name = "out" }
c.routes = {
  ["POST /call"] = function(req)
    local res, err = sb.http.request({ url = req.json.url, timeout = 5 })
    return { json = { ok = res ~= nil, status = res and res.status, err = err } }
  end,
}
return c
"""

HISTOGRAMS = ("switchboard_http_request_duration_seconds",
              "switchboard_bot_message_duration_seconds")
KINDS = ("refused", "timeout", "bad_status", "bad_json", "script_error", "deadline", "other")

# ---- a strict parser of the text format 0.0.4 ----------------------------------------------------

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class ExpositionError(AssertionError):
    pass


def parse_value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ExpositionError("not a number: %r" % text)
    return float(text)


def parse_labels(text, line):
    """'{a="x",b="y\\n"}' at the start of text -> (dict, rest)."""
    labels, i = {}, 1
    while True:
        if text[i] == "}":
            return labels, text[i + 1:]
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        if not m:
            raise ExpositionError("bad label at %r in %r" % (text[i:], line))
        name = m.group(1)
        i += m.end()
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                esc = text[i + 1]
                if esc not in ('\\', '"', 'n'):
                    raise ExpositionError("bad escape \\%s in %r" % (esc, line))
                value.append("\n" if esc == "n" else esc)
                i += 2
            else:
                if text[i] == "\n":
                    raise ExpositionError("raw newline in a label value: %r" % line)
                value.append(text[i])
                i += 1
        i += 1
        if name in labels:
            raise ExpositionError("label %s twice in %r" % (name, line))
        labels[name] = "".join(value)
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            raise ExpositionError("expected , or } in %r" % line)


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
            return name[:-len(suffix)]
    return name


def parse_exposition(text):
    """Every sample as {(name, frozenset(labels.items())): value}, plus the families' types;
    raises ExpositionError on anything the format does not allow or the conventions the host
    promises (counters end in _total, a family's samples are together, histograms are whole)."""
    if not text.endswith("\n"):
        raise ExpositionError("the text does not end with a newline")
    types, helps, samples, order, seen_families = {}, {}, {}, [], []
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (\S+) (.*)", line)
            if not m:
                raise ExpositionError("bad comment line %r" % line)
            kind, name, rest = m.groups()
            if not NAME_RE.match(name):
                raise ExpositionError("bad metric name %r" % name)
            table = helps if kind == "HELP" else types
            if name in table:
                raise ExpositionError("%s for %s twice" % (kind, name))
            if kind == "TYPE":
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ExpositionError("bad type %r" % rest)
                if any(family_of(n, {name: rest}) == name for n, _ in samples):
                    raise ExpositionError("TYPE of %s after its samples" % name)
            table[name] = rest
            continue
        if not line:
            raise ExpositionError("empty line")
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if not m:
            raise ExpositionError("bad sample line %r" % line)
        name, rest = m.group(1), line[m.end():]
        labels = {}
        if rest.startswith("{"):
            labels, rest = parse_labels(rest, line)
        parts = rest.split(" ")
        if parts[0] != "" or len(parts) not in (2, 3):
            raise ExpositionError("bad sample line %r" % line)
        value = parse_value(parts[1])
        family = family_of(name, types)
        if family not in types:
            raise ExpositionError("sample %s without a TYPE" % name)
        if family not in helps:
            raise ExpositionError("family %s without HELP" % family)
        if seen_families and seen_families[-1] != family:
            if family in seen_families:
                raise ExpositionError("samples of %s are not together" % family)
        if not seen_families or seen_families[-1] != family:
            seen_families.append(family)
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ExpositionError("series twice: %r" % line)
        samples[key] = value
        order.append((name, labels, value))
        if types[family] == "counter":
            if not name.endswith("_total"):
                raise ExpositionError("counter %s does not end in _total" % name)
            if not value >= 0:
                raise ExpositionError("negative counter %r" % line)
    check_histograms(types, order)
    return samples, types


def check_histograms(types, order):
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for name, labels, value in order:
            if family_of(name, types) != family:
                continue
            rest = {k: v for k, v in labels.items() if k != "le"}
            key = frozenset(rest.items())
            s = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
            if name == family + "_bucket":
                if "le" not in labels:
                    raise ExpositionError("bucket without le: %s %r" % (name, labels))
                s["buckets"].append((parse_value(labels["le"]), value))
            elif name == family + "_sum":
                s["sum"] = value
            elif name == family + "_count":
                s["count"] = value
            else:
                raise ExpositionError("%s is not part of histogram %s" % (name, family))
        for key, s in series.items():
            les = [le for le, _ in s["buckets"]]
            if not les or les[-1] != math.inf or les != sorted(les):
                raise ExpositionError("%s%s: buckets not ascending to +Inf: %r" % (family, dict(key), les))
            counts = [c for _, c in s["buckets"]]
            if counts != sorted(counts):
                raise ExpositionError("%s%s: buckets not cumulative: %r" % (family, dict(key), counts))
            if s["count"] is None or s["sum"] is None or s["count"] != counts[-1]:
                raise ExpositionError("%s%s: _count/_sum missing or _count != +Inf bucket" % (family, dict(key)))


def promtool_check(test, text):
    promtool = shutil.which("promtool")
    test.assertIsNotNone(promtool, "promtool is missing: install Debian's `prometheus` package "
                                   "(apt-get install prometheus); this test does not skip")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    test.assertEqual(result.returncode, 0, "promtool check metrics failed:\n%s%s\n--- text:\n%s"
                     % (result.stdout, result.stderr, text))


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def status_class(status):
    return "%dxx" % (status // 100)


class ParserTests(unittest.TestCase):
    """The strict parser refuses what it must (so the traffic test cannot pass on bad text)."""

    GOOD = ('# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\n'
            '# HELP h H.\n# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\n'
            'h_sum 0.7\nh_count 2\n')

    def test_good_text_parses(self):
        samples, types = parse_exposition(self.GOOD)
        self.assertEqual(value(samples, "a_total", x='q"\\\n'), 1)
        self.assertEqual(types["h"], "histogram")

    def test_bad_texts_are_refused(self):
        bad = [
            self.GOOD[:-1],                                            # no final newline
            self.GOOD.replace('x="q', 'x="\\tq'),                       # bad escape
            self.GOOD.replace("a_total{", "a_total{x=\"1\",", 1).replace("a_total 1", ""),
            self.GOOD.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),  # not cumulative
            self.GOOD.replace("h_count 2", "h_count 3"),
            self.GOOD.replace("# TYPE a_total counter\n", ""),
            self.GOOD.replace("a_total", "a").replace("# HELP a A.", "# HELP a A."),
            self.GOOD + 'a_total{x="q\\"\\\\\\n"} 1\n',                 # duplicate, apart
        ]
        for text in bad:
            with self.assertRaises(ExpositionError, msg=text):
                parse_exposition(text)


class MetricsTrafficTests(unittest.TestCase):
    """One host with the rest channel, a channel that makes outbound calls and an HTTP bot that
    fails on one message; traffic is counted here and compared with the scrape."""

    @classmethod
    def setUpClass(cls):
        def bot_answer(rec):
            if (rec.json or {}).get("message") == "fail":
                return Reply(status=500, body="broken")
            return Reply(json=[{"recipient_id": rec.json.get("sender"), "text": "ok"}])
        cls.bot = StandIn(bot_answer)
        cls.api = StandIn(lambda rec: Reply(status=404 if rec.path == "/missing" else 200,
                                            body="x"))
        cls.folder = project({
            "credentials.yml": "rest:\nout.lua:\n",
            "out.lua": CALLER,
            "endpoints.yml": http_bot_endpoints(cls.bot.url("/webhook"), timeout=5),
        })
        cls.host = Host(cwd=cls.folder)
        cls.sent = {}  # (channel, class) -> count

    @classmethod
    def tearDownClass(cls):
        try:
            cls.host.stop()
        finally:
            cls.bot.close()
            cls.api.close()

    def send(self, channel, method, path, body=None, headers=None):
        status, hdrs, data = self.host.request(method, path, body=body, headers=headers)
        key = (channel, status_class(status))
        self.sent[key] = self.sent.get(key, 0) + 1
        return status, hdrs, data

    def scrape(self):
        status, headers, body = self.send("", "GET", "/metrics")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        text = body.decode("utf-8")
        promtool_check(self, text)
        samples, types = parse_exposition(text)
        return text, samples, types

    def test_1_counts_match_the_traffic(self):
        host = self.host
        for i in range(5):
            status, _, _ = self.send("rest", "POST", "/webhooks/rest/webhook",
                                     {"sender": "u%d" % i, "message": "hi"})
            self.assertEqual(status, 200)
        self.send("rest", "POST", "/webhooks/rest/webhook", {"sender": "f", "message": "fail"})
        self.send("rest", "GET", "/webhooks/rest/")
        self.assertEqual(self.send("", "GET", "/nope")[0], 404)
        self.assertEqual(self.send("", "POST", "/status")[0], 405)
        api = "http://localhost:%d" % self.api.port
        for url, expect in ((api + "/a", 200), (api + "/b", 200), (api + "/missing", 404),
                            ("http://user:hunter2@localhost:%d/c" % self.api.port, 200),
                            ("http://localhost:%d/" % dead_port(), None)):
            status, _, body = self.send("out", "POST", "/webhooks/out/call", {"url": url})
            self.assertEqual(status, 200, body)
            self.assertEqual(decode(body).get("status"), expect, body)
        # A reload of each kind: a script saved (file_change), then SIGHUP.
        with open(os.path.join(self.folder, "out.lua"), "a") as f:
            f.write("-- saved again\n")
        host.wait_for_log(r"scripts reloaded \(generation 2\)", timeout=10)
        host.proc.send_signal(signal.SIGHUP)
        host.wait_for_log(r"SIGHUP: configuration reloaded \(generation 3\)", timeout=10)

        text, samples, types = self.scrape()
        self.assertNotIn("hunter2", text)
        self.assertEqual(types["switchboard_http_requests_total"], "counter")
        for h in HISTOGRAMS:
            self.assertEqual(types[h], "histogram")
        # Requests: every answer so far, by channel and class; the scrape itself is not answered
        # yet (it is the one request in flight).
        counted = {}
        for (name, labels), v in samples.items():
            if name == "switchboard_http_requests_total" and v:
                d = dict(labels)
                counted[(d["channel"], d["class"])] = v
        expected = dict(self.sent)
        expected[("", "2xx")] -= 1
        expected = {k: v for k, v in expected.items() if v}
        self.assertEqual(counted, expected, text)
        for channel in ("", "rest", "out"):
            total = sum(v for (c, _), v in expected.items() if c == channel)
            self.assertEqual(value(samples, "switchboard_http_request_duration_seconds_count",
                                   channel=channel), total, channel)
            s = value(samples, "switchboard_http_request_duration_seconds_sum", channel=channel)
            self.assertTrue(0 < s < 60 * total, (channel, s))
        self.assertEqual(value(samples, "switchboard_http_requests_in_flight"), 1)
        self.assertGreaterEqual(value(samples, "switchboard_http_connections_open"), 1)
        self.assertEqual(value(samples, "switchboard_bot_messages_in_flight"), 0)
        # The bot: 6 messages went in and came out (the failing one too).
        self.assertEqual(value(samples, "switchboard_bot_message_duration_seconds_count"), 6)
        # Bot failures by kind: every kind is shown; the pipeline reports the 500 as bad_status
        # once it calls host.bot_failure (until then nothing is counted).
        failures = {k: value(samples, "switchboard_bot_failures_total", kind=k) for k in KINDS}
        self.assertNotIn(None, failures.values(), failures)
        self.assertIn(sum(failures.values()), (0, 1), failures)
        if sum(failures.values()):
            self.assertEqual(failures["bad_status"], 1, failures)
        # Outbound: by host (no user name or password, no port) and status class.
        out = lambda host, cls: value(samples, "switchboard_outbound_requests_total", host=host,
                                      **{"class": cls})
        self.assertEqual(out("localhost", "2xx"), 3, text)
        self.assertEqual(out("localhost", "4xx"), 1, text)
        self.assertEqual(out("localhost", "error"), 1, text)
        self.assertEqual(out("127.0.0.1", "2xx"), 5, text)   # the HTTP bot
        self.assertEqual(out("127.0.0.1", "5xx"), 1, text)
        # Reloads by trigger and outcome.
        reloads = lambda t, o: value(samples, "switchboard_reloads_total", trigger=t, outcome=o)
        self.assertEqual(reloads("file_change", "ok"), 1)
        self.assertEqual(reloads("sighup", "ok"), 1)
        self.assertEqual(reloads("file_change", "rejected"), 0)
        self.assertEqual(reloads("sighup", "rejected"), 0)
        # Lua memory of the current state (one worker), generation 3 after both reloads.
        memory = value(samples, "switchboard_lua_memory_bytes", worker="0", generation="3")
        self.assertIsNotNone(memory, text)
        self.assertGreater(memory, 10000)

    def test_2_a_rejected_sighup_is_counted(self):
        cred = os.path.join(self.folder, "credentials.yml")
        with open(cred) as f:
            good = f.read()
        before = value(self.scrape()[1], "switchboard_reloads_total", trigger="sighup",
                       outcome="rejected")
        try:
            with open(cred, "w") as f:
                f.write("rest: [unclosed\n")
            self.host.proc.send_signal(signal.SIGHUP)
            self.host.wait_for_log(r"SIGHUP: configuration rejected", timeout=10)
        finally:
            with open(cred, "w") as f:
                f.write(good)
        after = value(self.scrape()[1], "switchboard_reloads_total", trigger="sighup",
                      outcome="rejected")
        self.assertEqual(after, before + 1)


# ---- admin access ------------------------------------------------------------------------------

NETNS_ADDRESS = "198.18.0.1"  # given to the namespace's loopback interface: not 127.0.0.0/8


def admin_probe(folder):
    """In a fresh network namespace: bring lo up with NETNS_ADDRESS, start the host on 0.0.0.0,
    and ask /status and /metrics from 127.0.0.1 and from NETNS_ADDRESS with several headers.
    Returns {case: [status, www-authenticate, error code]}."""
    import http.client
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", NETNS_ADDRESS + "/32", "dev", "lo"], check=True)
    host = Host(args=["-i", "0.0.0.0"], cwd=folder)
    results = {}
    try:
        cases = {
            "none": {},
            "forwarded": {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"},
            "right": {"Authorization": "Bearer s3cret-token"},
            "lower_scheme": {"Authorization": "bearer s3cret-token"},
            "wrong": {"Authorization": "Bearer s3cret-tokem"},
            "prefix": {"Authorization": "Bearer s3cret"},
            "basic": {"Authorization": "Basic czNjcmV0LXRva2Vu"},
        }
        for addr in ("127.0.0.1", NETNS_ADDRESS):
            for path in ("/status", "/metrics"):
                for name, headers in cases.items():
                    conn = http.client.HTTPConnection(addr, host.port, timeout=10)
                    conn.request("GET", path, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    conn.close()
                    code = None
                    if resp.status >= 400:
                        code = json.loads(body).get("error")
                    results["%s %s %s" % (addr, path, name)] = [
                        resp.status, resp.getheader("WWW-Authenticate"), code]
    finally:
        host.stop()
    return results


def run_admin_probe(test, endpoints, env=None):
    folder = project({"credentials.yml": "rest:\n", "endpoints.yml": endpoints})
    for tool in ("unshare", "ip"):
        test.assertIsNotNone(shutil.which(tool), "%s is missing (util-linux, iproute2)" % tool)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)), **(env or {}))
    result = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                             "--admin-probe", folder], capture_output=True, text=True,
                            timeout=60, env=env)
    test.assertEqual(result.returncode, 0, "the namespace probe failed (it needs root for "
                     "unshare -n):\n" + result.stdout + result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


class AdminAccessTests(unittest.TestCase):
    def test_without_a_token_only_loopback_clients(self):
        r = run_admin_probe(self, "server:\n  workers: 1\n")
        for path in ("/status", "/metrics"):
            for case in ("none", "forwarded", "basic"):
                self.assertEqual(r["127.0.0.1 %s %s" % (path, case)][0], 200, (path, case))
                # X-Forwarded-For does not make a remote client local.
                self.assertEqual(r["%s %s %s" % (NETNS_ADDRESS, path, case)],
                                 [403, None, "forbidden"], (path, case))

    def test_with_a_token_everyone_needs_it(self):
        # ${VAR} works for the token like for any value of endpoints.yml.
        r = run_admin_probe(self, "server:\n  workers: 1\n  admin_token: ${SB_T_ADMIN}\n",
                            env={"SB_T_ADMIN": "s3cret-token"})
        for addr in ("127.0.0.1", NETNS_ADDRESS):
            for path in ("/status", "/metrics"):
                for case in ("right", "lower_scheme"):
                    self.assertEqual(r["%s %s %s" % (addr, path, case)][0], 200,
                                     (addr, path, case))
                for case in ("none", "forwarded", "wrong", "prefix", "basic"):
                    self.assertEqual(r["%s %s %s" % (addr, path, case)],
                                     [401, "Bearer", "unauthorized"], (addr, path, case))


class StatusPageTests(unittest.TestCase):
    def test_status_shows_no_absolute_path_and_no_secret(self):
        bot = StandIn(Reply(json=[]))
        try:
            folder = project({
                "credentials.yml": "rest:\npkg/chan.lua:\n",
                "pkg/chan.lua": 'return { name = "chan" }\n',
                "endpoints.yml": "server:\n  workers: 1\nbot:\n  url: http://bob:pa55word@"
                                 "127.0.0.1:%d/hook?key=t0psecret\n" % bot.port,
            })
            with Host(cwd=folder) as host:
                status, _, body = host.request("GET", "/status")
                self.assertEqual(status, 200)
                text = body.decode()
                doc = decode(body)
                for secret in ("pa55word", "t0psecret", "bob"):
                    self.assertNotIn(secret, text)
                self.assertNotIn(os.path.realpath(folder), text)
                self.assertNotIn(os.path.realpath(os.environ.get("SB_SOURCE_DIR", "/nonexistent")),
                                 text)
                scripts = {c["name"]: c["script"] for c in doc["channels"]}
                self.assertEqual(scripts["chan"], "./pkg/chan.lua")
                self.assertEqual(scripts["rest"], "$SWITCHBOARD_HOME/channels/rest.lua")
                self.assertEqual(doc["bot"], "HTTP bot http://127.0.0.1:%d/hook" % bot.port)
        finally:
            bot.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--admin-probe":
        print(json.dumps(admin_probe(sys.argv[2])))
        sys.exit(0)
    unittest.main()
