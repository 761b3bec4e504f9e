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
