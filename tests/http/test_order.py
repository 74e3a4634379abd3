# SPDX-License-Identifier: MIT
"""Per-sender order and no thread per waiting message (docs/contract.md §5): messages of one sender
reach the bot one at a time in arrival order, different senders are handled concurrently, on one
worker and across workers, and waiting on a slow bot parks the message, not a thread."""
import functools
import time
import unittest

from harness import project
import re
import threading

from standins import (Reply, StandIn, built_with_sanitizers, http_bot_endpoints, in_threads,
                      lua_bot_endpoints)
from util import QuietHost as Host

WEBHOOK = "/webhooks/ordered/webhook"
BOT_DELAY = 0.3
# Bounds on wall-clock time are looser where sanitizers slow every request down.
SLOWER = 2.0 if built_with_sanitizers() else 1.0

# The rest channel's format, logging each message as it is handed on. Between that log line and
# the message taking its place in its sender's queue nothing waits, so a test that sends the next
# message only after seeing the line knows the order they arrived in (no stagger, no guess).
ORDERED = """\
local sb = require "switchboard"
local c = { name = "ordered" }
function c.receive(req)
  local body = req.json
  sb.log.info("RECEIVED %s", body.message)
  return { { sender_id = body.sender, text = body.message } }
end
return c
"""
CREDENTIALS = {"credentials.yml": "ordered.lua:\n", "ordered.lua": ORDERED}

SLEEPY_LUA_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local start = sb.now()
  sb.sleep(%s)
  out:send_custom_json({ text = msg.text, start = start, stop = sb.now() })
end
return bot
""" % BOT_DELAY


def slow_echo(rec):
    body = rec.json or {}
    return Reply(json=[{"recipient_id": body.get("sender"), "text": body.get("message")}],
                 delay=BOT_DELAY)


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line for %d" % pid)


def post(host, sender, text):
    return host.post_json(WEBHOOK, {"sender": sender, "message": text})


def post_in_arrival_order(host, sender, texts):
    """POST each text in a thread of its own, each once the host has received the one before;
    returns the results in order."""
    results = [None] * len(texts)

    def run(i):
        try:
            results[i] = post(host, sender, texts[i])
        except Exception as e:  # noqa: BLE001 - reported to the test as the result
            results[i] = e
    threads = []
    for i, text in enumerate(texts):
        threads.append(threading.Thread(target=run, args=(i,), daemon=True))
        threads[-1].start()
        host.wait_for_log(r"RECEIVED %s\b" % re.escape(text), timeout=10)
    for t in threads:
        t.join(60)
    return results


def assert_no_overlap(test, intervals):
    """intervals: (start, end, label) sorted by start; each starts after the previous ended."""
    for (s0, e0, l0), (s1, e1, l1) in zip(intervals, intervals[1:]):
        test.assertGreaterEqual(s1, e0, "%s started before %s had ended: %r" % (l1, l0, intervals))


def max_overlap(intervals):
    """The largest number of intervals (start, end, ...) open at one time."""
    events = sorted([(s, 1) for s, *_ in intervals] + [(e, -1) for _, e, *_ in intervals])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


class HttpBotOrderTests(unittest.TestCase):
    """A stand-in HTTP bot that takes 0.3 s per message."""

    def run_host(self, workers):
        bot = StandIn(slow_echo)
        self.addCleanup(bot.close)
        host = Host(cwd=project(dict(CREDENTIALS, **{"endpoints.yml": http_bot_endpoints(
            bot.url("/bot"), timeout=10, workers=workers)})))
        self.addCleanup(host.stop)
        return bot, host

    def check_one_sender(self, bot, host, sender):
        texts = ["%s-m%d" % (sender, i) for i in range(5)]
        results = post_in_arrival_order(host, sender, texts)
        for text, result in zip(texts, results):
            self.assertEqual(result, (200, result[1], [{"recipient_id": sender, "text": text}]))
        recs = [r for r in bot.snapshot() if (r.json or {}).get("sender") == sender]
        self.assertEqual([r.json["message"] for r in recs], texts, "bot arrival order")
        assert_no_overlap(self, [(r.start, r.replied, r.json["message"]) for r in recs])

    def check_many_senders(self, bot, host, tag):
        senders = ["%s-s%02d" % (tag, i) for i in range(20)]
        t0 = time.monotonic()
        results = in_threads([functools.partial(post, host, s, "hi " + s) for s in senders])
        took = time.monotonic() - t0
        for s, result in zip(senders, results):
            self.assertEqual(result, (200, result[1], [{"recipient_id": s, "text": "hi " + s}]))
        self.assertLess(took, 3.0 * SLOWER, "20 senders x 0.3 s would take 6 s one after another")
        recs = [r for r in bot.snapshot() if (r.json or {}).get("sender") in senders]
        self.assertGreaterEqual(max_overlap([(r.start, r.replied) for r in recs]), 5)

    def test_one_worker(self):
        bot, host = self.run_host(workers=1)
        self.check_one_sender(bot, host, "solo")
        self.check_many_senders(bot, host, "many")

    def test_two_workers(self):
        bot, host = self.run_host(workers=2)
        self.check_one_sender(bot, host, "solo2")
        self.check_many_senders(bot, host, "many2")

    def test_no_thread_per_waiting_message(self):
        bot = StandIn(lambda rec: Reply(json=[{"text": "late"}], delay=1.0))
        self.addCleanup(bot.close)
        host = Host(cwd=project(dict(CREDENTIALS, **{
            "endpoints.yml": http_bot_endpoints(bot.url("/bot"), timeout=10)})))
        self.addCleanup(host.stop)
        self.assertEqual(host.request("GET", "/")[0], 200)
        before = threads_of(host.proc.pid)
        samples = []

        def sample():
            bot.wait_for(40, timeout=10)
            for _ in range(5):
                samples.append(threads_of(host.proc.pid))
                time.sleep(0.05)
            return True
        calls = [functools.partial(post, host, "t%02d" % i, "x") for i in range(50)]
        t0 = time.monotonic()
        results = in_threads(calls + [sample])
        took = time.monotonic() - t0
        self.assertIs(results[-1], True, results[-1])
        for r in results[:-1]:
            self.assertEqual(r[0], 200, r)
            self.assertEqual(r[2], [{"recipient_id": r[2][0]["recipient_id"], "text": "late"}])
        self.assertLessEqual(max(samples), before + 2,
                             "threads before: %d, while 50 messages wait: %r" % (before, samples))
        self.assertLess(took, 6.0 * SLOWER, "50 messages waiting 1 s each on one worker")


class LuaBotOrderTests(unittest.TestCase):
    """The same with a Lua bot that waits in sb.sleep(0.3)."""

    def test_sleeping_lua_bot(self):
        with Host(cwd=project(dict(CREDENTIALS, **{"endpoints.yml": lua_bot_endpoints(),
                                                   "bot.lua": SLEEPY_LUA_BOT}))) as host:
            texts = ["m%d" % i for i in range(5)]
            results = post_in_arrival_order(host, "lua-solo", texts)
            customs = []
            for text, result in zip(texts, results):
                self.assertEqual(result[0], 200, result)
                self.assertEqual(len(result[2]), 1, result)
                custom = result[2][0]["custom"]
                self.assertEqual(custom["text"], text)
                customs.append(custom)
            by_start = sorted(customs, key=lambda c: c["start"])
            self.assertEqual([c["text"] for c in by_start], texts, "bot order")
            assert_no_overlap(self, [(c["start"], c["stop"], c["text"]) for c in by_start])

            senders = ["lua-s%02d" % i for i in range(20)]
            t0 = time.monotonic()
            results = in_threads([functools.partial(post, host, s, s) for s in senders])
            took = time.monotonic() - t0
            self.assertLess(took, 3.0 * SLOWER,
                            "20 senders x 0.3 s would take 6 s one after another")
            spans = []
            for s, result in zip(senders, results):
                self.assertEqual(result[0], 200, result)
                custom = result[2][0]["custom"]
                self.assertEqual(custom["text"], s)
                spans.append((custom["start"], custom["stop"]))
            self.assertGreaterEqual(max_overlap(spans), 5)


if __name__ == "__main__":
    unittest.main()
