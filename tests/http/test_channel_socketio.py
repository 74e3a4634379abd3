# SPDX-License-Identifier: MIT
"""The socketio channel (docs/channels/socketio.md), checked with the official socket.io-client
(tests/sdk/socketio_check.js): its default transports (HTTP long-polling, then the upgrade to
WebSocket), WebSocket only and polling only; Rasa's session_request / session_confirm,
user_uttered and bot_uttered shapes; session_persistence across a reconnect; 200 sessions at
once; a JWT that must be valid; proactive messages to a session; and the Engine.IO errors."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time
import unittest

from channel_fixtures import sdk
from harness import project
from util import QuietHost as Host
from wsclient import WebSocket

BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  local text = tostring(msg.text)
  sb.log.info("BOT GOT %s", text)
  out:send_text_message("echo: " .. text)
  if text:match("^buttons") then
    out:send_text_with_buttons("Pick", { { title = "Yes", payload = "/yes" } })
  elseif text:match("^image") then
    out:send_image_url("https://example.com/cat.png")
  elseif text:match("^meta") then
    out:send_custom_json({ data = { page = msg.metadata and msg.metadata.page } })
  end
end
return bot
"""


def serve(credentials="socketio:\n", workers=2, server=""):
    folder = project({"credentials.yml": credentials, "bot.lua": BOT,
                      "endpoints.yml": "bot:\n  script: bot.lua\nserver:\n  workers: %d\n%s"
                                       % (workers, server)})
    return Host(cwd=folder)


def check(host, **spec):
    spec.setdefault("url", "http://127.0.0.1:%d" % host.port)
    spec.setdefault("timeout", 10000)
    return sdk("socketio_check.js", spec, timeout=120)


class SocketIOTests(unittest.TestCase):
    def test_every_transport_of_the_official_client(self):
        with serve() as host:
            for transports, final in ((None, "websocket"), (["websocket"], "websocket"),
                                      (["polling"], "polling")):
                with self.subTest(transports=transports):
                    (got,) = check(host, transports=transports, linger=300,
                                   messages=["hello", "buttons", "image", "meta"])
                    self.assertIsNone(got["error"])
                    self.assertTrue(got["connected"])
                    self.assertEqual(got["transport"], final)
                    self.assertRegex(got["confirm"], "^[0-9a-f]{32}$")
                    self.assertEqual(got["replies"], [
                        {"text": "echo: hello 0"},
                        {"text": "echo: buttons 0"},
                        {"text": "Pick", "quick_replies": [
                            {"content_type": "text", "title": "Yes", "payload": "/yes"}]},
                        {"text": "echo: image 0"},
                        {"attachment": {"type": "image",
                                        "payload": {"src": "https://example.com/cat.png"}}},
                        {"text": "echo: meta 0"},
                        {"page": "test"},
                    ])

    def test_text_arrives_intact_and_split_on_blank_lines(self):
        # A text's bot_uttered packet is put together from its JSON string, without a table
        # (channels/socketio.lua): quotes, backslashes, control characters and non-ASCII text
        # must arrive as sent, and a blank line still makes two events.
        odd = 'say "hi" \\ \t\u00fc \U0001F600 </script>'
        with serve() as host:
            for transports in (["websocket"], ["polling"]):
                with self.subTest(transports=transports):
                    (got,) = check(host, transports=transports, messages=[odd, "one\n\ntwo"],
                                   expect=1.5, linger=300)
                    self.assertIsNone(got["error"])
                    self.assertEqual(got["replies"], [{"text": "echo: " + odd + " 0"},
                                                      {"text": "echo: one"}, {"text": "two 0"}])

    def test_a_reload_keeps_websocket_sessions_working(self):
        # conn.data is carried to the new scripts as JSON: what the channel keeps there must
        # survive that, and the next message must reach the new bot.
        with serve() as host:
            ws = WebSocket(host.port, "/socket.io/?EIO=4&transport=websocket")
            self.assertTrue(ws.recv().startswith("0{"))
            ws.send("40")
            self.assertTrue(ws.recv().startswith("40{"))
            ws.send('42["user_uttered",{"message":"one"}]')
            self.assertEqual(json.loads(ws.recv()[2:]), ["bot_uttered", {"text": "echo: one"}])
            path = os.path.join(host.cwd, "bot.lua")
            with open(path + ".tmp", "w") as f:
                f.write(BOT.replace('"echo: "', '"v2: "'))
            os.replace(path + ".tmp", path)
            host.wait_for_log("scripts reloaded", timeout=10)
            ws.send('42["user_uttered",{"message":"two"}]')
            self.assertEqual(json.loads(ws.recv()[2:]), ["bot_uttered", {"text": "v2: two"}])
            self.assertNotIn("could not be carried", host.log())

    def test_two_hundred_sessions_at_once(self):
        with serve() as host:
            started = time.monotonic()
            results = check(host, sessions=200, messages=["hi", "there"], timeout=60000)
            took = time.monotonic() - started
            errors = [r["error"] for r in results if r["error"]]
            self.assertEqual(errors, [])
            for i, got in enumerate(results):
                self.assertEqual(got["replies"], [{"text": "echo: hi %d" % i},
                                                  {"text": "echo: there %d" % i}])
            self.assertLess(took, 60)

    def test_session_persistence_keeps_the_conversation_across_a_reconnect(self):
        with serve("socketio:\n  session_persistence: true\n",
                   server="  push_token: t0ken\n") as host:
            (first,) = check(host, session_id="conv", messages=["one"])
            self.assertEqual(first["confirm"], "conv-0", first)
            # A reconnect with the same session_id is the same conversation: a proactive message
            # for it reaches the new socket (once the bot got its first message, the socket is
            # in the conversation's room).
            import threading
            result = {}
            spec = {"url": "http://127.0.0.1:%d" % host.port, "session_id": "conv",
                    "messages": ["two"], "expect": 2, "timeout": 20000}
            t = threading.Thread(target=lambda: result.update(got=sdk("socketio_check.js", spec,
                                                                      timeout=60)))
            t.start()
            host.wait_for_log("BOT GOT two 0", timeout=20)
            status, _, body = host.request(
                "POST", "/conversations/conv-0/messages?channel=socketio",
                json.dumps([{"text": "a reminder"}]),
                {"Content-Type": "application/json", "Authorization": "Bearer t0ken"})
            self.assertEqual(status, 202, body)
            t.join(60)
            (got,) = result["got"]
            self.assertIsNone(got["error"])
            self.assertEqual(got["confirm"], "conv-0")
            self.assertIn({"text": "a reminder"}, got["replies"])
            self.assertIn({"text": "echo: two 0"}, got["replies"])

    def test_a_jwt_key_refuses_clients_without_a_valid_token(self):
        key = "jwt-secret-1234"

        def token(secret, claims):
            def b64(data):
                return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
            head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            body = b64(json.dumps(claims).encode())
            sig = b64(hmac.new(secret.encode(), (head + "." + body).encode(),
                               hashlib.sha256).digest())
            return head + "." + body + "." + sig

        with serve("socketio:\n  jwt_key: %s\n" % key) as host:
            (good,) = check(host, auth={"token": token(key, {"sub": "u"})}, messages=["hi"])
            self.assertIsNone(good["error"])
            self.assertEqual(good["replies"], [{"text": "echo: hi 0"}])
            for auth in (None, {"token": token("wrong", {"sub": "u"})},
                         {"token": token(key, {"exp": 1})}):
                (bad,) = check(host, auth=auth, messages=["hi"], timeout=4000)
                self.assertEqual(bad["error"], "Connection rejected by server")
                self.assertEqual(bad["replies"], [])

    def test_an_rs256_jwt_method_checks_tokens_with_a_public_key(self):
        # As Rasa (PyJWT): with an RS method jwt_key is the PEM public key. Tokens signed by
        # openssl with the private key.
        folder = tempfile.mkdtemp(prefix="sb-sio-rs256-")
        private = os.path.join(folder, "private.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", private], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        public = subprocess.run(["openssl", "pkey", "-in", private, "-pubout"], check=True,
                                stdout=subprocess.PIPE, text=True).stdout

        def b64(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        def token(claims, alg="RS256"):
            signing_input = (b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." +
                             b64(json.dumps(claims).encode()))
            signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", private],
                                       input=signing_input.encode(), check=True,
                                       stdout=subprocess.PIPE).stdout
            return signing_input + "." + b64(signature)

        key_yaml = "".join("    " + line + "\n" for line in public.splitlines())
        with serve("socketio:\n  jwt_method: RS256\n  jwt_key: |\n" + key_yaml) as host:
            (good,) = check(host, auth={"token": token({"sub": "u"})}, messages=["hi"])
            self.assertIsNone(good["error"])
            self.assertEqual(good["replies"], [{"text": "echo: hi 0"}])
            # Algorithm confusion: an HS256 token keyed with the public key's PEM text.
            confused = (b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." +
                        b64(json.dumps({"sub": "u"}).encode()))
            confused += "." + b64(hmac.new(public.encode(), confused.encode(),
                                           hashlib.sha256).digest())
            for auth in ({"token": token({"exp": 1})}, {"token": confused}):
                (bad,) = check(host, auth=auth, messages=["hi"], timeout=4000)
                self.assertEqual(bad["error"], "Connection rejected by server")
            host.wait_for_log(r"refused \(expired")
            host.wait_for_log(r"refused \(algorithm")

    def test_engine_io_errors(self):
        with serve() as host:
            status, _, body = host.request("GET", "/socket.io/?EIO=4&transport=polling&sid=nope")
            self.assertEqual((status, json.loads(body)), (400, {"code": 1,
                                                                "message": "Session ID unknown"}))
            status, _, body = host.request("GET", "/socket.io/?EIO=3&transport=polling")
            self.assertEqual(json.loads(body)["code"], 5)
            status, _, body = host.request("GET", "/socket.io/?EIO=4&transport=polling")
            self.assertEqual(status, 200)
            self.assertTrue(body.startswith(b'0{"maxPayload":1000000,"pingInterval":25000,'))
            host.wait_for_log("WebSocket /socket.io/")


if __name__ == "__main__":
    unittest.main()
