"""HTTP on real sockets: the behaviours whose point is the transport itself.

Several connections against one server, timeouts in real time, back-pressure from a real peer,
sendfile: each test starts a real server with the ``serve`` fixture, and ``@over_both`` runs it
over HTTP/1.1 on each parser and over h2c (tests/h2client.py, httpx ``http2=True``).  Where the
protocols differ the test says so by ``protocol``: an HTTP/1.1 failure closes the connection, an
HTTP/2 one resets its stream (RFC 9113 8.1) and the connection goes on.  The in-memory half of
the HTTP suite is tests/test_http.py.

The tests that stay HTTP/1.1 only, and why (RFC 9113):

=====================================================  ===========================================
test                                                   why not over HTTP/2
=====================================================  ===========================================
test_reading_stays_paused_while_pipelined_requests_wait  no pipelining (5): nothing queues behind
                                                       a response
test_request_head_timeout_after_a_keep_alive_request  between streams an HTTP/2 connection is
                                                       bounded by --timeout-keep-alive (its test
                                                       here runs over both)
test_reading_pauses_while_the_app_does_not_read        an upload is held back by the stream's
                                                       window (6.9), not by pausing the socket:
                                                       test_large_upload_to_a_slow_reader[h2] and
                                                       tests/test_http2_attacks.py
=====================================================  ===========================================
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hyperframe.frame import HeadersFrame

from dualcorn import Config
from dualcorn.protocols.http1.h11_tokenizer import H11Protocol
from dualcorn.protocols.state import ServerState
from tests.conftest import over_both
from tests.h2client import H2Client
from tests.http_apps import (
    CANCEL,
    MIB,
    NO_ERROR,
    Scope,
    Serve,
    respond,
)
from tests.rawhttp import RawClient, get
from tests.support import MemoryTransport


@over_both
def test_limit_concurrency_answers_503(
    serve: Serve, protocol: str, errors: pytest.LogCaptureFixture
) -> None:
    entered = threading.Event()
    release = asyncio.Event()
    loop: list[asyncio.AbstractEventLoop] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            loop.append(asyncio.get_running_loop())
            entered.set()
            await release.wait()
        await respond(send, 200, b"ok")

    with serve(app, limit_concurrency=1) as server:
        if protocol == "1.1":
            with RawClient(server.port) as slow:
                slow.send(get("/slow"))
                assert entered.wait(5)
                assert httpx.get(server.url + "/fast").status_code == 503
                loop[0].call_soon_threadsafe(release.set)
                assert slow.read_response().status == 200
                assert httpx.get(server.url + "/fast").status_code == 200
        else:  # --limit-concurrency counts streams: the second stream of one connection
            with H2Client(server.port) as client:
                slow = client.request("/slow")
                assert entered.wait(5)
                assert client.get("/fast").status == 503
                loop[0].call_soon_threadsafe(release.set)
                assert client.wait(slow)[0].status == 200
                assert client.get("/fast").status == 200
    assert "--limit-concurrency" in errors.text


# --- Timeouts -------------------------------------------------------------------------------


@over_both
def test_request_head_timeout_answers_408(serve: Serve, protocol: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called for a head that never arrived")

    with serve(app, timeout_request_head=0.5) as server:
        if protocol == "1.1":
            with RawClient(server.port) as raw:
                raw.send(b"GET / HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
                response = raw.read_response()
                assert response.status == 408
                assert response.header(b"connection") == b"close"
                assert raw.is_closed_by_server()
        else:
            # A HEADERS frame whose block never ends (no END_HEADERS, no CONTINUATION): no
            # stream exists to answer 408 on, so the connection ends (RFC 9113 6.8, 6.10).
            with H2Client(server.port) as client:
                while not client.remote_settings:  # SETTINGS exchanged first
                    assert client.receive_once()
                head = HeadersFrame(1)
                head.data = client.conn.encoder.encode([(b":method", b"GET")])
                client.send_raw(head.serialize())
                client.wait_closed()
                # The head timeout's graceful GOAWAY, then the close; no stream answered.
                assert client.goaways[0] == (2**31 - 1, NO_ERROR)
                assert not any(result.headers for result in client.streams.values())


def test_request_head_timeout_after_a_keep_alive_request(serve: Serve) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, 200, b"ok")

    options = {"timeout_request_head": 0.5, "timeout_keep_alive": 30}
    with serve(app, **options) as server, RawClient(server.port) as client:
        client.send(get())
        assert client.read_response().status == 200
        # The second head dribbles: the head timeout (not the long idle one) must apply.
        client.send(b"GET / HTTP/1.1\r\n")
        assert client.read_response().status == 408


@over_both
def test_keep_alive_timeout_closes_an_idle_connection(serve: Serve, protocol: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, 200, b"ok")

    with serve(app, timeout_keep_alive=0.3) as server:
        if protocol == "1.1":
            with RawClient(server.port) as raw:
                raw.send(get())
                assert raw.read_response().status == 200
                assert raw.is_closed_by_server(timeout=5)
                assert raw.buf == b""  # closed quietly: no 408 for a connection that sent nothing
        else:
            with H2Client(server.port) as client:
                assert client.get().status == 200
                # A graceful GOAWAY (RFC 9113 6.8) naming the one stream served, then the close.
                client.wait_closed()
                assert client.goaway == (1, NO_ERROR)


@over_both
def test_body_stall_timeout_disconnects_the_app(serve: Serve, protocol: str) -> None:
    messages: list[dict[str, Any]] = []
    done = threading.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        done.set()

    with serve(app, timeout_body_read=0.5) as server:
        if protocol == "1.1":
            with RawClient(server.port) as raw:
                raw.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
                assert done.wait(5)
                assert raw.is_closed_by_server()
        else:
            with H2Client(server.port) as client:
                length = [("content-length", "10")]
                sid = client.request("/", "POST", b"hello", headers=length, end=False)
                assert done.wait(5)
                # The stream is cancelled (RFC 9113 8.1); the connection serves on.
                [result] = client.wait(sid)
                assert result.reset == CANCEL
                assert not client.closed
    assert messages[0] == {"type": "http.request", "body": b"hello", "more_body": True}
    assert messages[-1] == {"type": "http.disconnect"}


# --- Flow control ---------------------------------------------------------------------------


class EventTransport(MemoryTransport):
    """A memory transport whose resume_reading can be awaited."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed = asyncio.Event()

    def pause_reading(self) -> None:
        super().pause_reading()
        self.resumed.clear()

    def resume_reading(self) -> None:
        super().resume_reading()
        self.resumed.set()


async def test_reading_pauses_while_the_app_does_not_read() -> None:
    """20 MiB uploaded to an app that reads slowly: the buffer never passes the high-water."""
    release = asyncio.Event()
    received = bytearray()
    buffered: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await release.wait()
        while True:
            message = await receive()
            received.extend(message["body"])
            await asyncio.sleep(0)  # a slow reader: the protocol gets to feed in between
            if not message["more_body"]:
                break
        await respond(send, 200, b"ok")

    total, piece = 20 * MIB, 64 * 1024
    high = 64 * 1024
    state = ServerState(Config(app=app, read_high_water=high), app)
    protocol = H11Protocol(state)
    transport = EventTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
    payload = b"x" * piece
    sent = pauses = 0
    while sent < total:
        # A real transport delivers nothing while paused; the test is the socket here.
        if not transport.reading:
            pauses += 1
            if not release.is_set():
                cycle = protocol.cycle
                assert cycle is not None
                buffered.append(len(cycle._body))
                release.set()
            await transport.resumed.wait()
            continue
        protocol.data_received(payload)
        sent += piece
        await asyncio.sleep(0)
    for _ in range(100):
        if transport.written:
            break
        await asyncio.sleep(0)
    assert pauses >= 1, "reading never paused"
    assert buffered and buffered[0] <= high + piece
    assert len(received) == total
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    assert transport.reading


@over_both
def test_large_upload_to_a_slow_reader(serve: Serve, protocol: str) -> None:
    """The same over a real socket: every byte arrives, in order, with a small read buffer
    (over HTTP/2 the stream window holds the client back, granted as the app reads)."""
    total = 20 * MIB
    counted: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message["body"])
            await asyncio.sleep(0)
            if not message["more_body"]:
                break
        counted.append(size)
        await respond(send, 200, str(size).encode())

    def parts() -> Iterator[bytes]:
        block = b"y" * (256 * 1024)
        for _ in range(total // len(block)):
            yield block

    h2 = protocol == "2"
    client = httpx.Client(http1=not h2, http2=h2, timeout=30)
    with serve(app, read_high_water=16 * 1024) as server, client:
        response = client.post(server.url, content=parts())
    assert response.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
    assert response.text == str(total)
    assert counted == [total]


@over_both
def test_send_waits_for_a_slow_reading_client(serve: Serve, protocol: str) -> None:
    total_chunks, piece = 800, 64 * 1024  # 50 MiB
    progress: list[int] = [0]
    finished = threading.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"%d" % (total_chunks * piece))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        block = b"z" * piece
        for i in range(total_chunks):
            await send({"type": "http.response.body", "body": block, "more_body": True})
            progress[0] = i + 1
        await send({"type": "http.response.body", "body": b""})
        finished.set()

    with serve(app) as server:
        if protocol == "2":
            # The client reads nothing and opens no window: the app's first 64 KiB block is
            # already past the connection's initial 65,535 bytes (RFC 9113 6.9.2), so it waits.
            with H2Client(server.port, window=2**31 - 1, timeout=30) as client:
                sid = client.request()
                assert not finished.wait(1.0), "send() never waited for the client"
                assert progress[0] <= 1, progress[0]
                [result] = client.wait(sid)
                assert result.status == 200
                assert len(result.data) == total_chunks * piece
            assert finished.wait(5)
            return
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", server.port))
        with sock:
            sock.sendall(get())
            # Without back-pressure the app would push all 50 MiB into memory at once.
            assert not finished.wait(1.0), "send() never waited for the client"
            assert 0 < progress[0] < total_chunks // 2, progress[0]
            sock.settimeout(10)
            received = 0
            data = sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            received = len(rest)
            while received < total_chunks * piece:
                data = sock.recv(1024 * 1024)
                assert data, f"closed after {received} bytes"
                received += len(data)
            assert received == total_chunks * piece
        assert finished.wait(5)


async def test_reading_stays_paused_while_pipelined_requests_wait() -> None:
    """Each response lets one buffered request through, never the socket: the buffer of
    pipelined requests cannot grow while the app works."""
    gates = {"/2": asyncio.Event()}
    paths: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        gate = gates.get(scope["path"])
        if gate is not None:
            await gate.wait()
        await respond(send, 200, scope["path"].encode())

    state = ServerState(Config(app=app), app)
    protocol = H11Protocol(state)
    transport = EventTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    protocol.data_received(get("/1") + get("/2") + get("/3"))
    assert not transport.reading  # /2 and /3 wait behind /1
    for _ in range(20):
        await asyncio.sleep(0)
    assert paths == ["/1", "/2"]  # /1 answered, /2 in flight, /3 still buffered
    assert not transport.reading, "reading resumed with a pipelined request still buffered"
    gates["/2"].set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert paths == ["/1", "/2", "/3"]
    assert transport.reading  # nothing left buffered: the socket may be read again
    assert bytes(transport.written).count(b"HTTP/1.1 200 ") == 3


@over_both
def test_silent_connection_is_closed_after_the_head_timeout(serve: Serve, protocol: str) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    with serve(app, timeout_request_head=0.3) as server:
        if protocol == "1.1":
            with RawClient(server.port) as raw:
                assert raw.is_closed_by_server(timeout=5)
                assert raw.buf == b""  # nothing was asked, so nothing (not even a 408) is answered
        else:
            # The preface and SETTINGS, then nothing: a GOAWAY that names no stream, the close.
            with H2Client(server.port) as client:
                client.wait_closed()
                assert client.goaway == (0, NO_ERROR)


@over_both
@pytest.mark.parametrize("extension", ["pathsend", "zerocopysend"])
def test_file_extensions(serve: Serve, protocol: str, tmp_path: Any, extension: str) -> None:
    data = bytes(range(256)) * 1200  # 300 KiB: more than one write-buffer's worth
    path = tmp_path / "file.bin"
    path.write_bytes(data)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert f"http.response.{extension}" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if extension == "pathsend":
            await send({"type": "http.response.pathsend", "path": str(path)})
        else:
            with path.open("rb") as file:  # a small local file: opening it does not block
                await send({"type": "http.response.zerocopysend", "file": file, "offset": 100,
                            "count": 1000, "more_body": True})  # fmt: skip
                await send({"type": "http.response.zerocopysend", "file": file, "offset": 0})

    expected = data if extension == "pathsend" else data[100:1100] + data
    with serve(app) as server:
        if protocol == "2":  # DATA frames, as the windows allow
            with H2Client(server.port) as client:
                for method in ("GET", "HEAD", "GET"):
                    result = client.get(method=method)
                    assert result.status == 200
                    assert bytes(result.data) == (expected if method == "GET" else b"")
            return
        with RawClient(server.port) as raw:
            for method in (b"GET", b"HEAD", b"GET"):
                raw.send(get("/", method=method))
                response = raw.read_response(head_request=method == b"HEAD")
                assert response.status == 200
                if method == b"GET":
                    assert response.body == expected
