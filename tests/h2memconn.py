"""An in-memory HTTP/2 client: the same API as :class:`tests.memconn.Wire`, over h2c.

``async with H2Wire(MemoryConnection(...)) as client:`` opens a connection the way a socket
would: the client's preface reaches the real HTTP/1.1 protocol, which hands the connection to
HTTP/2 (h2c with prior knowledge, RFC 9113 3.3), so the frame layer, the streams and the
request cycle are exactly the server's.  The client is :class:`tests.h2client.H2Client`'s
frame logic (the h2 library) writing to memory instead of a socket.

``await client.request(...)`` sends one request on a new stream and returns its answer as a
:class:`tests.rawhttp.Response` (``reset`` set if the server cut it with RST_STREAM,
``trailers`` from a last HEADERS frame); ``start``/``send_body``/``response`` do the same step
by step.  The tests of tests/test_http.py run on this and on HTTP/1.1's wire through the
``wire`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.h2client import H2Client, StreamResult
from tests.memconn import Fields, MemoryConnection
from tests.rawhttp import Response

__all__ = ["H2Wire", "to_response"]

_PUMP_ROUNDS = 200  # bounded: each round moves bytes one way or the other, or the pump stops


class _MemoryPeer(H2Client):
    """H2Client's frames and events, its bytes kept for the wire to feed the server."""

    def __init__(self) -> None:  # no socket: see H2Wire
        self.outbox = bytearray()
        self.timeout = 5.0
        self._start(window=None, auto_ack=True)

    def send_raw(self, data: bytes) -> None:
        self.outbox += data


def to_response(result: StreamResult) -> Response:
    """An HTTP/2 stream's answer in the shape of an HTTP/1.1 one (pseudo-headers dropped)."""
    if not result.headers:
        raise AssertionError(f"no response on the stream (reset code {result.reset})")
    headers = [(name, value) for name, value in result.headers if not name.startswith(b":")]
    interim = [int(dict(fields)[b":status"]) for fields in result.informational]
    return Response(result.status, headers, bytes(result.data), b"", b"", b"HTTP/2",
                    interim, result.reset, list(result.trailers))  # fmt: skip


class H2Wire:
    """One HTTP/2 connection to a :class:`MemoryConnection`; see the module notes."""

    version = "2"

    def __init__(self, conn: MemoryConnection) -> None:
        self.conn = conn
        self.pos = 0
        self.loop_errors: list[dict[str, Any]] = []
        self._handler: Any = None
        self.peer: _MemoryPeer | None = None

    async def __aenter__(self) -> H2Wire:
        loop = asyncio.get_running_loop()
        self._handler = loop.get_exception_handler()
        loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        try:
            self.conn.open()
            self.peer = _MemoryPeer()
            await self.pump()
            protocol = type(self.conn.transport.protocol).__name__
            assert protocol == "H2Connection", f"the preface did not switch to HTTP/2: {protocol}"
        except BaseException:
            await self.conn.aclose()
            loop.set_exception_handler(self._handler)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.conn.aclose()
        finally:
            asyncio.get_running_loop().set_exception_handler(self._handler)
        assert not self.loop_errors, f"the event loop reported errors: {self.loop_errors}"

    @property
    def client(self) -> _MemoryPeer:
        assert self.peer is not None, "use the wire as `async with`"
        return self.peer

    async def pump(self) -> None:
        """Move bytes both ways until neither side has more (the server's apps settle)."""
        client = self.client
        for _ in range(_PUMP_ROUNDS):
            moved = False
            if client.outbox and not self.conn.closed:
                data = bytes(client.outbox)
                client.outbox.clear()
                await self.conn.send(data)
                moved = True
            written = self.conn.written
            if len(written) > self.pos:
                data = written[self.pos :]
                self.pos = len(written)
                client.process(data)
                moved = True
            if not moved:
                return

    def is_closed_by_server(self) -> bool:
        return self.conn.closed

    # --- The API both protocols' wires share (tests/memconn.py has HTTP/1.1's) ----------------

    async def request(
        self,
        path: str = "/",
        *,
        method: bytes = b"GET",
        headers: Fields = (),
        body: bytes | list[bytes] | None = None,
        trailers: Fields = (),
    ) -> Response:
        """One request on a new stream, answered: ``body`` as bytes goes with a
        content-length, as a list one DATA frame per part (no length, as a streamed upload)."""
        length = len(body) if isinstance(body, bytes) else None
        ref = await self.start(path, method=method, headers=headers, length=length,
                               end=body is None)  # fmt: skip
        if isinstance(body, bytes):
            await self.send_body(ref, body)
        elif body is not None:
            for part in body:
                await self.send_body(ref, part, end=False)
            await self.send_body(ref, b"", trailers=trailers)
        return self.response(ref)

    async def start(
        self,
        path: str = "/",
        *,
        method: bytes = b"POST",
        headers: Fields = (),
        length: int | None = None,
        end: bool = False,
    ) -> int:
        """Open a stream with a HEADERS frame; unless ``end``, a body follows."""
        client = self.client
        sid: int = client.conn.get_next_available_stream_id()
        fields = [(b":method", method), (b":scheme", b"http"), (b":authority", b"test"),
                  (b":path", path.encode())]  # fmt: skip
        fields += [(name.lower(), value) for name, value in headers]
        if length is not None:
            fields.append((b"content-length", b"%d" % length))
        client.streams[sid] = StreamResult()
        client.conn.send_headers(sid, fields, end_stream=end)
        client.flush()
        await self.pump()
        return sid

    async def send_body(
        self, ref: int, data: bytes, *, end: bool = True, trailers: Fields = ()
    ) -> None:
        """DATA frames as the server's windows allow; then END_STREAM, or the trailers."""
        client = self.client
        conn = client.conn
        view = memoryview(data)
        while view:
            window = conn.local_flow_control_window(ref)
            if window <= 0:
                await self.pump()
                if conn.local_flow_control_window(ref) <= 0:
                    raise AssertionError(f"the server opened no window; {len(view)} unsent")
                continue
            size = min(window, conn.max_outbound_frame_size, len(view))
            conn.send_data(ref, view[:size].tobytes())
            view = view[size:]
        if trailers:
            conn.send_headers(ref, list(trailers), end_stream=True)
        elif end:
            conn.end_stream(ref)
        client.flush()
        await self.pump()

    def response(self, ref: int, *, head_request: bool = False) -> Response:
        """The stream's answer; it must have ended or been reset."""
        result = self.client.streams[ref]
        assert result.done, f"stream {ref} is still open; so far: {result.headers}"
        return to_response(result)

    def stream(self, ref: int) -> StreamResult:
        """What the stream got so far (open or not)."""
        return self.client.streams[ref]
