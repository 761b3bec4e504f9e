"""A deliberately small HTTP/1.1 client on a raw socket, for tests that check the bytes.

httpx and http.client hide framing (chunk sizes, a missing Content-Length, a close-delimited
body), pipelining and half-sent requests; these tests need to see and control all of them.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes = b""  # head and framed body exactly as they came off the wire
    reason: bytes = b""
    version: bytes = b""
    interim: list[int] = field(default_factory=list)  # 1xx statuses that came first
    # HTTP/2 only (tests/h2memconn.py): the RST_STREAM code that cut the response, if one
    # did, and the trailers (a last HEADERS frame).
    reset: int | None = None
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name.lower()]


class ResponseReader:
    """Reads HTTP/1.1 responses from what a server wrote; subclasses say where bytes come from
    (a socket, or an in-memory connection's output)."""

    def _take_until(self, marker: bytes) -> bytes:
        raise NotImplementedError

    def _take(self, n: int) -> bytes:
        raise NotImplementedError

    def read_until_closed(self) -> bytes:
        raise NotImplementedError

    def read_head(self) -> Response:
        head = self._take_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, status, *reason = lines[0].split(b" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        return Response(int(status), headers, b"", head, b"".join(reason), version)

    def read_response(self, *, head_request: bool = False) -> Response:
        """One whole response, framed by Content-Length, chunked coding or the close."""
        response = self.read_head()
        interim = []
        while response.status < 200:  # interim responses (100 Continue) come first
            interim.append(response.status)
            response = self.read_head()
        response.interim = interim
        raw = bytearray(response.raw)
        length = response.header(b"content-length")
        if head_request or response.status in (204, 304):
            body = b""
        elif response.header(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size_line = self._take_until(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";")[0], 16)
                data = self._take(size + 2)
                raw += data
                if size == 0:
                    break
                parts.append(data[:-2])
            body = b"".join(parts)
        elif length is not None:
            body = self._take(int(length))
            raw += body
        else:
            body = self.read_until_closed()
            raw += body
        response.body = body
        response.raw = bytes(raw)
        return response


class RawClient(ResponseReader):
    """One TCP connection; responses are parsed from a buffer, so pipelining just works."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False at EOF."""
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def _take_until(self, marker: bytes) -> bytes:
        while (at := self.buf.find(marker)) < 0:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {bytes(self.buf)!r}")
        data = bytes(self.buf[: at + len(marker)])
        del self.buf[: at + len(marker)]
        return data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_until_closed(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and self._fill():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def is_closed_by_server(self, timeout: float | None = None) -> bool:
        """True once the server closes (EOF); False if the connection is still open."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            while self._fill():
                pass
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        return True


def get(path: str = "/", *, headers: bytes = b"", method: bytes = b"GET") -> bytes:
    """A minimal HTTP/1.1 request head."""
    return method + b" " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n"
