"""WSGI applications behind the real server, with real clients (on asyncio and on uvloop).

``@over_both`` runs a test over HTTP/1.1 on each parser and over HTTP/2 (h2c: httpx
``http2=True``, or tests/h2client.py where the test needs frames); WSGI apps go through the
same adapter either way.  Where HTTP/2 differs the test says so: no ``Transfer-Encoding``
(DATA frames frame a body, RFC 9113 8.1), a client leaves one response with RST_STREAM, and an
app's ``Connection: close`` is a connection-specific field HTTP/2 drops (8.2.2).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import over_both
from tests.h2client import H2Client
from tests.support import ServerThread, http_client, read_until_closed

Serve = Callable[..., ServerThread]
Environ = dict[str, Any]
WAIT = 10.0  # seconds a test waits for something that should happen at once


def wsgi_server(serve: Serve, app: Any, **options: Any) -> ServerThread:
    options.setdefault("lifespan", "auto")
    return serve(app, interface="wsgi", threads=4, **options)


@pytest.fixture
def flask_app(tmp_path: Path) -> Any:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    download = tmp_path / "download.bin"
    download.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    app.config["DOWNLOAD"] = download
    app.config["STREAM_GATE"] = threading.Event()

    @app.post("/upload")
    def upload() -> Any:
        data = flask.request.get_data()
        return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    @app.get("/stream")
    def stream() -> Any:
        gate: threading.Event = app.config["STREAM_GATE"]

        def generate() -> Iterator[bytes]:
            yield b"first\n"
            # The client sets the gate once it has read the first chunk: were the body
            # buffered, the client would never see it and this would time out.
            yield b"second\n" if gate.wait(WAIT) else b"gate timed out\n"

        return flask.Response(generate(), mimetype="text/plain")

    @app.get("/file")
    def file() -> Any:
        return flask.send_file(download, mimetype="application/octet-stream")

    @app.get("/fail")
    def fail() -> Any:
        raise RuntimeError("deliberate")

    return app


@over_both
def test_flask_chunked_upload(serve: Serve, protocol: str, flask_app: Any) -> None:
    pieces = [b"a" * 1000, b"b" * 300_000, b"", b"c" * 17]

    def chunked_body() -> Iterator[bytes]:
        yield from pieces

    with wsgi_server(serve, flask_app) as server, http_client(protocol, timeout=WAIT) as client:
        response = client.post(f"{server.url}/upload", content=chunked_body())
    if protocol == "1.1":
        assert response.request.headers.get("transfer-encoding") == "chunked"
    else:  # a body of unknown length: DATA frames, no length announced
        assert response.http_version == "HTTP/2"
        assert "content-length" not in response.request.headers
    assert response.status_code == 200
    body = b"".join(pieces)
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@over_both
def test_flask_streaming_response_arrives_chunk_by_chunk(
    serve: Serve, protocol: str, flask_app: Any
) -> None:
    with (
        wsgi_server(serve, flask_app) as server,
        http_client(protocol, timeout=WAIT) as client,
        client.stream("GET", f"{server.url}/stream") as response,
    ):
        assert response.status_code == 200
        framing = response.headers.get("transfer-encoding")
        assert framing == ("chunked" if protocol == "1.1" else None)
        lines = response.iter_lines()
        assert next(lines) == "first"
        flask_app.config["STREAM_GATE"].set()
        assert next(lines) == "second"


@over_both
def test_flask_send_file(serve: Serve, protocol: str, flask_app: Any) -> None:
    expected = flask_app.config["DOWNLOAD"].read_bytes()
    with wsgi_server(serve, flask_app) as server, http_client(protocol, timeout=WAIT) as client:
        for _ in range(3):  # keep-alive: the connection is reused after each file
            response = client.get(f"{server.url}/file")
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(expected))
            assert response.content == expected
        ranged = client.get(f"{server.url}/file", headers={"Range": "bytes=100-199"})
        assert ranged.status_code == 206
        assert ranged.content == expected[100:200]


@over_both
def test_app_error_is_a_500_and_the_connection_lives_on(
    serve: Serve, protocol: str, flask_app: Any
) -> None:
    with wsgi_server(serve, flask_app) as server, http_client(protocol, timeout=WAIT) as client:
        assert client.get(f"{server.url}/fail").status_code == 500
        assert client.post(f"{server.url}/upload", content=b"ok").json()["length"] == 2


@over_both
def test_lifespan_owns_the_thread_pool(serve: Serve, protocol: str) -> None:
    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [threading.current_thread().name.encode()]

    with wsgi_server(serve, app) as server, http_client(protocol, timeout=WAIT) as client:
        response = client.get(f"{server.url}/")
        assert response.content.startswith(b"dualcorn-wsgi")
        assert response.headers["content-length"] == str(len(response.content))
    leftovers = [t for t in threading.enumerate() if t.name.startswith("dualcorn-wsgi")]
    assert leftovers == []


@over_both
def test_client_leaving_mid_stream_closes_the_iterable(serve: Serve, protocol: str) -> None:
    closed = threading.Event()
    produced = 0

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        nonlocal produced
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        try:
            while True:  # endless: only the disconnect can stop it
                produced += 1
                yield b"x" * 65536
        finally:
            closed.set()

    with wsgi_server(serve, app) as server:
        if protocol == "2":
            # The client leaves the one response with RST_STREAM (RFC 9113 8.1), the
            # connection stays: the iterable must be closed all the same.
            with H2Client(server.port, timeout=WAIT) as client:
                sid = client.request()
                while not client.streams[sid].headers:
                    assert client.receive_once()
                assert client.streams[sid].status == 200
                client.conn.reset_stream(sid)
                client.flush()
                assert closed.wait(WAIT), "the generator was not closed after RST_STREAM"
            return
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert closed.wait(WAIT), "the generator was not closed after the client left"


@over_both
def test_slow_reader_holds_the_app_thread_back(serve: Serve, protocol: str) -> None:
    """Backpressure: with a client that reads nothing, the app stops producing (over HTTP/2
    the stream and connection windows, RFC 9113 6.9, hold it back before the socket does)."""
    chunk_size, chunks = 256 * 1024, 400  # 100 MiB in all
    produced = 0

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        nonlocal produced
        start_response("200 OK", [("Content-Length", str(chunk_size * chunks))])
        for _ in range(chunks):
            produced += 1
            yield b"y" * chunk_size

    if protocol == "2":
        with wsgi_server(serve, app) as server, H2Client(server.port, timeout=60) as client:
            sid = client.request()
            time.sleep(1.0)  # a buffering server would race through all 100 MiB meanwhile
            held_back_at = produced
            [result] = client.wait(sid)
        assert held_back_at * chunk_size < 32 * 1024 * 1024
        assert result.ended and result.status == 200
        assert len(result.data) == result.data.count(b"y") == chunk_size * chunks
        return
    with (
        wsgi_server(serve, app) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)  # a buffering server would race through all 100 MiB meanwhile
        held_back_at = produced
        received = read_until_closed(sock, timeout=60)
    # Socket buffers on both sides hold a few MiB at most; the rest waited for the reader.
    assert held_back_at * chunk_size < 32 * 1024 * 1024
    assert received.endswith(b"y" * 1024)
    assert received.count(b"y") == chunk_size * chunks


@over_both
def test_app_connection_close_is_honoured(serve: Serve, protocol: str) -> None:
    """An app's "Connection: close" ends the connection after its response, not in a 500;
    over HTTP/2 the field is connection-specific (RFC 9113 8.2.2): dropped, the stream served,
    the connection kept."""

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"bye"]

    if protocol == "2":
        with wsgi_server(serve, app) as server, H2Client(server.port, timeout=WAIT) as client:
            for _ in range(2):
                result = client.get()
                assert result.status == 200
                assert bytes(result.data) == b"bye"
                assert b"connection" not in dict(result.headers)
            assert not client.closed and client.goaway is None
        return
    with (
        wsgi_server(serve, app) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(sock, WAIT)  # returns only because the server closed
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.count(b"connection: close\r\n") == 1
    assert answer.endswith(b"\r\n\r\nbye")
