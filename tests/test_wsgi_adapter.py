"""The WSGI adapter as an ASGI app: lifespan, websockets, the bounded pool, file_wrapper."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from dualcorn.adapters.wsgi import ZEROCOPY_EXTENSION, WSGIAdapter
from dualcorn.errors import ConfigError
from tests.asgi_driver import ClientGone, Exchange, drive, make_scope

Environ = dict[str, Any]


def hello(environ: Environ, start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [threading.current_thread().name.encode()]


def pool_threads(adapter: WSGIAdapter) -> list[threading.Thread]:
    """This adapter's pool threads, taken while the pool exists: other tests leave daemon
    threads of theirs behind on purpose (a thread stuck in an app is abandoned at shutdown),
    so the whole process's thread list says nothing about this pool."""
    assert adapter._pool is not None
    return list(adapter._pool._threads)


def alive(threads: list[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threads if t.is_alive()]


def ended(threads: list[threading.Thread]) -> list[threading.Thread]:
    """The threads still alive after a bounded join: the pool wakes its waiter from inside the
    last thread, a moment before that thread has returned."""
    for thread in threads:
        thread.join(5)
    return alive(threads)


async def run_lifespan(adapter: WSGIAdapter, events: list[str]) -> list[MutableMapping[str, Any]]:
    """Run the lifespan protocol, feeding ``events`` one by one; return what was sent."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for event in events:
        inbox.put_nowait({"type": event})
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    await adapter(scope, inbox.get, send)
    return sent


# --- Lifespan, websockets, scope types -------------------------------------------------------


async def test_lifespan_ties_the_pool_to_startup_and_shutdown() -> None:
    adapter = WSGIAdapter(hello, threads=2)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[MutableMapping[str, Any]] = []
    started = asyncio.Event()

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        started.set()

    lifespan = asyncio.create_task(adapter({"type": "lifespan", "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await started.wait()
    assert sent == [{"type": "lifespan.startup.complete"}]
    exchange = await drive(adapter)
    assert exchange.body.startswith(b"dualcorn-wsgi")
    threads = pool_threads(adapter)
    assert alive(threads)
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    assert sent[-1] == {"type": "lifespan.shutdown.complete"}
    assert ended(threads) == []  # shutdown stopped the pool's threads


async def test_without_lifespan_the_first_request_starts_the_pool() -> None:
    adapter = WSGIAdapter(hello, threads=1)
    exchange = await drive(adapter)
    assert exchange.status == 200
    assert exchange.body.startswith(b"dualcorn-wsgi")
    threads = pool_threads(adapter)
    assert alive(threads)
    await adapter.shutdown()
    assert ended(threads) == []
    await adapter.shutdown()  # a second shutdown is harmless


async def test_shutdown_waits_for_running_requests() -> None:
    entered = threading.Event()
    release = threading.Event()
    finished: list[bool] = []

    def slow(environ: Environ, start_response: Any) -> Iterable[bytes]:
        entered.set()
        release.wait(timeout=30)
        finished.append(True)
        start_response("200 OK", [])
        return []

    adapter = WSGIAdapter(slow, threads=1)
    request = asyncio.create_task(drive(adapter))
    await asyncio.to_thread(entered.wait, 30)
    shutdown = asyncio.create_task(run_lifespan(adapter, ["lifespan.shutdown"]))
    await asyncio.sleep(0.05)
    assert not shutdown.done()  # still waiting for the app thread
    release.set()
    assert await shutdown == [{"type": "lifespan.shutdown.complete"}]
    assert finished == [True]
    assert (await request).status == 200


async def test_websocket_is_refused() -> None:
    adapter = WSGIAdapter(hello, threads=1)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await adapter({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close"}]


async def test_unknown_scope_type_raises() -> None:
    adapter = WSGIAdapter(hello, threads=1)

    async def receive() -> dict[str, Any]:
        raise AssertionError("not called")

    async def send(message: MutableMapping[str, Any]) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="cannot serve 'webtransport'"):
        await adapter({"type": "webtransport"}, receive, send)


def test_threads_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="threads"):
        WSGIAdapter(hello, threads=0)


# --- The bounded pool ------------------------------------------------------------------------


async def test_requests_wait_for_a_free_thread() -> None:
    lock = threading.Lock()
    running = 0
    most_running = 0
    release = threading.Event()
    loop = asyncio.get_running_loop()
    two_running = asyncio.Event()

    def blocking(environ: Environ, start_response: Any) -> Iterable[bytes]:
        nonlocal running, most_running
        with lock:
            running += 1
            most_running = max(most_running, running)
            if running == 2:
                loop.call_soon_threadsafe(two_running.set)
        release.wait(timeout=30)
        with lock:
            running -= 1
        start_response("200 OK", [])
        return [threading.current_thread().name.encode()]

    adapter = WSGIAdapter(blocking, threads=2)
    requests = [asyncio.create_task(drive(adapter)) for _ in range(6)]
    await two_running.wait()
    await asyncio.sleep(0.05)  # room for a third thread to appear, if the pool were unbounded
    assert most_running == 2
    release.set()
    exchanges = await asyncio.gather(*requests)
    await adapter.shutdown()
    assert [e.status for e in exchanges] == [200] * 6
    assert most_running == 2
    assert len({e.body for e in exchanges}) == 2  # six requests, two threads


async def test_a_request_cancelled_while_queued_never_runs_the_app() -> None:
    entered = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        entered.set()
        release.wait(timeout=30)
        start_response("200 OK", [])
        return []

    adapter = WSGIAdapter(app, threads=1)
    first = asyncio.create_task(drive(adapter, path="/first"))
    await asyncio.to_thread(entered.wait, 30)
    queued = asyncio.create_task(drive(adapter, path="/queued"))
    await asyncio.sleep(0.01)  # the second request now waits for the only thread
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    assert (await first).status == 200
    await adapter.shutdown()
    assert calls == ["/first"]


@pytest.mark.parametrize("version", ["1.1", "2"])
async def test_a_request_whose_client_left_while_it_waited_never_runs_the_app(
    version: str,
) -> None:
    entered = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        entered.set()
        release.wait(timeout=30)
        start_response("200 OK", [])
        return []

    adapter = WSGIAdapter(app, threads=1)
    first = asyncio.create_task(drive(adapter, path="/first"))
    await asyncio.to_thread(entered.wait, 30)
    # The client is gone at its first receive() after the body: HTTP/1.1 without a length has
    # none (nothing is received before the app runs), HTTP/2 has an empty one.
    left = 0 if version == "1.1" else 1
    exchange = Exchange()
    options = {"path": "/gone", "http_version": version, "disconnect_after": left}
    gone = asyncio.create_task(drive(adapter, exchange=exchange, **options))
    # The watch notices the client left (a moment after the request started waiting), and
    # the request ends without an answer while the only thread is still busy.
    await asyncio.wait_for(gone, 30)
    assert exchange.receive_calls == left + 1
    release.set()
    assert (await first).status == 200
    await adapter.shutdown()
    assert calls == ["/first"]  # the thread that took /gone skipped it
    assert exchange.sent == []


def test_no_thread_leaks_after_10000_requests() -> None:
    """Normal requests, app errors, disconnects and cancellations all give their thread back."""
    baseline = threading.active_count()
    threads = 4

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        kind = environ["PATH_INFO"]
        if kind == "/error":
            raise RuntimeError("app error")
        start_response("200 OK", [])
        environ["wsgi.input"].read()
        yield b"first"
        if kind == "/late-error":
            raise RuntimeError("error after the response started")
        yield b"second"

    async def gone(message: dict[str, Any]) -> None:
        if message.get("body") == b"second":
            raise ClientGone("connection lost")

    async def one_request(adapter: WSGIAdapter, number: int) -> None:
        kind = number % 6
        if kind == 0:
            assert (await drive(adapter, path="/")).body == b"firstsecond"
        elif kind == 1:
            assert (await drive(adapter, path="/error")).status == 500
        elif kind == 2:
            exchange = await drive(adapter, path="/late-error", raise_app_errors=False)
            assert isinstance(exchange.exception, RuntimeError)
        elif kind == 3:
            exchange = await drive(adapter, body=[b"a", b"b", b"c"], disconnect_after=1)
            assert exchange.sent == []
        elif kind == 4:
            assert (await drive(adapter, on_send=gone)).body == b"first"
        else:  # the server cancels a request whose app thread waits on a stuck send()
            stuck_now = asyncio.Event()

            async def stuck(message: dict[str, Any]) -> None:
                if message.get("body"):
                    stuck_now.set()
                    await asyncio.Event().wait()

            task = asyncio.create_task(drive(adapter, on_send=stuck))
            await stuck_now.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    async def scenario() -> int:
        adapter = WSGIAdapter(app, threads=threads)
        most = 0
        for batch in range(0, 10_000, 50):
            await asyncio.gather(*(one_request(adapter, n) for n in range(batch, batch + 50)))
            most = max(most, threading.active_count())
        await adapter.shutdown()
        return most

    most = asyncio.run(scenario())
    assert most - baseline <= threads
    assert threading.active_count() == baseline


# --- wsgi.file_wrapper -----------------------------------------------------------------------


DATA = bytes(range(256)) * 400  # 102,400 bytes


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


def open_binary(path: Path) -> Any:
    # The application opens the file and hands it over; the file wrapper's close() closes it.
    return open(path, "rb")


def file_app(
    opener: Any, *, offset: int = 0, headers: list[tuple[str, str]] | None = None
) -> tuple[Any, list[Any]]:
    files: list[Any] = []

    def app(environ: Environ, start_response: Any) -> Any:
        filelike = opener()
        if offset:
            filelike.seek(offset)
        files.append(filelike)
        start_response("200 OK", headers or [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](filelike, 4096)

    return app, files


async def test_file_wrapper_uses_zero_copy_send(data_file: Path) -> None:
    app, files = file_app(lambda: open_binary(data_file), offset=100)
    adapter = WSGIAdapter(app, threads=1)
    sent_bytes: list[bytes] = []

    async def sendfile(message: dict[str, Any]) -> None:
        # Play the server: the file must still be open while the extension message is sent.
        if message["type"] == ZEROCOPY_EXTENSION:
            fd = message["file"].fileno()
            sent_bytes.append(os.pread(fd, message["count"], message["offset"]))

    scope = make_scope(extensions={ZEROCOPY_EXTENSION: {}})
    exchange = await drive(adapter, scope, on_send=sendfile)
    await adapter.shutdown()
    start, message = exchange.sent
    assert start["type"] == "http.response.start"
    assert exchange.header("content-length") == str(102_400 - 100)
    assert message == {
        "type": ZEROCOPY_EXTENSION,
        "file": files[0],
        "offset": 100,
        "count": 102_400 - 100,
        "more_body": False,
    }
    assert sent_bytes == [DATA[100:]]
    assert files[0].closed  # PEP 3333: the wrapper's close() closes the file


async def test_zero_copy_honours_the_apps_content_length(data_file: Path) -> None:
    app, _ = file_app(lambda: open_binary(data_file), headers=[("Content-Length", "1000")])
    adapter = WSGIAdapter(app, threads=1)
    exchange = await drive(adapter, make_scope(extensions={ZEROCOPY_EXTENSION: {}}))
    await adapter.shutdown()
    assert exchange.header("content-length") == "1000"
    assert exchange.sent[1]["count"] == 1000


def pipe_reader() -> Any:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"from a pipe")
    os.close(write_fd)
    return os.fdopen(read_fd, "rb")


@pytest.mark.parametrize(
    ("opener", "expected", "extensions"),
    [
        ("file", None, {}),  # the server does not offer the extension
        ("bytesio", b"in memory" * 2000, {ZEROCOPY_EXTENSION: {}}),  # no fileno()
        ("pipe", b"from a pipe", {ZEROCOPY_EXTENSION: {}}),  # fileno(), but not a regular file
    ],
)
async def test_file_wrapper_falls_back_to_reading_blocks(
    data_file: Path, opener: str, expected: bytes | None, extensions: dict[str, Any]
) -> None:
    openers = {
        "file": lambda: open_binary(data_file),
        "bytesio": lambda: io.BytesIO(b"in memory" * 2000),
        "pipe": pipe_reader,
    }
    app, files = file_app(openers[opener])
    adapter = WSGIAdapter(app, threads=1)
    exchange = await drive(adapter, make_scope(extensions=extensions))
    await adapter.shutdown()
    content = expected if expected is not None else DATA
    assert exchange.body == content
    assert all(m["type"] == "http.response.body" for m in exchange.sent[1:])
    assert all(len(m["body"]) <= 4096 for m in exchange.body_messages)
    assert exchange.complete
    assert files[0].closed
