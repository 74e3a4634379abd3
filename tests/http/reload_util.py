# SPDX-License-Identifier: MIT
"""Helpers for the reload, guard and shutdown tests (test_reload, test_guards, test_shutdown), on
top of harness.py and util.py.

Writing a script the way people do:
    rewrite(path, text)                 # open(..., "w"), write, close: IN_CLOSE_WRITE
    rewrite(path, text, how="rename")   # editor style: write a temp file beside it, rename over
Waiting for the host to pick a change up:
    ms = wait_for_json(host, path, payload, lambda body: body.get("version") == "v2")
"""
import http.client
import json
import os
import signal
import socket
import time

# A channel that answers every POST itself (no bot involved) with its version, so a test sees at
# once which code served a request. VERSION is a chunk-level constant: a state loaded from an
# older file keeps answering the older value.
VERSION_CHANNEL = """\
local VERSION = "{version}"
local channel = {{ name = "{name}" }}
function channel.receive(req)
  return {{}}, {{ status = 200, json = {{ version = VERSION, channel = channel.name }} }}
end
return channel
"""


def version_channel(version, name="ver"):
    return VERSION_CHANNEL.format(version=version, name=name)


def rewrite(path, text, how="plain"):
    """Write `text` to `path`: "plain" rewrites the file in place; "rename" writes a temporary file
    in the same folder and renames it over the script (vim, VS Code, atomic writers)."""
    if how == "plain":
        with open(path, "w") as f:
            f.write(text)
    elif how == "rename":
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, ".%s.tmp%d" % (name, os.getpid()))
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    else:
        raise ValueError(how)
    return time.monotonic()


class Client:
    """A keep-alive connection to the host that reconnects when the host closes it; used to poll
    quickly (a new TCP connection per poll adds noise to latency numbers)."""

    def __init__(self, host, timeout=10.0):
        self.host = host
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, payload=None):
        body = json.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.host.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post_json(self, path, payload):
        status, data = self.request("POST", path, payload)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode("utf-8", "replace")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_for_json(host, path, payload, accept, timeout=5.0, since=None, client=None):
    """POST `payload` to `path` until the decoded 200 answer satisfies accept(body). Returns the
    milliseconds from `since` (default: now) to that answer. Any non-200 answer fails the test."""
    since = time.monotonic() if since is None else since
    own = client is None
    client = client or Client(host)
    deadline = since + timeout
    last = None
    try:
        while True:
            status, body = client.post_json(path, payload)
            if status != 200:
                raise AssertionError("%s answered %s %r while waiting for a reload; log:\n%s"
                                     % (path, status, body, host.log()))
            if accept(body):
                return (time.monotonic() - since) * 1000.0
            last = body
            if time.monotonic() > deadline:
                raise AssertionError("%s still answers %r after %.1f s; log:\n%s"
                                     % (path, last, timeout, host.log()))
            time.sleep(0.001)
    finally:
        if own:
            client.close()


def get_status(host):
    status, _, body = host.request("GET", "/status")
    assert status == 200, (status, body)
    return json.loads(body)


def settled_generation(host, expected, timeout=5.0):
    """The generation /status reports once it is at least `expected` (each worker adopts a new
    generation when its loop next wakes, so one may still answer from the previous one for a
    moment); the test then checks it is exactly `expected`."""
    return wait_for_status(host, lambda st: st["generation"] >= expected,
                           timeout=timeout)["generation"]


def wait_for_status(host, accept, timeout=5.0):
    """GET /status until accept(status) is true; returns that status."""
    deadline = time.monotonic() + timeout
    while True:
        st = get_status(host)
        if accept(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError("GET /status never matched; last: %s\nlog:\n%s"
                                 % (json.dumps(st, indent=1), host.log()))
        time.sleep(0.01)


def channel_status(st, name):
    for ch in st["channels"]:
        if ch["name"] == name:
            return ch
    raise AssertionError("no channel %r in /status: %s" % (name, st["channels"]))


def sighup(host):
    host.proc.send_signal(signal.SIGHUP)


def connection_refused(port, timeout=1.0):
    """True when a TCP connect to 127.0.0.1:port is refused (nothing listens)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return False
    except ConnectionRefusedError:
        return True


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0
