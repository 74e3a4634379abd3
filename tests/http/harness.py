# SPDX-License-Identifier: MIT
"""Black-box test harness: starts the real switchboard binary on a free port and talks HTTP to it.

Every test starts its own host (port 0: the host binds a free port and logs it), so tests are
independent and can run in parallel. The binary comes from $SB_BINARY (CTest sets it); the
repository root from $SB_SOURCE_DIR.
"""
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

SOURCE_DIR = os.environ.get("SB_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BINARY = os.environ.get("SB_BINARY", os.path.join(SOURCE_DIR, "build", "switchboard"))
LISTEN_RE = re.compile(r"listening on (https?)://[^ ]*:(\d+) ")


class Host:
    """A running `switchboard run`. Use as a context manager or call stop()."""

    def __init__(self, args=(), cwd=None, env=None, start_timeout=10.0):
        self.cwd = cwd or tempfile.mkdtemp(prefix="sb-test-")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.argv = [BINARY, "run", "-p", "0", "-i", "127.0.0.1"] + list(args)
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._log = []
        self._log_lock = threading.Lock()
        self._partial = b""
        self._log_ended = False
        self._started = threading.Event()
        self.port = None
        self.scheme = "http"
        os.set_blocking(self.proc.stderr.fileno(), False)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._started.wait(start_timeout) or self.port is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("switchboard did not start: %s" % self.log())

    def _drain_locked(self):
        """Take in, under the log lock, every complete line the host has written so far. Reading
        and recording happen in one locked step, so once the pipe is empty the log holds all
        the host wrote: log() drains too, and a line written before an answer the test already
        got is always in it (a reader thread alone could still be behind)."""
        if self._log_ended or self.proc.stderr.closed:
            return
        fd = self.proc.stderr.fileno()
        while not self._log_ended:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self._log_ended = True
                chunk, self._partial = self._partial, b""
                if chunk:
                    self._record(chunk.decode("utf-8", "replace"))
                return
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._record(line.decode("utf-8", "replace") + "\n")

    def _record(self, line):
        self._log.append(line)
        m = LISTEN_RE.search(line)
        if m and self.port is None:
            self.scheme, self.port = m.group(1), int(m.group(2))
            self._started.set()

    def _read_log(self):
        fd = self.proc.stderr.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            poller.poll()
            with self._log_lock:
                self._drain_locked()
                if self._log_ended:
                    break
        self._started.set()

    def log(self):
        with self._log_lock:
            self._drain_locked()
            return "".join(self._log)

    def read_whole_log(self, timeout=5.0):
        """Once the process has ended: wait until the reader thread has read all it wrote."""
        self._reader.join(timeout)

    def wait_for_log(self, pattern, timeout=5.0):
        """Wait until a log line matches the regex; returns the match."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError("no log line matches %r; log:\n%s" % (pattern, self.log()))

    def connection(self, timeout=10.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        """One request on a new connection. Returns (status, headers dict lower-cased, body bytes)."""
        conn = self.connection(timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = dict(headers or {}, **{"Content-Type": "application/json"})
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def post_json(self, path, payload, headers=None):
        """POST JSON; returns (status, headers, decoded JSON or raw text)."""
        status, hdrs, data = self.request("POST", path, body=payload, headers=headers)
        try:
            return status, hdrs, json.loads(data)
        except ValueError:
            return status, hdrs, data.decode("utf-8", "replace")

    def stop(self, expect_code=0):
        """SIGTERM, wait, and check the exit code (under ASan a leak makes it non-zero)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("switchboard did not stop on SIGTERM; log:\n" + self.log())
        self.read_whole_log()
        if expect_code is not None and self.proc.returncode != expect_code:
            raise AssertionError("switchboard exited with %s, expected %s; log:\n%s"
                                 % (self.proc.returncode, expect_code, self.log()))
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(expect_code=0 if exc_type is None else None)
        return False


def run_command(args, cwd=None, env=None, timeout=30):
    """Run the binary to completion (check, --help, startup failures). Returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([BINARY] + list(args), cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def write_files(folder, files):
    """Write {relative path: text} below folder (creating folders); returns folder."""
    for rel, text in files.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return folder


def project(files):
    """A new temporary project folder holding `files`."""
    return write_files(tempfile.mkdtemp(prefix="sb-project-"), files)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
