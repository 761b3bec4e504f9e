"""``wsgi.input``: streamed from receive() one chunk at a time, with the full read API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from dualcorn.adapters.wsgi import ClientDisconnected, WSGIAdapter
from tests.asgi_driver import Exchange, drive, make_scope

BODY = b"first line\nsecond line\n\nthird, longer line of text\nno newline at the end"


def chunkings(data: bytes) -> list[list[bytes]]:
    """The same body delivered whole, a byte at a time, and in uneven pieces."""
    return [
        [data],
        [data[i : i + 1] for i in range(len(data))],
        [data[i : i + 7] for i in range(0, len(data), 7)],
        [data[:3], b"", data[3:30], data[30:]],  # an empty chunk in the middle
    ]


async def run_reader(
    reader: Callable[[Any], object], body: list[bytes], **options: Any
) -> tuple[object, Exchange]:
    """Serve one request whose app calls ``reader(wsgi.input)``; return its result."""
    results: list[object] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        results.append(reader(environ["wsgi.input"]))
        start_response("200 OK", [])
        return []

    adapter = WSGIAdapter(app, threads=1)
    try:
        exchange = await drive(adapter, body=body, **options)
    finally:
        await adapter.shutdown()
    assert exchange.status == 200, exchange.sent
    assert len(results) == 1
    return results[0], exchange


@pytest.mark.parametrize("body", chunkings(BODY))
async def test_read_all(body: list[bytes]) -> None:
    result, _ = await run_reader(lambda stream: stream.read(), body)
    assert result == BODY


@pytest.mark.parametrize("body", chunkings(BODY))
async def test_read_none_and_negative_read_all(body: list[bytes]) -> None:
    result, _ = await run_reader(lambda stream: (stream.read(4), stream.read(None)), body)
    assert result == (BODY[:4], BODY[4:])
    result, _ = await run_reader(lambda stream: stream.read(-1), body)
    assert result == BODY


@pytest.mark.parametrize("body", chunkings(BODY))
@pytest.mark.parametrize("size", [1, 5, 16, 1000])
async def test_read_n_returns_n_until_the_end(body: list[bytes], size: int) -> None:
    def read_in_pieces(stream: Any) -> list[bytes]:
        pieces = []
        while piece := stream.read(size):
            pieces.append(piece)
        pieces.append(stream.read(size))  # at the end: b"" again, not an error
        return pieces

    pieces, _ = await run_reader(read_in_pieces, body)
    assert isinstance(pieces, list)
    assert b"".join(pieces) == BODY
    assert pieces[-1] == b""
    assert all(len(p) == size for p in pieces[:-2])  # only the last piece may be short


@pytest.mark.parametrize("body", chunkings(BODY))
async def test_readline(body: list[bytes]) -> None:
    def read_lines(stream: Any) -> list[bytes]:
        return [stream.readline() for _ in range(6)]

    lines, _ = await run_reader(read_lines, body)
    assert lines == [
        b"first line\n",
        b"second line\n",
        b"\n",
        b"third, longer line of text\n",
        b"no newline at the end",
        b"",
    ]


@pytest.mark.parametrize("body", chunkings(BODY))
async def test_readline_honours_size(body: list[bytes]) -> None:
    def read_limited(stream: Any) -> list[bytes]:
        return [stream.readline(4), stream.readline(4), stream.readline(100), stream.readline(0)]

    lines, _ = await run_reader(read_limited, body)
    assert lines == [b"firs", b"t li", b"ne\n", b""]


@pytest.mark.parametrize("body", chunkings(BODY))
async def test_readlines_and_hint(body: list[bytes]) -> None:
    result, _ = await run_reader(lambda stream: stream.readlines(), body)
    assert result == BODY.splitlines(keepends=True)
    # The hint stops after the line that reaches it.
    result, _ = await run_reader(lambda stream: (stream.readlines(12), stream.read()), body)
    assert result == ([b"first line\n", b"second line\n"], BODY[23:])


@pytest.mark.parametrize("body", chunkings(BODY))
async def test_iteration(body: list[bytes]) -> None:
    result, _ = await run_reader(list, body)
    assert result == BODY.splitlines(keepends=True)


async def test_mixed_reads_share_one_buffer() -> None:
    def mixed(stream: Any) -> list[bytes]:
        return [stream.read(3), stream.readline(), next(iter(stream)), stream.read(2)]

    result, _ = await run_reader(mixed, chunkings(BODY)[2])
    assert result == [b"fir", b"st line\n", b"second line\n", b"\nt"]


async def test_reading_is_lazy_one_chunk_at_a_time() -> None:
    """receive() is called only when the app wants bytes it does not hold (flow control)."""
    exchange = Exchange()
    calls: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        for size in (10, 90, 1, -1):
            stream.read(size)
            calls.append(exchange.receive_calls)
        start_response("200 OK", [])
        return []

    adapter = WSGIAdapter(app, threads=1)
    try:
        await drive(adapter, body=[b"x" * 100] * 5, exchange=exchange)
    finally:
        await adapter.shutdown()
    assert calls == [1, 1, 2, 5]


@pytest.mark.parametrize("version", ["1.1", "1.0", "2"])
async def test_request_without_body_needs_no_receive_from_the_app_thread(version: str) -> None:
    result, exchange = await run_reader(
        lambda stream: (stream.read(), stream.readline()), [], http_version=version
    )
    assert result == (b"", b"")
    # RFC 9112 6.3: an HTTP/1.x request without Content-Length or Transfer-Encoding has no
    # body, so nothing is received.  HTTP/2 says so only with its frames: the adapter receives
    # the (empty) body on the loop.  The driver blocks a further receive() until the response
    # is done, so a receive from the app thread would have hung the app.
    assert exchange.receive_calls == (1 if version == "2" else 0)


async def test_http2_body_without_a_length_is_read() -> None:
    # HTTP/2 carries no Transfer-Encoding: a body without Content-Length is still a body.
    scope = make_scope(http_version="2")
    result, exchange = await run_reader(lambda stream: stream.read(), [b"ab", b"cd"], scope=scope)
    assert result == b"abcd"
    assert exchange.receive_calls == 2


@pytest.mark.parametrize("read", [lambda s: s.read(), lambda s: s.read(500), lambda s: list(s)])
async def test_disconnect_mid_body_raises_oserror(
    read: Callable[[Any], object], caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []
    after: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        try:
            read(stream)
        except OSError as exc:
            errors.append(exc)
        try:
            stream.read()
        except OSError as exc:
            after.append(exc)  # reading again keeps failing: the body will never come
        start_response("200 OK", [])
        return [b"too late"]

    adapter = WSGIAdapter(app, threads=1)
    with caplog.at_level(logging.ERROR, logger="dualcorn.error"):
        exchange = await drive(
            adapter, body=[b"a\n" * 50, b"b\n" * 50, b"c\n" * 50], disconnect_after=1
        )
    await adapter.shutdown()
    assert len(errors) == 1
    assert isinstance(errors[0], ClientDisconnected)
    assert isinstance(after[0], ClientDisconnected)
    assert exchange.sent == []  # nobody to answer
    assert not caplog.records


async def test_uncaught_disconnect_is_not_logged_as_an_app_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        environ["wsgi.input"].read()  # raises ClientDisconnected, which the app lets through
        return [b"never sent"]

    adapter = WSGIAdapter(app, threads=1)
    with caplog.at_level(logging.ERROR, logger="dualcorn.error"):
        exchange = await drive(adapter, body=[b"a", b"b"], disconnect_after=1)
    await adapter.shutdown()
    assert exchange.sent == []
    assert not caplog.records
