"""The response side of the WSGI adapter: the body, write() and start_response()."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from dualcorn.adapters import wsgi_threads
from dualcorn.adapters.wsgi import WSGIAdapter
from dualcorn.adapters.wsgi_threads import OUTBOX_LIMIT
from dualcorn.errors import AppContractError
from tests.asgi_driver import drive
from tests.wsgi_helpers import (
    ClosingBody,
    Environ,
    StartResponse,
    app_returning,
    error_records,
    serve,
)


@pytest.fixture
def wakes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time an app thread wakes the event loop: outbox batches and input hops."""
    trips: list[str] = []
    wake = wsgi_threads._wake
    hop = asyncio.run_coroutine_threadsafe

    def counting_wake(waiter: Any) -> None:
        trips.append("outbox")
        wake(waiter)

    def counting_hop(coroutine: Any, loop: Any) -> Any:
        trips.append("hop")
        return hop(coroutine, loop)

    monkeypatch.setattr(wsgi_threads, "_wake", counting_wake)
    monkeypatch.setattr("dualcorn.adapters.wsgi_input.run_coroutine_threadsafe", counting_hop)
    return trips


# --- Sending the body ------------------------------------------------------------------------


async def test_small_list_is_the_work_items_result(wakes: list[str]) -> None:
    exchange = await serve(app_returning([b"Hello, ", b"", b"world"]))
    assert exchange.status == 200
    assert exchange.header("content-type") == "text/plain"
    assert exchange.header("content-length") == "12"
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]
    assert exchange.body == b"Hello, world"
    assert exchange.complete
    # Status, headers and body travel back with the end of the work item: one wake-up.
    assert wakes == ["outbox"]


class _InMemoryResponse:
    """Shaped like Django's HttpResponse: iterates a list it holds, and has close()."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed += 1


async def test_a_body_iterating_a_list_is_sent_whole_with_a_length() -> None:
    # Django's JsonResponse declares no Content-Length; its chunks are in memory already, so
    # taking them all delays nothing (PEP 3333 "Buffering and Streaming") and the client gets
    # a length instead of chunked framing.
    body = _InMemoryResponse([b'{"message": ', b'"Hello"}'])
    exchange = await serve(app_returning(body, headers=[("Content-Type", "application/json")]))
    assert exchange.header("content-length") == "20"
    assert [(m.get("body"), m.get("more_body")) for m in exchange.body_messages] == [
        (b'{"message": "Hello"}', False)
    ]
    assert exchange.complete
    assert body.closed == 1


async def test_generator_streams_chunk_by_chunk(wakes: list[str]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"one"
        yield b""  # PEP 3333: an empty chunk is skipped, not sent
        yield b"two"

    exchange = await serve(app_returning(chunks()))
    assert [(m["type"], m.get("body"), m.get("more_body")) for m in exchange.sent] == [
        ("http.response.start", None, None),
        ("http.response.body", b"one", True),
        ("http.response.body", b"two", True),
        ("http.response.body", b"", False),
    ]
    assert exchange.header("content-length") is None  # unknown length: the server frames it
    # Posts made before the loop runs share its wake-up (usually all of them: the app thread
    # holds the GIL); never more than one per chunk plus the end.
    assert 1 <= len(wakes) <= 3
    assert set(wakes) == {"outbox"}


async def test_body_read_costs_one_hop_per_chunk(wakes: list[str]) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    exchange = await serve(app, body=[b"ab", b"cd"])
    assert exchange.body == b"abcd"
    assert wakes == ["hop", "hop", "outbox"]


async def test_large_list_streams_chunk_by_chunk() -> None:
    big = [b"a" * 40_000, b"b" * 40_000]
    exchange = await serve(app_returning(big))
    assert [m.get("body") for m in exchange.body_messages] == [*big, b""]
    assert exchange.header("content-length") is None


def _generator(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified", "200 OK"])
@pytest.mark.parametrize(
    "make_body",
    [list, tuple, iter, _generator],
    ids=["list", "tuple", "list-iter", "generator"],
)
async def test_empty_body_still_sends_status_and_headers(
    status: str, make_body: Callable[[list[bytes]], Iterable[bytes]]
) -> None:
    headers = [("ETag", '"v1"')]
    exchange = await serve(app_returning(make_body([]), status, headers))
    assert exchange.status == int(status[:3])
    assert exchange.header("etag") == '"v1"'
    assert exchange.body == b""
    assert exchange.complete
    if status != "200 OK" or make_body is _generator:
        # RFC 9110 8.6: no Content-Length on 204 or 304, nor when the length was not known
        # (a list's iterator has its chunks in memory: their length is known).
        assert exchange.header("content-length") is None
    else:
        assert exchange.header("content-length") == "0"


async def test_head_response_gets_no_invented_content_length() -> None:
    exchange = await serve(app_returning([]), method="HEAD")
    assert exchange.header("content-length") is None


async def test_app_content_length_is_kept() -> None:
    app = app_returning([b"abc"], headers=[("Content-Length", "3")])
    exchange = await serve(app)
    assert exchange.headers == [(b"content-length", b"3")]


async def test_start_response_may_be_called_inside_the_iterable() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("201 Created", [("Location", "/x")])
        yield b"made"

    exchange = await serve(app)
    assert exchange.status == 201
    assert exchange.header("location") == "/x"
    assert exchange.body == b"made"


async def test_latin1_header_values_are_sent_as_their_bytes() -> None:
    app = app_returning([], headers=[("X-Name", "café")])
    exchange = await serve(app)
    assert exchange.headers == [(b"x-name", b"caf\xe9"), (b"content-length", b"0")]


async def test_checked_header_lines_are_remembered_without_changing_answers() -> None:
    # Lines checked once are looked up next time (Content-Length included, with its own
    # length): the same lines in a list or a tuple, other lengths, and a str subclass (PEP 3333
    # native strings) all give what the first, checked, answer gave.
    class Text(str):
        pass

    lines = [("Content-Type", "text/plain"), ("Content-Length", "3")]
    for headers in (lines, lines, [list(line) for line in lines], [(Text("X-A"), Text("1"))]):
        exchange = await serve(app_returning([b"abc"], "200 OK", headers))  # type: ignore[arg-type]
        assert exchange.status == 200
        assert exchange.body == b"abc"
    exchange = await serve(app_returning([b"abcdef"], "200 OK", [("Content-Length", "2")]))
    assert exchange.headers == [(b"content-length", b"2")]
    assert exchange.body == b"ab"  # PEP 3333: not past the declared length


async def test_body_runs_ahead_of_a_slow_client_by_at_most_the_outbox_limit() -> None:
    """Backpressure: the app thread may post blocks ahead of send(), but only so many bytes."""
    size = 16 * 1024
    body = ClosingBody([bytes([i]) * size for i in range(20)])
    ahead: list[int] = []

    async def slow_send(message: dict[str, Any]) -> None:
        if message.get("body"):
            # Give a runaway producer every chance to get ahead before this send returns.
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(0.005)
            accepted = len(ahead)  # chunks whose send() returned before this one
            ahead.append((body.produced - accepted) * size)

    exchange = await serve(app_returning(body), on_send=slow_send)
    assert exchange.body == b"".join(body.chunks)  # type: ignore[arg-type]
    # Posted but not accepted: at most the limit, plus the one chunk that crossed it.
    assert max(ahead) <= OUTBOX_LIMIT + size
    assert max(ahead) > size  # the thread did run ahead: blocks were not sent one hop each


async def test_a_client_that_never_reads_stops_the_app_thread() -> None:
    size = 16 * 1024
    body = ClosingBody([b"x" * size] * 100)
    stuck = asyncio.Event()

    async def never_returns(message: dict[str, Any]) -> None:
        if message.get("body"):
            stuck.set()
            await asyncio.Event().wait()  # a paused transport that never drains

    adapter = WSGIAdapter(app_returning(body), threads=1)
    task = asyncio.create_task(drive(adapter, on_send=never_returns))
    await stuck.wait()
    await asyncio.sleep(0.05)  # room for the thread to run away, if nothing held it
    assert body.produced * size <= OUTBOX_LIMIT + size
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(adapter.shutdown(), timeout=10)
    assert body.closed == 1


async def test_content_length_stops_the_iteration() -> None:
    body = ClosingBody([b"abc", b"defgh", b"never"])
    exchange = await serve(app_returning(body, headers=[("Content-Length", "5")]))
    # PEP 3333: not more than Content-Length, and stop iterating once it is reached.
    assert [(m["body"], m["more_body"]) for m in exchange.body_messages] == [
        (b"abc", True),
        (b"de", False),
    ]
    assert body.produced == 2
    assert body.closed == 1


async def test_content_length_caps_a_list_body() -> None:
    exchange = await serve(app_returning([b"abcdef"], headers=[("Content-Length", "4")]))
    assert exchange.body == b"abcd"
    assert exchange.complete


# --- write() ---------------------------------------------------------------------------------


async def test_write_sends_before_the_iterable() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [])
        write(b"one ")
        write(b"")
        write(b"two ")
        return [b"three"]

    exchange = await serve(app)
    assert [(m["body"], m["more_body"]) for m in exchange.body_messages] == [
        (b"one ", True),
        (b"two ", True),
        (b"three", False),
    ]
    assert exchange.header("content-length") is None


async def test_write_past_content_length_is_an_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Length", "3")])
        write(b"abc")
        write(b"d")
        return []

    with pytest.raises(AppContractError, match="past the declared Content-Length"):
        await serve(app)


async def test_write_takes_bytes_only(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])("text")
        return []

    exchange = await serve(app)
    assert exchange.status == 500
    assert "write() takes bytes" in str(error_records(caplog)[0].exc_info)


# --- start_response rules --------------------------------------------------------------------


async def test_second_start_response_without_exc_info_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b"body"]

    exchange = await serve(app)
    assert exchange.status == 500
    [record] = error_records(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], AppContractError)
    assert "called twice" in str(record.exc_info[1])


async def test_exc_info_before_headers_replaces_the_response() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("boom")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "2")], sys.exc_info())
        return [b"sorry"]

    exchange = await serve(app)
    assert exchange.status == 503
    assert exchange.header("x-first") is None
    assert exchange.header("x-second") == "2"
    assert exchange.body == b"sorry"


async def test_exc_info_after_headers_reraises_it() -> None:
    failure = ValueError("late failure")
    body_closed: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            yield b"partial"
            raise failure
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"not reached"
        finally:
            body_closed.append(True)

    with pytest.raises(ValueError) as raised:
        await serve(app)
    assert raised.value is failure
    assert body_closed == [True]


@pytest.mark.parametrize(
    "status",
    ["200", "200OK", " 200 OK", "200 OK ", "2000 OK", "abc OK", "²00 OK", "200 OK\r\nX: y",
     "99 Low", "199 Early", "600 Beyond", b"200 OK", 200],
)  # fmt: skip
async def test_malformed_status_is_rejected(status: Any, caplog: pytest.LogCaptureFixture) -> None:
    exchange = await serve(app_returning([b"x"], status))
    assert exchange.status == 500
    [record] = error_records(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], AppContractError)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", 1)],
        [("X-A", ["1"])],
        [(b"X-A", "1")],
        [("X-A", "1", "extra")],
        ["X-A: 1"],
        {"X-A": "1"},
        [("X-A", "price in €")],  # not latin-1
        [("X-A", "a\r\nSet-Cookie: evil=1")],
        [("X-A", "a\nb")],
        [("X-A", "a\0b")],
        [("X A", "1")],
        [("", "1")],
        [("X-A:", "1")],
        [("Keep-Alive", "timeout=5")],
        [("Transfer-Encoding", "chunked")],
        [("Upgrade", "h2c")],
        [("TE", "trailers")],
        [("Trailers", "X")],
        [("Proxy-Authenticate", "Basic")],
        [("Content-Length", "ten")],
    ],
)
async def test_malformed_headers_are_rejected(
    headers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = await serve(app_returning([b"x"], "200 OK", headers))
    assert exchange.status == 500
    assert exchange.header("x-a") is None
    [record] = error_records(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], AppContractError)


@pytest.mark.parametrize("body", [[], iter([b"data"])], ids=["empty", "data"])
async def test_missing_start_response_is_a_logged_500(
    body: Iterable[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    exchange = await serve(lambda environ, start_response: body)
    assert exchange.status == 500
    assert exchange.body == b""
    [record] = error_records(caplog)
    assert "did not call start_response()" in str(record.exc_info[1])  # type: ignore[index]


async def test_non_bytes_chunk_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    exchange = await serve(app_returning(["text, not bytes"]))
    assert exchange.status == 500
    assert "not bytes" in str(error_records(caplog)[0].exc_info[1])  # type: ignore[index]
