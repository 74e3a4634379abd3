# SPDX-License-Identifier: MIT
"""A small WebSocket client (RFC 6455) on a raw socket, for the tests: it can also break the
rules on purpose (an unmasked frame, a bad opcode, invalid UTF-8, a length it never sends)."""
import base64
import hashlib
import os
import socket
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 1, 2, 8, 9, 10, 0


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class Handshake:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One client frame; `length` announces a length other than the payload's."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code, reason=""):
    return struct.pack(">H", code) + reason.encode()


class WebSocket:
    def __init__(self, port, path, headers=None, timeout=10.0, host="127.0.0.1", ssl_context=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
        self.key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port), "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + self.key,
                 "Sec-WebSocket-Version: 13"]
        for name, value in (headers or {}).items():
            lines = [l for l in lines if not l.lower().startswith(name.lower() + ":")]
            if value is not None:
                lines.append("%s: %s" % (name, value))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        self.handshake = self._read_handshake()

    def _fill(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk

    def _read_handshake(self):
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("no handshake answer")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if status != 101:
            length = int(headers.get("content-length", "0"))
            self._fill(length)
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Handshake(status, headers, body)

    @property
    def opened(self):
        return self.handshake.status == 101

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, payload, opcode=None):
        if opcode is None:
            opcode = BINARY if isinstance(payload, bytes) else TEXT
        self.sock.sendall(frame(opcode, payload))

    def recv_frame(self):
        """(opcode, payload, fin) of the next server frame; server frames are never masked."""
        self._fill(2)
        b0, b1 = self.buffer[0], self.buffer[1]
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._fill(4)
            n, at = struct.unpack(">H", self.buffer[2:4])[0], 4
        elif n == 127:
            self._fill(10)
            n, at = struct.unpack(">Q", self.buffer[2:10])[0], 10
        self._fill(at + n)
        payload, self.buffer = self.buffer[at:at + n], self.buffer[at + n:]
        return b0 & 0x0F, payload, bool(b0 & 0x80)

    def recv(self):
        """The next data message (text as str, binary as bytes), answering pings on the way;
        a close frame raises Closed."""
        while True:
            opcode, payload, _ = self.recv_frame()
            if opcode == PING:
                self.sock.sendall(frame(PONG, payload))
            elif opcode == PONG:
                continue
            elif opcode == CLOSE:
                raise Closed(payload)
            elif opcode == TEXT:
                return payload.decode()
            else:
                return payload

    def expect_close(self):
        """The server's close frame: (code, reason); data frames before it are skipped."""
        while True:
            opcode, payload, _ = self.recv_frame()
            if opcode == CLOSE:
                if len(payload) < 2:
                    return None, ""
                return struct.unpack(">H", payload[:2])[0], payload[2:].decode()

    def eof(self, timeout=5.0):
        """True when the server closes the TCP connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionError:
            return True

    def close(self, code=1000, reason=""):
        self.sock.sendall(frame(CLOSE, close_payload(code, reason)))

    def abort(self):
        self.sock.close()

    def __del__(self):
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()


class Closed(Exception):
    def __init__(self, payload):
        super().__init__(payload)
        self.code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
        self.reason = payload[2:].decode() if len(payload) > 2 else ""
