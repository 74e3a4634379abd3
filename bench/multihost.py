#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The cost of sharing sb.store and keeping each sender's order across hosts (docs/multi-host.md,
docs/performance.md "Several hosts on Redis"), measured in one run on this machine:

  embedded   one host, the embedded store (no Redis), wrk straight to it
  redis/1    one host on Redis with `order: false`, behind HAProxy (Redis store, no order)
  order/1    one host on Redis (order across hosts on), behind HAProxy
  order/2    two hosts on the same Redis, behind HAProxy (round robin)
  order/3    three hosts

Each host runs `workers: 1` with the rest channel and bench/echo_bot.lua. For each set-up, wrk
-t1 -c16 for DURATION seconds with a new sender per request (many senders) and with one sender
for every request (one sender: its messages go one at a time, so this is the turn's round trip),
then -c1 (latency). Printed per set-up: requests/s, p50 and p99, the CPU time per message of the
hosts, of Redis and of HAProxy, and Redis commands per message (INFO commandstats).

Then the wake-up latency: a message of a sender runs on host A (20 ms), the sender's next message
waits on host B; the time from A's bot returning to B's bot starting, over ROUNDS pairs, next to
the same hand-over between two workers of one host with the embedded store.

  bench/multihost.py [DURATION] [ROUNDS]     defaults 5 s and 200
Needs wrk, redis-server and haproxy (Debian packages of those names)."""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client

from benchlib import ROOT, release_binary, wait_port, wrk

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 5
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
HZ = os.sysconf("SC_CLK_TCK")

WAKE_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local began = sb.now()
  if msg.text == "first" then sb.sleep(0.02) end
  out:send_custom_json({ began = began, ended = sb.now() })
end
return bot
"""
ONE_SENDER = """\
wrk.method = "POST"
wrk.path = "/webhooks/rest/webhook"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sender":"one","message":"hello there"}'
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


class Stack:
    """Redis (optional), n hosts, HAProxy (when behind_lb)."""

    def __init__(self, binary, work, hosts, redis, order=True, behind_lb=True, bot=None,
                 workers=1):
        self.procs, self.work = [], work
        self.redis_port = self.redis = None
        if redis:
            self.redis_port = free_port()
            self.redis = self.spawn(["redis-server", "--port", str(self.redis_port), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                     work])
            wait_port(self.redis_port)
        bot_file = os.path.join(work, "bot.lua")
        with open(bot_file, "w") as f:
            f.write(bot or open(os.path.join(ROOT, "bench", "echo_bot.lua")).read())
        with open(os.path.join(work, "credentials.yml"), "w") as f:
            f.write("rest:\n")
        endpoints = "bot:\n  script: %s\nserver:\n  workers: %d\n  connection_limit: 20000\n" % (
            bot_file, workers)
        if redis:
            endpoints += "store:\n  url: redis://127.0.0.1:%d/0\n  order: %s\n" % (
                self.redis_port, "true" if order else "false")
        with open(os.path.join(work, "endpoints.yml"), "w") as f:
            f.write(endpoints)
        self.host_ports, self.hosts = [], []
        for _ in range(hosts):
            port = free_port()
            self.host_ports.append(port)
            self.hosts.append(self.spawn([binary, "run", "-p", str(port), "-i", "127.0.0.1",
                                          "--credentials", os.path.join(work, "credentials.yml"),
                                          "--endpoints", os.path.join(work, "endpoints.yml"),
                                          "--log-level", "error"]))
        for port in self.host_ports:
            wait_port(port)
        self.port, self.lb = self.host_ports[0], None
        if behind_lb:
            self.port = free_port()
            cfg = os.path.join(work, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write("global\n    maxconn 4000\ndefaults\n    mode http\n"
                        "    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n"
                        "frontend fe\n"
                        "    bind 127.0.0.1:%d\n    default_backend sb\nbackend sb\n"
                        "    balance roundrobin\n" % self.port)
                for i, p in enumerate(self.host_ports):
                    f.write("    server h%d 127.0.0.1:%d\n" % (i, p))
            self.lb = self.spawn(["haproxy", "-db", "-f", cfg])
            wait_port(self.port)
        time.sleep(0.5)  # every worker connected to Redis

    def spawn(self, argv):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def redis_calls(self):
        """Commands the hosts sent (EVAL counts once, not the calls of its script)."""
        if not self.redis:
            return 0
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), "INFO", "commandstats"],
                             capture_output=True, text=True).stdout
        calls = {}
        for line in out.splitlines():
            if line.startswith("cmdstat_"):
                name = line.split(":")[0][8:]
                calls[name] = int(line.split("calls=")[1].split(",")[0])
        # what the order's scripts call inside (they are the only scripts of the benchmark)
        inner = sum(calls.get(c, 0) for c in ("incr", "get", "set", "del", "pexpire", "pttl",
                                                "zadd", "zrem", "zcard", "zpopmin", "publish"))
        return sum(calls.values()) - inner - calls.get("info", 0)

    def cpu(self):
        return (sum(cpu_seconds(p.pid) for p in self.hosts),
                cpu_seconds(self.redis.pid) if self.redis else 0.0,
                cpu_seconds(self.lb.pid) if self.lb else 0.0)

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()


def load(stack, conns, script):
    cpu0, calls0 = stack.cpu(), stack.redis_calls()
    r = wrk(stack.port, conns, script, DURATION)
    cpu1, calls1 = stack.cpu(), stack.redis_calls()
    n = max(r.get("requests", 1), 1)
    r["cpu_us"] = [(b - a) * 1e6 / n for a, b in zip(cpu0, cpu1)]
    r["calls"] = (calls1 - calls0) / n
    return r


def post(port, sender, text):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/webhooks/rest/webhook", json.dumps({"sender": sender,
                                                               "message": text}),
                 {"Content-Type": "application/json"})
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body[0]["custom"]


def wake_latency(port_a, port_b):
    """Microseconds from the first message's bot returning (host A) to the second's starting
    (host B), over ROUNDS pairs: median and 99th percentile."""
    samples = []
    for i in range(ROUNDS):
        sender = "wake%d" % i
        got = {}
        t = threading.Thread(target=lambda: got.update(first=post(port_a, sender, "first")))
        t.start()
        time.sleep(0.005)  # the first one runs (20 ms): the second waits for its turn
        second = post(port_b, sender, "second")
        t.join()
        samples.append((second["began"] - got["first"]["ended"]) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main():
    for tool in ("wrk", "redis-server", "redis-cli", "haproxy"):
        if not shutil.which(tool):
            raise SystemExit("bench/multihost.py needs %s (apt-get install %s)" % (
                tool, "redis-server" if tool.startswith("redis") else tool))
    binary = release_binary()
    work = tempfile.mkdtemp(prefix="sb-multihost-")
    unique = os.path.join(ROOT, "bench", "post_unique.lua")
    one = os.path.join(work, "one_sender.lua")
    with open(one, "w") as f:
        f.write(ONE_SENDER)
    setups = [("embedded", 1, False, True, False), ("redis/1", 1, True, False, True),
              ("order/1", 1, True, True, True), ("order/2", 2, True, True, True),
              ("order/3", 3, True, True, True)]
    print("machine: %d CPUs, %s; %g s per measurement, hosts with workers: 1" % (
        os.cpu_count(), os.uname().release, DURATION))
    rows = []
    for name, hosts, redis, order, lb in setups:
        d = tempfile.mkdtemp(dir=work)
        stack = Stack(binary, d, hosts, redis, order, lb)
        try:
            wrk(stack.port, 16, unique, DURATION)  # warm-up (DURATION; keeps the runs comparable)
            for label, conns, script in (("many senders", 16, unique), ("one sender", 16, one),
                                         ("many, -c1", 1, unique)):
                r = load(stack, conns, script)
                rows.append((name, label, r))
        finally:
            stack.close()
    print("\n%-9s %-13s %9s %9s %9s %9s %9s %9s %10s" % (
        "set-up", "load", "req/s", "p50", "p99", "hosts us", "Redis us", "HAProxy", "cmds/msg"))
    for name, label, r in rows:
        print("%-9s %-13s %9.0f %9s %9s %9.1f %9.1f %9.1f %10.2f%s" % (
            name, label, r.get("rps", 0), r.get("50%", "-"), r.get("99%", "-"), r["cpu_us"][0],
            r["cpu_us"][1], r["cpu_us"][2], r["calls"], "  (errors)" if r["errors"] else ""))
    print("(CPU time per message; cmds/msg: commands the hosts sent Redis per message, i.e. "
          "round trips)")

    print("\nwake-up latency: the turn passed by one message, the next one of the sender starts")
    d = tempfile.mkdtemp(dir=work)
    stack = Stack(binary, d, 2, True, True, False, bot=WAKE_BOT)
    try:
        med, p99 = wake_latency(stack.host_ports[0], stack.host_ports[1])
        print("  host A -> host B (Redis, PUBLISH):     median %7.0f us, p99 %7.0f us"
              % (med, p99))
    finally:
        stack.close()
    d = tempfile.mkdtemp(dir=work)
    stack = Stack(binary, d, 1, False, True, False, bot=WAKE_BOT, workers=2)
    try:
        med, p99 = wake_latency(stack.host_ports[0], stack.host_ports[0])
        print("  one host, embedded store (local gate): median %7.0f us, p99 %7.0f us"
              % (med, p99))
    finally:
        stack.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
