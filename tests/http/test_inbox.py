# SPDX-License-Identifier: MIT
"""Nothing acked is lost (docs/multi-host.md "Nothing acked is lost"): with `store:` on Redis, an
async channel's messages are kept in a Redis stream before the platform gets its answer, and
acknowledged (XACK + XDEL) once processed. Checked with real parts: redis-server and two or three
hosts started by the test (as in test_multihost.py), an async channel written here whose sender
records every reply in Redis, and a slow recording bot:

* the normal path leaves the stream empty (XLEN 0, nothing pending) and counts what it did;
* a host killed (SIGKILL) after answering: the survivors claim its entries and run each message
  that it had not finished exactly once (every reply once, none missing), while a slow host that
  is alive keeps its entries (they are renewed) and runs them once itself;
* a claimed entry of a channel that is gone is logged and acknowledged; one delivered too often
  is dropped with an ERROR;
* Redis down: the messages are still processed (without the net: an ERROR line and a counter);
* `inbox: false` keeps nothing; the new `store:` keys are checked.

Skipped, saying why, without redis-server."""
import json
import re
import shutil
import signal
import time
import unittest

from harness import project, run_command
from test_multihost import SLOWER, in_thread, request, wait_until
from test_store_redis import Redis, metric, wait_for_state
from util import QuietHost as Host

REDIS_SERVER = shutil.which("redis-server")
PREFIX = "ib:"
STREAM = PREFIX + "\0inbox"

# An async channel: a request carries several messages of one sender; each reply is recorded in
# Redis by the channel's sender (so a reply sent twice shows twice).
CHANNEL = """\
local sb = require "switchboard"
local c = { name = "queued", async = true }
function c.receive(req)
  local b = req.json
  local out = {}
  for i, m in ipairs(b.messages) do
    out[i] = { sender_id = b.sender, text = m.text, message_id = m.text,
               metadata = { sleep = m.sleep } }
  end
  return out
end
function c.send_text_message(recipient, text)
  sb.log.info("SENT %s %s", recipient, text)
  sb.store.push("replies", text)
end
return c
"""
# The bot records the begin and end of each message in Redis and sleeps in between.
BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  sb.log.info("HANDLING %s %s", msg.sender_id, tostring(msg.text))
  sb.store.push("log", "begin " .. tostring(msg.text))
  sb.sleep(tonumber(msg.metadata and msg.metadata.sleep) or 0.01)
  sb.store.push("log", "end " .. tostring(msg.text))
  out:send_text_message("done " .. tostring(msg.text))
end
return bot
"""
# The same, recording in the log only (for Redis down).
LOG_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  sb.log.info("HANDLING %s %s", msg.sender_id, tostring(msg.text))
  out:send_text_message("done " .. tostring(msg.text))
end
return bot
"""


def endpoints(redis_port, extra="", workers=2):
    return ("server:\n  workers: %d\nbot:\n  script: bot.lua\n"
            "store:\n  url: redis://127.0.0.1:%d/0\n  prefix: '%s'\n%s"
            % (workers, redis_port, PREFIX, extra))


def start_host(redis_port, extra="", bot=BOT, args=()):
    folder = project({"queued.lua": CHANNEL, "bot.lua": bot,
                      "endpoints.yml": endpoints(redis_port, extra),
                      "credentials.yml": "queued.lua:\n"})
    return Host(cwd=folder, args=args)


def post(port, sender, messages):
    """messages: [(text, sleep seconds)]; returns (status, body)."""
    body = json.dumps({"sender": sender,
                       "messages": [{"text": t, "sleep": s} for t, s in messages]})
    return request(port, "POST", "/webhooks/queued/webhook", body,
                   {"Content-Type": "application/json"}, timeout=30)


@unittest.skipUnless(REDIS_SERVER, "redis-server is not installed (Debian: apt-get install "
                                   "redis-server); the inbox stream is not tested")
class InboxTests(unittest.TestCase):
    def setUp(self):
        self.redis = Redis()
        self.addCleanup(self.redis.close)

    def r(self, *args):
        return self.redis.command(*args, db=0)

    def host(self, extra="", **kw):
        h = start_host(self.redis.port, extra, **kw)
        self.addCleanup(self.stopped_cleanly, h)
        return h

    def stopped_cleanly(self, h):
        """A host this test did not kill stops with 0 (under ASan: no leak) and no sanitizer
        report."""
        killed = h.proc.poll() == -signal.SIGKILL
        h.stop(None if killed else 0)
        self.assertNotRegex(h.log(), r"runtime error|Sanitizer")

    def hosts(self, n, extra=""):
        hosts = [self.host(extra) for _ in range(n)]
        for h in hosts:
            wait_for_state(h, "connected")
        return hosts

    def log(self):
        return self.r("LRANGE", PREFIX + "log", "0", "-1")

    def replies(self):
        return self.r("LRANGE", PREFIX + "replies", "0", "-1")

    def pending(self):
        """XPENDING's summary count (0 without the stream or group)."""
        try:
            return self.r("XPENDING", STREAM, "workers")[0]
        except (IndexError, TypeError):
            return 0

    def test_the_normal_path_leaves_the_stream_empty(self):
        h = self.hosts(1)[0]
        texts = []
        for s in range(3):
            msgs = [("n%d-%d" % (s, k), 0.01) for k in range(3)]
            texts += [t for t, _ in msgs]
            status, body = post(h.port, "u%d" % s, msgs)
            self.assertEqual((status, body), (200, b"success"))
        wait_until("every reply", lambda: len(self.replies()) == len(texts))
        self.assertEqual(sorted(self.replies()), sorted("done " + t for t in texts))
        wait_until("every acknowledgement",
                   lambda: metric(h, "switchboard_inbox_acked_total") == len(texts))
        self.assertEqual(self.r("XLEN", STREAM), 0)
        self.assertEqual(self.pending(), 0)
        self.assertEqual(metric(h, "switchboard_inbox_appended_total"), len(texts))
        self.assertEqual(metric(h, "switchboard_inbox_pending"), 0)
        self.assertEqual(metric(h, "switchboard_inbox_claimed_total"), 0)
        self.assertEqual(metric(h, "switchboard_inbox_unprotected_total"), 0)

    def test_the_messages_are_in_the_stream_before_the_answer(self):
        h = self.hosts(1)[0]
        status, _ = post(h.port, "slowpoke", [("kept", 3 * SLOWER)])
        self.assertEqual(status, 200)
        # Answered; the bot still sleeps: the message is in the stream, pending for this host.
        self.assertEqual(self.r("XLEN", STREAM), 1)
        self.assertEqual(self.pending(), 1)
        entry = self.r("XRANGE", STREAM, "-", "+")[0]
        fields = dict(zip(entry[1][::2], entry[1][1::2]))
        self.assertEqual(fields["channel"], "queued")
        message = json.loads(fields["message"])
        self.assertEqual((message["sender_id"], message["text"], message["message_id"],
                          message["input_channel"]), ("slowpoke", "kept", "kept", "queued"))
        self.assertEqual(message["metadata"], {"sleep": 3 * SLOWER})
        self.assertRegex(fields["request"], r"^[0-9a-f-]{8,}")
        self.assertEqual(metric(h, "switchboard_inbox_pending"), 1)
        wait_until("the reply", lambda: self.replies() == ["done kept"])
        wait_until("the acknowledgement", lambda: self.r("XLEN", STREAM) == 0)
        self.assertEqual(self.pending(), 0)

    def test_a_killed_host_leaves_its_messages_to_the_others_each_run_once(self):
        extra = "  claim_idle: 1\n  claim_interval: 0.5\n"
        a, b, c = self.hosts(3, extra)
        # s0's messages end quickly on A (acknowledged before the kill: not run again); the
        # others' first message runs long, so A is slow but alive for several claim_idle.
        long = 4.0 * SLOWER
        requests = {"s0": [("s0-a", 0.01), ("s0-b", 0.01)]}
        for s in ("s1", "s2", "s3"):
            requests[s] = [(s + "-a", long), (s + "-b", 0.05), (s + "-c", 0.05)]
        for sender, msgs in requests.items():
            self.assertEqual(post(a.port, sender, msgs)[0], 200)
        everything = [t for msgs in requests.values() for t, _ in msgs]
        self.assertEqual(metric(a, "switchboard_inbox_appended_total"), len(everything))
        wait_until("s0 done on A", lambda: {"end s0-a", "end s0-b"} <= set(self.log()))
        wait_until("s0 acknowledged",
                   lambda: metric(a, "switchboard_inbox_acked_total") == 2)
        # A renews its entries: nobody claims them while it runs, for three claim_idle.
        time.sleep(3.0)
        self.assertNotIn("end s1-a", self.log(), "the long messages still run on A")
        for h in (a, b, c):
            self.assertEqual(metric(h, "switchboard_inbox_claimed_total"), 0, h.log())
        self.assertEqual(self.pending(), 9)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        wait_until("every message to end", lambda: all(
            "end " + t in self.log() for t in everything), 30)
        wait_until("the stream to empty", lambda: self.r("XLEN", STREAM) == 0, 30)
        time.sleep(1.5)  # a duplicate would show by now (three claim rounds)
        log, replies = self.log(), self.replies()
        for t in everything:
            self.assertEqual(log.count("end " + t), 1, (t, log))
            self.assertEqual(replies.count("done " + t), 1, (t, replies))
        self.assertEqual(len(replies), len(everything))
        # Each sender's messages in order on the survivors (the first ones began again there).
        for s in ("s1", "s2", "s3"):
            ends = [x for x in log if x.startswith("end " + s)]
            self.assertEqual(ends, ["end %s-a" % s, "end %s-b" % s, "end %s-c" % s])
            self.assertEqual(log.count("begin %s-a" % s), 2, log)  # A began it, died
        claimed = sum(metric(h, "switchboard_inbox_claimed_total") for h in (b, c))
        self.assertEqual(claimed, 9)
        acked = sum(metric(h, "switchboard_inbox_acked_total") for h in (b, c))
        self.assertEqual(acked, 9)
        self.assertEqual(self.pending(), 0)
        for h in (b, c):
            self.assertEqual(metric(h, "switchboard_inbox_pending"), 0)
            self.assertEqual(metric(h, "switchboard_inbox_taken_over_total"), 0)
        self.assertTrue(any(re.search(r"claimed \d+ inbox entr", h.log()) for h in (b, c)))

    def add_stray(self, channel, message, consumer="a-host-that-died", retries=None):
        """An entry read by a consumer that is gone, as a host that died leaves it."""
        self.r("XGROUP", "CREATE", STREAM, "workers", "0", "MKSTREAM")
        entry = self.r("XADD", STREAM, "*", "channel", channel, "request", "req-stray",
                       "message", json.dumps(message))
        self.r("XREADGROUP", "GROUP", "workers", consumer, "COUNT", "100", "STREAMS", STREAM, ">")
        if retries is not None:
            self.r("XCLAIM", STREAM, "workers", consumer, "0", entry, "RETRYCOUNT", str(retries))
        return entry

    def test_a_claimed_entry_runs_through_its_channel_and_one_of_a_gone_channel_is_acked(self):
        ok = self.add_stray("queued", {"sender_id": "orphan", "text": "left", "message_id": "m1",
                                       "input_channel": "queued"})
        gone = self.add_stray("telex", {"sender_id": "orphan", "text": "x", "message_id": "m2"})
        h = self.host("  claim_idle: 0.2\n  claim_interval: 0.3\n")
        wait_until("the claimed message's reply", lambda: self.replies() == ["done left"])
        wait_until("the stream to empty", lambda: self.r("XLEN", STREAM) == 0)
        self.assertEqual(self.log(), ["begin left", "end left"])
        h.wait_for_log(r"WARNING .*req-stray.*claimed inbox entry %s is for the channel 'telex'"
                       % re.escape(gone))
        h.wait_for_log(r"req-stray.*running message m1 of sender orphan from inbox entry %s"
                       % re.escape(ok))
        self.assertEqual(metric(h, "switchboard_inbox_claimed_total"), 2)
        self.assertEqual(self.pending(), 0)
        # The dead host's consumer, idle with nothing pending, is removed.
        wait_until("the dead consumer's removal", lambda: "a-host-that-died" not in str(
            self.r("XINFO", "CONSUMERS", STREAM, "workers")))

    def test_an_entry_delivered_too_often_is_dropped_with_an_error(self):
        entry = self.add_stray("queued", {"sender_id": "poison", "text": "boom",
                                          "message_id": "m3"}, retries=5)
        h = self.host("  claim_idle: 0.2\n  claim_interval: 0.3\n")
        h.wait_for_log(r"ERROR .*inbox entry %s \(channel queued\) was delivered 6 times"
                       % re.escape(entry), timeout=10)
        self.assertEqual(self.r("XLEN", STREAM), 0)
        self.assertEqual(self.log(), [])
        self.assertEqual(metric(h, "switchboard_inbox_dropped_total"), 1)

    def test_redis_down_the_messages_are_still_processed(self):
        h = self.host(bot=LOG_BOT)
        wait_for_state(h, "connected")
        self.redis.stop()
        wait_for_state(h, "reconnecting")
        status, _ = post(h.port, "nobody", [("still", 0), ("here", 0)])
        self.assertEqual(status, 200)
        h.wait_for_log(r"HANDLING nobody still")
        h.wait_for_log(r"HANDLING nobody here")
        h.wait_for_log(r"ERROR .*2 messages of an async channel could not be kept in the inbox "
                       r"stream \(store unavailable: .*\): processed without it")
        self.assertEqual(metric(h, "switchboard_inbox_unprotected_total"), 2)
        self.assertEqual(metric(h, "switchboard_inbox_appended_total"), 0)
        # Back: kept again.
        self.redis.start()
        wait_for_state(h, "connected", timeout=20)
        self.assertEqual(post(h.port, "nobody", [("again", 0)])[0], 200)
        h.wait_for_log(r"HANDLING nobody again")
        wait_until("the acknowledgement",
                   lambda: metric(h, "switchboard_inbox_acked_total") == 1)
        self.assertEqual(self.r("XLEN", STREAM), 0)

    def test_inbox_false_keeps_nothing(self):
        h = self.hosts(1, "  inbox: false\n")[0]
        self.assertEqual(post(h.port, "u", [("plain", 0.01)])[0], 200)
        wait_until("the reply", lambda: self.replies() == ["done plain"])
        self.assertEqual(self.r("EXISTS", STREAM), 0)
        self.assertEqual(metric(h, "switchboard_inbox_appended_total"), 0)


class InboxKeysTests(unittest.TestCase):
    def check(self, extra):
        folder = project({"queued.lua": CHANNEL, "bot.lua": BOT,
                          "endpoints.yml": endpoints(6379, extra),
                          "credentials.yml": "queued.lua:\n"})
        return run_command(["check"], cwd=folder)

    def test_inbox_claim_interval_and_claim_idle_are_checked(self):
        r = self.check("  inbox: true\n  claim_interval: 2.5\n  claim_idle: 60\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.check("  inbox: 1\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("store: 'inbox' must be true or false, not an integer", r.stderr)
        r = self.check("  claim_idle: 0.05\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("endpoints.yml:8:15: store: 'claim_idle' must be at least 0.1 seconds",
                      r.stderr)
        r = self.check("  claim_interval: 4000\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("store: 'claim_interval' must be a number of seconds greater than 0 and "
                      "at most 3600", r.stderr)
        r = self.check("  claim_intervall: 3\n")
        self.assertIn("known keys: url, password, username, prefix, tls, connect_timeout, "
                      "command_timeout, order, order_lease, inbox, claim_interval, claim_idle",
                      r.stderr)


if __name__ == "__main__":
    unittest.main()
