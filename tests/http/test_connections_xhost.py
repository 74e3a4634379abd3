# SPDX-License-Identifier: MIT
"""Open connections across hosts (docs/multi-host.md, "Open connections across hosts"): with the
Redis store, sb.connections.send (and so every bot reply and proactive message to a connection)
reaches the sender's connections on the other hosts too.

Two or three real hosts on one redis-server this test starts (no balancer: each client picks its
host). A raw WebSocket client (wsclient.py) bound to a sender on host A gets what host B sends
to it, once, text and binary; sb.connections.send counts this host's connections only; a
sender's subscription leaves Redis with its last connection; Redis down: sends stay on their
host, and the subscriptions come back with Redis. The socketio channel: a proactive message
posted to host B reaches a socket.io-client (tests/sdk) connected to host A; with
session_persistence a second tab of the same session on host B talks to the bot and both tabs
get the reply; host A SIGKILLed, its client reconnects to host B with its session_id and keeps
the conversation (replies and proactive messages posted to host C reach it). The latency a
cross-host delivery adds is measured and printed (docs/performance.md). Skipped, saying why,
without redis-server."""
import json
import signal
import statistics
import threading
import time
import unittest

from channel_fixtures import sdk
from harness import project
from test_multihost import REDIS_SERVER, SLOWER, wait_until
from test_store_redis import Redis, wait_for_state
from util import QuietHost as Host
from wsclient import WebSocket

PREFIX = "xh:"
TOKEN = "xh-t0ken"

# A channel whose connections bind to ?user=, and whose messages "to|data" and route POST /send
# send to another sender.
RELAY = """\
local sb = require "switchboard"
local c = { name = "relay", websocket = "/ws" }
function c.on_open(conn, req)
  conn:bind(req.query.user)
end
function c.on_message(conn, data)
  local to, payload = data:match("^(.-)|(.*)$")
  if to then sb.connections.send(to, payload) end
end
c.routes = {
  ["POST /send"] = function(req)
    local b = req.json
    return { json = { count = sb.connections.send(b.to, b.data, b.binary == true) } }
  end,
}
return c
"""

# The bot of the socketio tests: its count of a sender's messages lives in sb.store, so a
# conversation that moves to another host goes on counting.
BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local n = sb.store.incr("turns:" .. msg.sender_id)
  sb.log.info("BOT GOT %s", tostring(msg.text))
  out:send_text_message(("echo: %s (#%d)"):format(tostring(msg.text), n))
end
return bot
"""


def endpoints(redis_port, workers=2):
    return ("bot:\n  script: bot.lua\nserver:\n  workers: %d\n  push_token: %s\n"
            "store:\n  url: redis://127.0.0.1:%d/0\n  prefix: '%s'\n"
            % (workers, TOKEN, redis_port, PREFIX))


def relay_host(redis_port, workers=2):
    folder = project({"relay.lua": RELAY, "bot.lua": BOT, "credentials.yml": "relay.lua:\n",
                      "endpoints.yml": endpoints(redis_port, workers)})
    return Host(cwd=folder)


def socketio_host(redis_port):
    folder = project({"bot.lua": BOT, "endpoints.yml": endpoints(redis_port),
                      "credentials.yml": "socketio:\n  session_persistence: true\n"})
    return Host(cwd=folder)


def post_json(host, path, value, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    status, _, body = host.request("POST", path, json.dumps(value), h)
    return status, json.loads(body) if body else None


def send_via(host, to, data, binary=False):
    status, body = post_json(host, "/webhooks/relay/send", {"to": to, "data": data,
                                                            "binary": binary})
    assert status == 200, (status, body)
    return body["count"]


def proactive(host, sender, text):
    return post_json(host, "/conversations/%s/messages?channel=socketio" % sender,
                     [{"text": text}], {"Authorization": "Bearer " + TOKEN})


class EngineIO:
    """A Socket.IO v5 client over WebSocket (Engine.IO v4), on the raw client."""

    def __init__(self, port):
        self.ws = WebSocket(port, "/socket.io/?EIO=4&transport=websocket", timeout=20)
        assert self.ws.opened, self.ws.handshake.body
        opening = self.ws.recv()
        assert opening.startswith("0{"), opening
        self.ws.send("40")
        connected = self.packet()
        assert connected.startswith("40{"), connected

    def packet(self):
        while True:
            p = self.ws.recv()
            if p == "2":  # Engine.IO's ping
                self.ws.send("3")
                continue
            return p

    def emit(self, event, data):
        self.ws.send("42" + json.dumps([event, data]))

    def event(self):
        p = self.packet()
        assert p.startswith("42"), p
        return json.loads(p[2:])

    def session(self, session_id):
        self.emit("session_request", {"session_id": session_id})
        self.assertion(self.event(), ["session_confirm", session_id])

    def say(self, session_id, text):
        self.emit("user_uttered", {"message": text, "session_id": session_id})

    @staticmethod
    def assertion(got, expected):
        assert got == expected, (got, expected)


@unittest.skipUnless(REDIS_SERVER, "redis-server is not installed (Debian: apt-get install "
                                   "redis-server); connections across hosts are not tested")
class ConnectionsAcrossHostsTests(unittest.TestCase):
    def setUp(self):
        self.redis = Redis()
        self.addCleanup(self.redis.close)

    def hosts(self, n, start=relay_host):
        hosts = []
        for _ in range(n):
            h = start(self.redis.port)
            # A clean exit (ASan: no leak), except for a host the test killed.
            self.addCleanup(lambda h=h: h.stop(None if h.proc.returncode == -9 else 0))
            hosts.append(h)
        for h in hosts:
            wait_for_state(h, "connected")
        return hosts

    def subscribers(self, sender):
        """How many workers (of every host) hold a connection bound to sender."""
        return self.redis.command("PUBSUB", "NUMSUB", PREFIX + "conn:" + sender, db=0)[1]

    def wait_subscribers(self, sender, n):
        wait_until("%d subscriber(s) of %s" % (n, sender), lambda: self.subscribers(sender) == n)

    def connect(self, host, user):
        ws = WebSocket(host.port, "/webhooks/relay/ws?user=" + user, timeout=20)
        self.assertEqual(ws.handshake.status, 101, ws.handshake.body)
        self.addCleanup(ws.abort)
        return ws

    def engineio(self, host):
        client = EngineIO(host.port)
        self.addCleanup(client.ws.abort)
        return client

    def nothing_more(self, ws, wait=0.3):
        """No other message comes (a duplicate would come within this)."""
        ws.sock.settimeout(wait * SLOWER)
        try:
            self.fail("one more message: %r" % (ws.recv(),))
        except (TimeoutError, OSError):
            pass
        finally:
            ws.sock.settimeout(20)

    def test_a_send_on_another_host_reaches_the_connection_once(self):
        a, b = self.hosts(2)
        on_a = self.connect(a, "u1")
        self.wait_subscribers("u1", 1)
        # Counted: this host's connections only (the other hosts' are published to, not waited
        # for).
        self.assertEqual(send_via(b, "u1", "hello from B"), 0)
        self.assertEqual(on_a.recv(), "hello from B")
        self.assertEqual(send_via(b, "u1", "\x00\x01bytes", binary=True), 0)
        self.assertEqual(on_a.recv(), b"\x00\x01bytes")
        # A second connection of u1, on B: a send on B goes to both, each exactly once (B's own
        # subscription does not deliver B's send a second time), and the same from A.
        on_b = self.connect(b, "u1")
        self.wait_subscribers("u1", 2)
        self.assertEqual(send_via(b, "u1", "to both"), 1)
        self.assertEqual(send_via(a, "u1", "from A"), 1)
        for ws in (on_a, on_b):  # one came through Redis, the other not: either may be first
            self.assertEqual(sorted([ws.recv(), ws.recv()]), ["from A", "to both"])
        # A connection on B sending to u1 through its own messages (the bot replies' path).
        on_b2 = self.connect(b, "u2")
        on_b2.send("u1|relayed")
        self.assertEqual(on_a.recv(), "relayed")
        self.assertEqual(on_b.recv(), "relayed")
        for ws in (on_a, on_b, on_b2):
            self.nothing_more(ws)

    def test_a_senders_subscription_leaves_redis_with_its_last_connection(self):
        (b,) = self.hosts(1)
        a = relay_host(self.redis.port, workers=1)
        self.addCleanup(a.stop)
        wait_for_state(a, "connected")
        first, second = self.connect(a, "u3"), self.connect(a, "u3")
        # One subscription per worker holding the sender, however many connections it has.
        self.wait_subscribers("u3", 1)
        first.close()
        self.assertEqual(first.expect_close()[0], 1000)
        self.assertTrue(first.eof())
        # The second connection still holds it: what B sends reaches it.
        self.assertEqual(send_via(b, "u3", "still here"), 0)
        self.assertEqual(second.recv(), "still here")
        self.assertEqual(self.subscribers("u3"), 1)
        second.close()
        self.assertEqual(second.expect_close()[0], 1000)
        self.wait_subscribers("u3", 0)

    def test_redis_down_sends_stay_on_their_host_and_come_back_with_redis(self):
        a, b = self.hosts(2)
        on_a = self.connect(a, "u4")
        self.wait_subscribers("u4", 1)
        self.redis.stop()
        wait_for_state(a, "reconnecting")
        wait_for_state(b, "reconnecting")
        # Local sends still go; B's send reaches nobody on A (and does not fail).
        self.assertEqual(send_via(b, "u4", "lost"), 0)
        self.assertEqual(send_via(a, "u4", "local"), 1)
        self.assertEqual(on_a.recv(), "local")
        self.redis.start()
        wait_for_state(a, "connected", timeout=20)
        wait_for_state(b, "connected", timeout=20)
        # The subscription is made again on the new connection.
        self.wait_subscribers("u4", 1)
        self.assertEqual(send_via(b, "u4", "back"), 0)
        self.assertEqual(on_a.recv(), "back")

    def test_added_latency_of_a_cross_host_delivery(self):
        a, b = self.hosts(2)
        target = self.connect(a, "target")
        local_sender, remote_sender = self.connect(a, "s-a"), self.connect(b, "s-b")
        self.wait_subscribers("target", 1)

        def measure(sender, n):
            times = []
            for i in range(n):
                started = time.perf_counter()
                sender.send("target|%d" % i)
                self.assertEqual(target.recv(), str(i))
                times.append((time.perf_counter() - started) * 1000)
            return times
        measure(local_sender, 50)  # warm up both paths
        measure(remote_sender, 50)
        local, remote = [], []
        for _ in range(5):  # interleaved, so both see the same machine load
            local += measure(local_sender, 200)
            remote += measure(remote_sender, 200)

        def pct(values, p):
            return sorted(values)[min(len(values) - 1, int(len(values) * p))]
        summary = {"local": (pct(local, 0.5), pct(local, 0.99)),
                   "cross_host": (pct(remote, 0.5), pct(remote, 0.99))}
        print("\ncross-host delivery (client message -> on_message -> sb.connections.send -> "
              "client), %d each, ms: same host p50 %.3f p99 %.3f; other host p50 %.3f p99 %.3f; "
              "added p50 %.3f" % (len(local), summary["local"][0], summary["local"][1],
                                  summary["cross_host"][0], summary["cross_host"][1],
                                  summary["cross_host"][0] - summary["local"][0]))
        stats = self.redis.command("INFO", "commandstats", db=0)
        publish = [l for l in stats.splitlines() if l.startswith("cmdstat_publish:")]
        print("Redis: %s" % (publish[0] if publish else "no PUBLISH counted"))
        self.assertTrue(publish, stats)
        self.assertLess(statistics.median(remote), 50 * SLOWER)

    # ---- the socketio channel ----------------------------------------------------------------

    def test_socketio_proactive_message_posted_to_another_host(self):
        a, b = self.hosts(2, socketio_host)
        result = {}
        spec = {"url": "http://127.0.0.1:%d" % a.port, "session_id": "conv", "messages": ["hi"],
                "expect": 2, "timeout": 30000}
        t = threading.Thread(target=lambda: result.update(got=sdk("socketio_check.js", spec,
                                                                  timeout=90)))
        t.start()
        a.wait_for_log("BOT GOT hi 0", timeout=30)
        self.wait_subscribers("conv-0", 1)
        self.assertEqual(proactive(b, "conv-0", "a reminder via B")[0], 202)
        t.join(90)
        (got,) = result["got"]
        self.assertIsNone(got["error"], got)
        self.assertEqual(got["confirm"], "conv-0")
        self.assertIn({"text": "a reminder via B"}, got["replies"])
        self.assertIn({"text": "echo: hi 0 (#1)"}, got["replies"])

    def test_socketio_a_second_tab_on_another_host_gets_the_same_replies(self):
        a, b = self.hosts(2, socketio_host)
        tab1, tab2 = self.engineio(a), self.engineio(b)
        tab1.session("conv-tabs")
        tab2.session("conv-tabs")
        self.wait_subscribers("conv-tabs", 2)
        tab2.say("conv-tabs", "from tab 2")  # the bot runs on B
        reply = ["bot_uttered", {"text": "echo: from tab 2 (#1)"}]
        self.assertEqual(tab2.event(), reply)
        self.assertEqual(tab1.event(), reply)
        tab1.say("conv-tabs", "from tab 1")  # and on A
        reply = ["bot_uttered", {"text": "echo: from tab 1 (#2)"}]
        self.assertEqual(tab1.event(), reply)
        self.assertEqual(tab2.event(), reply)

    def test_socketio_session_moves_to_another_host_when_its_host_dies(self):
        a, b, c = self.hosts(3, socketio_host)
        client = self.engineio(a)
        client.session("conv-move")
        client.say("conv-move", "one")
        self.assertEqual(client.event(), ["bot_uttered", {"text": "echo: one (#1)"}])
        self.wait_subscribers("conv-move", 1)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        # Redis forgets the dead host's subscription with its connection: nothing stale.
        self.wait_subscribers("conv-move", 0)
        client.ws.abort()
        client = self.engineio(b)  # the client reconnects, to another host, same session_id
        client.session("conv-move")
        self.wait_subscribers("conv-move", 1)
        client.say("conv-move", "two")
        self.assertEqual(client.event(), ["bot_uttered", {"text": "echo: two (#2)"}])
        self.assertEqual(proactive(c, "conv-move", "reminder via C")[0], 202)
        self.assertEqual(client.event(), ["bot_uttered", {"text": "reminder via C"}])


if __name__ == "__main__":
    unittest.main()
