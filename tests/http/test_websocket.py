# SPDX-License-Identifier: MIT
"""WebSockets in the host (docs/lua-api.md, "Connections"; RFC 6455): a channel's `websocket`
route, its on_open / on_message / on_close hooks, conn:send / close / bind and conn.data, bot
replies over the connection, sends to a sender's connections from any worker, the close
handshake and its codes, the rules of the protocol, a client that does not read, a reload and
a graceful stop. The client is a raw socket (tests/http/wsclient.py), so the tests can break the
rules on purpose."""
import json
import os
import re
import signal
import socket
import time
import unittest

import base64

from channel_fixtures import sdk
from harness import project
from util import QuietHost as Host, TEXT_BOT
from wsclient import (BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, Closed, WebSocket,
                      close_payload, frame, accept_for)

ECHO = """\
local sb = require "switchboard"
local c = { name = "echo", websocket = "/ws" }
function c.on_open(conn, req)
  if req.query.deny then return { status = 403, json = { error = "denied" } } end
  if req.query.boom then error("on_open failed on purpose") end
  if req.query.bye then conn:send("bye") conn:close(4001, "not today") return end
  conn.data.n = 0
end
function c.on_message(conn, data, binary)
  conn.data.n = conn.data.n + 1
  if binary then conn:send(data, true) return end
  local cmd, arg = data:match("^(%a+):(.*)$")
  if cmd == "close" then conn:close(4000, arg) return end
  if cmd == "bot" then conn:bind("u-" .. arg) return { { sender_id = "u-" .. arg, text = arg } } end
  if cmd == "bind" then conn:bind(arg) conn:send("bound " .. arg) return end
  if cmd == "flood" then
    local chunk = ("x"):rep(65536)
    for _ = 1, tonumber(arg) do if not conn:send(chunk) then break end end
    return
  end
  if cmd == "boom" then error("on_message failed on purpose") end
  conn:send(data .. "#" .. conn.data.n)
end
function c.on_close(conn, code, reason)
  sb.log.info("CLOSED %s %s", tostring(code), reason)
end
c.routes = {
  ["POST /notify"] = function(req)
    return { json = { sent = sb.connections.send(req.json.to, req.json.text) } }
  end,
}
return c
"""

WS_PATH = "/webhooks/echo/ws"


def serve(workers=1, args=(), channel=ECHO, server_extra=""):
    folder = project({"echo.lua": channel, "credentials.yml": "echo.lua:\n", "bot.lua": TEXT_BOT,
                      "endpoints.yml": "bot:\n  script: bot.lua\nserver:\n  workers: %d\n%s"
                                       % (workers, server_extra)})
    return Host(list(args), cwd=folder), folder


def metric(host, name):
    body = host.request("GET", "/metrics")[2].decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def wait_metric(host, name, value, timeout=5.0):
    deadline = time.monotonic() + timeout
    while metric(host, name) != value and time.monotonic() < deadline:
        time.sleep(0.02)
    return metric(host, name)


class HandshakeTests(unittest.TestCase):
    def test_a_handshake_opens_and_messages_echo_in_order(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH)
            self.assertEqual(ws.handshake.status, 101, ws.handshake.body)
            self.assertEqual(ws.handshake.headers["upgrade"].lower(), "websocket")
            self.assertEqual(ws.handshake.headers["sec-websocket-accept"], accept_for(ws.key))
            ws.send("hi")
            self.assertEqual(ws.recv(), "hi#1")
            ws.send(b"\x00\x01\xff")
            self.assertEqual(ws.recv(), b"\x00\x01\xff")
            # A fragmented message with a ping between its fragments.
            ws.send_raw(frame(TEXT, "frag", fin=False) + frame(PING, "p1")
                        + frame(CONTINUATION, "men", fin=False) + frame(CONTINUATION, "ted"))
            self.assertEqual(ws.recv_frame(), (PONG, b"p1", True))
            self.assertEqual(ws.recv(), "fragmented#3")
            # Many messages: one event at a time, in order, conn.data kept between them.
            for i in range(200):
                ws.send("m%d" % i)
            for i in range(200):
                self.assertEqual(ws.recv(), "m%d#%d" % (i, i + 4))
            self.assertEqual(wait_metric(host, "switchboard_websocket_connections_open", 1), 1)
            ws.close(1000, "bye")
            self.assertEqual(ws.expect_close(), (1000, "bye"))
            self.assertTrue(ws.eof())
            host.wait_for_log(r"CLOSED 1000 bye")
            self.assertEqual(wait_metric(host, "switchboard_websocket_connections_open", 0), 0)

    def test_requests_that_are_not_a_handshake_get_the_answer_the_rfc_asks_for(self):
        host, _ = serve()
        with host:
            status, headers, body = host.request("GET", WS_PATH)
            self.assertEqual(status, 426, body)
            self.assertEqual(headers["upgrade"], "websocket")
            self.assertEqual(json.loads(body)["error"], "websocket_required")
            ws = WebSocket(host.port, WS_PATH, {"Sec-WebSocket-Version": "8"})
            self.assertEqual(ws.handshake.status, 426)
            self.assertEqual(ws.handshake.headers["sec-websocket-version"], "13")
            ws = WebSocket(host.port, WS_PATH, {"Sec-WebSocket-Key": "short"})
            self.assertEqual(ws.handshake.status, 400)
            self.assertIn(b"Sec-WebSocket-Key", ws.handshake.body)
            ws = WebSocket(host.port, WS_PATH, {"Connection": "keep-alive"})
            self.assertEqual(ws.handshake.status, 400)
            self.assertEqual(host.request("POST", WS_PATH, b"{}")[0], 405)
            # Firefox sends "Connection: keep-alive, Upgrade".
            ws = WebSocket(host.port, WS_PATH, {"Connection": "keep-alive, Upgrade"})
            self.assertEqual(ws.handshake.status, 101)

    def test_on_open_may_refuse_and_a_failing_on_open_is_a_500(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH + "?deny=1")
            self.assertEqual(ws.handshake.status, 403)
            self.assertEqual(json.loads(ws.handshake.body), {"error": "denied"})
            ws = WebSocket(host.port, WS_PATH + "?boom=1")
            self.assertEqual(ws.handshake.status, 500)
            host.wait_for_log("on_open failed on purpose")
            self.assertEqual(metric(host, "switchboard_websocket_connections_open"), 0)
            self.assertNotIn("CLOSED", host.log())  # never opened: no on_close
            ws = WebSocket(host.port, WS_PATH)
            self.assertTrue(ws.opened)

    def test_the_origin_is_checked_against_cors(self):
        host, _ = serve(args=["--cors", "https://good.example"])
        with host:
            ws = WebSocket(host.port, WS_PATH, {"Origin": "https://evil.example"})
            self.assertEqual(ws.handshake.status, 403)
            self.assertTrue(WebSocket(host.port, WS_PATH, {"Origin": "https://good.example"}).opened)
            self.assertTrue(WebSocket(host.port, WS_PATH).opened)  # not a browser: no Origin


class CloseAndErrorTests(unittest.TestCase):
    def test_on_open_may_send_and_close_before_the_first_message(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH + "?bye=1")
            self.assertEqual(ws.handshake.status, 101)
            self.assertEqual(ws.recv_frame(), (TEXT, b"bye", True))
            self.assertEqual(ws.expect_close(), (4001, "not today"))
            ws.close(4001)
            self.assertTrue(ws.eof())
            host.wait_for_log("CLOSED 4001")

    def test_a_message_of_exactly_the_limit_passes_and_one_byte_more_does_not(self):
        host, _ = serve(server_extra="  websocket_max_message: 1000\n")
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send(b"a" * 1000)
            self.assertEqual(ws.recv(), b"a" * 1000)
            ws.send_raw(frame(TEXT, "b" * 600, fin=False) + frame(CONTINUATION, "c" * 401))
            self.assertEqual(ws.expect_close()[0], 1009)

    def test_connections_come_and_go_and_the_gauge_returns_to_zero(self):
        host, _ = serve(workers=2)
        with host:
            for round_ in range(3):
                sockets = [WebSocket(host.port, WS_PATH) for _ in range(30)]
                for i, ws in enumerate(sockets):
                    ws.send("r%d-%d" % (round_, i))
                for i, ws in enumerate(sockets):
                    self.assertEqual(ws.recv(), "r%d-%d#1" % (round_, i))
                for i, ws in enumerate(sockets):
                    if i % 2:
                        ws.close()
                    else:
                        ws.abort()
            self.assertEqual(wait_metric(host, "switchboard_websocket_connections_open", 0), 0)


    def test_the_channel_closes_with_its_code(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send("close:later")
            self.assertEqual(ws.expect_close(), (4000, "later"))
            ws.close(4000)
            self.assertTrue(ws.eof())
            host.wait_for_log(r"CLOSED 4000")

    def test_protocol_errors_close_with_their_codes_and_the_host_serves_on(self):
        cases = [
            ("an unmasked frame", frame(TEXT, "x", mask=False), 1002),
            ("an unknown opcode", frame(3, "x"), 1002),
            ("a reserved bit", frame(TEXT, "x", rsv=4), 1002),
            ("a continuation with nothing to continue", frame(CONTINUATION, "x"), 1002),
            ("text that is not UTF-8", frame(TEXT, b"\xc3\x28"), 1007),
            ("a message over the limit", frame(BINARY, b"", length=2 << 20), 1009),
            ("a ping over 125 bytes", frame(PING, b"p" * 126), 1002),
            ("a close code that may not be sent", frame(CLOSE, close_payload(1005)), 1002),
        ]
        host, _ = serve()
        with host:
            for what, data, code in cases:
                with self.subTest(what):
                    ws = WebSocket(host.port, WS_PATH)
                    ws.send_raw(data)
                    self.assertEqual(ws.expect_close()[0], code)
                    ws.close(code)
                    self.assertTrue(ws.eof())
            ws = WebSocket(host.port, WS_PATH)
            ws.send("still here")
            self.assertEqual(ws.recv(), "still here#1")

    def test_a_client_that_goes_away_is_reported_as_1006(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send("x")
            ws.recv()
            ws.abort()
            host.wait_for_log(r"CLOSED 1006 the client closed the connection without a close "
                              r"frame")

    def test_an_error_in_on_message_is_logged_and_the_connection_stays(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send("boom:")
            host.wait_for_log("on_message failed on purpose")
            ws.send("after")
            self.assertEqual(ws.recv(), "after#2")

    def test_a_client_that_does_not_read_is_cut_and_memory_stays_bounded(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ws.send("flood:400")  # 25 MiB at a client that reads nothing
            host.wait_for_log(r"the client does not read .*closed", timeout=10)
            host.wait_for_log(r"CLOSED 1006 the client did not read")
            other = WebSocket(host.port, WS_PATH)
            other.send("ok")
            self.assertEqual(other.recv(), "ok#1")


class BotAndSendTests(unittest.TestCase):
    def test_bot_replies_go_back_over_the_connection(self):
        host, _ = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send("bot:hello")
            self.assertEqual(json.loads(ws.recv()), {"recipient_id": "u-hello",
                                                     "text": "echo: hello"})

    def test_a_sender_is_reached_from_any_worker(self):
        host, _ = serve(workers=2)
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send("bind:alice")
            self.assertEqual(ws.recv(), "bound alice")
            for i in range(20):  # new connections: both workers answer some of them
                status, _, body = host.request("POST", "/webhooks/echo/notify",
                                               json.dumps({"to": "alice", "text": "n%d" % i}),
                                               {"Content-Type": "application/json"})
                self.assertEqual((status, json.loads(body)), (200, {"sent": 1}))
            self.assertEqual(sorted(ws.recv() for _ in range(20)),
                             sorted("n%d" % i for i in range(20)))
            status, _, body = host.request("POST", "/webhooks/echo/notify",
                                           json.dumps({"to": "nobody", "text": "x"}),
                                           {"Content-Type": "application/json"})
            self.assertEqual(json.loads(body), {"sent": 0})
            ws.close()
            ws.expect_close()
            host.wait_for_log("CLOSED 1000")
            status, _, body = host.request("POST", "/webhooks/echo/notify",
                                           json.dumps({"to": "alice", "text": "late"}),
                                           {"Content-Type": "application/json"})
            self.assertEqual(json.loads(body), {"sent": 0})


    def test_a_closed_connection_no_longer_counts_for_its_sender(self):
        # on_close takes a while here: sends to the sender meanwhile, from either worker, must
        # not count a connection that can no longer get them.
        slow_close = ECHO.replace('sb.log.info("CLOSED %s %s", tostring(code), reason)\n',
                                  'sb.log.info("CLOSED %s %s", tostring(code), reason)\n'
                                  '  sb.sleep(1)\n')
        self.assertNotEqual(slow_close, ECHO)
        host, _ = serve(workers=2, channel=slow_close)
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send("bind:alice")
            self.assertEqual(ws.recv(), "bound alice")
            ws.close()
            ws.expect_close()
            host.wait_for_log("CLOSED 1000")
            sent = []
            for i in range(10):  # new connections: both workers answer some of them
                status, _, body = host.request("POST", "/webhooks/echo/notify",
                                               json.dumps({"to": "alice", "text": "n%d" % i}),
                                               {"Content-Type": "application/json"})
                self.assertEqual(status, 200, body)
                sent.append(json.loads(body)["sent"])
            self.assertEqual(sent, [0] * 10)


class OutsideCheckTests(unittest.TestCase):
    def test_the_ws_package_talks_to_the_host(self):
        host, _ = serve()
        with host:
            got = sdk("ws_check.js", {
                "url": "ws://127.0.0.1:%d%s" % (host.port, WS_PATH),
                "messages": ["one", {"binary": base64.b64encode(b"\x00\xff").decode()},
                             "two " + "x" * 70000],
                "close": {"code": 4001, "reason": "done here"}})
            self.assertIsNone(got["error"])
            self.assertEqual(got["extensions"], "")  # no compression was agreed
            self.assertEqual(got["pong"], "are you there")
            self.assertEqual(got["messages"][0], "one#1")
            self.assertEqual(got["messages"][1], {"binary": base64.b64encode(b"\x00\xff").decode()})
            self.assertEqual(got["messages"][2], "two " + "x" * 70000 + "#3")
            self.assertEqual(got["close"], {"code": 4001, "reason": "done here"})
            host.wait_for_log("CLOSED 4001 done here")


# A connection channel with senders: its replies (and proactive messages) go to every
# connection of the recipient, as {"type": ..., ...} JSON.
PUSHING = '''\
local sb = require "switchboard"
local c = { name = "chat", websocket = "/ws" }
function c.on_open(conn, req) conn:bind(req.query.user) conn.data.user = req.query.user end
function c.on_message(conn, data) return { { sender_id = conn.data.user, text = data } } end
function c.send_text_message(to, text)
  sb.connections.send(to, sb.json.encode({ type = "text", text = text }))
end
return c
'''


class ProactiveTests(unittest.TestCase):
    def test_replies_and_proactive_messages_reach_every_connection_of_the_sender(self):
        folder = project({"chat.lua": PUSHING, "credentials.yml": "chat.lua:\n", "bot.lua": TEXT_BOT,
                          "endpoints.yml": "bot:\n  script: bot.lua\nserver:\n  workers: 2\n"
                                           "  push_token: t0ken\n"})
        with Host(cwd=folder) as host:
            phone = WebSocket(host.port, "/webhooks/chat/ws?user=ada")
            laptop = WebSocket(host.port, "/webhooks/chat/ws?user=ada")
            other = WebSocket(host.port, "/webhooks/chat/ws?user=bob")
            phone.send("hello")
            for ws in (phone, laptop):
                self.assertEqual(json.loads(ws.recv()), {"type": "text", "text": "echo: hello"})
            status, _, body = host.request(
                "POST", "/conversations/ada/messages?channel=chat",
                json.dumps([{"text": "a reminder"}]),
                {"Content-Type": "application/json", "Authorization": "Bearer t0ken"})
            self.assertEqual(status, 202, body)
            for ws in (phone, laptop):
                self.assertEqual(json.loads(ws.recv()), {"type": "text", "text": "a reminder"})
            other.send("me too")
            self.assertEqual(json.loads(other.recv()), {"type": "text", "text": "echo: me too"})


class MountTests(unittest.TestCase):
    def test_a_mount_may_not_take_the_hosts_own_paths(self):
        from util import run_to_exit
        for mount in ("/status", "/webhooks/x", "/", "socket.io"):
            channel = ECHO.replace('websocket = "/ws" }', 'websocket = "/ws", mount = "%s" }' % mount)
            folder = project({"echo.lua": channel, "credentials.yml": "echo.lua:\n"})
            result = run_to_exit(["check"], cwd=folder)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertIn("channel.mount must be a path such as", result.stderr)

    def test_a_mounted_websocket_and_a_plain_get_share_a_path(self):
        channel = ECHO.replace('websocket = "/ws" }', 'websocket = "/", mount = "/live" }') \
                      .replace('c.routes = {', 'c.routes = {\n  ["GET /"] = function() return { body = "plain" } end,')
        folder = project({"echo.lua": channel, "credentials.yml": "echo.lua:\n",
                          "endpoints.yml": "server:\n  workers: 1\n"})
        with Host(cwd=folder) as host:
            self.assertEqual(host.request("GET", "/live/")[2], b"plain")
            ws = WebSocket(host.port, "/live/")
            self.assertTrue(ws.opened)
            ws.send("x")
            self.assertEqual(ws.recv(), "x#1")
            host.wait_for_log("WebSocket /live/")


class TlsTests(unittest.TestCase):
    def test_a_websocket_over_https_echoes_and_closes(self):
        import ssl
        import tempfile
        from standins import make_ca_and_server_cert
        ca, cert, key = make_ca_and_server_cert(tempfile.mkdtemp(prefix="sb-ws-tls-"))
        host, _ = serve(args=["--ssl-certificate", cert, "--ssl-keyfile", key])
        with host:
            context = ssl.create_default_context(cafile=ca)
            ws = WebSocket(host.port, WS_PATH, ssl_context=context)
            self.assertEqual(ws.handshake.status, 101)
            ws.send("over tls")
            self.assertEqual(ws.recv(), "over tls#1")
            ws.send(b"\x01" * 70000)
            self.assertEqual(ws.recv(), b"\x01" * 70000)
            ws.close(1000, "done")
            self.assertEqual(ws.expect_close(), (1000, "done"))
            host.wait_for_log("CLOSED 1000 done")


class LifecycleTests(unittest.TestCase):
    def test_a_reload_keeps_the_connection_and_its_data(self):
        host, folder = serve()
        with host:
            ws = WebSocket(host.port, WS_PATH)
            ws.send("one")
            self.assertEqual(ws.recv(), "one#1")
            path = os.path.join(folder, "echo.lua")
            with open(path + ".tmp", "w") as f:
                f.write(ECHO.replace('conn:send(data .. "#"', 'conn:send("v2 " .. data .. "#"'))
            os.replace(path + ".tmp", path)
            host.wait_for_log("scripts reloaded", timeout=10)
            ws.send("two")
            self.assertEqual(ws.recv(), "v2 two#2")

    def test_a_graceful_stop_closes_connections_with_1001(self):
        host, _ = serve()
        ws = WebSocket(host.port, WS_PATH)
        ws.send("x")
        ws.recv()
        started = time.monotonic()
        host.proc.send_signal(signal.SIGTERM)
        self.assertEqual(ws.expect_close(), (1001, "the host is stopping"))
        ws.close(1001)
        self.assertTrue(ws.eof())
        host.stop()
        self.assertLess(time.monotonic() - started, 5)


if __name__ == "__main__":
    unittest.main()
