"""The two sans-IO HTTP/2 server libraries, driven the way a server drives them.

``H2Lib`` wraps python-hyper's ``h2`` 4.x and ``ZttpLib`` wraps ``zttp.H2Connection`` (the Zig
core uvicorn 0.54 uses for ``--http zttp --http2``). Each exposes the same three calls the
benchmark and the conformance table need:

- ``start()``: the server's preface (SETTINGS), as bytes to write;
- ``feed(data)``: hand the library bytes read from the socket, walk its events, answer every
  complete request (HEADERS ``:status 200`` + 13-byte DATA, END_STREAM) when ``answer`` is set,
  and return the bytes to write;
- the counters a conformance case reads: requests surfaced to the app, resets and GOAWAYs seen.

The work per event is what a server does anyway (headers to a list, body bytes handed on,
inbound flow-control credit returned), so the speed numbers compare libraries, not shortcuts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import zttp

__all__ = ["BODY", "RESPONSE_HEADERS", "H2Lib", "Lib", "ZttpLib", "make"]

BODY = b"Hello, world!"
RESPONSE_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


@dataclass
class Lib:
    """Shared counters; subclasses implement ``start`` and ``feed``."""

    answer: bool = True
    consume: bool = True  # the app reads request bodies (h2: credit returned as it reads)
    requests: int = 0  # request heads handed to the app
    body_bytes: int = 0  # request body bytes handed to the app
    answered: int = 0
    resets: int = 0  # RST_STREAM events (from the client, or zttp refusing a stream)
    last_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    name = "?"
    conn: Any = None

    def start(self) -> bytes:
        raise NotImplementedError

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _saw_request(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.requests += 1
        self.last_headers = headers


class H2Lib(Lib):
    """``h2`` with the settings a server would use: bytes headers, inbound validation on."""

    name = "h2"

    def __init__(self, answer: bool = True) -> None:
        super().__init__(answer=answer)
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=True
        )
        self.conn = h2.connection.H2Connection(config=config)

    def start(self) -> bytes:
        self.conn.initiate_connection()
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> bytes:
        conn = self.conn
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self._saw_request(list(event.headers))
                if event.stream_ended is not None and self.answer:
                    self._respond(event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                self.body_bytes += len(event.data)
                if self.consume:
                    # The app read it: give the credit back (h2 batches WINDOW_UPDATEs).
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_ended is not None and self.answer:
                    self._respond(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.resets += 1
        return conn.data_to_send()

    def _respond(self, stream_id: int) -> None:
        self.conn.send_headers(stream_id, [(b":status", b"200"), *RESPONSE_HEADERS])
        self.conn.send_data(stream_id, BODY, end_stream=True)
        self.answered += 1


class ZttpLib(Lib):
    """``zttp.H2Connection`` (server role); it acks SETTINGS and PING itself."""

    name = "zttp"

    def __init__(self, answer: bool = True) -> None:
        super().__init__(answer=answer)
        self.conn = zttp.Connection(zttp.SERVER, zttp.HTTP2)

    def start(self) -> bytes:
        self.conn.initiate_connection()
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> bytes:
        conn = self.conn
        conn.receive_data(data)
        need_data = zttp.NEED_DATA
        while True:
            event: Any = conn.next_event()
            if event is need_data or event is zttp.CONNECTION_CLOSED:
                break
            kind = type(event)
            if kind is zttp.Request:
                headers = event.headers
                listed = (
                    headers.to_list(lowercase_names=True)
                    if isinstance(headers, zttp.HeaderBlock)
                    else list(headers)
                )
                self._saw_request(listed)
                if event.end_stream and self.answer:
                    self._respond(event.stream_id)
            elif kind is zttp.Data:
                self.body_bytes += len(event.data)
            elif kind is zttp.EndOfMessage:
                if self.answer:
                    self._respond(event.stream_id)
            elif kind is zttp.RstStream:
                self.resets += 1
        return conn.data_to_send()

    def _respond(self, stream_id: int) -> None:
        stream = self.conn.stream(stream_id)
        stream.send_response(200, RESPONSE_HEADERS)
        stream.send_data(BODY)
        stream.end_message()
        self.answered += 1


def make(name: str, answer: bool = True, consume: bool = True) -> Lib:
    lib: Lib
    if name == "h2":
        lib = H2Lib(answer=answer)
    elif name == "zttp":
        lib = ZttpLib(answer=answer)
    else:
        raise ValueError(name)
    lib.consume = consume
    return lib
