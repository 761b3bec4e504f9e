"""The ASGI 3 contract end to end: the http scope, message order, disconnects, lifespan.

``@over_both`` runs a case over HTTP/1.1 on each parser and over HTTP/2 (h2c; tests/h2client.py
or httpx ``http2=True``): the scope differs only where RFC 9113 says (``http_version`` "2",
``Host`` from ``:authority``, 8.3.1), and a client leaving one request resets its stream (8.1).
HTTP/1.0 and the absolute-form target are HTTP/1.x only (3.4; 8.3.1 carries the authority).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dualcorn.errors import StartupError
from tests.conftest import over_both
from tests.h2client import H2Client
from tests.helpers import child_env
from tests.rawhttp import RawClient, get
from tests.support import http_client

Scope = dict[str, Any]
Serve = Callable[..., Any]
CANCEL = 0x8  # RFC 9113 7


async def respond(send: Any, status: int = 200, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


class LifespanApp:
    """Sets ``state`` at startup, records every scope and lifespan event."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["greeting"] = "hello"
                    scope["state"]["shared"] = []
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.scopes.append(scope)
        # A request may add keys to its own copy of the state; other requests never see them.
        scope["state"]["mine"] = scope["path"]
        scope["state"]["shared"].append(scope["path"])
        await respond(send, 200, scope["state"]["greeting"].encode())


# --- The http scope -------------------------------------------------------------------------


@over_both
def test_full_http_scope(serve: Serve, protocol: str) -> None:
    app = LifespanApp()
    with serve(app, lifespan="on", root_path="/api") as server:
        target = b"/a%2Fb/caf%C3%A9/%E2%82%AC?x=1&y=%20"
        if protocol == "2":
            with H2Client(server.port) as h2:
                # HTTP/2 field names are lowercase (RFC 9113 8.2.1); values keep their case.
                sid = h2.raw_headers([
                    (b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"),
                    (b":path", target), (b"x-mixed-case", b"Value"), (b"x-mixed-case", b"Second"),
                ])  # fmt: skip
                [result] = h2.wait(sid)
                assert (result.status, bytes(result.data)) == (200, b"hello")
                client_address = h2.sock.getsockname()
        else:
            with RawClient(server.port) as client:
                client.send(
                    b"GET " + target + b" HTTP/1.1\r\n"
                    b"Host: example.com\r\nX-Mixed-Case: Value\r\nX-Mixed-Case: Second\r\n\r\n"
                )
                response = client.read_response()
                client_address = client.sock.getsockname()
                assert response.status == 200
                assert response.body == b"hello"
    [scope] = app.scopes
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"]["spec_version"] in ("2.3", "2.4", "2.5")
    assert scope["http_version"] == protocol
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    # ASGI: path is decoded (%2F included) and, as uvicorn does, carries the root_path prefix.
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/a/b/café/€"
    assert scope["raw_path"] == b"/a%2Fb/caf%C3%A9/%E2%82%AC"
    assert scope["query_string"] == b"x=1&y=%20"
    fields = [(b"x-mixed-case", b"Value"), (b"x-mixed-case", b"Second")]
    host = [(b"host", b"example.com")]
    # Over HTTP/2 Host comes from :authority (RFC 9113 8.3.1): the h2 engine puts it first,
    # zttp (the default engine once installed, as uvicorn's --http2) after the fields.
    assert scope["headers"] in ([*host, *fields], [*fields, *host])
    assert protocol == "2" or scope["headers"] == [*host, *fields]
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in scope["headers"])
    assert tuple(scope["client"]) == client_address
    assert tuple(scope["server"]) == ("127.0.0.1", server.port)
    assert scope["state"]["greeting"] == "hello"


@over_both
def test_path_is_utf8_decoded_and_odd_bytes_survive(serve: Serve, protocol: str) -> None:
    paths: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        await respond(send)

    with serve(app) as server:
        for path in ("/%E6%97%A5%E6%9C%AC/x%20y", "/bad%FF"):  # not UTF-8: replaced, no error
            if protocol == "2":
                with H2Client(server.port) as h2:
                    assert h2.get(path).status == 200
            else:
                with RawClient(server.port) as client:
                    client.send(get(path))
                    assert client.read_response().status == 200
    assert paths == ["/日本/x y", "/bad\ufffd"]


def test_http10_scope_and_absolute_form_target(serve: Serve) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        scopes.append(scope)
        await respond(send)

    with serve(app) as server:
        with RawClient(server.port) as client:
            client.send(b"POST /p?q HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            assert client.read_response().status == 200
        with RawClient(server.port) as client:
            client.send(b"GET http://example.com/abs?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
            assert client.read_response().status == 200
    assert (scopes[0]["http_version"], scopes[0]["method"], scopes[0]["path"]) == (
        "1.0",
        "POST",
        "/p",
    )
    assert scopes[0]["query_string"] == b"q"
    assert scopes[1]["path"] == "/abs"
    assert scopes[1]["query_string"] == b"z=1"


# --- Message order --------------------------------------------------------------------------


ORDER_CASES = [
    ("body-first", [{"type": "http.response.body", "body": b"x"}], "'http.response.body'"),
    (
        "start-twice",
        [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.start", "status": 200, "headers": []},
        ],
        "'http.response.start'",
    ),
    ("unknown-type", [{"type": "http.response.nonsense"}], "'http.response.nonsense'"),
    (
        "after-complete",
        [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": b"ok"},
            {"type": "http.response.body", "body": b"again"},
        ],
        "after the response was complete",
    ),
]


@over_both
@pytest.mark.parametrize(("messages", "named"), [c[1:] for c in ORDER_CASES],
                         ids=[c[0] for c in ORDER_CASES])  # fmt: skip
def test_message_order_errors_are_named(
    serve: Serve, protocol: str, errors: pytest.LogCaptureFixture,
    messages: list[dict[str, Any]], named: str,
) -> None:  # fmt: skip
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    with serve(app) as server, http_client(protocol, base_url=server.url) as client:
        response = client.get("/")
        # Until body bytes go out the head is only in memory, so a broken order is a 500.
        assert response.status_code == (200 if len(messages) == 3 else 500)
    app_errors = [r for r in errors.records if r.levelno >= logging.ERROR]
    assert app_errors, "the contract error was not logged"
    assert named in errors.text


# --- Disconnects ----------------------------------------------------------------------------


@over_both
@pytest.mark.parametrize("when", ["after-body", "mid-body"])
def test_disconnect_reaches_the_app_and_send_raises(
    serve: Serve, protocol: str, errors: pytest.LogCaptureFixture, when: str
) -> None:
    messages: list[dict[str, Any]] = []
    raised: list[BaseException] = []
    # The client leaves once the app has its first message: a disconnect read together with
    # the body may reach the app first (as in uvicorn: receive() says http.disconnect once
    # the client is gone, body or not), which would make the first message a race.
    waiting = threading.Event()
    done = threading.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                messages.append(message)
                waiting.set()
                if message["type"] == "http.disconnect":
                    break
            try:
                await respond(send, 200, b"too late")
            except OSError as exc:
                raised.append(exc)
        finally:
            done.set()

    with serve(app) as server:
        if protocol == "2":
            # Over HTTP/2 the client leaves one request with RST_STREAM (RFC 9113 8.1).
            with H2Client(server.port) as h2:
                length = [("content-length", "2" if when == "after-body" else "10")]
                sid = h2.request("/", "POST", headers=length, end=False)
                # One DATA frame, with END_STREAM when the body is whole: one body message.
                h2.conn.send_data(sid, b"hi", end_stream=when == "after-body")
                h2.flush()
                assert waiting.wait(5)
                h2.conn.reset_stream(sid, CANCEL)
                h2.flush()
                assert done.wait(5), "the app never learnt that the client went away"
        else:
            client = RawClient(server.port)
            length = b"2" if when == "after-body" else b"10"
            client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: " + length
                        + b"\r\n\r\nhi")  # fmt: skip
            assert waiting.wait(5)
            client.close()
            assert done.wait(5), "the app never learnt that the client went away"
    assert messages[0] == {
        "type": "http.request",
        "body": b"hi",
        "more_body": when == "mid-body",
    }
    assert messages[-1] == {"type": "http.disconnect"}
    assert len(raised) == 1 and isinstance(raised[0], OSError)
    # A client going away is not the app's fault: nothing is logged as an error.
    assert not [r for r in errors.records if r.levelno >= logging.ERROR], errors.text


@over_both
def test_receive_after_the_response_waits_for_disconnect(serve: Serve, protocol: str) -> None:
    """ASGI: once the response is sent, receive() returns http.disconnect (no hang)."""
    after: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await respond(send, 200, b"ok")
        async with asyncio.timeout(5):
            after.append(await receive())

    with serve(app) as server, http_client(protocol, base_url=server.url) as client:
        assert client.get("/").status_code == 200
        assert client.get("/").status_code == 200
    assert after == [{"type": "http.disconnect"}] * 2


# --- Lifespan -------------------------------------------------------------------------------


def test_lifespan_state_reaches_every_request(serve: Serve) -> None:
    app = LifespanApp()
    server = serve(app, lifespan="on")
    with server, httpx.Client(base_url=server.url) as client:
        assert app.events == ["lifespan.startup"]
        for path in ("/one", "/two"):
            assert client.get(path).text == "hello"
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]
    one, two = app.scopes
    assert one["state"]["mine"] == "/one"
    assert two["state"]["mine"] == "/two"  # each request has its own copy...
    assert one["state"]["shared"] == ["/one", "/two"]  # ...of the same (shallow) values


def test_lifespan_on_with_a_failing_app_is_a_startup_error(serve: Serve) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise RuntimeError("no lifespan here")

    with pytest.raises(StartupError, match="no lifespan here"), serve(app, lifespan="on"):
        pass


def test_lifespan_auto_serves_an_app_without_lifespan(serve: Serve) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only http")
        await respond(send, 200, b"fine")

    with serve(app, lifespan="auto") as server:
        assert httpx.get(server.url).text == "fine"


def test_lifespan_startup_failed_message_is_a_startup_error(serve: Serve) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})

    with pytest.raises(StartupError, match="database unreachable"), serve(app, lifespan="auto"):
        pass


def test_startup_failed_exits_3_from_the_command(tmp_path: Path) -> None:
    (tmp_path / "failing_app.py").write_text(
        textwrap.dedent(
            """
            async def app(scope, receive, send):
                assert scope["type"] == "lifespan"
                await receive()
                await send({"type": "lifespan.startup.failed", "message": "no database"})
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "dualcorn", "failing_app:app", "--port", "0"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr
    assert "Application startup failed: no database" in result.stderr
    assert "Traceback" not in result.stderr
    assert "running on" not in result.stderr  # it never bound
