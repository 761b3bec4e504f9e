"""WSGI apps over h2c on the real server: how a request's body (or its absence) reaches
``wsgi.input``, and that a stream the client resets frees its app thread.

Over HTTP/2 a request without Content-Length may still have a body (DATA frames, RFC 9113
8.1); only END_STREAM on its HEADERS says it has none.  The adapter then gives the app an
empty ``wsgi.input`` without awaiting ``receive()`` (``dualcorn_body_absent``), and otherwise
takes the body as it comes.  Each case runs on both HTTP/2 engines (``conftest``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tests.h2client import H2Client
from tests.support import ServerThread

Serve = Callable[..., ServerThread]
Environ = dict[str, Any]
WAIT = 10.0  # seconds a test waits for something that should happen at once


def echo_length(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Reads the whole wsgi.input, answers its length and the method."""
    body = environ["wsgi.input"].read()
    answer = f"{environ['REQUEST_METHOD']} {len(body)} {body[:16]!r}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


def test_request_ended_by_its_headers_reads_an_empty_body(serve: Serve) -> None:
    with (
        serve(echo_length, interface="wsgi", threads=2) as server,
        H2Client(server.port, timeout=WAIT) as client,
    ):
        for method in ("GET", "DELETE", "POST"):  # END_STREAM on HEADERS: no body at all
            result = client.get(method=method)
            assert result.status == 200
            assert bytes(result.data) == f"{method} 0 b''".encode()


def test_body_after_the_headers_without_a_length_is_read(serve: Serve) -> None:
    """HEADERS without END_STREAM and no Content-Length: the body comes in DATA frames later,
    and an empty one (END_STREAM on an empty DATA frame) is an empty body, not a hang."""
    with (
        serve(echo_length, interface="wsgi", threads=2) as server,
        H2Client(server.port, timeout=WAIT) as client,
    ):
        sid = client.request(method="POST", end=False)
        time.sleep(0.2)  # the app thread takes the request before the body arrives
        client.send_body(sid, b"hello " * 3, end=False)
        client.send_body(sid, b"world", end=True)
        [result] = client.wait(sid)
        assert result.status == 200
        assert bytes(result.data) == b"POST 23 b'hello hello hell'"

        sid = client.request(method="PUT", end=False)
        client.send_body(sid, b"", end=True)
        [result] = client.wait(sid)
        assert bytes(result.data) == b"PUT 0 b''"


def test_reset_mid_response_frees_the_only_app_thread(serve: Serve) -> None:
    """A stream the client resets while its app streams a response (RFC 9113 8.1) ends its
    app: the one thread of the pool serves the next request on the same connection."""
    closed = threading.Event()

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/next":
            start_response("200 OK", [("Content-Length", "4")])
            return [b"next"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return endless()

    def endless() -> Iterator[bytes]:
        try:
            deadline = time.monotonic() + 60  # bounded even if the reset were never seen
            while time.monotonic() < deadline:
                yield b"z" * 1024
                time.sleep(0.01)
        finally:
            closed.set()

    with (
        serve(app, interface="wsgi", threads=1) as server,
        H2Client(server.port, timeout=WAIT) as client,
    ):
        sid = client.request("/stream")
        while not client.streams[sid].data:
            assert client.receive_once()
        assert client.streams[sid].status == 200
        client.conn.reset_stream(sid)
        client.flush()
        assert closed.wait(WAIT), "the response iterable was not closed after RST_STREAM"
        result = client.get("/next")
        assert result.status == 200
        assert bytes(result.data) == b"next"


def test_reset_while_waiting_for_a_thread_skips_the_app(serve: Serve) -> None:
    """A request waiting for the pool's only thread, reset by its client meanwhile, is never
    run (the cycle calls the adapter back on the reset: no watching task, no delay); the
    connection and the next request go on."""
    ran: list[str] = []
    gate = threading.Event()
    busy = threading.Event()

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        ran.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/block":
            busy.set()
            gate.wait(WAIT)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with (
        serve(app, interface="wsgi", threads=1) as server,
        H2Client(server.port, timeout=WAIT) as client,
    ):
        blocker = client.request("/block")
        assert busy.wait(WAIT)
        waiting = client.request("/skipped")
        time.sleep(0.3)  # the server has read it and queued it behind /block
        client.conn.reset_stream(waiting)
        client.flush()
        time.sleep(0.3)  # the reset reaches the server before the thread is free
        gate.set()
        [result] = client.wait(blocker)
        assert result.status == 200
        assert client.get("/after").status == 200
    assert ran == ["/block", "/after"]


def test_body_without_a_length_waiting_for_a_thread_reaches_the_app_whole(serve: Serve) -> None:
    """A body in DATA frames without Content-Length, whose request waits for a busy thread
    while the rest of the body arrives: no chunk is taken from the app by the server's wait
    for the client to go (a watch that called receive() did, and the app waited for ever)."""
    gate = threading.Event()
    busy = threading.Event()

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/block":
            busy.set()
            gate.wait(WAIT)
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        return echo_length(environ, start_response)

    with (
        serve(app, interface="wsgi", threads=1) as server,
        H2Client(server.port, timeout=WAIT) as client,
    ):
        blocker = client.request("/block")
        assert busy.wait(WAIT)
        sid = client.request("/echo", method="POST", end=False)
        client.send_body(sid, b"first-", end=False)
        time.sleep(0.3)  # the request waits for the thread past the watch's delay
        client.send_body(sid, b"second", end=True)
        time.sleep(0.2)
        gate.set()
        [blocked, result] = client.wait([blocker, sid])
        assert blocked.status == 200
        assert result.status == 200
        assert bytes(result.data) == b"POST 12 b'first-second'"
