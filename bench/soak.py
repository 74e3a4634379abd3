#!/usr/bin/env python3
"""Soak helper for bench/soak.sh: runs one Switchboard host under a long mixed load and watches
its RSS and open file descriptors. Standard library only.

    python3 bench/soak.py --binary build-soak/switchboard --work EMPTY_DIR --seconds 600
        [--interval 2] [--reload-period 3] [--bot-period 7] [--hup-period 4] [--workers 2]
        [--mixers 3] [--streamers 2] [--without rest,stream,push,reload,hup,provoke] [--csv FILE]

What runs, concurrently, against a project written to --work (a temp folder):
  * rest mixers (collect): a Lua bot that echoes, sleeps (sb.sleep), looks something up with
    sb.http.request at a local stand-in, hands the message to the bundled HTTP bot module
    (switchboard.http_bot, POSTing to a Rasa stand-in), builds a 1 MiB string, or fails;
    a custom channel `soak` (collect, with a declared route) rewritten every few seconds;
    GET /status;
  * streamers: POST ?stream=true whose bot writes several parts with sleeps in between; the
    client reads all of it, or closes (FIN or RST) after a random number of parts, or right
    after sending the request;
  * a pusher: the bundled `callback` channel (url: the stand-in) and `telegram` (api_url: the
    stand-in, with verify, webhook_url and secret_token so getMe and setWebhook run too);
  * a reloader (the `soak` channel every 3 s, every 7th version broken on purpose so the
    reload is rejected until the next rewrite; the bot every 7 s; half of the writes in place,
    half as an editor's rename) and SIGHUP every 4 s (credentials.yml toggled between two
    variants: the channels' parameters change);
  * requests that fail on purpose: bot errors (raise, HTTP bot answering 500, sb.http.request
    to a dead port), invalid JSON (400), unknown channel (404), a raising channel (500), a
    wrong Telegram secret (403), a push the stand-in refuses (logged failed send).
Every answer is checked against what its request must get; anything else is "unexpected".
The process's VmRSS, RssAnon, fd count and threads are sampled every --interval seconds.
Exit status: 0 flat and no unexpected answer, 1 otherwise, 2 the run could not be set up.
"""
import argparse
import collections
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

LISTEN_RE = re.compile(r"listening on http://[^ ]*:(\d+) ")
TG_TOKEN = "7000000001:SOAKTOKEN"
TG_SECRET = "soak_secret_1"
FLAT_KIB_PER_MIN = 64      # RSS grows when its slope over the second half is above this and
                           # more than twice its standard error (the samples are noisy: a
                           # request may hold a MiB for a moment, the Lua collectors run late)
FD_SLACK = 8               # idle fds after the load may exceed idle fds before by this many
                           # (libcurl keeps outbound connections to the stand-ins alive)


# ---- counters ------------------------------------------------------------------------------------

class Stats:
    """Thread-safe counters: answers by kind and outcome, plus a few examples of unexpected ones."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.ok = collections.Counter()
        self.provoked = collections.Counter()
        self.unexpected = collections.Counter()
        self.examples = []
        self.expected_push = collections.Counter()   # deliveries the stand-in must have seen

    def count(self, kind, outcome, detail=None):
        with self.lock:
            self.requests += 1
            if outcome == "ok":
                self.ok[kind] += 1
            elif outcome.startswith("provoked:"):
                self.provoked[outcome[9:]] += 1
            else:
                self.unexpected[outcome] += 1
                if len(self.examples) < 25:
                    self.examples.append("%s %s: %s" % (kind, outcome, str(detail)[:300]))

    def snapshot(self):
        with self.lock:
            return (self.requests, dict(self.provoked), sum(self.unexpected.values()))


# ---- stand-ins for the platforms and the bot's services --------------------------------------------

class StandInCounts:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()

    def add(self, key):
        with self.lock:
            self.c[key] += 1

    def get(self):
        with self.lock:
            return dict(self.c)


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1; routes by path:
      POST /rasa                 a Rasa REST channel echo (500 when the message has "rasa500")
      GET  /lookup?q=X           text "found X"
      POST /callback             the callback channel's target (500 when the text has "cb500")
      POST /tg/bot<token>/<m>    the Telegram Bot API: getMe, setWebhook, sendMessage"""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go out in two writes

    def log_message(self, *args):
        pass

    def _answer(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        counts = self.server.counts
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path == "/rasa":
            counts.add("rasa")
            msg = (body or {}).get("message") or ""
            if "rasa500" in msg:
                return self._answer(500, '{"error":"provoked"}')
            if "slow" in msg:
                time.sleep(0.05)
            return self._answer(200, json.dumps([{"recipient_id": body.get("sender"),
                                                  "text": "rasa: " + msg}]))
        if path == "/lookup":
            counts.add("lookup")
            q = urllib.parse.parse_qs(url.query).get("q", [""])[0]
            return self._answer(200, "found " + q, "text/plain")
        if path == "/callback":
            text = (body or {}).get("text") or ""
            # credentials.yml always gives the callback channel params: {variant: A or B}
            if urllib.parse.parse_qs(url.query).get("variant") not in (["A"], ["B"]):
                counts.add("callback_without_params")
            if "cb500" in text:
                counts.add("callback_refused")
                return self._answer(500, "no")
            counts.add("callback")
            return self._answer(200, "ok", "text/plain")
        m = re.match(r"^/tg/bot([^/]+)/(\w+)$", path)
        if m and m.group(1) == TG_TOKEN:
            method = m.group(2)
            counts.add("tg_" + method)
            if method == "getMe":
                return self._answer(200, json.dumps({"ok": True, "result": {
                    "id": 7000000001, "is_bot": True, "first_name": "Soak",
                    "username": "soak_bot"}}))
            if method == "setWebhook":
                return self._answer(200, '{"ok":true,"result":true,"description":"Webhook was set"}')
            return self._answer(200, '{"ok":true,"result":{"message_id":1}}')
        counts.add("unknown_path")
        return self._answer(404, '{"ok":false}')

    do_GET = do_POST = _handle


class _StandInServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass


def start_standin():
    server = _StandInServer(("127.0.0.1", 0), _StandInHandler)
    server.counts = StandInCounts()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     daemon=True).start()
    return server


def dead_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the project -----------------------------------------------------------------------------------

BOT = r'''-- soak bot, version @V@ (bench/soak.py rewrites this file)
local sb = require "switchboard"
local http_bot = require "switchboard.http_bot"

local bot = {}
local VERSION = @V@

function bot.init(config)
  bot.api = config.api
  bot.dead = config.dead
  http_bot.init({ url = config.rasa_url, timeout = 5 })
end

local function stream(out, n)
  for i = 1, n do
    out:send_text_message("part " .. i)
    if i < n then sb.sleep(0.02) end
  end
end

function bot.handle(msg, out)
  local text = msg.text or ""
  local cmd, arg = text:match("^(%S+)%s*(.*)$")
  if cmd == "echo" then
    out:send_text_message("echo: " .. arg)
  elseif cmd == "sleep" then
    sb.sleep(tonumber(arg) or 0.01)
    out:send_text_message("slept")
  elseif cmd == "http" then
    local res, err = sb.http.request({ url = bot.api .. "/lookup?q=" .. sb.urlencode(arg),
                                       timeout = 5 })
    if not res then error("lookup failed: " .. err, 0) end
    out:send_text_message("looked up: " .. res.body)
  elseif cmd == "rasa" then
    http_bot.handle(msg, out)
  elseif cmd == "stream" then
    stream(out, tonumber(arg) or 3)
  elseif cmd == "big" then
    local s = string.rep("x", 1024 * 1024)
    local t = {}
    for i = 1, 2000 do t[i] = { i, tostring(i) } end
    out:send_text_message("big " .. #s .. " " .. #t)
  elseif cmd == "deadhttp" then
    local res, err = sb.http.request({ url = bot.dead, timeout = 2 })
    if not res then error("provoked: " .. err, 0) end
    out:send_text_message("dead port answered?")
  elseif cmd == "fail" then
    error("provoked bot failure", 0)
  elseif cmd == "version" then
    out:send_text_message("bot v" .. VERSION)
  else
    out:send_text_message("v" .. VERSION .. ": " .. text)
  end
end

return bot
'''

CHANNEL = r'''-- soak channel, version @V@ (bench/soak.py rewrites this file)
local channel = { name = "soak" }
local VERSION = @V@

function channel.init(config)
  channel.tag = config and config.tag or "?"
end

function channel.receive(req)
  local body = req.json
  if body.message == "raise" then
    error("provoked channel failure", 0)
  end
  return { { sender_id = body.sender, text = body.message, metadata = { v = VERSION } } }
end

function channel.respond(messages, req)
  return { status = 200, json = { version = VERSION, tag = channel.tag, replies = messages } }
end

channel.routes = {
  ["GET /version"] = function(req) return { json = { version = VERSION, tag = channel.tag } } end,
}

return channel
'''

BROKEN_CHANNEL = "-- soak channel, broken on purpose\nlocal channel = { name = \"soak\"\nreturn channel\n"


def credentials(standin_port, tag):
    base = "http://127.0.0.1:%d" % standin_port
    return ("rest:\n"
            "soak.lua:\n  tag: %s\n"
            "callback:\n  url: \"%s/callback\"\n  params: { variant: \"%s\" }\n"
            "telegram:\n  access_token: \"%s\"\n  verify: \"soak_bot\"\n"
            "  webhook_url: \"https://soak.example/webhooks/telegram/webhook\"\n"
            "  secret_token: \"%s\"\n  api_url: \"%s/tg\"\n  timeout: 5\n"
            % (tag, base, tag, TG_TOKEN, TG_SECRET, base))


def endpoints(standin_port, workers):
    base = "http://127.0.0.1:%d" % standin_port
    return ("server:\n  workers: %d\n  connection_timeout: 30\n"
            "bot:\n  script: bot.lua\n  api: \"%s\"\n  rasa_url: \"%s/rasa\"\n"
            "  dead: \"http://127.0.0.1:%d/nobody\"\n" % (workers, base, base, dead_port()))


def write_file(path, text, rename):
    """Write in place, or as an editor does (a temporary file renamed over it)."""
    if rename:
        tmp = os.path.join(os.path.dirname(path), ".soak-tmp-" + os.path.basename(path))
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


# ---- the load ----------------------------------------------------------------------------------------

class Load:
    def __init__(self, port, stats, stop):
        self.port = port
        self.stats = stats
        self.stop = stop
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.bot_versions_seen = set()
        self.channel_versions_seen = set()

    def next_id(self):
        with self.seq_lock:
            self.seq += 1
            return self.seq

    def sender(self, rng):
        # mostly senders never seen before (the sender gate must forget them), some shared ones
        if rng.random() < 0.25:
            return "shared-%d" % rng.randrange(16)
        return "u%d" % self.next_id()

    # --- rest mixer --------------------------------------------------------------------------------
    def rest_op(self, rng, provoke):
        r = rng.random()
        s = self.sender(rng)
        if provoke and r < 0.12:
            return self.provoke_op(rng, s)
        r = rng.random()
        if r < 0.30:
            w = "w%d" % rng.randrange(10**6)
            return ("echo", "POST", "/webhooks/rest/webhook", {"sender": s, "message": "echo " + w},
                    200, [{"recipient_id": s, "text": "echo: " + w}])
        if r < 0.38:
            return ("sleep", "POST", "/webhooks/rest/webhook",
                    {"sender": s, "message": "sleep %.3f" % (rng.random() * 0.03)},
                    200, [{"recipient_id": s, "text": "slept"}])
        if r < 0.50:
            w = "k%d" % rng.randrange(1000)
            return ("http", "POST", "/webhooks/rest/webhook", {"sender": s, "message": "http " + w},
                    200, [{"recipient_id": s, "text": "looked up: found " + w}])
        if r < 0.62:
            w = "rasa q%d%s" % (rng.randrange(1000), " slow" if rng.random() < 0.1 else "")
            return ("rasa", "POST", "/webhooks/rest/webhook", {"sender": s, "message": w},
                    200, [{"recipient_id": s, "text": "rasa: " + w}])
        if r < 0.64:
            return ("big", "POST", "/webhooks/rest/webhook", {"sender": s, "message": "big"},
                    200, [{"recipient_id": s, "text": "big 1048576 2000"}])
        if r < 0.67:
            return ("version", "POST", "/webhooks/rest/webhook", {"sender": s, "message": "version"},
                    200, "bot_version")
        if r < 0.92:
            w = "echo c%d" % rng.randrange(10**6)
            return ("soak", "POST", "/webhooks/soak/webhook", {"sender": s, "message": w},
                    200, ("soak", [{"recipient_id": s, "text": "echo: " + w[5:]}]))
        if r < 0.97:
            return ("soak_route", "GET", "/webhooks/soak/version", None, 200, "soak_route")
        return ("status", "GET", "/status", None, 200, "status")

    def provoke_op(self, rng, s):
        r = rng.random()
        if r < 0.25:
            return ("fail", "POST", "/webhooks/rest/webhook", {"sender": s, "message": "fail"},
                    200, "provoked:bot_error")
        if r < 0.40:
            return ("rasa500", "POST", "/webhooks/rest/webhook",
                    {"sender": s, "message": "rasa rasa500"}, 200, "provoked:bot_error")
        if r < 0.50:
            return ("deadhttp", "POST", "/webhooks/rest/webhook",
                    {"sender": s, "message": "deadhttp"}, 200, "provoked:bot_error")
        if r < 0.70:
            return ("badjson", "POST", "/webhooks/rest/webhook", b'{"sender": "x", "message": ',
                    400, "provoked:invalid_json")
        if r < 0.85:
            return ("nosuch", "POST", "/webhooks/nosuch/webhook", {"sender": s, "message": "hi"},
                    404, "provoked:not_found")
        return ("raise", "POST", "/webhooks/soak/webhook", {"sender": s, "message": "raise"},
                500, "provoked:channel_500")

    def check(self, kind, status, body, want_status, want):
        """Classify one answer: "ok", "provoked:<kind>" or "unexpected:<why>"."""
        if status != want_status:
            if status >= 500:
                return "unexpected:5xx", "%d %r" % (status, body[:200])
            return "unexpected:status", "%d %r" % (status, body[:200])
        if isinstance(want, str) and want.startswith("provoked:"):
            if want == "provoked:bot_error" and body.strip() != b"[]":
                return "unexpected:body", body[:200]
            return want, None
        try:
            doc = json.loads(body)
        except ValueError:
            return "unexpected:body", body[:200]
        if want == "bot_version":
            m = re.match(r"^bot v(\d+)$", (doc[0] or {}).get("text", "")) if doc else None
            if not m:
                return "unexpected:body", body[:200]
            self.bot_versions_seen.add(int(m.group(1)))
            return "ok", None
        if want == "soak_route":
            if not isinstance(doc, dict) or not isinstance(doc.get("version"), int):
                return "unexpected:body", body[:200]
            self.channel_versions_seen.add(doc["version"])
            return "ok", None
        if want == "status":
            return ("ok", None) if isinstance(doc, dict) and "requests" in doc else \
                ("unexpected:body", body[:200])
        if isinstance(want, tuple):   # the soak channel
            if not isinstance(doc, dict) or doc.get("replies") != want[1] \
                    or doc.get("tag") not in ("A", "B"):
                return "unexpected:body", body[:200]
            self.channel_versions_seen.add(doc.get("version"))
            return "ok", None
        return ("ok", None) if doc == want else ("unexpected:body", body[:200])

    def rest_mixer(self, seed, provoke):
        rng = random.Random(seed)
        conn = None
        while not self.stop.is_set():
            kind, method, path, payload, want_status, want = self.rest_op(rng, provoke)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            body = payload if isinstance(payload, (bytes, type(None))) else \
                json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"} if body is not None else {}
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.stats.count(kind, "unexpected:conn_error", repr(e))
                conn.close()
                conn = None
                continue
            outcome, detail = self.check(kind, resp.status, data, want_status, want)
            self.stats.count(kind, outcome, detail)

    # --- streamer ---------------------------------------------------------------------------------
    def stream_once(self, rng):
        s = self.sender(rng)
        n = rng.randrange(3, 9)
        payload = json.dumps({"sender": s, "message": "stream %d" % n}).encode()
        req = (b"POST /webhooks/rest/webhook?stream=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
               % len(payload)) + payload
        r = rng.random()
        mode = "full" if r < 0.35 else "cut" if r < 0.75 else "rst" if r < 0.90 else "at_once"
        keep = rng.randrange(0, n)   # parts read before a cut
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        try:
            sock.sendall(req)
            if mode == "at_once":
                return "provoked:stream_cut", None
            buf = b""
            while True:
                if mode != "full" and buf.count(b'"text":"part ') >= keep \
                        and (keep > 0 or b"\r\n\r\n" in buf):
                    if mode == "rst":
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    return "provoked:stream_cut", None
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
            if not buf.startswith(b"HTTP/1.1 200"):
                return ("unexpected:5xx" if buf[9:10] == b"5" else "unexpected:status"), buf[:200]
            parts = buf.count(b'"text":"part ')
            if parts != n or not buf.endswith(b"0\r\n\r\n"):
                return "unexpected:body", "%d of %d parts: %r" % (parts, n, buf[-200:])
            return "ok", None
        finally:
            sock.close()

    def streamer(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                outcome, detail = self.stream_once(rng)
            except OSError as e:
                outcome, detail = "unexpected:conn_error", repr(e)
            self.stats.count("stream", outcome, detail)

    # --- pusher ----------------------------------------------------------------------------------
    def push_op(self, rng, provoke):
        s = self.sender(rng)
        r = rng.random()
        if r < 0.5:   # callback
            r = rng.random()
            if provoke and r < 0.08:
                return ("callback", "/webhooks/callback/webhook", {}, {"sender": s, "message": "fail"},
                        200, b"success", "provoked:bot_error", None)
            if provoke and r < 0.16:
                return ("callback", "/webhooks/callback/webhook", {},
                        {"sender": s, "message": "echo cb500"}, 200, b"success",
                        "provoked:push_refused", "callback_refused")
            if r < 0.4:
                w = "rasa p%d" % rng.randrange(1000)
            else:
                w = "echo p%d" % rng.randrange(10**6)
            return ("callback", "/webhooks/callback/webhook", {}, {"sender": s, "message": w},
                    200, b"success", "ok", "callback")
        chat = rng.randrange(10**6, 10**7)
        seq = self.next_id()
        update = {"update_id": seq, "message": {
            "message_id": seq, "date": 1700000000,
            "from": {"id": chat, "is_bot": False, "first_name": "Soak"},
            "chat": {"id": chat, "type": "private", "first_name": "Soak"},
            "text": "echo t%d" % seq}}
        headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
        r = rng.random()
        if provoke and r < 0.06:
            headers = {"X-Telegram-Bot-Api-Secret-Token": "wrong"}
            return ("telegram", "/webhooks/telegram/webhook", headers, update, 403, None,
                    "provoked:verify_403", None)
        if provoke and r < 0.12:
            update["message"]["text"] = "fail"
            return ("telegram", "/webhooks/telegram/webhook", headers, update, 200, b"success",
                    "provoked:bot_error", None)
        return ("telegram", "/webhooks/telegram/webhook", headers, update, 200, b"success",
                "ok", "tg_sendMessage")

    def pusher(self, seed, provoke):
        rng = random.Random(seed)
        conn = None
        while not self.stop.is_set():
            kind, path, headers, payload, want_status, want_body, outcome, delivery = \
                self.push_op(rng, provoke)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            headers = dict(headers, **{"Content-Type": "application/json"})
            try:
                conn.request("POST", path, body=json.dumps(payload).encode(), headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.stats.count(kind, "unexpected:conn_error", repr(e))
                conn.close()
                conn = None
                continue
            if resp.status != want_status or (want_body is not None and data != want_body):
                bad = "unexpected:5xx" if resp.status >= 500 else "unexpected:status"
                self.stats.count(kind, bad, "%d %r" % (resp.status, data[:200]))
                continue
            if delivery:
                with self.stats.lock:
                    self.stats.expected_push[delivery] += 1
            self.stats.count(kind, outcome)


# ---- reloads and SIGHUP ------------------------------------------------------------------------------

class Changer:
    def __init__(self, work, proc, standin_port, stop, args):
        self.work, self.proc, self.standin_port, self.stop = work, proc, standin_port, stop
        self.args = args
        self.counts = collections.Counter()

    def reloader(self):
        version = 1
        bot_version = 1
        last_bot = time.monotonic()
        rng = random.Random(7)
        while not self.stop.wait(self.args.reload_period):
            version += 1
            if version % 7 == 0:
                write_file(os.path.join(self.work, "soak.lua"), BROKEN_CHANNEL, rng.random() < 0.5)
                self.counts["channel_broken"] += 1
            else:
                write_file(os.path.join(self.work, "soak.lua"),
                           CHANNEL.replace("@V@", str(version)), rng.random() < 0.5)
                self.counts["channel_rewrite"] += 1
            if time.monotonic() - last_bot >= self.args.bot_period:
                if self.stop.wait(min(0.5, self.args.reload_period / 2)):
                    break
                bot_version += 1
                write_file(os.path.join(self.work, "bot.lua"), BOT.replace("@V@", str(bot_version)),
                           rng.random() < 0.5)
                self.counts["bot_rewrite"] += 1
                last_bot = time.monotonic()

    def hupper(self):
        tag = "A"
        while not self.stop.wait(self.args.hup_period):
            tag = "B" if tag == "A" else "A"
            write_file(os.path.join(self.work, "credentials.yml"),
                       credentials(self.standin_port, tag), True)
            try:
                self.proc.send_signal(signal.SIGHUP)
                self.counts["sighup"] += 1
            except ProcessLookupError:
                return


# ---- sampling ----------------------------------------------------------------------------------------

def proc_sample(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "Threads"):
                fields[k] = int(v.split()[0])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0), fds, fields.get("Threads", 0)


def slope_per_min(points):
    """Least-squares slope of (seconds, value) points and its standard error, per minute."""
    n = len(points)
    if n < 3:
        return 0.0, 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return 0.0, 0.0
    b = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    resid = sum((p[1] - my - b * (p[0] - mx)) ** 2 for p in points)
    return b * 60.0, (resid / (n - 2) / sxx) ** 0.5 * 60.0


def http_get_json(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return json.loads(resp.read())
    finally:
        conn.close()


# ---- main --------------------------------------------------------------------------------------------

class Stop(Exception):
    pass


def stop_host(proc):
    """SIGTERM (a graceful stop), SIGKILL after 20 s; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--work", required=True, help="an empty folder for the project and the log")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--interval", type=float, default=2.0, help="sampling period, seconds")
    ap.add_argument("--reload-period", type=float, default=3.0,
                    help="seconds between rewrites of the soak channel (every 7th is broken)")
    ap.add_argument("--bot-period", type=float, default=7.0,
                    help="seconds between rewrites of the bot")
    ap.add_argument("--hup-period", type=float, default=4.0, help="seconds between SIGHUPs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mixers", type=int, default=3)
    ap.add_argument("--streamers", type=int, default=2)
    ap.add_argument("--without", default="", help="comma list: rest,stream,push,reload,hup,provoke")
    ap.add_argument("--csv", help="also write every sample to this file")
    ap.add_argument("--pidfile", help="write the host's pid here (for the caller's trap)")
    args = ap.parse_args()
    without = set(filter(None, args.without.split(",")))
    interval = args.interval

    def on_term(signum, frame):
        raise Stop()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    standin = start_standin()
    sport = standin.server_address[1]
    work = args.work
    with open(os.path.join(work, "credentials.yml"), "w") as f:
        f.write(credentials(sport, "A"))
    with open(os.path.join(work, "endpoints.yml"), "w") as f:
        f.write(endpoints(sport, args.workers))
    with open(os.path.join(work, "bot.lua"), "w") as f:
        f.write(BOT.replace("@V@", "1"))
    with open(os.path.join(work, "soak.lua"), "w") as f:
        f.write(CHANNEL.replace("@V@", "1"))
    log_path = os.path.join(work, "switchboard.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([os.path.abspath(args.binary), "run", "-p", "0", "-i", "127.0.0.1",
                             "--credentials", os.path.join(work, "credentials.yml"),
                             "--endpoints", os.path.join(work, "endpoints.yml"),
                             "--response-timeout", "10"],
                            cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % proc.pid)
    stop = threading.Event()
    threads = []
    try:
        port = None
        deadline = time.monotonic() + 15
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            with open(log_path) as f:
                m = LISTEN_RE.search(f.read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.05)
        if port is None:
            with open(log_path) as f:
                sys.stderr.write("switchboard did not start:\n" + f.read())
            return 2
        pid = proc.pid
        stats = Stats()
        load = Load(port, stats, stop)
        changer = Changer(work, proc, sport, stop, args)
        provoke = "provoke" not in without

        # warm-up: every path once, then the idle baseline
        warm = Stats()
        wl = Load(port, warm, threading.Event())
        rng = random.Random(1)
        for _ in range(200):
            kind, method, path, payload, ws, want = wl.rest_op(rng, provoke)
            body = None if payload is None else payload if isinstance(payload, bytes) \
                else json.dumps(payload).encode()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            c.request(method, path, body=body)
            r = c.getresponse()
            outcome, detail = wl.check(kind, r.status, r.read(), ws, want)
            warm.count(kind, outcome, detail)
            c.close()
        if warm.unexpected:
            sys.stderr.write("soak: the warm-up got unexpected answers: %s\n" % warm.examples)
            return 2
        time.sleep(1.0)
        idle_before = proc_sample(pid)

        for i in range(args.mixers if "rest" not in without else 0):
            threads.append(threading.Thread(target=load.rest_mixer, args=(100 + i, provoke)))
        for i in range(args.streamers if "stream" not in without else 0):
            threads.append(threading.Thread(target=load.streamer, args=(200 + i,)))
        if "push" not in without:
            threads.append(threading.Thread(target=load.pusher, args=(300, provoke)))
        if "reload" not in without:
            threads.append(threading.Thread(target=changer.reloader))
        if "hup" not in without:
            threads.append(threading.Thread(target=changer.hupper))
        for t in threads:
            t.daemon = True
            t.start()

        samples = []   # (t, rss, anon, fds, threads, requests, provoked, unexpected)
        t0 = time.monotonic()
        sys.stderr.write("soak: %s s of load on port %d, pid %d, sampling every %g s\n"
                         % (args.seconds, port, pid, interval))
        while True:
            now = time.monotonic() - t0
            if proc.poll() is not None:
                sys.stderr.write("soak: switchboard exited with %s during the run\n" % proc.returncode)
                break
            rss, anon, fds, nthreads = proc_sample(pid)
            reqs, prov, unexp = stats.snapshot()
            samples.append((now, rss, anon, fds, nthreads, reqs, prov, unexp))
            if now >= args.seconds:
                break
            time.sleep(min(interval, max(0.0, args.seconds - now)) or interval)
        stop.set()
        for t in threads:
            t.join(25)
        crashed = proc.poll() is not None
        status = None
        idle_after = None
        if not crashed:
            time.sleep(2.0)
            idle_after = proc_sample(pid)
            try:
                status = http_get_json(port, "/status")
            except (OSError, ValueError, http.client.HTTPException) as e:
                status = {"error": repr(e)}
        exit_code = stop_host(proc)
        return report(args, samples, idle_before, idle_after, stats, warm, load, changer,
                      standin, status, exit_code, log_path, crashed)
    except Stop:
        sys.stderr.write("soak: stopped\n")
        return 1
    finally:
        stop.set()
        stop_host(proc)
        standin.shutdown()
        standin.server_close()
        log.close()


def report(args, samples, idle_before, idle_after, stats, warm, load, changer, standin, status,
           exit_code, log_path, crashed):
    out = sys.stdout
    kinds = ["bot_error", "invalid_json", "not_found", "channel_500", "verify_403", "push_refused",
             "stream_cut"]
    short = {"bot_error": "bot_err", "invalid_json": "400", "not_found": "404",
             "channel_500": "500p", "verify_403": "403", "push_refused": "push_x",
             "stream_cut": "cut"}
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("t_s,rss_kib,rss_anon_kib,fds,threads,requests,%s,unexpected\n"
                    % ",".join(kinds))
            for t, rss, anon, fds, th, reqs, prov, unexp in samples:
                f.write("%.1f,%d,%d,%d,%d,%d,%s,%d\n" % (t, rss, anon, fds, th, reqs,
                        ",".join(str(prov.get(k, 0)) for k in kinds), unexp))
    # condensed table: at most ~20 rows, always the first and the last
    step = max(1, (len(samples) + 19) // 20)
    rows = samples[::step]
    if samples and rows[-1] is not samples[-1]:
        rows.append(samples[-1])
    out.write("\n%7s %9s %9s %5s %4s %9s %s %6s\n" % (
        "t(s)", "RSS KiB", "anon KiB", "fds", "thr", "requests",
        " ".join("%7s" % short[k] for k in kinds), "unexp"))
    for t, rss, anon, fds, th, reqs, prov, unexp in rows:
        out.write("%7.0f %9d %9d %5d %4d %9d %s %6d\n" % (
            t, rss, anon, fds, th, reqs, " ".join("%7d" % prov.get(k, 0) for k in kinds), unexp))

    load_secs = samples[-1][0] if samples else 0
    half = [(s[0], s[1]) for s in samples if s[0] >= load_secs / 2]
    half_anon = [(s[0], s[2]) for s in samples if s[0] >= load_secs / 2]
    slope, slope_se = slope_per_min(half)
    slope_anon, anon_se = slope_per_min(half_anon)
    first, last = samples[0], samples[-1]
    total = stats.requests
    unexpected = sum(stats.unexpected.values())
    out.write("\nrequests: %d in %.0f s (%.0f/s); answered as expected: %d; provoked failures: %s\n"
              % (total, load_secs, total / load_secs if load_secs else 0, sum(stats.ok.values()),
                 ", ".join("%s %d" % (k, v) for k, v in sorted(stats.provoked.items())) or "none"))
    out.write("by kind: %s\n" % ", ".join("%s %d" % kv for kv in sorted(stats.ok.items())))
    out.write("unexpected answers: %d%s\n" % (unexpected, (" (" + ", ".join(
        "%s %d" % kv for kv in sorted(stats.unexpected.items())) + ")") if unexpected else ""))
    for e in stats.examples[:10]:
        out.write("  e.g. %s\n" % e)
    got = standin.counts.get()
    out.write("push deliveries: callback %d of %d expected, telegram sendMessage %d of %d; "
              "refused on purpose %d; getMe %d, setWebhook %d\n" % (
                  got.get("callback", 0), stats.expected_push["callback"],
                  got.get("tg_sendMessage", 0), stats.expected_push["tg_sendMessage"],
                  got.get("callback_refused", 0), got.get("tg_getMe", 0),
                  got.get("tg_setWebhook", 0)))
    if got.get("callback_without_params"):
        out.write("  %d callback POSTs came without the query its params: give (unexpected)\n"
                  % got["callback_without_params"])
        unexpected += got["callback_without_params"]
    push_ok = (got.get("callback", 0) == stats.expected_push["callback"]
               and got.get("tg_sendMessage", 0) == stats.expected_push["tg_sendMessage"])
    with open(log_path, errors="replace") as f:
        text = f.read()
    reloads = len(re.findall(r"scripts reloaded \(generation", text))
    rejected = len(re.findall(r"script change rejected", text))
    hups = len(re.findall(r"SIGHUP: configuration reloaded", text))
    hup_rejected = len(re.findall(r"SIGHUP: (?:reload rejected|configuration rejected)", text))
    out.write("changes: %d channel rewrites (+%d broken on purpose), %d bot rewrites, %d SIGHUPs; "
              "host logged %d script reloads, %d rejected, %d SIGHUP reloads, %d SIGHUP rejected; "
              "versions seen: channel %d, bot %d\n" % (
                  changer.counts["channel_rewrite"], changer.counts["channel_broken"],
                  changer.counts["bot_rewrite"], changer.counts["sighup"], reloads, rejected, hups,
                  hup_rejected, len(load.channel_versions_seen), len(load.bot_versions_seen)))
    if status:
        out.write("host /status: generation %s, answers %s\n" % (
            status.get("generation"), json.dumps(status.get("requests"), sort_keys=True)))
        server_5xx = (status.get("requests") or {}).get("5xx")
        provoked_5xx = stats.provoked.get("channel_500", 0) + warm.provoked.get("channel_500", 0)
        if server_5xx is not None and server_5xx != provoked_5xx:
            out.write("  host counted %d 5xx answers, %d were provoked\n"
                      % (server_5xx, provoked_5xx))
            unexpected += max(0, server_5xx - provoked_5xx)
    out.write("host exit code after SIGTERM: %s\n" % exit_code)

    out.write("\nverdict:\n")
    out.write("  RSS: %d KiB idle before the load, %d KiB at the first sample, %d KiB at the end "
              "of the load, %s KiB idle after\n" % (
                  idle_before[0], first[1], last[1], idle_after[0] if idle_after else "-"))
    out.write("  RSS slope over the second half: %+.1f KiB/min (standard error %.1f; RssAnon "
              "%+.1f ± %.1f), %d samples\n" % (slope, slope_se, slope_anon, anon_se, len(half)))
    out.write("  fds: %d idle before, %d at the first sample, %d at the end of the load "
              "(min %d, max %d), %s idle after\n" % (
                  idle_before[2], first[3], last[3], min(s[3] for s in samples),
                  max(s[3] for s in samples), idle_after[2] if idle_after else "-"))
    out.write("  threads: %d before, %s after\n" % (idle_before[3],
                                                   idle_after[3] if idle_after else "-"))
    rss_flat = slope <= FLAT_KIB_PER_MIN or slope <= 2 * slope_se
    fds_flat = idle_after is not None and idle_after[2] <= idle_before[2] + FD_SLACK
    clean = unexpected == 0 and push_ok and not crashed and exit_code == 0
    out.write("  RSS %s (growing: slope above %d KiB/min and above twice its standard error), fds %s (limit: idle after <= idle before + %d); "
              "%d requests, %d unexpected answers%s%s\n" % (
                  "FLAT" if rss_flat else "GROWING", FLAT_KIB_PER_MIN,
                  "FLAT" if fds_flat else "GROWING", FD_SLACK, total, unexpected,
                  "" if push_ok else "; PUSH DELIVERIES MISSING",
                  "; THE HOST EXITED DURING THE RUN" if crashed else ""))
    return 0 if rss_flat and fds_flat and clean else 1


if __name__ == "__main__":
    sys.exit(main())
