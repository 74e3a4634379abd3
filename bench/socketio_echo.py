#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Messages per second through Socket.IO: Switchboard's socketio channel with a Lua echo bot vs
a Node socket.io 4 server doing the same echo (bench/node/peer_server.js), in the same run, on
the same machine, rounds interleaved.

    bench/socketio_echo.py [rounds] [clients] [seconds] [load processes]
                                  default 3 rounds, 50 clients, 5 s, 2 load processes

The load (bench/node/load.js, socket.io-client over WebSocket, in several processes so that one
client process is not the limit) keeps `clients` sessions each sending a message and waiting for
the answer. Printed per server: messages/s, p50 and p99
latency, and the server's CPU time per message (from /proc, user + system, all threads). Needs
node and `npm ci --prefix bench/node`.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, release_binary, wait_port
NODE_DIR = os.path.join(ROOT, "bench", "node")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CLIENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 50
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 5
PROCESSES = int(sys.argv[4]) if len(sys.argv) > 4 else 2
SB_PORT, NODE_PORT = 18093, 18094
HZ = os.sysconf("SC_CLK_TCK")

ECHO_BOT = """\
local bot = {}
function bot.handle(msg, out) out:send_text_message("echo: " .. msg.text) end
return bot
"""


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def load(port):
    procs = [subprocess.Popen(["node", os.path.join(NODE_DIR, "load.js"),
                               "http://127.0.0.1:%d" % port, str(CLIENTS // PROCESSES),
                               str(SECONDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=NODE_DIR) for _ in range(PROCESSES)]
    parts = []
    for p in procs:
        out, err = p.communicate(timeout=SECONDS + 60)
        if p.returncode != 0:
            raise SystemExit("load failed: " + err)
        parts.append(json.loads(out))
    return {"messages": sum(r["messages"] for r in parts),
            "seconds": max(r["seconds"] for r in parts),
            "errors": sum(r["errors"] for r in parts),
            "p50_ms": max(r["p50_ms"] for r in parts), "p99_ms": max(r["p99_ms"] for r in parts)}


def measure(name, pid, port, results):
    before = cpu_seconds(pid)
    r = load(port)
    used = cpu_seconds(pid) - before
    per = used / r["messages"] * 1e6 if r["messages"] else float("nan")
    rate = r["messages"] / r["seconds"]
    results.setdefault(name, []).append((rate, per))
    print("%-12s %8.0f msg/s   p50 %5.1f ms   p99 %5.1f ms   %6.1f us CPU/msg   errors %d"
          % (name, rate, r["p50_ms"], r["p99_ms"], per, r["errors"]), flush=True)


def main():
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "socket.io")):
        raise SystemExit("run `npm ci --prefix bench/node` first")
    binary = release_binary()
    work = tempfile.mkdtemp(prefix="sb-sio-bench-")
    files = {"credentials.yml": "socketio:\n  session_persistence: true\n", "bot.lua": ECHO_BOT,
             "endpoints.yml": "bot:\n  script: bot.lua\n"}
    for name, text in files.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    sb = subprocess.Popen([binary, "run", "-p", str(SB_PORT), "-i",
                           "127.0.0.1", "--log-level", "error"], cwd=work)
    node = subprocess.Popen(["node", os.path.join(NODE_DIR, "peer_server.js"), str(NODE_PORT)],
                            cwd=NODE_DIR)
    try:
        wait_port(SB_PORT)
        wait_port(NODE_PORT)
        results = {}
        for _ in range(ROUNDS):
            measure("switchboard", sb.pid, SB_PORT, results)
            measure("node", node.pid, NODE_PORT, results)
        best = {k: (max(r for r, _ in v), min(p for _, p in v)) for k, v in results.items()}
        print("best of %d: switchboard %.0f msg/s at %.1f us CPU/msg; node socket.io %.0f msg/s at "
              "%.1f us CPU/msg; %.2fx the messages/s at %.2fx the CPU per message "
              "(targets: >= 2x, <= 0.5x)"
              % (ROUNDS, best["switchboard"][0], best["switchboard"][1], best["node"][0],
                 best["node"][1], best["switchboard"][0] / best["node"][0],
                 best["switchboard"][1] / best["node"][1]))
    finally:
        for p in (sb, node):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
