# SPDX-License-Identifier: MIT
"""Small helpers shared by the black-box tests (on top of harness.py, which they do not change).

Why most projects here pin `server: workers: 1`: a test that keeps state in a Lua global (a
channel remembering the params of its init, a `req` stored for a later request) must see the
same Lua state on its next request, and one worker starts and stops faster. Behaviour that
depends on the worker count has its own tests with `workers: 2`.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from harness import BINARY, SOURCE_DIR, Host, free_port, project

ONE_WORKER = "server:\n  workers: 1\n"

# A Lua bot that answers every message with the message itself, so a test sees exactly what the
# bot received. Compare decoded JSON, never the text (key order is the encoder's).
ECHO_BOT = """\
local bot = {}
function bot.handle(msg, out)
  out:send_custom_json(msg)
end
return bot
"""

# A Lua bot that answers with the text it got, and logs each call (tests look for BOT GOT).
TEXT_BOT = """\
local sb = require "switchboard"
local bot = {}
function bot.handle(msg, out)
  sb.log.info("BOT GOT %s", tostring(msg.text))
  out:send_text_message("echo: " .. tostring(msg.text))
end
return bot
"""

# A channel whose messages are the `messages` array of the JSON body (several per request).
RELAY = """\
local c = { name = "relay" }
function c.receive(req) return req.json.messages end
return c
"""

LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


class QuietHost(Host):
    """harness.Host that also closes the child's pipes when it stops (no ResourceWarning noise)."""

    def stop(self, expect_code=0):
        try:
            return super().stop(expect_code)
        finally:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe and self._reader and not self._reader.is_alive():
                    pipe.close()


def version():
    """The version CMakeLists.txt declares (what --version, GET / and /status must report)."""
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        m = re.search(r"project\(switchboard\s+VERSION\s+([0-9][0-9A-Za-z.\-]*)", f.read())
    assert m, "no project(switchboard VERSION ...) in CMakeLists.txt"
    return m.group(1)


def endpoints_yml(bot_script=None, **server):
    """endpoints.yml text: one worker unless given, plus optional server limits and a Lua bot."""
    server.setdefault("workers", 1)
    text = "server:\n" + "".join("  %s: %s\n" % (k, v) for k, v in server.items())
    if bot_script:
        text += "bot:\n  script: %s\n" % bot_script
    return text


def make_project(files, bot=None, **server):
    """A temp project; adds endpoints.yml (one worker, `server` limits, bot.lua when `bot` is the
    bot's source) unless `files` has its own."""
    files = dict(files)
    if bot is not None:
        files.setdefault("bot.lua", bot)
    files.setdefault("endpoints.yml", endpoints_yml("bot.lua" if bot is not None else None,
                                                    **server))
    return project(files)


def serve(files=None, args=(), env=None, bot=None, **server):
    """Start a host on a new project made of `files` (see make_project). Use in a with block."""
    return QuietHost(args=args, cwd=make_project(files or {}, bot=bot, **server), env=env)


def shown_path(shown, project_dir):
    """The absolute path /status stands for: it shows project files as "./..." and bundled ones
    as "$SWITCHBOARD_HOME/..." (it shows no absolute path)."""
    if shown.startswith("./"):
        return os.path.join(project_dir, shown[2:])
    if shown.startswith("$SWITCHBOARD_HOME/"):
        return os.path.join(SOURCE_DIR, shown[len("$SWITCHBOARD_HOME/"):])
    raise AssertionError("/status showed a path that is neither ./ nor $SWITCHBOARD_HOME/: %r"
                         % shown)


def decode(body):
    return json.loads(body.decode("utf-8"))


def assert_json_error(test, answer, status, code):
    """Assert that `answer` (status, headers, body) is a JSON error {"error": code, "message":
    text} with this status; returns the decoded body."""
    got, headers, body = answer
    test.assertEqual(got, status, body)
    test.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
    doc = decode(body)
    test.assertEqual(doc.get("error"), code, doc)
    test.assertIsInstance(doc.get("message"), str)
    return doc


def error_lines(stderr):
    """The lines of stderr that are not timestamped log lines (the startup error lines)."""
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE_RE.match(line)]


def run_to_exit(args, cwd=None, env=None, timeout=15):
    """Run the binary and wait for it to exit on its own. A `run` that starts serving instead of
    failing is killed, and the result says so (returncode None)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.Popen([BINARY] + list(args), cwd=cwd, env=full_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, None, out, err)


def start_without_harness(args, cwd, timeout=10.0):
    """Start `switchboard run` on a fixed free port and wait until it accepts connections, for
    runs whose log does not show the "listening on" line (--log-level warning/error).
    Returns (process, port); stop it with stop_process()."""
    port = free_port()
    proc = subprocess.Popen([BINARY, "run", "-p", str(port), "-i", "127.0.0.1"] + list(args),
                            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError("switchboard did not start on port %d:\n%s" % (port, err))


def stop_process(proc):
    """SIGTERM; returns (exit code, stderr)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def request_on(conn, method, path, body=None, headers=None):
    """One request on an existing http.client connection: (status, lower-case headers, body)."""
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def chunked_request(host, method, path, chunks, headers=None):
    """A request whose body is sent with Transfer-Encoding: chunked."""
    conn = host.connection()
    try:
        conn.request(method, path, body=iter(chunks), headers=headers or {}, encode_chunked=True)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def post_stream(host, path, payload, timeout=10.0):
    """POST `payload` as JSON to path?stream=true on a new connection and read the stream to its
    end: (the response, its text, seconds from the request to the end of the stream)."""
    conn = host.connection(timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request("POST", path + "?stream=true", body=json.dumps(payload),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read().decode()
        return resp, data, time.monotonic() - t0
    finally:
        conn.close()


def status_for_announced_body(host, method, path, length, timeout=10):
    """Send only the request head announcing a `length`-byte body and return the status line's
    code the host answers with (a host may refuse a too large body before it arrives; sending
    the body with http.client would then fail with a broken pipe)."""
    with socket.create_connection(("127.0.0.1", host.port), timeout=timeout) as sock:
        sock.sendall(("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n" % (method, path, length)).encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    assert m, "no HTTP answer: %r" % data
    return int(m.group(1))


def final_log(host):
    """Stop the host (exit code 0 expected) and return its whole log. host.log() holds what the
    host has written so far; after the stop that is all it will ever write, so the absence of a
    line that could still come later is checked on this."""
    host.stop()
    return host.log()


def log_lines_with_id(host, request_id):
    """The log lines tagged with `request_id`, from the whole log (stops the host)."""
    return [line for line in final_log(host).splitlines() if "[%s]" % request_id in line]


def make_self_signed_cert(folder):
    """A self-signed certificate and key made with the openssl CLI; (cert, key) or None when
    openssl is missing."""
    openssl = shutil.which("openssl")
    if not openssl:
        return None
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def https_request(port, method, path, body=None, headers=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        return request_on(conn, method, path, body, headers)
    finally:
        conn.close()


def temp_dir():
    return tempfile.mkdtemp(prefix="sb-test-")
