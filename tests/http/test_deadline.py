# SPDX-License-Identifier: MIT
"""The per-message deadline (docs/contract.md §5, `--response-timeout`): the answer comes when the
deadline expires with what was collected, the error is logged with the request id, the sender's turn
is released, streams end, and clients that go away do not hurt the host."""
import functools
import json
import socket
import time
import unittest

from harness import project
from standins import (Reply, StandIn, error_line, http_bot_endpoints, in_threads,
                      lua_bot_endpoints, post_timed)
from util import QuietHost as Host, final_log, post_stream

WEBHOOK = "/webhooks/rest/webhook"

# "quick" answers at once; anything else sends "first", waits 3 s, then sends "second".
LUA_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local t = msg.text
  if t == "quick" then
    out:send_text_message("quick answer")
    return
  end
  out:send_text_message("first")
  if t == "catch" then
    local ok, err = pcall(sb.sleep, 3)
    sb.log.info("CAUGHT ok=%s err=%s", tostring(ok), tostring(err))
    sb.sleep(3)
  elseif t == "catchmany" then
    for i = 1, 100 do pcall(sb.sleep, 3) end
    local res, err = pcall(sb.http.request, { url = "http://127.0.0.1:9/" })
    sb.log.info("CAUGHT MANY")
  else
    sb.sleep(3)
  end
  out:send_text_message("second")
end
return bot
"""

TIMEOUT_ARGS = ["--response-timeout", "1"]


def assert_about_one_second(test, took):
    test.assertGreater(took, 0.8, "answered before the 1 s response timeout")
    test.assertLess(took, 2.2, "answered long after the 1 s response timeout (the bot waits 3 s)")


class LuaBotDeadlineTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.host = Host(args=TIMEOUT_ARGS, cwd=project({"endpoints.yml": lua_bot_endpoints(),
                                                        "bot.lua": LUA_BOT}))

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()

    def post(self, sender, text):
        return post_timed(self.host, WEBHOOK, {"sender": sender, "message": text})

    def test_answer_after_the_deadline_with_what_was_collected_and_the_turn_is_released(self):
        # The same sender's next message waits for the slow one: it must go when the deadline
        # releases the turn (~1 s), not when the bot would have finished (3 s).
        def later_quick():
            time.sleep(0.2)
            return self.post("dl-a", "quick")
        slow, quick = in_threads([functools.partial(self.post, "dl-a", "slow"), later_quick])
        status, headers, body, took = slow
        self.assertEqual(status, 200, body)
        self.assertEqual(body, [{"recipient_id": "dl-a", "text": "first"}])
        assert_about_one_second(self, took)
        error_line(self.host, headers["x-request-id"], "response timeout")

        status, _, body, took = quick
        self.assertEqual((status, body), (200, [{"recipient_id": "dl-a", "text": "quick answer"}]))
        self.assertLess(took, 1.8, "the waiting message did not get the turn at the deadline")

        status, _, body, took = self.post("dl-a", "quick")
        self.assertEqual((status, body), (200, [{"recipient_id": "dl-a", "text": "quick answer"}]))
        self.assertLess(took, 0.8)

    def test_stream_ends_at_the_deadline(self):
        resp, data, took = post_stream(self.host, WEBHOOK,
                                       {"sender": "dl-stream", "message": "slow"})
        self.assertEqual(resp.status, 200)
        self.assertEqual([json.loads(x) for x in data.split("\n") if x.strip()],
                         [{"recipient_id": "dl-stream", "text": "first"}])
        assert_about_one_second(self, took)
        error_line(self.host, resp.getheader("X-Request-Id"), "response timeout")

    def test_a_bot_that_catches_the_timeout_and_sleeps_again_still_ends(self):
        for text in ("catch", "catchmany"):
            status, headers, body, took = self.post("dl-" + text, text)
            self.assertEqual(status, 200, body)
            self.assertEqual(body[0], {"recipient_id": "dl-" + text, "text": "first"})
            assert_about_one_second(self, took)
            if text == "catch":
                self.host.wait_for_log(r"\[%s\] CAUGHT ok=false err=.*response timeout"
                                       % headers["x-request-id"])
                error_line(self.host, headers["x-request-id"], "response timeout")
            status, _, body, took = self.post("dl-" + text, "quick")
            self.assertEqual(body, [{"recipient_id": "dl-" + text, "text": "quick answer"}])
            self.assertLess(took, 0.8)


# "busy": burns 0.9 s of CPU without yielding (its worker cannot fire timers meanwhile).
BUSY_BOT = """\
local bot = {}
function bot.handle(msg, out)
  if msg.text == "busy" then
    local t = os.clock()
    while os.clock() - t < 0.9 do end
  end
  out:send_text_message("done " .. msg.text)
end
return bot
"""


class GateDeadlineTests(unittest.TestCase):
    def test_deadline_while_waiting_for_the_senders_turn(self):
        # Two workers: the messages queued behind the busy one may land on the other worker,
        # whose timers still run, so their deadline (0.5 s) expires while they wait for the turn.
        # Whatever the distribution, every request is answered and the turn is not lost.
        with Host(args=["--response-timeout", "0.5"],
                  cwd=project({"endpoints.yml": "server:\n  workers: 2\n  lua_cpu_budget: 5\n"
                                                "bot:\n  script: bot.lua\n",
                               "bot.lua": BUSY_BOT})) as host:
            calls = [functools.partial(post_timed, host, WEBHOOK, {"sender": "g", "message": t})
                     for t in ("busy", "w1", "w2", "w3", "w4")]
            results = in_threads(calls, stagger=0.05)
            for r in results:
                self.assertNotIsInstance(r, Exception)
                self.assertEqual(r[0], 200, r)
                self.assertLess(r[3], 4.0, r)
            self.assertEqual(results[0][2], [{"recipient_id": "g", "text": "done busy"}])
            for text, r in zip(("w1", "w2", "w3", "w4"), results[1:]):
                self.assertIn(r[2], ([], [{"recipient_id": "g", "text": "done " + text}]), r)
            status, _, body, took = post_timed(host, WEBHOOK, {"sender": "g", "message": "after"})
            self.assertEqual((status, body), (200, [{"recipient_id": "g", "text": "done after"}]))
            self.assertLess(took, 0.8, "the sender's turn was lost")


class DisconnectTests(unittest.TestCase):
    def test_clients_that_go_away_before_the_answer(self):
        # The rest channel's format, logging each request it hands on: a client goes away only
        # once the host has its request (no guess at how long that takes).
        logged = ('local sb = require "switchboard"\n'
                  'local c = { name = "logged" }\n'
                  'function c.receive(req)\n'
                  '  sb.log.info("RECEIVED %s", req.json.message)\n'
                  '  return { { sender_id = req.json.sender, text = req.json.message } }\n'
                  'end\nreturn c\n')
        host = Host(args=TIMEOUT_ARGS, cwd=project({"endpoints.yml": lua_bot_endpoints(),
                                                    "bot.lua": LUA_BOT, "logged.lua": logged,
                                                    "credentials.yml": "rest:\nlogged.lua:\n"}))
        try:
            for i, query in enumerate(("", "?stream=true")):
                body = json.dumps({"sender": "gone", "message": "slow-%d" % i}).encode()
                sock = socket.create_connection(("127.0.0.1", host.port), timeout=5)
                sock.sendall(b"POST /webhooks/logged/webhook" + query.encode() + b" HTTP/1.1\r\n"
                             b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                host.wait_for_log(r"RECEIVED slow-%d" % i, timeout=10)
                sock.close()
            # The abandoned messages free the sender's turn at their deadlines, 1 s after they
            # asked for it; the quick one's own deadline runs from when it asks. This gap is its
            # margin (a scenario, not a wait for readiness).
            time.sleep(0.4)
            # the same sender, while the abandoned ones still hold or wait for its turn
            status, _, body, took = post_timed(host, WEBHOOK, {"sender": "gone", "message": "quick"})
            self.assertEqual((status, body), (200, [{"recipient_id": "gone", "text": "quick answer"}]))
            self.assertLess(took, 3.5)
            time.sleep(0.5)  # past every deadline
            self.assertIsNone(host.proc.poll(), "the host died")
            self.assertEqual(host.request("GET", "/")[0], 200)
            status, _, body = host.post_json(WEBHOOK, {"sender": "other", "message": "quick"})
            self.assertEqual((status, body), (200, [{"recipient_id": "other", "text": "quick answer"}]))
        finally:
            log = final_log(host)  # asserts exit code 0
        self.assertNotIn("Sanitizer", log)


class HttpBotDeadlineTests(unittest.TestCase):
    def test_http_bot_slower_than_the_deadline(self):
        def respond(rec):
            body = rec.json or {}
            if body.get("message") == "quick":
                return Reply(json=[{"text": "quick answer"}])
            return Reply(json=[{"text": "too late"}], delay=3.0)
        with StandIn(respond) as bot, \
                Host(args=TIMEOUT_ARGS, cwd=project({"endpoints.yml": http_bot_endpoints(
                    bot.url("/bot"), timeout=10)})) as host:
            def later_quick():
                time.sleep(0.2)
                return post_timed(host, WEBHOOK, {"sender": "hb", "message": "quick"})
            slow, quick = in_threads([
                functools.partial(post_timed, host, WEBHOOK, {"sender": "hb", "message": "slow"}),
                later_quick])
            status, headers, body, took = slow
            self.assertEqual((status, body), (200, []))
            assert_about_one_second(self, took)
            error_line(host, headers["x-request-id"], "response timeout")
            status, _, body, took = quick
            self.assertEqual((status, body), (200, [{"recipient_id": "hb", "text": "quick answer"}]))
            self.assertLess(took, 1.8)
            status, _, body, took = post_timed(host, WEBHOOK, {"sender": "hb", "message": "quick"})
            self.assertEqual((status, body), (200, [{"recipient_id": "hb", "text": "quick answer"}]))
            self.assertLess(took, 0.8)


if __name__ == "__main__":
    unittest.main()
