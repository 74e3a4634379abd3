#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Messages per second through Socket.IO: Switchboard's socketio channel with a Lua echo bot vs
a Node socket.io 4 server doing the same echo (bench/node/peer_server.js), in the same run, on
the same machine, rounds interleaved.

    bench/socketio_echo.py [rounds] [clients] [seconds] [load processes] [--client c|node]
        default 3 rounds, 50 clients, 5 s, the C client in 1 process (node: 2 processes)

The load keeps `clients` sessions over the WebSocket transport, each sending user_uttered and
waiting for its bot_uttered before sending the next:

* `--client c` (the default): bench/sio_load.c, one process, one thread, epoll, speaking
  Engine.IO 4 / Socket.IO 5 as socket.io-client does. The script compiles it into
  build-bench/sio_load (cc, libcrypto) when the binary is older than the source. Every session
  is connected and confirmed before the timed window opens.
* `--client node`: bench/node/load.js, the official socket.io-client, split over `load
  processes` Node processes (one is not enough to load a server); its time counts from before
  the sessions connect. It costs more CPU per message than either server, so on a small machine
  it, not the servers, sets the messages/s.

Printed per server and round: messages/s, p50 and p99 latency, the server's CPU time per message
(from /proc, user + system, all threads) and in CPUs, how many of its threads were busy (used at
least 10 % of a CPU during the round), and the load's own CPU per message (getrusage of the
finished client processes, their whole life). First, how many workers each server runs:
Switchboard's `server.workers` (from GET /status; default one per CPU the process may run on),
Node's single JavaScript thread. Needs node and `npm ci --prefix bench/node` (the peer server,
and the node client).
"""
import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
import urllib.request

from benchlib import ROOT, compile_c, free_port, release_binary, started, thread_cpu
NODE_DIR = os.path.join(ROOT, "bench", "node")
BUSY = 0.10  # a thread that used this share of a CPU during a round counts as busy

ECHO_BOT = """\
local bot = {}
function bot.handle(msg, out) out:send_text_message("echo: " .. msg.text) end
return bot
"""


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rounds", nargs="?", type=int, default=3)
    p.add_argument("clients", nargs="?", type=int, default=50)
    p.add_argument("seconds", nargs="?", type=float, default=5)
    p.add_argument("processes", nargs="?", type=int, default=None,
                   help="load processes (default 1 for c, 2 for node)")
    p.add_argument("--client", choices=("c", "node"), default="c")
    a = p.parse_args()
    if a.processes is None:
        a.processes = 1 if a.client == "c" else 2
    return a


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def load(args, client, port):
    """Runs the load processes; returns their summed result and their CPU seconds."""
    counts = [args.clients // args.processes + (i < args.clients % args.processes)
              for i in range(args.processes)]
    if client == "node":
        cmds = [["node", os.path.join(NODE_DIR, "load.js"), "http://127.0.0.1:%d" % port,
                 str(n), str(args.seconds)] for n in counts]
    else:
        cmds = [[client, str(port), str(n), str(args.seconds)] for n in counts]
    cpu_before = children_cpu()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=NODE_DIR) for c in cmds]
    parts, failed = [], []
    for p in procs:
        out, err = p.communicate(timeout=args.seconds + 60)
        if p.returncode != 0:
            failed.append(err.strip() or "exit code %d" % p.returncode)
        else:
            parts.append(json.loads(out))
    if failed:
        raise SystemExit("load failed: " + "; ".join(failed))
    r = {"messages": sum(r["messages"] for r in parts),
         "seconds": max(r["seconds"] for r in parts),
         "errors": sum(r["errors"] for r in parts),
         "p50_ms": max(r["p50_ms"] for r in parts), "p99_ms": max(r["p99_ms"] for r in parts)}
    return r, children_cpu() - cpu_before


def measure(args, client, name, pid, port, results):
    threads_before, t0 = thread_cpu(pid), time.monotonic()
    r, client_cpu = load(args, client, port)
    threads_after, wall = thread_cpu(pid), time.monotonic() - t0
    used = {tid: cpu - threads_before.get(tid, ("", 0.0))[1]
            for tid, (_, cpu) in threads_after.items()}
    server_cpu = sum(used.values())
    busy = sum(1 for u in used.values() if u >= BUSY * wall)
    n = r["messages"]
    per = server_cpu / n * 1e6 if n else float("nan")
    client_per = client_cpu / n * 1e6 if n else float("nan")
    rate = n / r["seconds"]
    results.setdefault(name, []).append((rate, per, client_per, r["p50_ms"], r["p99_ms"]))
    print("%-12s %7.0f msg/s  p50 %5.2f ms  p99 %5.2f ms  server %5.1f us CPU/msg %4.2f CPUs "
          "%d/%d threads busy | load %5.1f us CPU/msg %4.2f CPUs | errors %d"
          % (name, rate, r["p50_ms"], r["p99_ms"], per, server_cpu / wall, busy, len(used),
             client_per, client_cpu / wall, r["errors"]), flush=True)


def workers(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=5) as r:
        return json.load(r)["workers"]


def summary(rounds, results):
    for name in ("switchboard", "node"):
        v = results[name]
        rates, pers, clients = [x[0] for x in v], [x[1] for x in v], [x[2] for x in v]
        print("%-12s msg/s best %.0f (range %.0f-%.0f); server CPU/msg best %.1f us (range "
              "%.1f-%.1f); load CPU/msg %.1f-%.1f us"
              % (name, max(rates), min(rates), max(rates), min(pers), min(pers), max(pers),
                 min(clients), max(clients)))
    best = {k: (max(x[0] for x in v), min(x[1] for x in v)) for k, v in results.items()}
    print("best of %d: switchboard %.0f msg/s at %.1f us CPU/msg; node socket.io %.0f msg/s at "
          "%.1f us CPU/msg; %.2fx the messages/s at %.2fx the CPU per message "
          "(targets: >= 2x, <= 0.5x)"
          % (rounds, best["switchboard"][0], best["switchboard"][1], best["node"][0],
             best["node"][1], best["switchboard"][0] / best["node"][0],
             best["switchboard"][1] / best["node"][1]))


def main():
    args = arguments()
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "socket.io")):
        raise SystemExit("run `npm ci --prefix bench/node` first")
    binary = release_binary()
    client = "node"
    if args.client == "c":
        client = compile_c(os.path.join(ROOT, "bench", "sio_load.c"),
                           os.path.join(ROOT, "build-bench", "sio_load"), ["libcrypto"])
    work = tempfile.mkdtemp(prefix="sb-sio-bench-")
    files = {"credentials.yml": "socketio:\n  session_persistence: true\n", "bot.lua": ECHO_BOT,
             "endpoints.yml": "bot:\n  script: bot.lua\n"}
    for name, text in files.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    sb_port, node_port = free_port(), free_port()
    while node_port == sb_port:
        node_port = free_port()
    sb = subprocess.Popen([binary, "run", "-p", str(sb_port), "-i",
                           "127.0.0.1", "--log-level", "error"], cwd=work)
    node = subprocess.Popen(["node", os.path.join(NODE_DIR, "peer_server.js"), str(node_port)],
                            cwd=NODE_DIR)
    try:
        started(sb, sb_port)
        started(node, node_port)
        print("load: %s, %d sessions in %d process(es), %g s per round; %d CPUs"
              % ("bench/sio_load.c" if args.client == "c" else "bench/node/load.js "
                 "(socket.io-client)", args.clients, args.processes, args.seconds,
                 len(os.sched_getaffinity(0))))
        print("switchboard: %d workers (server.workers, default one per CPU); node: 1 "
              "JavaScript thread (socket.io runs on Node's single event loop)"
              % workers(sb_port), flush=True)
        results = {}
        for _ in range(args.rounds):
            measure(args, client, "switchboard", sb.pid, sb_port, results)
            measure(args, client, "node", node.pid, node_port, results)
        summary(args.rounds, results)
    finally:
        for p in (sb, node):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
