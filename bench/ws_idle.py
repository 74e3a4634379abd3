#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Idle WebSocket connections: the host memory each one costs, Switchboard vs a Node `ws` server
(the usual Node WebSocket library) doing the same echo, measured in the same run.

    bench/ws_idle.py [connections]        default 10000

Each server is started fresh; the client opens the connections (handshake, one echoed message
each, so every connection has run its channel's Lua once), waits, and reads the server's RSS from
/proc before and after: (after - before) / connections. Needs node and `npm ci --prefix tests/sdk`
(for `ws`); raises its own open-files limit.
"""
import asyncio
import base64
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, release_binary, wait_port
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
SB_PORT, NODE_PORT = 18091, 18092

CHANNEL = """\
local c = { name = "echo", websocket = "/ws" }
function c.on_message(conn, data) conn:send(data) end
return c
"""

NODE_SERVER = """\
const { WebSocketServer } = require(process.argv[1]);
const wss = new WebSocketServer({ port: Number(process.argv[2]), host: "127.0.0.1",
                                  perMessageDeflate: false });
wss.on("connection", (ws) => ws.on("message", (data, binary) => ws.send(data, { binary })));
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mask(payload):
    key = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + key + bytes(
        b ^ key[i % 4] for i, b in enumerate(payload))


async def open_one(port, path, opened):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % (path, key)).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.decode(errors="replace"))
    writer.write(mask(b"hello"))
    frame = await reader.readexactly(7)
    if frame[2:] != b"hello":
        raise RuntimeError("no echo")
    opened.append(writer)


async def open_all(port, path, count):
    opened, sem = [], asyncio.Semaphore(200)

    async def guarded():
        async with sem:
            await open_one(port, path, opened)

    await asyncio.gather(*(guarded() for _ in range(count)))
    return opened


async def hold(proc, port, path):
    """Open COUNT connections, let the server settle, read its RSS, then drop them."""
    before = rss_kib(proc.pid)
    started = time.monotonic()
    writers = await asyncio.wait_for(open_all(port, path, COUNT), 300)
    took = time.monotonic() - started
    await asyncio.sleep(1.0)
    after = rss_kib(proc.pid)
    for w in writers:
        w.transport.abort()
    await asyncio.sleep(0.2)
    return before, after, took


def measure(name, proc, port, path):
    wait_port(port)
    time.sleep(0.5)
    before, after, took = asyncio.run(hold(proc, port, path))
    per = (after - before) * 1024 / COUNT
    print("%-12s %6d connections in %5.1f s   RSS %7d -> %7d KiB   %6.0f bytes each"
          % (name, COUNT, took, before, after, per), flush=True)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return per


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = COUNT * 2 + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))
    binary = release_binary()
    work = tempfile.mkdtemp(prefix="sb-ws-bench-")
    with open(os.path.join(work, "echo.lua"), "w") as f:
        f.write(CHANNEL)
    with open(os.path.join(work, "credentials.yml"), "w") as f:
        f.write("echo.lua:\n")
    with open(os.path.join(work, "endpoints.yml"), "w") as f:
        f.write("server:\n  connection_limit: %d\n" % (COUNT + 1000))
    sb = subprocess.Popen([binary, "run", "-p", str(SB_PORT), "-i",
                           "127.0.0.1", "--log-level", "error"], cwd=work)
    mine = measure("switchboard", sb, SB_PORT, "/webhooks/echo/ws")
    ws_module = os.path.join(ROOT, "tests", "sdk", "node_modules", "ws")
    node = subprocess.Popen(["node", "-e", NODE_SERVER, ws_module, str(NODE_PORT)])
    theirs = measure("node ws", node, NODE_PORT, "/")
    print("switchboard uses %.2f x the memory per idle connection of node ws (target: <= 8 KiB)"
          % (mine / theirs if theirs else float("nan")))


if __name__ == "__main__":
    main()
