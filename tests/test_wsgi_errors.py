"""Application errors and close(): a 500 when possible, the iterable closed exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from dualcorn.adapters.wsgi import WSGIAdapter
from dualcorn.adapters.wsgi_threads import OUTBOX_LIMIT
from tests.asgi_driver import ClientGone, Exchange, drive
from tests.wsgi_helpers import (
    ClosingBody,
    Environ,
    StartResponse,
    app_returning,
    error_records,
    serve,
)

# --- Application errors ----------------------------------------------------------------------


async def test_app_exception_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("X-Lost", "1")])
        raise KeyError("missing")

    exchange = await serve(app)
    assert exchange.status == 500
    assert exchange.headers == [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"0"),
    ]
    assert exchange.body == b""
    assert exchange.complete
    [record] = error_records(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


async def test_exception_before_the_first_non_empty_chunk_is_still_a_500() -> None:
    body = ClosingBody([b"", b"", RuntimeError("in the iterable")])
    exchange = await serve(app_returning(body))
    assert exchange.status == 500
    assert body.closed == 1


async def test_exception_after_the_response_started_is_reraised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failure = RuntimeError("mid-stream")
    body = ClosingBody([b"first", failure])
    exchange = Exchange()
    with pytest.raises(RuntimeError) as raised:
        await serve(app_returning(body), exchange=exchange)
    assert raised.value is failure
    assert exchange.status == 200
    assert not exchange.complete  # the server will close the connection
    assert body.closed == 1
    assert error_records(caplog) == []  # the server logs what the adapter re-raises


async def test_system_exit_in_the_app_does_not_stop_the_server() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        raise SystemExit(3)

    exchange = await serve(app)
    assert exchange.status == 500


# --- close() exactly once --------------------------------------------------------------------


async def test_close_once_after_a_normal_response() -> None:
    body = ClosingBody([b"a", b"b"])
    exchange = await serve(app_returning(body))
    assert exchange.body == b"ab"
    assert body.closed == 1


async def test_close_once_after_an_exception_before_output() -> None:
    body = ClosingBody([ValueError("x")])
    exchange = await serve(app_returning(body))
    assert exchange.status == 500
    assert body.closed == 1


async def test_close_once_when_send_fails_because_the_client_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Chunks past the outbox limit: the app thread waits for each send() before going on.
    chunks = [bytes([n]) * (OUTBOX_LIMIT + 1) for n in range(4)]
    body = ClosingBody(chunks)

    async def failing_send(message: dict[str, Any]) -> None:
        if message.get("body") == chunks[1]:
            raise ClientGone("connection lost")

    exchange = await serve(app_returning(body), on_send=failing_send)
    assert exchange.body == chunks[0]
    assert body.produced == 2  # iteration stopped at the failed send
    assert body.closed == 1
    assert error_records(caplog) == []


async def test_close_once_when_the_disconnect_is_noticed_while_reading() -> None:
    class EchoBody:
        """Streams the request body back, line by line, as it arrives."""

        def __init__(self, stream: Any) -> None:
            self.stream = stream
            self.closed = 0

        def __iter__(self) -> Iterator[bytes]:
            yield from self.stream

        def close(self) -> None:
            self.closed += 1

    bodies: list[EchoBody] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        bodies.append(EchoBody(environ["wsgi.input"]))
        return bodies[0]

    exchange = await serve(app, body=[b"line 1\n", b"line 2\n", b"line 3\n"], disconnect_after=2)
    # The echo got through the first two lines, then the disconnect ended the response.
    assert exchange.body == b"line 1\nline 2\n"
    assert not exchange.complete
    assert bodies[0].closed == 1


async def test_close_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class BadClose:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"ok"])

        def close(self) -> None:
            raise OSError("close failed")

    exchange = await serve(app_returning(BadClose()))
    assert exchange.body == b"ok"
    assert exchange.complete
    [record] = error_records(caplog)
    assert "close() raised" in record.getMessage()


async def test_app_thread_is_released_when_the_request_is_cancelled() -> None:
    # A chunk past the outbox limit: the app thread waits until send() accepts it.
    body = ClosingBody([b"x" * (OUTBOX_LIMIT + 1)] * 3)
    first_send = asyncio.Event()

    async def stuck_send(message: dict[str, Any]) -> None:
        if message.get("body"):
            first_send.set()
            await asyncio.Event().wait()  # a client that never reads

    adapter = WSGIAdapter(app_returning(body), threads=1)
    task = asyncio.create_task(drive(adapter, on_send=stuck_send))
    await first_send.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # shutdown() waits for the app thread: it returns only if the thread was released.
    await asyncio.wait_for(adapter.shutdown(), timeout=10)
    assert body.produced == 1
    assert body.closed == 1
