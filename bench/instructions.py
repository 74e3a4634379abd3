#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Instructions per message, counted by callgrind (steady on a busy machine, unlike timings), on
one worker, each run echoing `N` messages sent one at a time:

  rest      POST /webhooks/rest/webhook on one keep-alive connection, a new sender each request
            (bench/post.lua's body), the Lua echo bot: the rest echo of bench/run.sh
  rest_get  GET /webhooks/rest/: the host's C-only answer, for the HTTP layer's own share
  bare      on_message(conn, data) conn:send(data): the host's own path (frame, event, job,
            coroutine, the pipeline's entry) without a bot
  pipeline  on_message returns the text as a UserMessage; the Lua echo bot's reply comes back as
            JSON through the pipeline's collector (UserMessage rules, sender's turn, bot, sink)
  socketio  the bundled socketio channel (session_persistence) with the same bot: Engine.IO and
            Socket.IO packets, JSON in and out, the room lookup in sb.store

    bench/instructions.py [messages [run ...]]      default 2000, every run

SB_CALLGRIND_KEEP=DIR keeps the callgrind output files in DIR (callgrind_annotate reads them);
SB_BINARY=PATH counts another build (a variant made with -D options, docs/performance.md).

Counting starts after 200 warm-up messages and stops before the host is stopped. Needs valgrind
(`apt-get install valgrind`). Uses the Release build in build-bench/.
"""
import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, free_port, release_binary

sys.path.insert(0, os.path.join(ROOT, "tests", "http"))
from wsclient import WebSocket  # noqa: E402

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
WARM_UP = 200

ECHO_BOT = """\
local bot = {}
function bot.handle(msg, out) out:send_text_message("echo: " .. msg.text) end
return bot
"""
BARE = """\
local channel = { name = "wsecho", websocket = "/ws" }
function channel.on_message(conn, data) conn:send(data) end
return channel
"""
PIPELINE = """\
local channel = { name = "wsecho", websocket = "/ws" }
function channel.on_message(conn, data) return { { sender_id = "s1", text = data } } end
return channel
"""


class Plain:
    """A WebSocket channel at /webhooks/wsecho/ws: each message's answer contains its text."""
    path = "/webhooks/wsecho/ws"

    def __init__(self, ws):
        self.ws = ws

    def one(self, i):
        self.ws.send("hello %d" % i)
        answer = self.ws.recv()
        assert "hello %d" % i in answer, answer


class Rest:
    """The rest channel over HTTP/1.1 keep-alive (no WebSocket)."""
    path = None

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def one(self, i):
        body = json.dumps({"sender": "user%d" % i, "message": "hello %d" % i})
        self.conn.request("POST", "/webhooks/rest/webhook", body,
                          {"Content-Type": "application/json"})
        answer = self.conn.getresponse().read().decode()
        assert "hello %d" % i in answer, answer


class RestGet(Rest):
    def one(self, i):
        self.conn.request("GET", "/webhooks/rest/")
        answer = self.conn.getresponse().read().decode()
        assert "ok" in answer, answer


class SocketIO:
    path = "/socket.io/?EIO=4&transport=websocket"

    def __init__(self, ws):
        self.ws = ws
        ws.recv()  # the Engine.IO open packet
        ws.send("40")
        ws.recv()
        ws.send('42["session_request",{"session_id":"s1"}]')
        assert "session_confirm" in ws.recv()

    def one(self, i):
        self.ws.send('42["user_uttered",{"message":"hello %d","session_id":"s1"}]' % i)
        answer = self.ws.recv()
        assert "bot_uttered" in answer and "hello %d" % i in answer, answer


def count(binary, files, client):
    work = tempfile.mkdtemp(prefix="sb-ws-ir-")
    for name, text in files.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    port = free_port()
    host = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             "--callgrind-out-file=" + os.path.join(work, "callgrind.out.%p"),
                             binary, "run", "-p", str(port), "-i", "127.0.0.1",
                             "--log-level", "error"],
                            cwd=work, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                session = client(WebSocket(port, client.path) if client.path else port)
                if not client.path:
                    session.one(0)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the host did not start under valgrind")
        for i in range(WARM_UP):
            session.one(i)
        subprocess.run(["callgrind_control", "-i", "on", str(host.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(MESSAGES):
            session.one(i)
        subprocess.run(["callgrind_control", "-i", "off", str(host.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        host.terminate()
        host.wait(60)
    total = 0
    for path in glob.glob(os.path.join(work, "callgrind.out.*")):
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        keep = os.environ.get("SB_CALLGRIND_KEEP")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(path, keep)
    shutil.rmtree(work, ignore_errors=True)
    return total / MESSAGES


def main():
    binary = os.environ.get("SB_BINARY") or release_binary()
    one_worker = "server:\n  workers: 1\nbot:\n  script: bot.lua\n"
    rest = {"credentials.yml": "rest:\n", "endpoints.yml": one_worker,
            "bot.lua": open(os.path.join(ROOT, "bench", "echo_bot.lua")).read()}
    runs = [
        ("rest", rest, Rest),
        ("rest_get", rest, RestGet),
        ("bare", {"credentials.yml": "wsecho:\n", "wsecho.lua": BARE,
                  "endpoints.yml": one_worker, "bot.lua": ECHO_BOT}, Plain),
        ("pipeline", {"credentials.yml": "wsecho:\n", "wsecho.lua": PIPELINE,
                      "endpoints.yml": one_worker, "bot.lua": ECHO_BOT}, Plain),
        ("socketio", {"credentials.yml": "socketio:\n  session_persistence: true\n",
                      "endpoints.yml": one_worker, "bot.lua": ECHO_BOT}, SocketIO),
    ]
    chosen = sys.argv[2:]
    for name, files, client in runs:
        if chosen and name not in chosen:
            continue
        print("%-9s %8.0f instructions per message" % (name, count(binary, files, client)),
              flush=True)


if __name__ == "__main__":
    main()
