"""HTTP/2 end to end: h2c with prior knowledge and h2 over TLS (ALPN), real clients.

httpx (``http2=True``) for ordinary requests, the h2 library as a frame-level client
(tests/h2client.py) where a test must see frames: interim responses, trailers, resets, GOAWAY.
ASGI and WSGI apps run through the same request cycle as over HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("h2")

from dualcorn.protocols.http2.events import INTERNAL_ERROR
from tests.h2client import PREFACE, H2Client
from tests.support import ServerThread, read_until_closed


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the scope (the parts JSON can carry) and the body it read."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "method": scope["method"],
        "path": scope["path"],
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode(),
        "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]],
        "client": scope["client"],
        "tls": "tls" in scope["extensions"],
        "body": len(body),
    }
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


def h2c(server: ServerThread) -> httpx.Client:
    """httpx speaking HTTP/2 with prior knowledge on plain TCP."""
    return httpx.Client(base_url=server.url, http1=False, http2=True, timeout=20)


def test_asgi_hello_over_h2c(serve: Any) -> None:
    with serve(scope_app) as server, h2c(server) as client:
        response = client.get("/hello?x=1", headers={"x-test": "yes"})
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        seen = response.json()
        assert seen["http_version"] == "2"
        assert seen["scheme"] == "http"
        assert seen["path"] == "/hello" and seen["query_string"] == "x=1"
        headers = dict(seen["headers"])
        assert headers["host"] == server.url.split("//")[1]  # from :authority
        assert headers["x-test"] == "yes"
        assert not any(name.startswith(":") for name, _ in seen["headers"])
        assert response.headers["server"] == "dualcorn"
        assert "date" in response.headers
        # Several requests share the one connection.
        for index in range(5):
            assert client.post("/p", content=b"a" * index).json()["body"] == index


def test_streaming_both_ways() -> None:
    """A body streamed up is echoed as it is read; both directions wait on the windows."""

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            await send({"type": "http.response.body", "body": message.get("body", b""),
                        "more_body": True})  # fmt: skip
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})

    blocks = [bytes([n]) * 100_000 for n in range(30)]  # 3 MB: many windows' worth
    digest = hashlib.sha256(b"".join(blocks)).hexdigest()
    with ServerThread(echo) as server, h2c(server) as client:
        with client.stream("POST", "/", content=iter(blocks)) as response:
            assert response.http_version == "HTTP/2"
            received = hashlib.sha256()
            for data in response.iter_bytes():
                received.update(data)
        assert received.hexdigest() == digest


def test_large_download() -> None:
    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"z" * 5_000_000})

    with ServerThread(big) as server, h2c(server) as client:
        response = client.get("/")
        assert len(response.content) == 5_000_000
        assert response.headers["content-length"] == "5000000"


def test_wsgi_app_over_h2c(serve: Any) -> None:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi:", environ["PATH_INFO"].encode(), b":", body]

    with serve(wsgi, interface="wsgi") as server, h2c(server) as client:
        response = client.post("/w", content=b"data")
        assert response.http_version == "HTTP/2"
        assert response.text == "wsgi:/w:data"


def test_root_path_and_proxy_headers() -> None:
    options = {"root_path": "/api", "proxy_headers": True, "forwarded_allow_ips": "127.0.0.1"}
    with ServerThread(scope_app, **options) as server, h2c(server) as client:
        seen = client.get("/x", headers={"x-forwarded-proto": "https",
                                         "x-forwarded-for": "203.0.113.7"}).json()  # fmt: skip
        assert seen["root_path"] == "/api" and seen["path"] == "/api/x"
        assert seen["scheme"] == "https"
        assert seen["client"][0] == "203.0.113.7"


def test_access_log_says_http_2_0(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("dualcorn.access")
    propagate = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.INFO, logger="dualcorn.access")
    try:
        with ServerThread(scope_app) as server, h2c(server) as client:
            client.get("/logged")
    finally:
        logger.propagate = propagate
    lines = [r.getMessage() for r in caplog.records if r.name == "dualcorn.access"]
    assert any('"GET /logged HTTP/2.0" 200' in line for line in lines), lines


def test_head_and_no_content() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = 204 if scope["path"] == "/204" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"" if status == 204 else b"hello"})

    with ServerThread(app) as server, H2Client(server.port) as client:
        head = client.get("/", method="HEAD")
        assert head.status == 200 and bytes(head.data) == b""
        assert dict(head.headers)[b"content-length"] == b"5"
        empty = client.get("/204")
        assert empty.status == 204 and bytes(empty.data) == b""
        assert b"content-length" not in dict(empty.headers)


def test_trailers() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"part", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")],
                    "more_trailers": False})  # fmt: skip

    with ServerThread(app) as server, H2Client(server.port) as client:
        result = client.get("/")
        assert result.status == 200 and bytes(result.data) == b"part"
        assert result.trailers == [(b"x-checksum", b"abc")]


def test_trailers_over_http_1_1_chunked(serve: Any) -> None:
    """The same app over HTTP/1.1: the body is chunked and the trailers follow the last chunk
    (RFC 9112 7.1.2)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"part"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    with (
        serve(app) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        response = read_until_closed(sock)
    assert b"transfer-encoding: chunked" in response.lower()
    assert response.endswith(b"\r\n\r\n4\r\npart\r\n0\r\nx-checksum: abc\r\n\r\n")


def test_expect_100_continue() -> None:
    with ServerThread(scope_app) as server, H2Client(server.port) as client:
        sid = client.request("/", method="POST", headers=[("expect", "100-continue")], end=False)
        client.send_body(sid, b"later")
        [result] = client.wait(sid)
        assert [dict(h)[b":status"] for h in result.informational] == [b"100"]
        assert json.loads(result.data)["body"] == 5


def test_early_hints() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.early_hint" in scope["extensions"]
        await send({"type": "http.response.early_hint",
                    "links": [b"</style.css>; rel=preload; as=style"]})  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    with ServerThread(app) as server, H2Client(server.port) as client:
        result = client.get("/")
        assert result.informational == [
            [(b":status", b"103"), (b"link", b"</style.css>; rel=preload; as=style")]
        ]
        assert result.status == 200 and bytes(result.data) == b"page"


def test_app_failures() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/mid":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("boom")

    with ServerThread(app) as server, H2Client(server.port) as client:
        assert client.get("/early").status == 500
        # Cut short after its head: reset, so the client cannot take it as whole.
        assert client.get("/mid").reset == INTERNAL_ERROR
        assert client.get("/early").status == 500  # the connection lives on


def test_body_limit_and_concurrency_limit() -> None:
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    options = {"limit_request_body": 10, "limit_concurrency": 1}
    with ServerThread(app, **options) as server, H2Client(server.port) as client:
        big = client.request("/", method="POST", headers=[("content-length", "11")], end=False)
        assert client.wait(big)[0].status == 413
        slow = client.request("/slow")
        busy = client.get("/")
        assert busy.status == 503
        release.set()
        assert client.wait(slow)[0].status == 200


def test_keepalive_cap_and_idle_timeout_end_gracefully() -> None:
    options = {"http2_max_requests": 3, "timeout_keep_alive": 0.5}
    with ServerThread(scope_app, **options) as server:
        with H2Client(server.port) as client:
            sids = [client.request("/") for _ in range(3)]
            assert all(r.status == 200 for r in client.wait(sids))
            assert client.wait_goaway().error_code == 0
            client.wait_closed()
            # RFC 9113 6.8: first "no stream after those in flight", then the last one served.
            assert client.goaways[0].last_stream_id in (2**31 - 1, sids[-1])
            assert client.goaways[-1] == (sids[-1], 0)
        with H2Client(server.port) as client:
            assert client.get("/").status == 200
            assert client.wait_goaway().error_code == 0  # idle past --timeout-keep-alive
            client.wait_closed()


def test_client_goaway_lets_open_streams_finish() -> None:
    """RFC 9113 6.8: a client's GOAWAY (NO_ERROR) stops new streams, not the open ones."""
    with ServerThread(scope_app) as server, H2Client(server.port) as client:
        sid = client.request("/", method="POST", end=False)
        client.send_raw(b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + bytes(8))  # GOAWAY 0
        client.send_body(sid, b"abc")
        [result] = client.wait(sid)
        assert result.status == 200 and json.loads(result.data)["body"] == 3
        client.wait_closed()


def test_graceful_shutdown_sends_goaway_and_finishes_streams() -> None:
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    server = ServerThread(app).__enter__()
    try:
        with H2Client(server.port) as client:
            sid = client.request("/")
            client.receive_once()  # SETTINGS: the stream is in flight
            server.server.stop()
            goaway = client.wait_goaway()
            assert goaway.error_code == 0
            release.set()
            [result] = client.wait(sid)
            assert result.status == 200 and bytes(result.data) == b"finished"
            client.wait_closed()
    finally:
        release.set()
        server.close()


def test_preface_one_byte_at_a_time(serve: Any) -> None:
    """The preface, SETTINGS and a request, one byte per write: HTTP/1.1's loop sees a
    partial head first, then hands the connection over."""
    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"),
                          (b":path", b"/bytes")], end_stream=True)  # fmt: skip
    wire = conn.data_to_send()
    assert wire.startswith(PREFACE)
    with (
        serve(scope_app) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        for index in range(len(wire)):
            sock.sendall(wire[index : index + 1])
        received = b""
        while b'"/bytes"' not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk


def test_no_http2_answers_the_preface_as_http_1_1(serve: Any) -> None:
    with (
        serve(scope_app, http2=False) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(PREFACE)
        assert read_until_closed(sock).startswith(b"HTTP/1.1 505")


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("trustme")
    from tests.test_tls import make_pki

    yield make_pki(tmp_path)


def test_h2_over_tls_with_alpn(pki: Any) -> None:
    with ServerThread(scope_app, **pki.options()) as server:
        url = f"https://127.0.0.1:{server.port}"
        with httpx.Client(http2=True, verify=pki.client_context(), timeout=20) as client:
            response = client.post(url + "/secure", content=b"12345")
            assert response.http_version == "HTTP/2"
            seen = response.json()
            assert seen["scheme"] == "https" and seen["tls"] and seen["body"] == 5
        # A client that offers only http/1.1 still gets it.
        with httpx.Client(http2=False, verify=pki.client_context(), timeout=20) as client:
            assert client.get(url).http_version == "HTTP/1.1"
        context = pki.client_context()
        context.set_alpn_protocols(["h2", "http/1.1"])
        with H2Client(server.port, tls=context) as client:
            assert client.sock.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
            assert client.get("/").status == 200


def test_wsgi_over_tls_h2(pki: Any) -> None:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode(), b" ", environ["SERVER_PROTOCOL"].encode()]

    with ServerThread(wsgi, interface="wsgi", **pki.options()) as server:
        url = f"https://127.0.0.1:{server.port}/"
        with httpx.Client(http2=True, verify=pki.client_context(), timeout=20) as client:
            response = client.get(url)
            assert response.http_version == "HTTP/2"
            assert response.text == "https HTTP/2"


def test_sigterm_sends_goaway_and_lets_the_stream_finish() -> None:
    """The real command: SIGTERM while a stream is in flight gives GOAWAY, the stream's
    answer, then the close, and the process exits 0."""
    from tests.helpers import run_dualcorn
    from tests.supervising import wait_for

    with run_dualcorn("tests.apps.coretest_app:app", "--port", "0") as server:
        assert server.port
        with H2Client(server.port, timeout=30) as client:
            sid = client.request("/slow", headers=[], end=True)
            wait_for(lambda: "slow started" in server.stdout_text(), 30, "the app to start")
            server.proc.send_signal(signal.SIGTERM)
            assert client.wait_goaway().error_code == 0
            [result] = client.wait(sid)
            assert result.status == 200 and bytes(result.data) == b"GET /slow"
            client.wait_closed()
            assert client.goaways[-1].last_stream_id == sid
        assert server.proc.wait(timeout=30) == 0
