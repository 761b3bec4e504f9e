"""The graceful end of a loaded HTTP/2 connection at its stream cap loses no request.

nghttp2's clients (h2load among them) open a new stream as each response completes, and refuse
on their own a stream they opened before reading a GOAWAY that came in the same read (such a
stream counts as failed in h2load).  The server must therefore not let a response complete in
the same read as its first GOAWAY: it sends a PING first and holds its output until the PING
returns (dualcorn.protocols.http2.ends).  The client here follows that policy over a real
socket, frame by frame with the ``h2`` library; it is slow to read, as a loaded client is.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

pytest.importorskip("h2")

import h2.config
import h2.connection
import h2.events

from tests.support import ServerThread

CAP = 10


async def answer_soon(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.05)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class LoadingClient:
    """One connection of a load generator that keeps streams in flight as h2load does."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.completed = 0
        self.refused_by_client = 0  # opened on a completion read with the GOAWAY after it
        self.resets = 0
        self.goaway_seen = False

    def open(self, count: int) -> None:
        for _ in range(count):
            sid = self.conn.get_next_available_stream_id()
            fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")]
            self.conn.send_headers(sid, [*fields, (b":authority", b"x")], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())

    def run(self, deadline: float) -> None:
        """Read until the server closes; open a stream per response completed before a GOAWAY
        was read, unless that GOAWAY came in the same read (then nghttp2 refuses it)."""
        buffer = bytearray()
        while time.monotonic() < deadline:
            data = self.sock.recv(1 << 20)
            if not data:
                return
            buffer += data
            opened = 0
            goaway_now = False
            # Frame by frame: GOAWAY is kept from h2, which would refuse every frame after it
            # (RFC 9113 6.8 has the streams up to its last id go on).
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                size = 9 + int.from_bytes(buffer[:3], "big")
                frame = bytes(buffer[:size])
                del buffer[:size]
                if frame[3] == 7:
                    goaway_now = self.goaway_seen = True
                    continue
                for event in self.conn.receive_data(frame):
                    if isinstance(event, h2.events.StreamEnded):
                        self.completed += 1
                        if not self.goaway_seen:
                            opened += 1
                    elif isinstance(event, h2.events.StreamReset):
                        self.resets += 1
            if goaway_now:
                self.refused_by_client += opened
                self.sock.sendall(self.conn.data_to_send())
            else:
                self.open(opened)  # the PING's acknowledgement goes out first
        raise AssertionError("the server did not close the connection")


def test_no_response_completes_in_the_read_of_the_first_goaway(h2_engine: str) -> None:
    with ServerThread(answer_soon, http2_max_requests=CAP) as server:
        client = LoadingClient(server.port)
        try:
            client.open(CAP - 1)
            time.sleep(0.4)  # their responses are written, and not read yet: a busy client
            client.open(1)  # the stream that reaches the cap
            time.sleep(0.4)  # what the server does at its cap is written too
            client.run(time.monotonic() + 20)
        finally:
            client.sock.close()
    assert client.goaway_seen
    assert client.refused_by_client == 0
    assert client.resets == 0
    # The nine streams the client opened for the first nine responses were served as well.
    assert client.completed == 2 * CAP - 1
