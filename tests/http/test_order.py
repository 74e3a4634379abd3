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


# A bot that does not wait: one message runs from BEGIN to END in one step of its worker, so the
# sender's queued messages pass the turn from one to the next without the loop in between. Each
# answer names the Lua state (so the worker) that handled it; "hold" keeps the turn a while.
BUSY_SENDER_BOT = """\
local sb = require "switchboard"
local bot = {}
local state = tostring({})
function bot.handle(msg, out)
  sb.log.info("BEGIN %%s", msg.text)
  if msg.text == "hold" then
    sb.sleep(%s)
  end
  sb.log.info("END %%s", msg.text)
  out:send_custom_json({ text = msg.text, state = state })
end
return bot
"""
HOLD = 3.0 * SLOWER


def settled_log(host, ends, timeout=10.0):
    """The host's log once it has `ends` END lines (an answer can reach the client before the
    harness has read the line the bot logged before it)."""
    deadline = time.monotonic() + timeout
    while len(re.findall(r"\bEND \S+", host.log())) < ends and time.monotonic() < deadline:
        time.sleep(0.02)
    return host.log()


def bot_spans(test, log):
    """The texts of the BEGIN/END lines in log order, checked to alternate BEGIN x, END x: one
    message inside the bot at a time (a line is one write, and the gate orders the workers)."""
    marks = re.findall(r"\b(BEGIN|END) (\S+)", log)
    for i in range(0, len(marks) - 1, 2):
        test.assertEqual((marks[i][0], marks[i + 1][0], marks[i + 1][1]), ("BEGIN", "END", marks[i][1]),
                         "two messages inside the bot at once: %r" % marks[i:i + 4])
    test.assertEqual(len(marks) % 2, 0, "a message without its END: %r" % marks[-3:])
    return [text for kind, text in marks if kind == "BEGIN"]


def wait_until_in_flight(host, count, timeout=10.0):
    """Wait until /metrics counts `count` messages between message_begin and message_end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = host.request("GET", "/metrics")[2].decode()
        m = re.search(r"^switchboard_bot_messages_in_flight (\S+)$", body, re.M)
        if m and float(m.group(1)) >= count:
            return
        time.sleep(0.005)
    raise AssertionError("fewer than %d messages in flight after %g s" % (count, timeout))


class BusySenderTests(unittest.TestCase):
    """One sender's messages on both workers at once: they queue behind each other on either worker,
    and the turn passes between the workers and along each worker's own run of them."""

    def start(self):
        host = Host(cwd=project(dict(CREDENTIALS, **{
            "endpoints.yml": lua_bot_endpoints(workers=2),
            "bot.lua": BUSY_SENDER_BOT % HOLD})))
        self.addCleanup(host.stop)
        return host

    def test_queued_on_both_workers_in_arrival_order(self):
        host = self.start()
        held = []
        holder = threading.Thread(target=lambda: held.append(post(host, "busy", "hold")),
                                  daemon=True)
        holder.start()
        host.wait_for_log(r"BEGIN hold\b", timeout=10)
        texts = ["m%02d" % i for i in range(24)]
        results = [None] * len(texts)
        threads = []
        for i, text in enumerate(texts):
            threads.append(threading.Thread(
                target=lambda i=i: results.__setitem__(i, post(host, "busy", texts[i])),
                daemon=True))
            threads[-1].start()
            # The gauge counts a message from just before it takes its place in the queue (the
            # RECEIVED line comes earlier, before the pipeline's own steps): the next one is sent
            # once this one is in line, so the order they are sent is the arrival order.
            wait_until_in_flight(host, i + 2)
        for t in threads:
            t.join(60)
        holder.join(60)
        self.assertEqual(held[0][0], 200, held)
        log = settled_log(host, 1 + len(texts))
        self.assertLess(log.rfind("RECEIVED m23"), log.find("END hold"),
                        "every message was to arrive while the first held the turn")
        states = set()
        for text, result in zip(texts, results):
            self.assertEqual(result[0], 200, result)
            self.assertEqual(result[2][0]["custom"]["text"], text, result)
            states.add(result[2][0]["custom"]["state"])
        self.assertEqual(len(states), 2, "the messages were to be handled by both workers")
        self.assertEqual(bot_spans(self, log), ["hold"] + texts, "bot order")

    def test_many_connections_at_once(self):
        host = self.start()
        per_client = 15

        def client(c):
            answers = []
            for i in range(per_client):
                status, _, body = post(host, "busy", "c%02d-%02d" % (c, i))
                answers.append((status, body))
            return answers
        results = in_threads([functools.partial(client, c) for c in range(16)])
        states = set()
        for c, answers in enumerate(results):
            self.assertIsInstance(answers, list, answers)
            for i, (status, body) in enumerate(answers):
                self.assertEqual(status, 200, body)
                self.assertEqual(body[0]["custom"]["text"], "c%02d-%02d" % (c, i), body)
                states.add(body[0]["custom"]["state"])
        self.assertEqual(len(states), 2, "the messages were to be handled by both workers")
        handled = bot_spans(self, settled_log(host, 16 * per_client))
        self.assertEqual(sorted(handled), sorted("c%02d-%02d" % (c, i) for c in range(16)
                                                 for i in range(per_client)))
        for c in range(16):  # each client sent its next message once the last was answered
            mine = [t for t in handled if t.startswith("c%02d-" % c)]
            self.assertEqual(mine, sorted(mine))


if __name__ == "__main__":
    unittest.main()
