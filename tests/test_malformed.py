"""Requests that are malformed, or could be read two ways, get one clear status and a close.

Each case is fed whole and one byte at a time to every HTTP protocol through an in-memory
transport, then sent whole over a real socket to a real server, and (in test_wsgi_malformed)
to a WSGI app.  The app must never be called for a refused request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dualcorn import Config
from dualcorn.protocols.state import ServerState
from tests.support import MemoryTransport, raw_exchange, status_of

H = b"Host: example.com\r\n"

# (id, raw request, expected status). Every request here must be refused.
MALFORMED: list[tuple[str, bytes, int]] = [
    ("bare-lf", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare-lf-one-line", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
    ("cl-and-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-and-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("cl-plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl-hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("cl-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("cl-twice-same", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Content-Length: 5\r\n\r\nhello", 400),
    ("cl-twice-different", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", 400),
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n"
     b"\r\n0\r\n\r\n", 501),
    ("te-identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 501),
    ("te-twice", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("ctl-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    ("del-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400),
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("http-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http-1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    ("no-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n", 400),
    ("garbage-line", b"HELLO\r\n\r\n", 400),
    ("bad-method", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("nul-in-target", b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad-chunk-size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nhello\r\n0\r\n\r\n", 400),
    ("target-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("too-many-fields", b"GET / HTTP/1.1\r\n" + H
     + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n", 431),
    ("head-too-large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 70000 + b"\r\n\r\n", 431),
]  # fmt: skip

# Refused only once the body is under way: the app may have been called for these.
BODY_ERRORS = {"bad-chunk-size"}


class RecordingApp:
    """An ASGI app that answers 200 and records every request it was called for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def protocol_classes() -> list[Any]:
    from dualcorn.protocols.http1.h11_tokenizer import H11Protocol

    classes: list[Any] = [H11Protocol]
    try:
        from dualcorn.protocols.http1.httptools_tokenizer import HttpToolsProtocol
    except ImportError:
        pass
    else:
        classes.append(HttpToolsProtocol)
    return classes


async def feed(protocol_class: Any, chunks: list[bytes], app: Any, **options: Any) -> bytes:
    """Feed ``chunks`` to a fresh connection; return what it wrote once it closed."""
    state = ServerState(Config(app=app, **options), app)
    protocol = protocol_class(state)
    transport = MemoryTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    for data in chunks:
        if transport.closed:
            break
        protocol.data_received(data)
        await asyncio.sleep(0)
    for _ in range(50):  # let the app task (if any) run to completion
        if transport.closed:
            break
        await asyncio.sleep(0)
    if not transport.closed:
        protocol.connection_lost(None)
    return bytes(transport.written)


def _cases() -> list[Any]:
    return [
        pytest.param(raw, status, name in BODY_ERRORS, id=name) for name, raw, status in MALFORMED
    ]


@pytest.mark.parametrize("protocol_class", protocol_classes(), ids=lambda c: c.__name__)
@pytest.mark.parametrize(("raw", "status", "in_body"), _cases())
@pytest.mark.parametrize("split", ["whole", "one-byte-at-a-time"])
async def test_refused_in_memory(
    protocol_class: Any, raw: bytes, status: int, in_body: bool, split: str
) -> None:
    app = RecordingApp()
    chunks = [raw] if split == "whole" else [raw[i : i + 1] for i in range(len(raw))]
    written = await feed(protocol_class, chunks, app)
    assert status_of(written) == status, written[:200]
    assert b"connection: close\r\n" in written
    assert written.count(b"HTTP/1.1 ") == 1
    if not in_body:
        assert app.calls == []


@pytest.mark.parametrize("protocol_class", protocol_classes(), ids=lambda c: c.__name__)
@pytest.mark.parametrize(("raw", "status", "in_body"), _cases())
async def test_refused_after_a_good_request(
    protocol_class: Any, raw: bytes, status: int, in_body: bool
) -> None:
    """A valid request with a malformed one pipelined behind it: 200, then the refusal."""
    app = RecordingApp()
    good = b"GET /first HTTP/1.1\r\n" + H + b"\r\n"
    written = await feed(protocol_class, [good + raw], app)
    assert status_of(written) == 200
    second = written[written.index(b"HTTP/1.1 ", 1) :]
    assert status_of(second) == status, second[:200]
    assert app.calls[0] == "/first"


class RecordingWSGIApp:
    """The same app as RecordingApp, as WSGI: the answers must not depend on the interface."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls.append(environ["PATH_INFO"])
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]


@pytest.mark.parametrize("interface", ["asgi3", "wsgi"])
def test_refused_by_a_real_server(serve: Any, interface: str) -> None:
    """Over a real socket, on each loop and each parser (the serve fixture's parameters)."""
    app = RecordingApp() if interface == "asgi3" else RecordingWSGIApp()
    with serve(app, interface=interface) as server:
        for name, raw, status in MALFORMED:
            answer = raw_exchange(server.port, raw)
            assert status_of(answer) == status, (name, answer[:200])
            assert b"connection: close\r\n" in answer
        assert all(path == "/" for path in app.calls)  # only body-stage refusals reach it
