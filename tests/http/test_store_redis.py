# SPDX-License-Identifier: MIT
"""sb.store with the Redis backend (docs/lua-api.md "sb.store", docs/multi-host.md): the same Lua
channel as test_store.py against a real redis-server this test starts on 127.0.0.1 (no
persistence, a temporary folder): the same values and errors, waiting pops woken by a push from
another worker and from another host, two hosts sharing state, the prefix on every key, Redis
killed (calls fail fast, /status and /metrics show it, the host keeps serving) and back (the
hosts reconnect), Redis down at startup, a graceful stop with pops waiting, and the `store:`
section's errors. Skipped, saying why, when redis-server is not installed."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import free_port, project
from test_store import CHANNEL
from util import QuietHost as Host, error_lines, run_to_exit

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

# The kv channel of test_store.py, plus a route that does not touch the store.
KV = CHANNEL.replace('c.routes = {\n', """c.routes = {
  ["POST /plain"] = function(req) return { json = { ok = true } } end,
  ["POST /huge"] = function(req)
    return answer(store.set(req.json.key, string.rep("y", 16 * 1024 * 1024 + 1)))
  end,
""")


class Redis:
    """A redis-server of this test: 127.0.0.1, a free port, no persistence, its own folder."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="sb-redis-")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("redis-server did not start on port %d" % self.port)

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, *args, db=3):
        """One command over RESP in database db; returns a str, int, None or a list of them."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            out = b""
            for cmd in (("SELECT", str(db)), args):
                out += b"*%d\r\n" % len(cmd)
                for a in cmd:
                    a = a.encode() if isinstance(a, str) else a
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            with s.makefile("rb") as f:
                return self._reply(f)

    @staticmethod
    def _reply(f):
        """The reply to the second of two commands (the first, SELECT, answers +OK)."""
        f.readline()  # SELECT's +OK

        def read():
            line = f.readline()[:-2]
            kind, rest = line[:1], line[1:]
            if kind in (b"+", b"-"):
                return rest.decode()
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)[:-2]
                return data.decode("latin-1")
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise AssertionError("unexpected reply %r" % line)

        return read()


def store_yml(redis_port, extra="", host="127.0.0.1"):
    # A CPU budget of 10 s: building a 16 MiB value (the "huge" route) takes more than the default
    # second under ThreadSanitizer on a slow machine.
    return ("server:\n  workers: 2\n  lua_cpu_budget: 10\nstore:\n  url: redis://%s:%d/3\n"
            "  prefix: 'sbt:'\n%s" % (host, redis_port, extra))


def serve(redis_port, folder=None, args=(), extra="", host="127.0.0.1"):
    folder = folder or project({"kv.lua": KV, "credentials.yml": "kv.lua:\n",
                                "endpoints.yml": store_yml(redis_port, extra, host)})
    return Host(cwd=folder, args=args)


def call(host, op, timeout=20, **args):
    status, _, body = host.request("POST", "/webhooks/kv/" + op, json.dumps(args),
                                   {"Content-Type": "application/json"}, timeout=timeout)
    if status != 200:
        raise AssertionError("%s: %d %s" % (op, status, body))
    result = json.loads(body)
    n = result.pop("n")
    return [result.get(str(i + 1)) for i in range(n)]


def status(host):
    return json.loads(host.request("GET", "/status")[2])["store"]


def wait_for_state(host, state, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(host)
        if st["state"] == state:
            return st
        time.sleep(0.05)
    raise AssertionError("the store did not become %s: %r" % (state, status(host)))


def metric(host, name):
    body = host.request("GET", "/metrics")[2].decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def pop_in_thread(host, key, wait):
    got = {}

    def run():
        try:
            got["value"] = call(host, "pop", key=key, wait=wait)
        except Exception as e:  # reported by the test's assertion on got
            got["error"] = e
        got["at"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    return t, got


@unittest.skipUnless(REDIS_SERVER, "redis-server is not installed (Debian: apt-get install "
                                   "redis-server); the Redis backend of sb.store is not tested")
class RedisStoreTests(unittest.TestCase):
    def setUp(self):
        self.redis = Redis()
        self.addCleanup(self.redis.close)

    def test_values_ttls_counters_and_errors_as_with_the_embedded_store(self):
        with serve(self.redis.port) as host:
            wait_for_state(host, "connected")
            self.assertEqual(call(host, "set", key="s", value="text"), [True])
            self.assertEqual(call(host, "set", key="t", value={"a": [1, 2], "b": None}), [True])
            self.assertEqual(call(host, "set", key="odd", value="\u0001starts with the marker"),
                             [True])
            self.assertEqual(call(host, "set", key="num", value=12.5), [True])
            for _ in range(6):  # new connections: both workers answer
                self.assertEqual(call(host, "get", key="s"), ["text"])
                self.assertEqual(call(host, "get", key="t"), [{"a": [1, 2], "b": None}])
            self.assertEqual(call(host, "get", key="odd"), ["\u0001starts with the marker"])
            self.assertEqual(call(host, "get", key="num"), [12.5])
            self.assertEqual(call(host, "get", key="none"), [None])
            # The same bytes as the embedded store: strings as they are, the rest behind a marker.
            self.assertEqual(self.redis.command("GET", "sbt:s"), "text")
            self.assertEqual(self.redis.command("GET", "sbt:num"), "\x01J12.5")
            self.assertEqual(self.redis.command("GET", "sbt:odd"),
                             "\x01S\x01starts with the marker")
            self.assertEqual(call(host, "add", key="once", value="1", ttl=60), [True])
            self.assertEqual(call(host, "add", key="once", value="2", ttl=60), [False])
            self.assertEqual(call(host, "get", key="once"), ["1"])
            self.assertEqual([call(host, "incr", key="n")[0] for _ in range(5)], [1, 2, 3, 4, 5])
            self.assertEqual(call(host, "incr", key="n", by=-10), [-5])
            self.assertEqual(call(host, "get", key="n"), ["-5"])
            self.assertEqual(call(host, "incr", key="t"),
                             [None, "the value is not an integer (or the sum overflows)"])
            self.assertEqual(call(host, "set", key="big", value="9223372036854775807"), [True])
            self.assertEqual(call(host, "incr", key="big"),
                             [None, "the value is not an integer (or the sum overflows)"])
            self.assertEqual(call(host, "del", key="s"), [True])
            self.assertEqual(call(host, "del", key="s"), [False])
            self.assertEqual(call(host, "set", key="brief", value="x", ttl=0.3), [True])
            ttl = self.redis.command("PTTL", "sbt:brief")
            self.assertTrue(0 < ttl <= 300, ttl)
            self.assertEqual(call(host, "expire", key="once", ttl=0.3), [True])
            self.assertEqual(call(host, "expire", key="none", ttl=5), [False])
            self.assertEqual(call(host, "set", key="kept", value="k", ttl=60), [True])
            self.assertEqual(call(host, "incr", key="counter"), [1])
            self.assertEqual(call(host, "expire", key="counter", ttl=60), [True])
            self.assertEqual(call(host, "incr", key="counter"), [2])  # incr keeps the TTL
            self.assertGreater(self.redis.command("PTTL", "sbt:counter"), 0)
            self.assertEqual(call(host, "expire", key="kept", ttl=0), [True])  # no expiry now
            self.assertEqual(self.redis.command("PTTL", "sbt:kept"), -1)
            self.assertEqual(call(host, "expire", key="kept", ttl=0), [True])  # exists: true
            self.assertEqual(call(host, "expire", key="nothing", ttl=0), [False])
            time.sleep(0.5)
            self.assertEqual(call(host, "get", key="brief"), [None])
            self.assertEqual(call(host, "add", key="once", value="again"), [True])
            ok, err = call(host, "bad", key="k")
            self.assertFalse(ok)
            self.assertIn("a value is a string, or a table, number or boolean", err)
            # Lists, and the wrong type either way.
            self.assertEqual(call(host, "push", key="q", value="a"), [1])
            self.assertEqual(call(host, "push", key="q", value={"n": 2}), [2])
            self.assertEqual(call(host, "length", key="q"), [2])
            self.assertEqual(call(host, "get", key="q"),
                             [None, "the key holds another type of value"])
            self.assertEqual(call(host, "incr", key="q"),
                             [None, "the value is not an integer (or the sum overflows)"])
            self.assertEqual(call(host, "pop", key="q"), ["a"])
            self.assertEqual(call(host, "pop", key="q"), [{"n": 2}])
            self.assertEqual(call(host, "pop", key="q"), [None])
            self.assertEqual(call(host, "length", key="q"), [0])
            self.assertEqual(call(host, "push", key="once", value="x"),
                             [None, "the key holds another type of value"])
            self.assertEqual(call(host, "pop", key="once", wait=1),
                             [None, "the key holds another type of value"])
            self.assertEqual(call(host, "length", key="once"),
                             [None, "the key holds another type of value"])
            self.assertEqual(call(host, "huge", key="huge"),
                             [None, "the value is too big for the store"])
            # Every key carries the prefix, in the database of the URL.
            keys = self.redis.command("KEYS", "*", db=3)
            self.assertTrue(keys)
            self.assertEqual(self.redis.command("KEYS", "*", db=0), [])
            self.assertTrue(all(k.startswith("sbt:") for k in keys), keys)
            self.assertIn("sbt:t", keys)

    def test_a_pop_waits_for_a_push_from_another_worker(self):
        with serve(self.redis.port) as host:
            wait_for_state(host, "connected")
            started = time.monotonic()
            self.assertEqual(call(host, "pop", key="q", wait=0.3), [None])
            self.assertGreaterEqual(time.monotonic() - started, 0.28)
            for i in range(6):  # the waiting pop and the push often land on different workers
                t, got = pop_in_thread(host, "w%d" % i, 10)
                time.sleep(0.2)
                pushed_at = time.monotonic()
                self.assertEqual(call(host, "push", key="w%d" % i, value="v%d" % i), [1])
                t.join(10)
                self.assertEqual(got.get("value"), ["v%d" % i], got)
                self.assertLess(got["at"] - pushed_at, 2.0)
            # A value already there is taken at once; two waiters, two pushes: each gets one.
            self.assertEqual(call(host, "push", key="ready", value="r"), [1])
            self.assertEqual(call(host, "pop", key="ready", wait=5), ["r"])
            waiters = [pop_in_thread(host, "two", 10) for _ in range(2)]
            time.sleep(0.3)
            call(host, "push", key="two", value="first")
            call(host, "push", key="two", value="second")
            for t, _ in waiters:
                t.join(10)
            self.assertEqual(sorted(got["value"][0] for _, got in waiters), ["first", "second"])
            self.assertEqual(call(host, "length", key="two"), [0])
            # Nothing waits any more: no subscription is left behind.
            self.assertEqual(self.redis.command("PUBSUB", "NUMSUB", "sbt:pushed:two")[1], 0)

    def test_two_hosts_share_state_and_a_pop_on_one_is_woken_by_a_push_on_the_other(self):
        # b names Redis by a host name: it is resolved without blocking the worker (glibc's
        # getaddrinfo_a). Not under ThreadSanitizer: glibc starts the resolver's thread behind
        # TSan's back, and TSan crashes in it (dev.sh sets SB_UNDER_TSAN).
        name = "127.0.0.1" if os.environ.get("SB_UNDER_TSAN") else "localhost"
        with serve(self.redis.port) as a, serve(self.redis.port, host=name) as b:
            wait_for_state(a, "connected")
            wait_for_state(b, "connected")
            self.assertEqual(call(a, "set", key="shared", value={"from": "a"}), [True])
            self.assertEqual(call(b, "get", key="shared"), [{"from": "a"}])
            self.assertEqual(call(b, "incr", key="hits"), [1])
            self.assertEqual(call(a, "incr", key="hits"), [2])
            self.assertEqual(call(a, "add", key="seen:1", value=True, ttl=60), [True])
            self.assertEqual(call(b, "add", key="seen:1", value=True, ttl=60), [False])
            for i in range(3):
                t, got = pop_in_thread(a, "inbox%d" % i, 10)
                time.sleep(0.3)
                pushed_at = time.monotonic()
                self.assertEqual(call(b, "push", key="inbox%d" % i, value="hello %d" % i), [1])
                t.join(10)
                self.assertEqual(got.get("value"), ["hello %d" % i], got)
                self.assertLess(got["at"] - pushed_at, 2.0)

    def test_redis_killed_calls_fail_fast_the_host_serves_and_reconnects_when_it_is_back(self):
        with serve(self.redis.port) as host:
            wait_for_state(host, "connected")
            self.assertEqual(metric(host, "switchboard_store_redis_up"), 1)
            self.assertEqual(call(host, "set", key="before", value="1"), [True])
            t, got = pop_in_thread(host, "waiting", 20)
            time.sleep(0.3)
            self.redis.stop()
            t.join(10)
            self.assertEqual(got["value"][0], None)  # the waiting pop failed, it did not hang
            self.assertTrue(got["value"][1].startswith("store unavailable: "), got)
            st = wait_for_state(host, "reconnecting")
            self.assertTrue(st["last_error"], st)
            self.assertRegex(st["since"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            for _ in range(5):
                started = time.monotonic()
                value, err = call(host, "get", key="before")
                self.assertIsNone(value)
                self.assertTrue(err.startswith("store unavailable: "), err)
                self.assertLess(time.monotonic() - started, 1.0)
            status_code, _, body = host.request("POST", "/webhooks/kv/plain", "{}",
                                                {"Content-Type": "application/json"})
            self.assertEqual((status_code, json.loads(body)), (200, {"ok": True}))
            self.assertEqual(metric(host, "switchboard_store_redis_up"), 0)
            self.assertTrue(host.wait_for_log(r"ERROR.*sb\.store: worker \d lost its connection"))
            self.redis.start()  # same port, empty: no persistence
            wait_for_state(host, "connected")
            self.assertEqual(call(host, "set", key="after", value="2"), [True])
            self.assertEqual(call(host, "get", key="after"), ["2"])
            self.assertEqual(metric(host, "switchboard_store_redis_up"), 1)
            self.assertGreaterEqual(metric(host, "switchboard_store_redis_reconnects_total"), 2)
            self.assertGreaterEqual(status(host)["reconnects"], 2)

    def test_a_redis_that_does_not_answer_is_dropped_after_the_command_timeout(self):
        with serve(self.redis.port, extra="  command_timeout: 0.5\n") as host:
            wait_for_state(host, "connected")
            # Redis holds every client's commands for 2 s.
            self.assertEqual(self.redis.command("CLIENT", "PAUSE", "2000", "ALL"), "OK")
            started = time.monotonic()
            value, err = call(host, "get", key="slow")
            self.assertIsNone(value)
            self.assertEqual(err, "store unavailable: Redis did not answer within 0.5 s "
                                  "(command_timeout)")
            self.assertLess(time.monotonic() - started, 1.5)
            wait_for_state(host, "connected")
            self.assertEqual(call(host, "set", key="slow", value="fine"), [True])

    def test_redis_down_at_startup_the_host_serves_and_connects_when_it_comes(self):
        port = self.redis.port
        self.redis.stop()
        with serve(port) as host:
            st = status(host)
            self.assertEqual(st["backend"], "redis")
            self.assertEqual(st["state"], "reconnecting")
            self.assertEqual(st["url"], "redis://127.0.0.1:%d/3" % port)
            self.assertTrue(host.wait_for_log(r"ERROR.*sb\.store: worker \d cannot connect to "
                                              r"Redis redis://127\.0\.0\.1:%d/3" % port))
            value, err = call(host, "get", key="x")
            self.assertIsNone(value)
            self.assertTrue(err.startswith("store unavailable: "), err)
            status_code, _, _ = host.request("POST", "/webhooks/kv/plain", "{}",
                                             {"Content-Type": "application/json"})
            self.assertEqual(status_code, 200)
            self.redis.start()
            wait_for_state(host, "connected")
            self.assertEqual(call(host, "set", key="x", value="now"), [True])
            self.assertEqual(call(host, "get", key="x"), ["now"])

    def test_a_graceful_stop_answers_waiting_pops_at_once(self):
        host = serve(self.redis.port)
        try:
            wait_for_state(host, "connected")
            t, got = pop_in_thread(host, "long-poll", 25)
            time.sleep(0.3)
            stopped_at = time.monotonic()
            host.proc.terminate()
            t.join(10)
            self.assertEqual(got.get("value"), [None], got)
            self.assertLess(got["at"] - stopped_at, 3.0)
            self.assertEqual(host.proc.wait(10), 0)
        finally:
            host.stop(expect_code=None)

    def test_a_deadline_that_ends_a_waiting_pop_loses_no_value(self):
        # A Lua bot waits on the store inside a message; the response timeout ends the wait
        # (the call is detached); a later push stays in the list for the next pop.
        bot = ('local sb = require "switchboard"\nlocal bot = {}\n'
               'function bot.handle(msg, out)\n'
               '  local v, err = sb.store.pop("deadline", 30)\n'
               '  out:send_text_message(tostring(v) .. " " .. tostring(err))\nend\n'
               'return bot\n')
        folder = project({"kv.lua": KV, "bot.lua": bot,
                          "credentials.yml": "kv.lua:\nrest:\n",
                          "endpoints.yml": "bot:\n  script: bot.lua\n" +
                                           store_yml(self.redis.port)})
        with serve(self.redis.port, folder=folder, args=["--response-timeout", "0.5"]) as host:
            wait_for_state(host, "connected")
            started = time.monotonic()
            status_code, _, _ = host.request("POST", "/webhooks/rest/webhook",
                                             json.dumps({"sender": "u", "message": "hi"}),
                                             {"Content-Type": "application/json"})
            self.assertEqual(status_code, 200)
            self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(call(host, "push", key="deadline", value="kept"), [1])
            self.assertEqual(call(host, "pop", key="deadline"), ["kept"])
            self.assertTrue(host.wait_for_log(r"longer than the response timeout"))


@unittest.skipUnless(REDIS_SERVER and shutil.which("stunnel4"),
                     "redis-server or stunnel4 is not installed")
class TlsTunnelTests(unittest.TestCase):
    """Redis over TLS, as docs/multi-host.md says to reach it (Debian 12's hiredis has no TLS):
    a TLS-only redis-server, and stunnel on the host's side verifying its certificate."""

    def test_a_redis_that_speaks_only_tls_is_reached_through_stunnel(self):
        folder = tempfile.mkdtemp(prefix="sb-redis-tls-")
        self.addCleanup(shutil.rmtree, folder, True)
        key, cert = os.path.join(folder, "redis.key"), os.path.join(folder, "redis.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=redis.test",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tls_port, tunnel_port = free_port(), free_port()
        redis = subprocess.Popen(
            [REDIS_SERVER, "--port", "0", "--tls-port", str(tls_port), "--bind", "127.0.0.1",
             "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (redis.kill(), redis.wait(10)))
        conf = os.path.join(folder, "stunnel.conf")
        with open(conf, "w") as f:
            f.write("foreground = yes\npid =\n[redis]\nclient = yes\naccept = 127.0.0.1:%d\n"
                    "connect = 127.0.0.1:%d\nverifyChain = yes\nCAfile = %s\n"
                    "checkIP = 127.0.0.1\n" % (tunnel_port, tls_port, cert))
        tunnel = subprocess.Popen(["stunnel4", conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (tunnel.kill(), tunnel.wait(10)))
        # Plain RESP on the TLS port gets nowhere: only the tunnel speaks to this Redis.
        with serve(tunnel_port) as host:
            wait_for_state(host, "connected")
            self.assertEqual(call(host, "set", key="k", value={"over": "tls"}), [True])
            self.assertEqual(call(host, "get", key="k"), [{"over": "tls"}])
            self.assertEqual(call(host, "incr", key="n"), [1])


@unittest.skipUnless(REDIS_SERVER, "redis-server is not installed")
class StoreConfigTests(unittest.TestCase):
    def assert_fails(self, endpoints, parts):
        folder = project({"credentials.yml": "rest:\n", "endpoints.yml": endpoints})
        for command in (["check"], ["run", "-p", "0", "-i", "127.0.0.1"]):
            result = run_to_exit(command, cwd=folder)
            self.assertIsNotNone(result.returncode, result.stderr)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertNotIn("listening on", result.stderr)
            lines = error_lines(result.stderr)
            self.assertEqual(len(lines), 1, result.stderr)
            for part in parts:
                self.assertIn(part, lines[0])

    def test_bad_store_sections_name_the_line_and_the_problem(self):
        self.assert_fails("store:\n  url: rediss://r:6380/0\n",
                          ["endpoints.yml:2:8:", "rediss:// (Redis over TLS) is not supported",
                           "hiredis"])
        self.assert_fails("store:\n  url: redis://r\n  tls: true\n",
                          ["endpoints.yml:3:8:", "'tls: true' is not supported"])
        self.assert_fails("store:\n  url: redis://r\n  tls: 1\n",
                          ["endpoints.yml:3:8:", "'tls' must be true or false"])
        self.assert_fails("store:\n  url: http://r:6379\n",
                          ["endpoints.yml:2:8:", "redis://[user:password@]host[:port][/db]"])
        self.assert_fails("store:\n  url: redis://r:70000/0\n",
                          ["endpoints.yml:2:8:", "port"])
        self.assert_fails("store:\n  url: redis://r:6379/x\n",
                          ["endpoints.yml:2:8:", "database number"])
        self.assert_fails("store:\n  url: redis://r\n  prefx: a\n",
                          ["endpoints.yml:3:3:", "unknown key 'prefx'", "prefix"])
        self.assert_fails("store:\n  password: x\n", ["endpoints.yml:1:1:", "needs 'url'"])
        self.assert_fails("store:\n  url: 6379\n", ["endpoints.yml:2:8:", "'url' must be a string"])
        self.assert_fails("store:\n  url: redis://r\n  prefix: [a]\n",
                          ["endpoints.yml:3:11:", "'prefix' must be a string"])
        self.assert_fails("store:\n  url: redis://r\n  command_timeout: 0\n",
                          ["endpoints.yml:3:20:", "'command_timeout' must be a number"])
        self.assert_fails("store:\n  url: redis://:secret@r\n  password: other\n",
                          ["endpoints.yml:3:13:", "given twice"])
        self.assert_fails("store: redis://r\n", ["endpoints.yml:1:8:", "'store' must be a map"])

    def test_the_password_never_shows(self):
        redis = Redis()
        self.addCleanup(redis.close)
        redis.command("CONFIG", "SET", "requirepass", "s3cret")
        folder = project({"kv.lua": KV, "credentials.yml": "kv.lua:\n",
                          "endpoints.yml": store_yml(redis.port, "  password: wrong\n")})
        with Host(cwd=folder) as host:
            self.assertTrue(host.wait_for_log(r"cannot connect to Redis.*(WRONGPASS|invalid)"))
            st = status(host)
            self.assertEqual(st["state"], "reconnecting")
            self.assertNotIn("wrong", json.dumps(st))
        folder = project({"kv.lua": KV, "credentials.yml": "kv.lua:\n",
                          "endpoints.yml": store_yml(redis.port, "  password: s3cret\n")})
        with Host(cwd=folder) as host:
            wait_for_state(host, "connected")
            self.assertEqual(call(host, "set", key="auth", value="ok"), [True])
            self.assertNotIn("s3cret", host.request("GET", "/status")[2].decode())
            self.assertNotIn("s3cret", "\n".join(host.log()))


if __name__ == "__main__":
    unittest.main()
