"""A client that half-closes (shutdown(SHUT_WR)) after pipelining its requests gets every
answer, then the close (RFC 9112 9.6 and 9.3.2: nothing the client sent before its FIN is lost).

Real servers on both loops and both parsers (the ``serve`` fixture), ASGI and WSGI apps, raw
sockets; then the in-memory connection for the cases a socket cannot time precisely.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.memconn import PARSERS, MemoryConnection
from tests.rawhttp import RawClient, get

Serve = Callable[..., Any]


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the path and the request body, so order and content are visible."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    payload = scope["path"].encode() + b":" + body
    headers = [(b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def wsgi_echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    payload = environ["PATH_INFO"].encode() + b":" + environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Length", str(len(payload)))])
    return [payload]


APPS = {"asgi": (asgi_echo, "asgi3"), "wsgi": (wsgi_echo, "wsgi")}


@pytest.fixture(params=sorted(APPS))
def app(request: pytest.FixtureRequest) -> tuple[Any, str]:
    return APPS[str(request.param)]


def post(path: str, body: bytes) -> bytes:
    return get(path, method=b"POST", headers=b"Content-Length: %d\r\n" % len(body)) + body


def half_close(client: RawClient, data: bytes) -> None:
    client.send(data)
    client.sock.shutdown(socket.SHUT_WR)


def answers(client: RawClient, count: int) -> list[bytes]:
    """``count`` responses' bodies, then proof that the server closed (EOF, not a timeout)."""
    bodies = []
    for _ in range(count):
        response = client.read_response()
        assert response.status == 200
        bodies.append(response.body)
    assert client.is_closed_by_server(10), "the server kept the connection open after the last"
    assert client.buf == b"", f"more than {count} responses: {bytes(client.buf)!r}"
    return bodies


def test_four_pipelined_gets_then_fin_get_four_answers(serve: Serve, app: tuple[Any, str]) -> None:
    with serve(app[0], interface=app[1]) as server, RawClient(server.port, timeout=10) as client:
        half_close(client, b"".join(get(f"/{n}") for n in range(4)))
        assert answers(client, 4) == [b"/0:", b"/1:", b"/2:", b"/3:"]


def test_requests_in_separate_segments_then_fin(serve: Serve, app: tuple[Any, str]) -> None:
    with serve(app[0], interface=app[1]) as server, RawClient(server.port, timeout=10) as client:
        for n in range(3):
            client.send(get(f"/{n}"))
        client.sock.shutdown(socket.SHUT_WR)
        assert answers(client, 3) == [b"/0:", b"/1:", b"/2:"]


def test_two_pipelined_posts_then_fin(serve: Serve, app: tuple[Any, str]) -> None:
    with serve(app[0], interface=app[1]) as server, RawClient(server.port, timeout=10) as client:
        half_close(client, post("/a", b"first body") + post("/b", b"x" * 100_000))
        assert answers(client, 2) == [b"/a:first body", b"/b:" + b"x" * 100_000]


@pytest.mark.parametrize(
    "partial",
    [b"GET /c HTTP/1.1\r\nHost: te", post("/c", b"0123456789")[:-4]],
    ids=["partial-head", "partial-body"],
)
def test_a_request_cut_short_by_the_fin_is_dropped(
    serve: Serve, app: tuple[Any, str], partial: bytes
) -> None:
    with serve(app[0], interface=app[1]) as server, RawClient(server.port, timeout=10) as client:
        half_close(client, get("/a") + post("/b", b"body") + partial)
        assert answers(client, 2) == [b"/a:", b"/b:body"]


def test_an_idle_connection_closes_at_the_fin(serve: Serve) -> None:
    with serve(asgi_echo) as server, RawClient(server.port, timeout=10) as client:
        client.send(get("/a"))
        assert client.read_response().body == b"/a:"
        client.sock.shutdown(socket.SHUT_WR)
        assert client.is_closed_by_server(10)
        assert client.buf == b""


def test_a_slow_answer_after_the_fin_still_arrives(serve: Serve) -> None:
    """The request in flight when the FIN arrives is answered, not cancelled."""
    held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    started = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        release = asyncio.Event()
        held.append((asyncio.get_running_loop(), release))
        started.set()
        await asyncio.wait_for(release.wait(), 30)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    with serve(slow) as server, RawClient(server.port, timeout=10) as client:
        half_close(client, get("/slow"))
        assert started.wait(10)
        # The FIN is in; give the server a chance to act on it before the answer exists.
        assert not client.is_closed_by_server(0.3)
        loop, release = held[0]
        loop.call_soon_threadsafe(release.set)
        response = client.read_response()
        assert (response.status, response.body) == (200, b"late")
        assert client.is_closed_by_server(10)


def test_a_client_that_half_closes_and_never_reads_is_dropped(serve: Serve) -> None:
    """--timeout-send still bounds a half-closed client that reads none of its answers."""
    done = threading.Event()
    outcome: list[str] = []

    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(200):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            outcome.append("complete")
        except OSError as exc:
            outcome.append(type(exc).__name__)
        finally:
            done.set()

    with serve(big, timeout_send=0.5) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(get("/"))
            sock.shutdown(socket.SHUT_WR)
            assert done.wait(15), "send() waited for ever for a half-closed client"
            assert outcome and outcome[0] != "complete"


@pytest.mark.parametrize("fin", [True, False], ids=["fin", "keep-alive-timeout"])
def test_a_closed_answer_to_a_client_that_never_reads_is_dropped(serve: Serve, fin: bool) -> None:
    """The last answer fits the transport's buffer but the client reads none of it: once the
    connection is to close (the client's FIN, or the keep-alive timeout), it still ends within
    --timeout-send rather than waiting on close() for ever."""
    body = b"y" * (4 * 1024 * 1024)

    async def one_send(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with serve(one_send, timeout_send=0.5, timeout_keep_alive=0.3) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(get("/"))
            if fin:
                sock.shutdown(socket.SHUT_WR)
            assert _connection_count_reaches(server, 0), "the connection was never dropped"


def _connection_count_reaches(server: Any, count: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = getattr(server.server, "state", None)
        if state is not None and len(state.connections) == count:
            return True
        time.sleep(0.05)
    return False


# --- In memory: the protocol's own answer to eof_received ---------------------------------


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)


async def test_memory_pipelined_requests_then_eof(parser: str) -> None:
    async with MemoryConnection(parser, asgi_echo) as conn:
        # The end of the stream comes before the first answer, two requests still unparsed.
        conn.protocol.data_received(get("/0") + get("/1") + get("/2"))
        await conn.eof()
        assert [r.body for r in conn.responses()] == [b"/0:", b"/1:", b"/2:"]
        assert conn.closed


async def test_memory_eof_while_idle_closes(parser: str) -> None:
    async with MemoryConnection(parser, asgi_echo) as conn:
        await conn.send(get("/0"))
        assert not conn.closed
        assert conn.protocol.eof_received() is None  # asyncio closes the transport itself


async def test_memory_eof_inside_a_body_disconnects_the_app(parser: str) -> None:
    seen: list[str] = []

    async def reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                return

    async with MemoryConnection(parser, reader) as conn:
        await conn.send(post("/", b"0123456789")[:-3])
        await conn.eof()
        assert conn.closed
        assert conn.written == b""
        assert seen[-1] == "http.disconnect"


# --- TLS: no half-close in asyncio's or uvloop's TLS transports -------------------------------


def test_tls_fin_closes_cleanly(
    serve: Serve, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A TLS transport cannot stay open for writing after the peer's FIN (asyncio ignores
    eof_received's answer there and warns if it is True): the connection closes, quietly."""
    pytest.importorskip("trustme")
    import ssl

    from tests.test_tls import make_pki

    async def slow_b(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path") == "/b":
            await asyncio.sleep(0.5)  # so the FIN arrives while /b is in flight
        await asgi_echo(scope, receive, send)

    pki = make_pki(tmp_path)
    caplog.set_level(logging.WARNING, logger="asyncio")
    with serve(slow_b, **pki.options()) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(get("/a"))
            assert tls.recv(65536).startswith(b"HTTP/1.1 200")
            tls.sendall(get("/b"))
            # A FIN under the TLS layer, no close_notify (a duplicate descriptor: wrap_socket
            # took the original, and SSLSocket.shutdown would drop its TLS state).
            with socket.fromfd(tls.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
                dup.shutdown(socket.SHUT_WR)
            tls.settimeout(10)
            try:
                while tls.recv(65536):
                    pass
            except (ssl.SSLError, OSError):
                pass  # an abrupt end is what TLS makes of it; a hang would be the failure
        assert _connection_count_reaches(server, 0)
    assert not [r for r in caplog.records if "eof_received" in r.getMessage()]
