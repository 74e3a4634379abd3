#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What keeping an async channel's messages in the inbox stream costs (docs/multi-host.md
"Nothing acked is lost", docs/performance.md "The inbox stream"), measured in one run:

  inbox off   one host on Redis, `inbox: false`, `order: false`: the answer goes at once
  inbox on    the same with `inbox: true` (the default): the answer waits for the messages to
              be in the stream (one EVAL); each is acknowledged after the bot (one EVAL per turn
              of the worker's loop, for every message processed in it)

The channel is async (answered before the bot, as Slack is) and pushes each reply with a sender
that does nothing; the bot is bench/echo_bot.lua. The order across hosts is off in both, so the
difference is the inbox alone. For each set-up: wrk -t1 -c1 (one request at a time: the answer's
latency, whose difference is the XADD round trip) and -c16 (throughput), DURATION seconds each,
a new sender per request. Printed: requests/s, p50 and p99 of the answer, CPU time per message of
the host and of Redis, commands per message (an EVAL counts once).

  bench/inbox.py [DURATION]     default 5 s
Needs wrk and redis-server (Debian packages of those names)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, free_port, release_binary, wait_port, wrk

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 5
HZ = os.sysconf("SC_CLK_TCK")

CHANNEL = """\
local c = { name = "queued", async = true }
function c.receive(req)
  local b = req.json
  return { { sender_id = b.sender, text = b.message } }
end
function c.send_text_message(recipient, text) end
return c
"""
WRK = """\
local counter = 0
local tag = tostring(math.random(1, 1e9))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  return wrk.format(nil, "/webhooks/queued/webhook", nil,
    '{"sender":"s' .. tag .. '-' .. counter .. '","message":"hello there"}')
end
"""


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                          text=True).stdout


def commands(port):
    """Commands the host sent (an EVAL counts once, not the calls of its script)."""
    calls = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            calls[line.split(":")[0][8:]] = int(line.split("calls=")[1].split(",")[0])
    inner = sum(calls.get(c, 0) for c in ("xadd", "xreadgroup", "xack", "xdel", "xpending",
                                            "xclaim", "xautoclaim", "xinfo", "xgroup|create"))
    return sum(calls.values()) - inner - calls.get("info", 0)


def run(binary, work, inbox):
    redis_port, port = free_port(), free_port()
    procs = []

    def spawn(argv):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        return p
    try:
        redis = spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", work])
        wait_port(redis_port)
        for name, text in (("queued.lua", CHANNEL), ("credentials.yml", "queued.lua:\n"),
                           ("bot.lua", open(os.path.join(ROOT, "bench", "echo_bot.lua")).read()),
                           ("endpoints.yml",
                            "bot:\n  script: bot.lua\nserver:\n  workers: 1\n"
                            "store:\n  url: redis://127.0.0.1:%d/0\n  order: false\n"
                            "  inbox: %s\n" % (redis_port, "true" if inbox else "false")),
                           ("post.lua", WRK)):
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        host = spawn([binary, "run", "-p", str(port), "-i", "127.0.0.1", "--log-level", "error",
                      "--credentials", os.path.join(work, "credentials.yml"),
                      "--endpoints", os.path.join(work, "endpoints.yml")])
        wait_port(port)
        time.sleep(0.5)  # connected to Redis
        script = os.path.join(work, "post.lua")
        wrk(port, 16, script, DURATION)  # warm-up
        rows = []
        for conns in (1, 16):
            cpu0 = (cpu_seconds(host.pid), cpu_seconds(redis.pid))
            calls0 = commands(redis_port)
            r = wrk(port, conns, script, DURATION)
            time.sleep(0.3)  # the last acknowledgements
            cpu1 = (cpu_seconds(host.pid), cpu_seconds(redis.pid))
            n = max(r.get("requests", 1), 1)
            r["cpu_us"] = [(b - a) * 1e6 / n for a, b in zip(cpu0, cpu1)]
            r["calls"] = (commands(redis_port) - calls0) / n
            rows.append((conns, r))
        return rows
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main():
    for tool in ("wrk", "redis-server", "redis-cli"):
        if not shutil.which(tool):
            raise SystemExit("bench/inbox.py needs %s" % tool)
    binary = release_binary()
    work = tempfile.mkdtemp(prefix="sb-inbox-")
    print("machine: %d CPUs, %s; %g s per measurement, one host with workers: 1" % (
        os.cpu_count(), os.uname().release, DURATION))
    print("\n%-10s %-5s %9s %9s %9s %9s %9s %9s" % ("set-up", "load", "req/s", "p50", "p99",
                                                    "host us", "Redis us", "cmds/msg"))
    for inbox in (False, True):
        d = tempfile.mkdtemp(dir=work)
        for conns, r in run(binary, d, inbox):
            print("%-10s -c%-3d %9.0f %9s %9s %9.1f %9.1f %9.2f%s" % (
                "inbox on" if inbox else "inbox off", conns, r.get("rps", 0), r.get("50%", "-"),
                r.get("99%", "-"), r["cpu_us"][0], r["cpu_us"][1], r["calls"],
                "  (errors)" if r["errors"] else ""))
    print("(CPU time per message; cmds/msg: commands the host sent Redis per message)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
