"""A response is never written into a transport that is already closing.

asyncio's transport closes itself when a write fails (the client reset the connection) but
calls ``connection_lost`` only on the loop's next turn; until then it drops writes, logging
"socket.send() raised exception.".  The server must treat that gap as the disconnect it is:
``send`` raises (ASGI HTTP spec: an ``OSError``), and a WSGI app thread that keeps producing is
stopped and its iterable closed.  These in-memory tests make the gap happen on purpose; the
:class:`~tests.support.MemoryTransport` behaves as asyncio's does (``close()`` schedules
``connection_lost`` with ``call_soon``).  Both run on the ``wire`` fixture: every HTTP/1.1
tokenizer and HTTP/2, whose streams share the connection's transport.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

from tests.memconn import MemoryConnection
from tests.support import MemoryTransport

WAIT = 10.0
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class FailingTransport(MemoryTransport):
    """Fails like a socket whose peer reset it, once ``fail_after`` bytes were written."""

    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.late_writes = 0  # writes after the transport closed: each one a lost response part

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            self.late_writes += 1  # asyncio drops these (and logs after a few)
            return
        super().write(data)
        if len(self.written) >= self.fail_after:
            self.close()  # EPIPE/ECONNRESET: closing now, connection_lost on the next turn


async def test_asgi_send_raises_once_the_transport_is_closing(wire: Any) -> None:
    """Over HTTP/1.1 and HTTP/2 alike (the ``wire`` fixture): the stream of a connection whose
    transport is closing is gone too."""
    outcome: list[object] = []
    transport: MemoryTransport | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0)  # HTTP/2 writes what the streams queued once per loop turn
        assert transport is not None
        transport.close()  # as a failed write does: connection_lost is still to come
        try:
            await send({"type": "http.response.body", "body": b"second", "more_body": True})
        except OSError as exc:
            outcome.append(exc)
        outcome.append(await receive())

    async with wire(app) as client:
        conn: MemoryConnection = client.conn
        transport = conn.transport
        if client.version == "1.1":
            await conn.send(GET)
        else:
            await client.start(method=b"GET", end=True)
        assert b"first" in conn.written
        assert b"second" not in conn.written
    assert len(outcome) == 2, outcome
    assert isinstance(outcome[0], OSError)
    assert outcome[1] == {"type": "http.disconnect"}


async def test_wsgi_thread_is_stopped_when_a_write_fails(wire: Any) -> None:
    """The failing test of the e2e suite, made deterministic: an endless WSGI body, a client
    that resets the connection after its first read (over HTTP/2: within the first window)."""
    closed = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        try:
            while True:  # endless: only the disconnect can stop it
                yield b"x" * 65536
        finally:
            closed.set()

    client = wire(app, interface="wsgi")
    conn: MemoryConnection = client.conn
    # HTTP/2 sends no more than the client's first window (65,535 bytes) unless it reads.
    fail_after = 4 * 65536 if wire.version == "1.1" else 32 * 1024
    transport = conn.transport = FailingTransport(fail_after=fail_after)
    async with client:
        if wire.version == "1.1":
            conn.protocol.data_received(GET)
        else:
            await client.start(method=b"GET", end=True)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, closed.wait, WAIT), "close() was not called"
    assert transport.closed
    assert transport.late_writes == 0, "the server wrote into a closed transport"
