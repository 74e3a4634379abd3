# SPDX-License-Identifier: MIT
"""What the host answers to malformed and hostile HTTP (docs/configuration.md#malformed-http).

Every test speaks raw bytes over a socket, so it sends exactly the attack and reads exactly what
comes back: one status line (never a header block sent twice, never the answer to a request
smuggled behind the first), the JSON error body, and the connection closed by the host.

The smuggled requests are POSTs whose message is SMUGGLED to the rest channel: the test bot logs
"BOT GOT SMUGGLED" if one ever reaches it."""
import json
import re
import socket
import threading
import time
import unittest

from util import TEXT_BOT, serve

REST = {"credentials.yml": "rest:\n"}
WEBHOOK = "/webhooks/rest/webhook"
SMUGGLED_BODY = b'{"sender": "s", "message": "SMUGGLED"}'
SMUGGLED = (b"POST " + WEBHOOK.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(SMUGGLED_BODY) + SMUGGLED_BODY)
STATUS_LINE_RE = re.compile(rb"HTTP/1\.[01] \d{3} ")


def exchange(port, data, timeout=5.0):
    """Send `data` on a new connection and read until the host closes it (or `timeout`).
    Returns (bytes read, closed by the host, seconds until closed or timed out)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return got, False, time.monotonic() - t0
            except ConnectionResetError:
                return got, True, time.monotonic() - t0
            if not chunk:
                return got, True, time.monotonic() - t0
            got += chunk


def parse_one(data):
    """(status, lower-case headers, body) of the only answer in `data`; the body is exactly
    Content-Length bytes and nothing follows it."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, "no complete answer head in %r" % data
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    assert len(rest) == length, "body is %d bytes, Content-Length %d: %r" % (len(rest), length, data)
    return status, headers, rest


class Base(unittest.TestCase):
    """One host (rest channel, a bot that logs what it gets) for the tests of a class."""
    SERVER = {}

    @classmethod
    def setUpClass(cls):
        cls.host = serve(REST, bot=TEXT_BOT, **cls.SERVER)

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()

    def assert_one_json_error(self, data, closed, elapsed, status, code, within=2.0):
        """`data` holds exactly one answer: `status`, a JSON error `code`, and the host closed
        the connection within `within` seconds."""
        self.assertEqual(len(STATUS_LINE_RE.findall(data)), 1, data)
        got, headers, body = parse_one(data)
        self.assertEqual(got, status, data)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
        doc = json.loads(body)
        self.assertEqual(doc.get("error"), code, doc)
        self.assertIsInstance(doc.get("message"), str)
        self.assertTrue(closed, "the host kept the connection open: %r" % data)
        self.assertLess(elapsed, within, data)
        return doc

    def assert_not_smuggled(self):
        # The smuggled request would be answered before the close; give a late log line a moment.
        time.sleep(0.1)
        self.assertNotIn("BOT GOT SMUGGLED", self.host.log())

    def send(self, data, timeout=5.0):
        return exchange(self.host.port, data, timeout)


def post_head(extra, body=b""):
    return (b"POST " + WEBHOOK.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + extra + b"\r\n" + body)


class Framing(Base):
    """Items 1-3: Content-Length syntax, conflicting framing, transfer codings."""

    def test_malformed_content_length_gets_one_clean_400(self):
        body = b'{"sender": "a", "message": "x"}'[:30].ljust(30)
        for value in (b"-1", b"+30", b"0x1e", b"30, 30", b"30 30", b"3O", b""):
            with self.subTest(value=value):
                data, closed, elapsed = self.send(post_head(b"Content-Length: " + value + b"\r\n",
                                                            body))
                doc = self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")
                self.assertIn("Content-Length", doc["message"])

    def test_content_length_too_large_to_parse_gets_one_clean_413(self):
        data, closed, elapsed = self.send(post_head(b"Content-Length: 99999999999999999999999\r\n"))
        self.assert_one_json_error(data, closed, elapsed, 413, "payload_too_large")

    def test_two_different_content_lengths_are_refused_and_nothing_behind_is_served(self):
        body = b'{"a":1}'
        attack = post_head(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (
            len(body), len(body) + len(SMUGGLED)), body + SMUGGLED)
        data, closed, elapsed = self.send(attack)
        self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")
        self.assert_not_smuggled()

    def test_the_same_content_length_twice_is_refused(self):
        body = b'{"a":1}'
        attack = post_head(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body)),
                           body + SMUGGLED)
        data, closed, elapsed = self.send(attack)
        self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")
        self.assert_not_smuggled()

    def test_content_length_with_chunked_is_refused_and_nothing_behind_is_served(self):
        attack = post_head(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED)
        data, closed, elapsed = self.send(attack)
        self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")
        self.assert_not_smuggled()

    def test_space_before_the_colon_is_refused(self):
        for extra in (b"Transfer-Encoding : chunked\r\n", b"Content-Length : 5\r\n",
                      b"Content-Length: 5\r\nTransfer-Encoding\t: chunked\r\n"):
            with self.subTest(extra=extra):
                data, closed, elapsed = self.send(post_head(extra, b"0\r\n\r\n" + SMUGGLED))
                doc = self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")
                self.assertIn("header", doc["message"])
        self.assert_not_smuggled()

    def test_unknown_transfer_coding_gets_501_at_once(self):
        for coding in (b"gzip, chunked", b"xchunked", b"chunked, gzip", b"identity"):
            with self.subTest(coding=coding):
                data, closed, elapsed = self.send(
                    post_head(b"Transfer-Encoding: " + coding + b"\r\n", b"5\r\nhello\r\n"))
                doc = self.assert_one_json_error(data, closed, elapsed, 501, "not_implemented")
                self.assertIn("Transfer-Encoding", doc["message"])

    def test_chunked_twice_is_refused(self):
        for extra in (b"Transfer-Encoding: chunked, chunked\r\n",
                      b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"):
            with self.subTest(extra=extra):
                data, closed, elapsed = self.send(post_head(extra, b"0\r\n\r\n"))
                self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")

    def test_plain_chunked_and_content_length_still_work_and_keep_the_connection(self):
        body = b'{"sender": "a", "message": "plain"}'
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        for extra, payload in ((b"Content-Length: %d\r\n" % len(body), body),
                               (b"Transfer-Encoding: Chunked\r\n", chunked)):
            with self.subTest(extra=extra):
                data, closed, _ = self.send(post_head(extra, payload) + b"GET /status HTTP/1.1\r\n"
                                            b"Host: x\r\nConnection: close\r\n\r\n")
                self.assertEqual(len(STATUS_LINE_RE.findall(data)), 2, data)
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
                self.assertIn(b"echo: plain", data)


class Targets(Base):
    """Item 4 (NUL bytes) and item 7 (our JSON body for 414 and 431)."""

    def test_nul_byte_in_the_target_is_400(self):
        data, closed, elapsed = self.send(b"GET /status\0junk HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")

    def test_percent_00_in_the_path_is_400_and_reaches_no_channel(self):
        body = b'{"sender": "s", "message": "SMUGGLED"}'
        for path in (WEBHOOK.encode() + b"%00junk", WEBHOOK.encode() + b"%00",
                     b"/webhooks/rest%00/webhook"):
            with self.subTest(path=path):
                data, closed, elapsed = self.send(
                    b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body)
                self.assert_one_json_error(data, closed, elapsed, 400, "bad_request")
        self.assert_not_smuggled()

    def test_percent_00_in_the_query_is_not_refused(self):
        data, _, _ = self.send(b"GET /status?x=%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)

    def test_long_target_gets_414_with_the_json_body(self):
        target = b"/status?q=" + b"x" * 9000
        data, closed, elapsed = self.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_one_json_error(data, closed, elapsed, 414, "uri_too_long")

    def test_large_header_block_gets_431_with_the_json_body(self):
        data, closed, elapsed = self.send(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: " +
                                          b"p" * 9000 + b"\r\n\r\n")
        self.assert_one_json_error(data, closed, elapsed, 431, "headers_too_large")

    def test_many_header_fields_get_431_with_the_json_body(self):
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(150))  # over our 128
        data, closed, elapsed = self.send(b"GET /status HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        self.assert_one_json_error(data, closed, elapsed, 431, "headers_too_large")

    def test_head_just_under_the_limits_is_served(self):
        target = b"/status?q=" + b"x" * 4000
        data, _, _ = self.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               b"X-Pad: " + b"p" * 4000 + b"\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:200])


def close_wait_count(port):
    """Sockets of this machine in CLOSE-WAIT whose local port is `port` (the host's side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":
                count += 1
    return count


class AbortedPosts(Base):
    """Item 6: a client that gives up on a POST must not leave its connection in CLOSE-WAIT
    until the connection timeout (30 s here)."""
    SERVER = {"connection_timeout": 30}

    def abort_posts(self, heads):
        for head in heads:
            with socket.create_connection(("127.0.0.1", self.host.port)) as sock:
                sock.sendall(head + b'{"sender": "a", "mess')

    def assert_no_close_wait_within(self, seconds):
        deadline = time.monotonic() + seconds
        while close_wait_count(self.host.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(close_wait_count(self.host.port), 0)

    def test_aborted_posts_with_large_heads_go_away(self):
        heads = []
        for i in range(60):  # heads of 6 to 12 KiB: the target under 8 KiB, the rest a header
            size = 6000 + i * 100
            query = b"q=" + b"x" * 4000
            head = post_head(b"Content-Length: 1000\r\nX-Pad: ", b"")[:-2]
            head = head.replace(WEBHOOK.encode(), WEBHOOK.encode() + b"?" + query)
            pad = max(0, size - len(head) - 4)
            heads.append(head + b"p" * pad + b"\r\n\r\n")
        self.abort_posts(heads)
        self.assert_no_close_wait_within(3.0)

    def test_aborted_posts_with_a_12_kb_query_go_away(self):
        heads = [post_head(b"Content-Length: 1000\r\n").replace(
            WEBHOOK.encode(), WEBHOOK.encode() + b"?q=" + b"x" * (10000 + 40 * i)) for i in range(50)]
        self.abort_posts(heads)
        self.assert_no_close_wait_within(3.0)

    def test_complete_post_with_a_large_head_is_answered(self):
        body = b'{"sender": "a", "message": "big head"}'
        head = post_head(b"Content-Length: %d\r\nConnection: close\r\nX-Pad: " % len(body) +
                         b"p" * 3800 + b"\r\n").replace(WEBHOOK.encode(), WEBHOOK.encode() +
                                                        b"?q=" + b"x" * 3800)
        with socket.create_connection(("127.0.0.1", self.host.port), timeout=5) as sock:
            sock.sendall(head)
            time.sleep(0.05)  # the body in a packet of its own, after the head was parsed
            sock.sendall(body)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:200])
        self.assertIn(b"echo: big head", data)


class Trickle:
    """`count` connections that send a request head one byte every `every` seconds and never
    finish it; records when the host closed each."""

    def __init__(self, port, count, every=0.2):
        self.socks = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            self.socks.append(sock)
        self.opened = time.monotonic()
        self.closed_at = [None] * count
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        head = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 10000
        pos = 0
        while not self.stop.is_set():
            for i, sock in enumerate(self.socks):
                if self.closed_at[i] is not None:
                    continue
                try:
                    if sock.recv(1) == b"":
                        self.closed_at[i] = time.monotonic()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_at[i] = time.monotonic()
                    continue
                try:
                    sock.send(head[pos:pos + 1])
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_at[i] = time.monotonic()
            pos += 1
            self.stop.wait(self.every)

    def all_closed_within(self, seconds):
        deadline = self.opened + seconds
        while time.monotonic() < deadline:
            if all(t is not None for t in self.closed_at):
                return True
            time.sleep(0.05)
        return all(t is not None for t in self.closed_at)

    def close(self):
        self.stop.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


class Slowloris(Base):
    """Item 5: a deadline for the request head, and room for new clients at the limit."""
    SERVER = {"connection_limit": 20, "header_timeout": 1, "connection_timeout": 30}

    def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout(self):
        slow = Trickle(self.host.port, 1)
        try:
            self.assertTrue(slow.all_closed_within(4.0), "the slow head was not cut")
            took = slow.closed_at[0] - slow.opened
            self.assertGreater(took, 0.8)
        finally:
            slow.close()

    def test_an_idle_keep_alive_connection_is_closed_after_the_header_timeout(self):
        with socket.create_connection(("127.0.0.1", self.host.port), timeout=5) as sock:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            data = sock.recv(65536)
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
            t0 = time.monotonic()
            while sock.recv(65536):
                pass
            self.assertLess(time.monotonic() - t0, 3.0)

    def test_clients_are_served_while_slow_heads_fill_the_connection_limit(self):
        slow = Trickle(self.host.port, 45)
        try:
            time.sleep(0.3)  # the slow ones hold every connection the host allows
            for _ in range(3):
                t0 = time.monotonic()
                data, _, _ = self.send(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                       timeout=5.0)
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
                self.assertLess(time.monotonic() - t0, 2.0)
            self.assertTrue(slow.all_closed_within(6.0),
                            "%d slow connections still open" % slow.closed_at.count(None))
        finally:
            slow.close()


class FullHouse(Base):
    """Item 5, quiet variant: the connection limit is held by connections that sent part of a head
    and then nothing (no byte wakes the host), and the head deadline is far. Each new client must
    still be served at once: a slot freed by a closed connection is used right away."""
    SERVER = {"connection_limit": 10, "header_timeout": 8, "connection_timeout": 30}

    def test_each_new_client_is_served_at_once(self):
        idle = []
        try:
            for _ in range(16):
                sock = socket.create_connection(("127.0.0.1", self.host.port))
                sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
                idle.append(sock)
            time.sleep(0.3)
            for i in range(4):
                t0 = time.monotonic()
                data, _, _ = self.send(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                       timeout=8.0)
                took = time.monotonic() - t0
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
                self.assertLess(took, 1.5, "client %d waited %.1f s" % (i, took))
        finally:
            for sock in idle:
                sock.close()


if __name__ == "__main__":
    unittest.main()
