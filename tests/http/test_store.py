# SPDX-License-Identifier: MIT
"""sb.store with the embedded backend (docs/lua-api.md, "sb.store"): one store shared by every
worker, string and JSON values, add / incr / del / expire with TTLs, lists with a pop that waits
for a push from any worker, errors as nil and a message, a size cap with eviction counted in
/metrics, and the same store in `switchboard test` (one per case file)."""
import json
import re
import threading
import time
import unittest

from harness import project
from util import QuietHost as Host, run_to_exit

# Each route does one call and answers with what it returned, so a test sees the Lua values.
CHANNEL = """\
local sb = require "switchboard"
local store = sb.store
local c = { name = "kv" }
local function answer(...)
  local n = select("#", ...)
  local out = { n = n }
  for i = 1, n do
    local v = select(i, ...)
    out[i] = v == nil and sb.json.null or v
  end
  return { json = out }
end
c.routes = {
  ["POST /set"] = function(req) return answer(store.set(req.json.key, req.json.value, req.json.ttl)) end,
  ["POST /add"] = function(req) return answer(store.add(req.json.key, req.json.value, req.json.ttl)) end,
  ["POST /get"] = function(req) return answer(store.get(req.json.key)) end,
  ["POST /incr"] = function(req) return answer(store.incr(req.json.key, req.json.by)) end,
  ["POST /del"] = function(req) return answer(store.del(req.json.key)) end,
  ["POST /expire"] = function(req) return answer(store.expire(req.json.key, req.json.ttl)) end,
  ["POST /push"] = function(req) return answer(store.push(req.json.key, req.json.value)) end,
  ["POST /pop"] = function(req) return answer(store.pop(req.json.key, req.json.wait)) end,
  ["POST /length"] = function(req) return answer(store.length(req.json.key)) end,
  ["POST /bad"] = function(req) return answer(pcall(store.set, req.json.key, print)) end,
}
return c
"""


def serve(workers=2, server=""):
    folder = project({"kv.lua": CHANNEL, "credentials.yml": "kv.lua:\n",
                      "endpoints.yml": "server:\n  workers: %d\n%s" % (workers, server)})
    return Host(cwd=folder)


def values(host, op, **args):
    status, _, body = host.request("POST", "/webhooks/kv/" + op, json.dumps(args),
                                   {"Content-Type": "application/json"}, timeout=20)
    if status != 200:
        raise AssertionError("%s: %d %s" % (op, status, body))
    result = json.loads(body)
    n = result.pop("n")
    if isinstance(result, dict) and all(k.isdigit() for k in result):
        return [result.get(str(i + 1)) for i in range(n)]
    return result


class StoreTests(unittest.TestCase):
    def test_values_ttls_and_counters_are_shared_by_every_worker(self):
        with serve() as host:
            self.assertEqual(values(host, "set", key="s", value="text"), [True])
            self.assertEqual(values(host, "set", key="t", value={"a": [1, 2], "b": None}), [True])
            self.assertEqual(values(host, "set", key="odd", value="\u0001starts with the marker"),
                             [True])
            for _ in range(6):  # new connections: both workers answer
                self.assertEqual(values(host, "get", key="s"), ["text"])
                self.assertEqual(values(host, "get", key="t"), [{"a": [1, 2], "b": None}])
            self.assertEqual(values(host, "get", key="odd"), ["\u0001starts with the marker"])
            self.assertEqual(values(host, "get", key="none"), [None])
            self.assertEqual(values(host, "add", key="once", value="1", ttl=60), [True])
            self.assertEqual(values(host, "add", key="once", value="2", ttl=60), [False])
            self.assertEqual(values(host, "get", key="once"), ["1"])
            self.assertEqual([values(host, "incr", key="n")[0] for _ in range(5)], [1, 2, 3, 4, 5])
            self.assertEqual(values(host, "incr", key="n", by=-10), [-5])
            self.assertEqual(values(host, "get", key="n"), ["-5"])
            self.assertEqual(values(host, "incr", key="t"),
                             [None, "the value is not an integer (or the sum overflows)"])
            self.assertEqual(values(host, "del", key="s"), [True])
            self.assertEqual(values(host, "del", key="s"), [False])
            self.assertEqual(values(host, "set", key="brief", value="x", ttl=0.3), [True])
            self.assertEqual(values(host, "expire", key="once", ttl=0.3), [True])
            self.assertEqual(values(host, "expire", key="none", ttl=5), [False])
            time.sleep(0.5)
            self.assertEqual(values(host, "get", key="brief"), [None])
            self.assertEqual(values(host, "add", key="once", value="again"), [True])
            ok, err = values(host, "bad", key="k")
            self.assertFalse(ok)
            self.assertIn("a value is a string, or a table, number or boolean", err)

    def test_a_pop_waits_for_a_push_from_any_worker(self):
        with serve() as host:
            self.assertEqual(values(host, "push", key="q", value="a"), [1])
            self.assertEqual(values(host, "push", key="q", value={"n": 2}), [2])
            self.assertEqual(values(host, "length", key="q"), [2])
            self.assertEqual(values(host, "pop", key="q"), ["a"])
            self.assertEqual(values(host, "pop", key="q"), [{"n": 2}])
            self.assertEqual(values(host, "pop", key="q"), [None])
            started = time.monotonic()
            self.assertEqual(values(host, "pop", key="q", wait=0.3), [None])
            self.assertGreaterEqual(time.monotonic() - started, 0.28)
            self.assertEqual(values(host, "get", key="q"), [None])  # an emptied list is gone
            for i in range(6):  # the waiting pop and the push often land on different workers
                got = {}

                def wait():
                    got["value"] = values(host, "pop", key="w%d" % i, wait=10)
                    got["at"] = time.monotonic()

                t = threading.Thread(target=wait)
                t.start()
                time.sleep(0.2)
                pushed_at = time.monotonic()
                self.assertEqual(values(host, "push", key="w%d" % i, value="v%d" % i), [0])
                t.join(10)
                self.assertEqual(got["value"], ["v%d" % i])
                self.assertLess(got["at"] - pushed_at, 2.0)
            # Two waiters: first come, first served.
            results = []
            threads = [threading.Thread(target=lambda: results.append(
                values(host, "pop", key="fifo", wait=10)[0])) for _ in range(2)]
            threads[0].start()
            time.sleep(0.2)
            threads[1].start()
            time.sleep(0.2)
            values(host, "push", key="fifo", value="first")
            threads[0].join(10)
            self.assertEqual(results, ["first"])
            values(host, "push", key="fifo", value="second")
            threads[1].join(10)
            self.assertEqual(results, ["first", "second"])

    def test_the_cap_evicts_and_metrics_count_it(self):
        with serve(workers=1, server="  store_max_bytes: 65536\n") as host:
            for i in range(400):
                values(host, "set", key="k%03d" % i, value="x" * 500)
            self.assertEqual(values(host, "get", key="k000"), [None])  # the oldest went first
            self.assertEqual(values(host, "get", key="k399"), ["x" * 500])
            body = host.request("GET", "/metrics")[2].decode()
            evictions = float(re.search(r"^switchboard_store_evictions_total (\S+)$", body,
                                        re.M).group(1))
            used = float(re.search(r"^switchboard_store_bytes (\S+)$", body, re.M).group(1))
            self.assertGreater(evictions, 0)
            self.assertLessEqual(used, 65536)
            self.assertIn("switchboard_store_max_bytes 65536", body)
            self.assertEqual(values(host, "set", key="big", value="y" * 70000),
                             [None, "the value is too big for the store"])

    def test_a_repeated_delivery_is_answered_once_on_any_worker(self):
        # util.first_delivery: a platform retry (the same id, on any worker) is acknowledged and
        # not handed to the bot again; a message without an id always goes.
        channel = """\
local util = require "switchboard.channel"
local c = { name = "retry" }
function c.receive(req)
  if not util.first_delivery(c.name, req.json.id) then
    return {}, { status = 200, body = "seen" }
  end
  return { { sender_id = "u", text = req.json.text } }
end
return c
"""
        folder = project({"retry.lua": channel, "credentials.yml": "retry.lua:\n",
                          "bot.lua": "local b = {}\nfunction b.handle(m, out) "
                                     "out:send_text_message('got ' .. m.text) end\nreturn b\n",
                          "endpoints.yml": "bot:\n  script: bot.lua\nserver:\n  workers: 2\n"})
        with Host(cwd=folder) as host:
            def post(payload):
                status, _, body = host.request("POST", "/webhooks/retry/webhook",
                                               json.dumps(payload),
                                               {"Content-Type": "application/json"})
                return status, body

            self.assertEqual(post({"id": 7, "text": "a"}),
                             (200, b'[{"recipient_id":"u","text":"got a"}]'))
            for _ in range(6):  # new connections: both workers see the repeat
                self.assertEqual(post({"id": 7, "text": "a"}), (200, b"seen"))
            self.assertEqual(post({"id": 8, "text": "b"})[1],
                             b'[{"recipient_id":"u","text":"got b"}]')
            self.assertEqual(post({"text": "no id"})[1],
                             b'[{"recipient_id":"u","text":"got no id"}]')
            self.assertEqual(post({"text": "no id"})[1],
                             b'[{"recipient_id":"u","text":"got no id"}]')

    def test_switchboard_test_has_a_store_per_case_file(self):
        dedupe = """\
local sb = require "switchboard"
local c = { name = "dedupe" }
function c.receive(req)
  local fresh = sb.store.add("seen:" .. req.json.id, true, 60)
  if not fresh then return {}, { status = 200, body = "duplicate" } end
  return { { sender_id = "u", text = req.json.text } }
end
return c
"""
        cases = """\
credentials:
  ../dedupe.lua:
cases:
  - name: the first delivery reaches the bot
    request: {json: {id: 7, text: hi}}
    expect: {status: 200, messages: [{text: hi}]}
  - name: a retry does not
    request: {json: {id: 7, text: hi}}
    expect: {status: 200, body: duplicate, messages: []}
"""
        folder = project({"dedupe.lua": dedupe, "cases/a.yml": cases, "cases/b.yml": cases})
        result = run_to_exit(["test", "cases"], cwd=folder)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(result.stdout.endswith("4 passed, 0 failed\n"), result.stdout)


if __name__ == "__main__":
    unittest.main()
