"""What an HTTP/1.1 client can make the parser hold or do is bounded (issue 12, parsing costs).

Each attack is fed in memory to both parsers (the ``connect`` fixture) and each test asserts
the bound itself (bytes held by the connection, requests parsed ahead, calls into the cycle),
never a timing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dualcorn.protocols.cycle import RequestCycle

H = b"Host: example.com\r\n"
READ = 256 * 1024  # the most one socket read delivers on asyncio and uvloop


async def drain_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d" % size})


async def test_trailer_section_is_bounded_by_the_head_limit(connect: Any) -> None:
    """llhttp held a 200 MiB trailer value; now the section counts against the head limit."""
    async with connect(drain_app, limit_request_head=16 * 1024) as conn:
        await conn.send(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n0\r\nX-Big: ")  # fmt: skip
        held = []
        for _ in range(64):  # 4 MiB offered, 64 KiB at a time
            if conn.closed:
                break
            await conn.send(b"v" * 65536, settle=0.05)
            held.append(len(conn.protocol._buf))
        assert conn.closed
        assert max(held) <= 16 * 1024 + 65536  # never more than the limit and one read
        assert conn.responses()[-1].status == 431


async def test_pipelined_requests_are_not_parsed_ahead(connect: Any) -> None:
    """One read full of pipelined requests: one is served, the rest stay raw, reading pauses."""
    gate = asyncio.Event()
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    request = b"GET /p HTTP/1.1\r\n" + H + b"X-Pad: " + b"p" * 2000 + b"\r\n\r\n"
    count = READ // len(request)
    async with connect(app) as conn:
        await conn.send(request * count, settle=0.2)
        assert calls == ["/p"]  # nothing past the request in flight was parsed
        assert not conn.transport.reading
        assert len(conn.protocol._buf) <= READ  # held as raw bytes, not parsed objects
        assert conn.protocol.cycle is not None and conn.protocol.cycle.scope["path"] == "/p"
        gate.set()
        await conn.send(b"", settle=10)
        assert len(calls) == count
        assert [r.status for r in conn.responses()] == [200] * count


@pytest.mark.parametrize("reads", [1, 16])
async def test_tiny_chunks_cost_one_call_per_read(
    connect: Any, monkeypatch: pytest.MonkeyPatch, reads: int
) -> None:
    """100,000 one-byte chunks: the body arrives intact, handed on once per read."""
    calls = 0
    feed_body = RequestCycle.feed_body

    def counting(self: RequestCycle, data: bytes) -> None:
        nonlocal calls
        calls += 1
        feed_body(self, data)

    monkeypatch.setattr(RequestCycle, "feed_body", counting)
    chunks = b"1\r\nx\r\n" * 100_000
    step = -(-len(chunks) // reads)
    parts = [chunks[i : i + step] for i in range(0, len(chunks), step)]
    head = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    async with connect(drain_app) as conn:
        await conn.send([head, *parts, b"0\r\n\r\n"])
        assert [r.body for r in conn.responses()] == [b"100000"]
    assert calls <= reads


async def test_chunk_size_line_is_bounded(connect: Any) -> None:
    """A chunk-size line (with extensions) longer than 4 KiB is refused, not buffered."""
    async with connect(drain_app) as conn:
        await conn.send(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                        b"5;" + b"a" * 5000)  # fmt: skip
        assert conn.closed
        assert conn.responses()[-1].status == 400


def test_pipelining_client_that_never_reads_holds_one_read(serve: Any) -> None:
    """A real server: 4 MiB of pipelined requests from a client that never reads."""
    import socket
    import time

    release: list[Any] = []
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        if len(calls) == 1:  # the first request waits until the test has looked
            gate = asyncio.Event()
            loop = asyncio.get_running_loop()
            release.append(lambda: loop.call_soon_threadsafe(gate.set))
            await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    request = b"GET /p HTTP/1.1\r\n" + H + b"\r\n"
    data = request * (4 * 1024 * 1024 // len(request))
    with serve(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(0.5)
        sent = 0
        try:
            while sent < len(data):  # the kernel buffers fill once the server stops reading
                sent += sock.send(data[sent : sent + 65536])
        except TimeoutError:
            pass
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        held = [len(c._buf) for c in list(server.server.state.connections) if hasattr(c, "_buf")]
        assert calls == ["/p"]  # one request in flight, none parsed behind it
        assert held and max(held) <= READ, held
        assert sent < len(data)  # the server stopped reading: the client was held back
        for wake in release:
            wake()
