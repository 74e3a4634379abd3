# SPDX-License-Identifier: MIT
"""Several hosts on one Redis behind HAProxy (docs/multi-host.md): per-sender order across hosts
(one message of a sender at a time, in the order they took their turn numbers in Redis), senders
still in parallel, a Slack retry that reaches another host handed to the bot once, a host killed
while it holds a sender's turn (the next host takes over when the lease ends), Redis restarted
under load and Redis down at startup (messages still go, in their turn on each host only).

Everything runs on 127.0.0.1 and is started by the test: redis-server (no persistence), two or
three hosts, and HAProxy with the configuration of docs/multi-host.md's example (addresses
replaced), so the documented example is the one tested. Skipped, saying why, without
redis-server or haproxy."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import SOURCE_DIR, free_port, project, run_command
from standins import built_with_sanitizers
from test_store_redis import Redis, metric, wait_for_state
from util import QuietHost as Host

REDIS_SERVER = shutil.which("redis-server")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)
SLOWER = 3.0 if built_with_sanitizers() else 1.0
PREFIX = "mh:"

# The rest channel's format; and a bot that records, in Redis, the begin and end of each message
# of a sender (a list per sender), sleeping in between so that two messages at once would show.
CHANNEL = """\
local c = { name = "ordered" }
function c.receive(req)
  local b = req.json
  return { { sender_id = b.sender, text = b.message, metadata = { sleep = b.sleep } } }
end
return c
"""
BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local key = "log:" .. msg.sender_id
  sb.store.push(key, "begin " .. tostring(msg.text))
  sb.log.info("HANDLING %s %s", msg.sender_id, tostring(msg.text))
  sb.sleep(tonumber(msg.metadata and msg.metadata.sleep) or 0.05)
  sb.store.push(key, "end " .. tostring(msg.text))
  out:send_text_message("done " .. tostring(msg.text))
end
return bot
"""
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def endpoints(redis_port, extra=""):
    return ("server:\n  workers: 2\nbot:\n  script: bot.lua\n"
            "store:\n  url: redis://127.0.0.1:%d/0\n  prefix: '%s'\n%s" % (redis_port, PREFIX,
                                                                            extra))


def start_host(redis_port, extra=""):
    folder = project({"ordered.lua": CHANNEL, "bot.lua": BOT, "endpoints.yml":
                      endpoints(redis_port, extra),
                      "credentials.yml": "ordered.lua:\nslack:\n  slack_token: xoxb-1\n"
                                         "  slack_signing_secret: %s\n"
                                         "  api_url: http://127.0.0.1:9/api\n" % SLACK_SECRET})
    return Host(cwd=folder)


def documented_haproxy_config(listen_port, host_ports):
    """docs/multi-host.md's HAProxy example, with this test's addresses."""
    with open(os.path.join(SOURCE_DIR, "docs", "multi-host.md")) as f:
        doc = f.read()
    m = re.search(r"## Example: HAProxy in front of two hosts.*?```\n(.*?)```", doc, re.S)
    assert m, "docs/multi-host.md has no HAProxy example"
    text = m.group(1)
    assert "bind :80" in text and "10.0.0.11:5005" in text, text
    text = text.replace("bind :80", "bind 127.0.0.1:%d" % listen_port)
    out = []
    for line in text.splitlines():
        s = re.match(r"(\s*)server host1 10\.0\.0\.11:5005 (.*)", line)
        if s:  # the hosts of this test, in place of the two documented ones
            out += ["%sserver host%d 127.0.0.1:%d %s" % (s.group(1), i + 1, p, s.group(2))
                    for i, p in enumerate(host_ports)]
        elif not re.match(r"\s*server host2 ", line):
            out.append(line)
    return "\n".join(out) + "\n"


class HAProxy:
    def __init__(self, host_ports):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sb-haproxy-")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(documented_haproxy_config(self.port, host_ports))
        check = subprocess.run([HAPROXY, "-c", "-f", self.cfg], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.get("/")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("haproxy did not start")

    def get(self, path):
        return request(self.port, "GET", path)

    def close(self):
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def request(port, method, path, body=None, headers=None, timeout=60):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def post(port, sender, text, sleep=0.05):
    body = json.dumps({"sender": sender, "message": text, "sleep": sleep})
    return request(port, "POST", "/webhooks/ordered/webhook", body,
                   {"Content-Type": "application/json"})


def in_thread(fn, *args):
    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - the test asserts on it
            result["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def wait_until(what, predicate, timeout=15):
    deadline = time.monotonic() + timeout * SLOWER
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("timed out waiting for " + what)


def assert_in_order_one_at_a_time(test, log, texts):
    """The log of a sender: begin/end pairs of exactly `texts`, in that order, never two open."""
    expected = []
    for t in texts:
        expected += ["begin " + t, "end " + t]
    test.assertEqual(log, expected)


@unittest.skipUnless(REDIS_SERVER, "redis-server is not installed (Debian: apt-get install "
                                   "redis-server); the order across hosts is not tested")
@unittest.skipUnless(HAPROXY, "haproxy is not installed (Debian: apt-get install haproxy); the "
                              "order across hosts is not tested")
class MultiHostTests(unittest.TestCase):
    def setUp(self):
        self.redis = Redis()
        self.addCleanup(self.redis.close)

    def hosts(self, n, extra=""):
        hosts = []
        for _ in range(n):
            h = start_host(self.redis.port, extra)
            self.addCleanup(h.stop, None)
            hosts.append(h)
        for h in hosts:
            wait_for_state(h, "connected")
        return hosts

    def balancer(self, hosts):
        lb = HAProxy([h.port for h in hosts])
        self.addCleanup(lb.close)
        return lb

    def log_of(self, sender):
        return self.redis.command("LRANGE", PREFIX + "log:" + sender, "0", "-1", db=0)

    def numbers_taken(self):
        return int(self.redis.command("GET", PREFIX + "\0turn:seq", db=0) or 0)

    def test_one_sender_through_haproxy_in_order_one_at_a_time(self):
        hosts = self.hosts(3)
        lb = self.balancer(hosts)
        texts = ["m%02d" % i for i in range(15)]
        threads = []
        # Each message is sent once the one before took its number in Redis: the order they
        # reached Redis is the order sent, while earlier ones still run or wait.
        for i, text in enumerate(texts):
            threads.append(in_thread(post, lb.port, "alice", text, 0.04))
            wait_until("message %d's number" % i, lambda: self.numbers_taken() >= i + 1)
        for t, result in threads:
            t.join(60)
            self.assertNotIn("error", result)
            self.assertEqual(result["value"][0], 200, result)
        assert_in_order_one_at_a_time(self, self.log_of("alice"), texts)
        def handled():  # the hosts' logs are read by other threads: they may lag the answers
            return [len(re.findall(r"HANDLING alice", h.log())) for h in hosts]
        wait_until("every host's log to show what it handled",
                   lambda: sum(handled()) >= len(texts))
        handled = handled()
        self.assertEqual(sum(handled), len(texts))
        self.assertTrue(all(n > 0 for n in handled), "HAProxy spread them: %r" % handled)
        # Nothing is left in Redis once the sender is done: no holder, no queue. The last
        # message's release may reach Redis just after its answer (which does not wait for it).
        wait_until("the last turn to be given back", lambda: self.redis.command(
            "EXISTS", PREFIX + "\0turn:h:alice", db=0) == 0)
        self.assertEqual(self.redis.command("EXISTS", PREFIX + "\0turn:q:alice", db=0), 0)

    def test_many_senders_each_in_order_and_in_parallel(self):
        hosts = self.hosts(2)
        lb = self.balancer(hosts)
        senders = ["s%d" % i for i in range(8)]
        per_sender, delay = 4, 0.25

        def one_sender(sender):
            # each message while the one before runs: it must wait for its turn, on any host
            threads = []
            for k in range(per_sender):
                threads.append(in_thread(post, lb.port, sender, "%s-%d" % (sender, k), delay))
                wait_until("%s-%d to begin" % (sender, k),
                           lambda: "begin %s-%d" % (sender, k) in self.log_of(sender), 30)
            for t, result in threads:
                t.join(60)
                assert result.get("value", (0,))[0] == 200, result
        started = time.monotonic()
        workers = [in_thread(one_sender, s) for s in senders]
        for t, result in workers:
            t.join(120)
            self.assertNotIn("error", result)
        elapsed = time.monotonic() - started
        for s in senders:
            assert_in_order_one_at_a_time(self, self.log_of(s),
                                          ["%s-%d" % (s, k) for k in range(per_sender)])
        # One sender's messages take per_sender * delay = 1 s; all of them one after the other
        # would take 8 s: the senders ran side by side.
        self.assertLess(elapsed, 4.0 * SLOWER, "senders were serialised: %.2f s" % elapsed)

    def test_a_slack_event_sent_to_two_hosts_is_handed_to_the_bot_once(self):
        import hashlib
        import hmac
        hosts = self.hosts(2)
        with open(os.path.join(os.path.dirname(__file__), "fixtures", "slack",
                               "message_im.json")) as f:
            payload = json.load(f)
        payload["event_id"] = "Ev0MULTIHOST1"
        body = json.dumps(payload).encode()
        ts = str(int(time.time()))
        sig = hmac.new(SLACK_SECRET.encode(), b"v0:" + ts.encode() + b":" + body,
                       hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": "v0=" + sig}
        results = [in_thread(request, h.port, "POST", "/webhooks/slack/webhook", body, headers)
                   for h in hosts]
        for t, result in results:
            t.join(30)
            self.assertEqual(result["value"][0], 200, result)
        sender = payload["event"]["user"]
        wait_until("the event to reach the bot", lambda: "end " in " ".join(self.log_of(sender)))
        # Both answered 200 (Slack must not retry); after a moment still one message only.
        time.sleep(0.5)
        log = self.log_of(sender)
        self.assertEqual(len(log), 2, log)
        self.assertEqual(sum(len(re.findall(r"HANDLING " + sender, h.log())) for h in hosts), 1)

    def test_a_host_killed_while_holding_the_turn_hands_it_on_when_the_lease_ends(self):
        a, b = self.hosts(2, "  order_lease: 1\n")
        first, _ = in_thread(post, a.port, "bob", "long", 20)
        wait_until("the long message to begin", lambda: "begin long" in self.log_of("bob"))
        # Longer than the lease: A renews it while the message runs.
        second, got = in_thread(post, b.port, "bob", "next", 0.01)
        wait_until("the next message's number", lambda: self.numbers_taken() >= 2)
        time.sleep(1.6 * SLOWER)
        self.assertEqual(self.log_of("bob"), ["begin long"], "B waits while A renews its lease")
        killed = time.monotonic()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        second.join(30)
        self.assertEqual(got["value"][0], 200, got)
        waited = time.monotonic() - killed
        self.assertEqual(self.log_of("bob"), ["begin long", "begin next", "end next"])
        # At most one lease (1 s) after its last renewal, plus a margin for a loaded machine.
        self.assertLess(waited, 1.0 + 2.0 * SLOWER, "B waited %.2f s" % waited)
        self.assertGreaterEqual(metric(b, "switchboard_order_leases_expired_total"), 1)

    def test_redis_restarted_under_load_the_hosts_recover(self):
        hosts = self.hosts(2)
        lb = self.balancer(hosts)
        stop = threading.Event()
        answers = []

        def load(sender):
            i = 0
            while not stop.is_set():
                answers.append(post(lb.port, sender, "%s-%d" % (sender, i), 0.01)[0])
                i += 1
        loaders = [in_thread(load, "load%d" % i) for i in range(4)]
        wait_until("some load", lambda: len(answers) > 20)
        self.redis.stop()
        during = len(answers)
        wait_until("messages while Redis is down", lambda: len(answers) > during + 20)
        self.redis.start()
        for h in hosts:
            wait_for_state(h, "connected", timeout=20)
        after = len(answers)
        wait_until("messages after Redis is back", lambda: len(answers) > after + 20)
        stop.set()
        for t, result in loaders:
            t.join(60)
            self.assertNotIn("error", result)
        self.assertEqual(set(answers), {200})
        self.assertGreater(sum(metric(h, "switchboard_order_fallbacks_total") for h in hosts), 0)
        # Back in order across hosts: a sender's messages take numbers again.
        before = self.numbers_taken()
        self.assertEqual(post(lb.port, "after", "x")[0], 200)
        self.assertGreater(self.numbers_taken(), before)
        self.assertEqual(self.log_of("after"), ["begin x", "end x"])

    def test_redis_down_at_startup_messages_go_in_their_turn_on_each_host(self):
        self.redis.stop()
        host = start_host(self.redis.port)
        self.addCleanup(host.stop, None)
        status, body = post(host.port, "carol", "early", 0.01)
        self.assertEqual(status, 200, body)
        host.wait_for_log(r"ERROR .*order of a sender's messages across hosts is not kept")
        self.assertGreaterEqual(metric(host, "switchboard_order_fallbacks_total"), 1)
        self.redis.start()
        wait_for_state(host, "connected", timeout=20)
        self.assertEqual(post(host.port, "carol", "later", 0.01)[0], 200)
        self.assertEqual(self.log_of("carol"), ["begin later", "end later"])
        self.assertGreaterEqual(self.numbers_taken(), 1)


class OrderKeysTests(unittest.TestCase):
    def check(self, extra):
        folder = project({"ordered.lua": CHANNEL, "bot.lua": BOT,
                          "endpoints.yml": endpoints(6379, extra),
                          "credentials.yml": "ordered.lua:\n"})
        return run_command(["check"], cwd=folder)

    def test_order_and_order_lease_are_checked(self):
        self.assertEqual(self.check("  order: false\n  order_lease: 2.5\n").returncode, 0)
        r = self.check("  order: 1\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("store: 'order' must be true or false, not an integer", r.stderr)
        r = self.check("  order_lease: 0.05\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("endpoints.yml:8:16: store: 'order_lease' must be at least 0.1 seconds",
                      r.stderr)
        r = self.check("  order_leas: 3\n")
        self.assertIn("known keys: url, password, username, prefix, tls, connect_timeout, "
                      "command_timeout, order, order_lease", r.stderr)


if __name__ == "__main__":
    unittest.main()
