# SPDX-License-Identifier: MIT
"""Graceful stop (docs/contract.md §1): SIGINT and SIGTERM stop accepting, let the requests in
flight finish (bounded by the response timeout), then exit 0."""
import http.client
import json
import signal
import threading
import time
import unittest

from harness import project
from reload_util import connection_refused
from util import QuietHost

WEBHOOK = "/webhooks/rest/webhook"

# "slow": sends "one", sleeps 1 s, sends "two". "glacial": sends "one", sleeps 5 s, sends "two".
# Anything else is answered at once.
BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  if msg.text == "stuck" then
    -- A backtracking pattern: one call into C of about 2^28 steps (minutes), which no budget
    -- hook can interrupt.
    sb.log.info("BOT STUCK")
    local n = 28
    local s = ("a"):rep(n)
    s:find(("a?"):rep(n) .. ("a"):rep(n) .. "b")
    out:send_text_message("unstuck")
  elseif msg.text == "slow" or msg.text == "glacial" then
    out:send_text_message("one")
    sb.log.info("BOT SLEEPING for %s", msg.text)
    sb.sleep(msg.text == "slow" and 1 or 5)
    out:send_text_message("two")
  else
    out:send_text_message("quick")
  end
end
return bot
"""


def start(test, workers=2, args=()):
    folder = project({"credentials.yml": "rest:\n", "bot.lua": BOT,
                      "endpoints.yml": "server:\n  workers: %d\nbot:\n  script: bot.lua\n"
                      % workers})
    host = QuietHost(cwd=folder, args=args)
    test.addCleanup(host.stop, None)
    return host


def post_in_thread(host, text, sender="s"):
    """POST in a thread; the returned dict gets status, body and `at` (monotonic) when done."""
    result = {}

    def run():
        try:
            status, _, body = host.request("POST", WEBHOOK, timeout=15,
                                           body={"sender": sender, "message": text})
            result.update(status=status, body=json.loads(body))
        except Exception as e:  # noqa: BLE001 - reported by the test
            result["error"] = e
        result["at"] = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def wait_exit(host, timeout=10):
    """Wait for the process to end: (exit code, monotonic time it was seen ending)."""
    try:
        host.proc.wait(timeout)
    except Exception:  # noqa: BLE001
        host.proc.kill()
        host.proc.wait()
        raise AssertionError("the host did not exit within %s s; log:\n%s" % (timeout, host.log()))
    exited = time.monotonic()
    host.read_whole_log()
    return host.proc.returncode, exited


class GracefulStopTests(unittest.TestCase):
    def in_flight_finishes(self, sig, name):
        host = start(self)
        result = post_in_thread(host, "slow")
        host.wait_for_log("BOT SLEEPING")
        signalled = time.monotonic()
        host.proc.send_signal(sig)
        host.wait_for_log("%s received" % name)
        # A request on a new connection after the signal is not served (it may be refused at
        # once, or accepted by the kernel and dropped when the host exits; see below).
        late = {}

        def late_request():
            try:
                late["answer"] = host.request("GET", "/", timeout=5)[0]
            except (OSError, http.client.HTTPException) as e:
                late["error"] = e
        late_thread = threading.Thread(target=late_request, daemon=True)
        late_thread.start()
        code, exited = wait_exit(host)
        result["thread"].join(5)
        late_thread.join(5)
        self.assertNotIn("error", result, result)
        self.assertEqual((result["status"], result["body"]),
                         (200, [{"recipient_id": "s", "text": "one"},
                                {"recipient_id": "s", "text": "two"}]),
                         "the request in flight was not completed")
        self.assertEqual(code, 0, host.log())
        self.assertLess(exited - signalled, 2.0, "the stop took longer than the request in flight")
        self.assertLessEqual(result["at"], exited + 0.05, "answered after the exit?")
        self.assertNotIn("answer", late, "a connection made after the signal was served")
        self.assertTrue(connection_refused(host.port), "still listening after the exit")

    def test_sigterm_lets_the_request_in_flight_finish(self):
        self.in_flight_finishes(signal.SIGTERM, "SIGTERM")

    def test_sigint_lets_the_request_in_flight_finish(self):
        self.in_flight_finishes(signal.SIGINT, "SIGINT")

    def test_new_connections_are_refused_during_the_drain(self):
        host = start(self)
        result = post_in_thread(host, "slow")
        host.wait_for_log("BOT SLEEPING")
        host.proc.send_signal(signal.SIGTERM)
        host.wait_for_log("SIGTERM received")
        time.sleep(0.1)
        refused = connection_refused(host.port)
        result["thread"].join(5)
        wait_exit(host)
        self.assertTrue(refused, "a new connection was accepted while the host drained")

    def test_streaming_request_in_flight_is_completed(self):
        host = start(self)
        lines, done = [], {}

        def stream():
            conn = host.connection(timeout=10)
            try:
                conn.request("POST", WEBHOOK + "?stream=true",
                             body=json.dumps({"sender": "st", "message": "slow"}),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                done["status"] = resp.status
                done["type"] = resp.getheader("content-type")
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    lines.append(json.loads(line))
                done["complete"] = True
            except Exception as e:  # noqa: BLE001 - reported by the test
                done["error"] = e
            finally:
                conn.close()
        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        host.wait_for_log("BOT SLEEPING")
        time.sleep(0.05)
        signalled = time.monotonic()
        host.proc.send_signal(signal.SIGTERM)
        code, exited = wait_exit(host)
        thread.join(5)
        self.assertNotIn("error", done, done)
        self.assertEqual(done.get("status"), 200)
        self.assertTrue(done["type"].startswith("text/event-stream"), done)
        self.assertTrue(done.get("complete"), "the stream did not end cleanly")
        self.assertEqual(lines, [{"recipient_id": "st", "text": "one"},
                                 {"recipient_id": "st", "text": "two"}])
        self.assertEqual(code, 0, host.log())
        self.assertLess(exited - signalled, 2.0)

    def test_exit_is_immediate_with_nothing_in_flight(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                host = start(self)
                # An idle keep-alive connection does not hold the stop up.
                conn = host.connection()
                conn.request("GET", "/")
                self.assertEqual(conn.getresponse().read()[:10], b"Hello from")
                t0 = time.monotonic()
                host.proc.send_signal(sig)
                code, exited = wait_exit(host)
                conn.close()
                print("\n  %s with nothing in flight: exit after %.0f ms"
                      % (sig.name, (exited - t0) * 1000))
                self.assertEqual(code, 0, host.log())
                self.assertLess(exited - t0, 1.0)

    def test_a_request_longer_than_the_response_timeout_is_cut_at_the_timeout(self):
        host = start(self, args=["--response-timeout", "1"])
        started = time.monotonic()
        result = post_in_thread(host, "glacial")   # would take 5 s
        host.wait_for_log("BOT SLEEPING")
        signalled = time.monotonic()
        host.proc.send_signal(signal.SIGTERM)
        code, exited = wait_exit(host)
        result["thread"].join(5)
        self.assertNotIn("error", result, result)
        # The deadline answers with what was collected, then the host stops.
        self.assertEqual((result["status"], result["body"]),
                         (200, [{"recipient_id": "s", "text": "one"}]))
        self.assertGreater(result["at"] - started, 0.8, "cut before the response timeout")
        self.assertEqual(code, 0, host.log())
        print("\n  stop with a 5 s request and --response-timeout 1: answer after %.2f s, exit "
              "%.2f s after the signal" % (result["at"] - started, exited - signalled))
        self.assertLess(exited - signalled, 1.0 + 1.2, "exit later than timeout + ~1 s")
        self.assertRegex(host.log(), r"ERROR .*response timeout")

    def test_a_worker_stuck_in_a_long_c_call_does_not_hold_up_the_exit(self):
        host = start(self, workers=2, args=["--response-timeout", "3"])
        stuck = post_in_thread(host, "stuck", sender="a")
        host.wait_for_log("BOT STUCK")
        # The stuck worker no longer accepts: this request goes to the other one.
        other = post_in_thread(host, "glacial", sender="b")
        host.wait_for_log("BOT SLEEPING")
        signalled = time.monotonic()
        host.proc.send_signal(signal.SIGTERM)
        code, exited = wait_exit(host, timeout=15)
        other["thread"].join(5)
        stuck["thread"].join(5)
        print("\n  stop with a worker stuck in C and --response-timeout 3: exit %.2f s after the "
              "signal" % (exited - signalled))
        self.assertEqual(code, 0, host.log())
        self.assertLess(exited - signalled, 3 + 1 + 1.5, "exit later than timeout + ~1 s")
        # The healthy worker answered its request (at the message deadline, with what was
        # collected); the stuck worker's connection was cut when the process ended.
        self.assertNotIn("error", other, other)
        self.assertEqual(other["status"], 200)
        self.assertIn("error", stuck, stuck)
        self.assertRegex(host.log(), r"ERROR +worker \d did not stop by the drain deadline")

    def test_a_request_still_running_at_the_deadline_gets_503_with_a_json_body(self):
        # A hook waiting on a platform that does not answer: no message deadline applies, so the
        # drain deadline (response timeout + 1 s) ends it.
        from standins import Reply, StandIn
        with StandIn(Reply(body="late", delay=8)) as platform:
            channel = ('local sb = require "switchboard"\n'
                       'local c = { name = "waits" }\n'
                       'function c.receive(req)\n'
                       '  sb.log.info("CALLING the platform")\n'
                       '  sb.http.request{ url = "%s", timeout = 30 }\n'
                       '  return {}\n'
                       'end\nreturn c\n' % platform.url("/slow"))
            folder = project({"credentials.yml": "waits.lua:\n", "waits.lua": channel,
                              "endpoints.yml": "server:\n  workers: 1\n"})
            host = QuietHost(cwd=folder, args=["--response-timeout", "1"])
            self.addCleanup(host.stop, None)
            result = {}

            def run():
                result["answer"] = host.request("POST", "/webhooks/waits/webhook", b"{}",
                                                timeout=15)
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            host.wait_for_log("CALLING the platform")
            signalled = time.monotonic()
            host.proc.send_signal(signal.SIGTERM)
            code, exited = wait_exit(host)
            thread.join(5)
            status, headers, body = result["answer"]
            self.assertEqual(code, 0, host.log())
            self.assertEqual(status, 503, body)
            self.assertTrue(headers.get("content-type", "").startswith("application/json"))
            self.assertEqual(json.loads(body)["error"], "shutting_down")
            self.assertLess(exited - signalled, 1 + 1 + 1.5)


if __name__ == "__main__":
    unittest.main()
