# SPDX-License-Identifier: MIT
"""Stand-ins the outbound tests point the host at: small HTTP(S) servers on 127.0.0.1 (port 0)
that record every request and answer as the test scripts them.

    with StandIn(Reply(json=[{"recipient_id": "x", "text": "hi"}])) as bot:
        ... bot.url("/webhook") ...
        rec = bot.wait_for(1)[0]     # Recorded: method, path, query, headers, body, json, start, end

A stand-in answers with `responder`: one Reply (every request), a list of Replies (one per
request in order; the last one repeats) or a function Recorded -> Reply. A Reply may delay its
answer (the handler thread sleeps, so other requests are served meanwhile).
"""
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import unittest
import urllib.parse


class Reply:
    """What a stand-in answers: status, a body (bytes/str) or json=, headers, and a delay."""

    def __init__(self, status=200, body=None, json=None, headers=None, delay=0.0,
                 content_type=None):
        self.status = status
        self.body = body
        self.json = json
        # a dict, or a list of (name, value) pairs (for repeated headers)
        self.headers = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        self.delay = delay
        self.content_type = content_type

    def encoded(self):
        if self.json is not None:
            return json.dumps(self.json).encode(), self.content_type or "application/json"
        body = self.body if self.body is not None else b""
        if isinstance(body, str):
            body = body.encode()
        return body, self.content_type or "text/plain"


class Recorded:
    """One request a stand-in received."""

    def __init__(self, method, target, headers, body, start):
        self.method = method
        self.target = target
        split = urllib.parse.urlsplit(target)
        self.path = split.path
        self.raw_query = split.query
        self.query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query,
                                                                keep_blank_values=True).items()}
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        self.start = start      # time.monotonic() when the request had arrived
        self.replied = None     # time.monotonic() when the stand-in began to answer
        self.end = None         # time.monotonic() when the answer was sent (or given up)

    @property
    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    def __repr__(self):
        return "<%s %s %r>" % (self.method, self.target, self.body[:200])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _handle(self):
        start = time.monotonic()
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, self.path, self.headers, body, start)
        standin._arrived(rec)
        reply = standin._reply_for(rec)
        if reply.delay:
            time.sleep(reply.delay)
        rec.replied = time.monotonic()
        data, content_type = reply.encoded()
        try:
            self.send_response(reply.status)
            if reply.status != 204:
                self.send_header("Content-Type", content_type)
            for k, v in reply.headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            pass  # the host gave up (timeout, cancellation): nothing to answer to
        finally:
            rec.end = time.monotonic()
            self.close_connection = True
            standin._finished(rec)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def handle_error(self, request, client_address):  # quiet on resets
        pass


class StandIn:
    """A recording, scriptable HTTP server on 127.0.0.1. Use as a context manager."""

    def __init__(self, responder=None, ssl_context=None):
        self.responder = responder if responder is not None else Reply()
        self.requests = []
        self._count = 0
        self._cond = threading.Condition()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self.scheme = "http"
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path="/"):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def _arrived(self, rec):
        with self._cond:
            self._count += 1
            rec.index = self._count - 1
            self.requests.append(rec)
            self._cond.notify_all()

    def _finished(self, rec):
        with self._cond:
            self._cond.notify_all()

    def _reply_for(self, rec):
        r = self.responder
        if callable(r) and not isinstance(r, Reply):
            return r(rec)
        if isinstance(r, list):
            return r[min(rec.index, len(r) - 1)]
        return r

    def wait_for(self, n, timeout=10.0, finished=False):
        """Wait until n requests arrived (and, with finished, were answered); returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                done = [r for r in self.requests if not finished or r.end is not None]
                if len(done) >= n:
                    return list(self.requests)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("stand-in got %d of %d requests: %r"
                                         % (len(done), n, self.requests))
                self._cond.wait(left)

    def snapshot(self):
        with self._cond:
            return list(self.requests)

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def echo_rasa_bot(delay=0.0, extra=None):
    """A responder that answers like a Rasa REST channel: one text message echoing the message."""
    def respond(rec):
        body = rec.json or {}
        return Reply(json=[{"recipient_id": body.get("sender"),
                            "text": "echo: %s" % body.get("message")}], delay=delay)
    return respond


def dead_port():
    """A port nobody listens on (bound and closed at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca_and_server_cert(folder):
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, made with the openssl
    CLI. Returns (ca_cert, server_cert, server_key)."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60,
                       cwd=folder)
    ca_key, ca = os.path.join(folder, "ca.key"), os.path.join(folder, "ca.pem")
    key, csr = os.path.join(folder, "server.key"), os.path.join(folder, "server.csr")
    cert, ext = os.path.join(folder, "server.pem"), os.path.join(folder, "ext.cnf")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Switchboard Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "2", "-extfile", ext)
    return ca, cert, key


def server_ssl_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# ---- helpers for the host side ------------------------------------------------------------------

class StandInHostCase(unittest.TestCase):
    """One host per test class and the stand-ins it talks to. A subclass writes the classmethod
    start(): it opens its stand-ins with cls.standin(responder) and sets cls.host. A start that
    fails closes the stand-ins it opened; after the class, the host is stopped (exit code 0
    expected), then the stand-ins are closed."""

    @classmethod
    def start(cls):
        raise NotImplementedError

    @classmethod
    def standin(cls, responder=None, ssl_context=None):
        standin = StandIn(responder, ssl_context)
        cls._standins.append(standin)
        return standin

    @classmethod
    def _close_standins(cls):
        for standin in cls._standins:
            standin.close()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._standins = []
        try:
            cls.start()
        except BaseException:
            cls._close_standins()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.host.stop()
        finally:
            cls._close_standins()
            super().tearDownClass()


def http_bot_endpoints(url, timeout=None, headers=None, workers=1):
    """endpoints.yml text for an HTTP bot at `url`."""
    text = "server:\n  workers: %d\nbot:\n  url: %s\n" % (workers, url)
    if timeout is not None:
        text += "  timeout: %s\n" % timeout
    if headers:
        text += "  headers:\n" + "".join('    %s: "%s"\n' % kv for kv in headers.items())
    return text


def lua_bot_endpoints(script="bot.lua", workers=1):
    return "server:\n  workers: %d\nbot:\n  script: %s\n" % (workers, script)


def error_line(host, request_id, pattern="", timeout=5.0):
    """Wait for an ERROR log line tagged with request_id whose text matches `pattern`; gives up
    early when the host has exited."""
    regex = r"ERROR\s+\[%s\][^\n]*%s" % (re.escape(request_id), pattern)
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(regex, host.log())
        if m:
            return m
        if host.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("no log line matches %r; log:\n%s" % (regex, host.log()))
        time.sleep(0.02)


def post_timed(host, path, payload, timeout=15.0):
    """POST JSON on a new connection: (status, headers, decoded body or text, seconds taken)."""
    t0 = time.monotonic()
    status, headers, body = host.request("POST", path, body=payload, timeout=timeout)
    took = time.monotonic() - t0
    try:
        body = json.loads(body)
    except ValueError:
        body = body.decode("utf-8", "replace")
    return status, headers, body, took


def in_threads(calls, stagger=0.0):
    """Run each zero-argument function in a thread of its own (started `stagger` s apart);
    returns their results in order (an exception is returned as the result)."""
    results = [None] * len(calls)

    def run(i, f):
        try:
            results[i] = f()
        except Exception as e:  # noqa: BLE001 - reported to the test as the result
            results[i] = e
    threads = []
    for i, f in enumerate(calls):
        t = threading.Thread(target=run, args=(i, f), daemon=True)
        t.start()
        threads.append(t)
        if stagger:
            time.sleep(stagger)
    for t in threads:
        t.join(60)
    return results


def built_with_sanitizers(binary=None):
    """True when the switchboard binary under test was built with ASan, UBSan or TSan (some bugs
    only show there: a read of freed or never-initialised memory that a release build survives;
    and every sanitizer makes the host several times slower)."""
    from harness import BINARY
    with open(binary or BINARY, "rb") as f:
        data = f.read()
    return any(mark in data for mark in (b"__asan_init", b"__ubsan_handle", b"__tsan_init"))


def expected_failure_under_sanitizers(test):
    """@unittest.expectedFailure when the binary has sanitizers, else the test as it is."""
    return unittest.expectedFailure(test) if built_with_sanitizers() else test
