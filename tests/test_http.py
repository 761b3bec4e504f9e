"""HTTP: every behaviour issue #2 asks of the core, over HTTP/1.1 and HTTP/2, on both loops.

Most tests drive a real protocol, ``ServerState`` and app through an in-memory connection (no
socket; issue 11).  The ``wire`` fixture (tests/conftest.py) runs each of them over every
HTTP/1.1 tokenizer (:class:`tests.memconn.Wire`) and over HTTP/2 (:class:`tests.h2memconn.H2Wire`:
h2c with prior knowledge, the default engine, the h2 library as the client): framing,
keep-alive, 100-continue, HEAD, default headers, app errors, limits.  The tests whose point is
the transport itself (several requests at once, timeouts in real time, back-pressure from a real
peer, sendfile) start a real server with the ``serve`` fixture; ``@over_both`` runs them over
HTTP/1.1 on each parser and over h2c (tests/h2client.py, httpx ``http2=True``).  Where the
protocols differ the test says so by ``client.version`` / ``protocol``: an HTTP/1.1 failure
closes the connection, an HTTP/2 one resets its stream (RFC 9113 8.1) and the connection goes on.

The tests that stay HTTP/1.1 only, and why (RFC 9113):

=====================================================  ===========================================
test                                                   why not over HTTP/2
=====================================================  ===========================================
test_pipelined_requests_are_answered_in_order          no pipelining: each request is a stream of
test_reading_stays_paused_while_pipelined_requests_wait  its own, multiplexed (5); nothing queues
                                                       behind a response
test_http10_closes_unless_keep_alive_is_asked_for      no HTTP/1.0: the version is "2" from the
test_http10_keep_alive_pipelined                       preface on (3.4), and keep-alive and close
test_http10_streamed_response_is_close_delimited       delimiting are HTTP/1.x framing
test_http11_close_ends_the_connection_after_the_...    ``Connection`` is connection-specific and
                                                       malformed in HTTP/2 (8.2.2); a connection
                                                       ends with GOAWAY (6.8)
test_request_head_timeout_after_a_keep_alive_request  between streams an HTTP/2 connection is
                                                       bounded by --timeout-keep-alive (its test
                                                       here runs over both)
test_reading_pauses_while_the_app_does_not_read        an upload is held back by the stream's
                                                       window (6.9), not by pausing the socket:
                                                       test_large_upload_to_a_slow_reader[h2] and
                                                       tests/test_http2_attacks.py
=====================================================  ===========================================

Chunked framing has its HTTP/2 counterpart in DATA frames (8.1): ``body=[parts]`` sends a body
of unknown length either way, ``trailers=`` its trailer fields (a last HEADERS frame).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hyperframe.frame import HeadersFrame

from dualcorn import Config
from dualcorn.protocols.http1.h11_tokenizer import H11Protocol
from dualcorn.protocols.state import ServerState
from tests.conftest import over_both
from tests.h2client import H2Client
from tests.memconn import MemoryConnection, Wire, WireFactory
from tests.rawhttp import RawClient, get
from tests.support import MemoryTransport

Scope = dict[str, Any]
Serve = Callable[..., Any]
Connect = Callable[..., MemoryConnection]
OpenWire = WireFactory  # the ``wire`` fixture: a Wire (HTTP/1.1) or an H2Wire
MIB = 1024 * 1024
# RFC 9113 7: the RST_STREAM codes these tests expect over HTTP/2.
NO_ERROR, INTERNAL_ERROR, CANCEL = 0x0, 0x2, 0x8


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise OSError("client disconnected")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def respond(
    send: Any, status: int = 200, body: bytes = b"", headers: list[Any] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the request body, prefixed by the path (so ordering is visible)."""
    body = await read_body(receive)
    await respond(send, 200, scope["path"].encode() + b":" + body)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """A bounded wait for state another thread changes (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- Keep-alive and pipelining --------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(wire: OpenWire) -> None:
    peers: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        peers.append(scope["client"])
        await respond(send, 200, b"hi")

    async with wire(app) as client:
        for _ in range(3):
            response = await client.request()
            assert response.status == 200
            assert response.body == b"hi"
            assert response.header(b"connection") is None  # never over HTTP/2 (RFC 9113 8.2.2)
            assert not client.is_closed_by_server()
    assert len(peers) == 3
    assert len(set(peers)) == 1, f"each request came on a new connection: {peers}"


async def test_pipelined_requests_are_answered_in_order(connect: Connect) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        # The first request is the slowest: an out-of-order server would answer /2 first.
        if scope["path"] == "/1":
            await asyncio.sleep(0.1)
        await echo(scope, receive, send)

    async with Wire(connect(app)) as client:
        await client.send(
            get("/1") + b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" + get("/3")
        )
        bodies = [client.read_response().body for _ in range(3)]
    assert bodies == [b"/1:", b"/2:abc", b"/3:"]


# --- Chunked bodies, both directions --------------------------------------------------------


async def test_request_body_in_parts(wire: OpenWire) -> None:
    """A body of unknown length, sent in parts: chunked over HTTP/1.1, DATA frames over
    HTTP/2 (RFC 9113 8.1); one read per part, as streamed."""
    parts = [b"part%d," % i for i in range(5)]
    async with wire(echo) as client:
        response = await client.request("/up", method=b"POST", body=parts)
    assert response.status == 200
    assert response.body == b"/up:part0,part1,part2,part3,part4,"


async def test_request_trailers_never_join_the_request_headers(wire: OpenWire) -> None:
    """Trailer fields arrive after the app has its scope; they must not appear in it (issue #6):
    chunked trailers over HTTP/1.1, a last HEADERS frame over HTTP/2 (RFC 9113 8.1)."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        seen.append(list(scope["headers"]))
        await respond(send, 200, body)

    async with wire(app) as client:
        response = await client.request(
            "/t", method=b"POST", headers=[(b"Trailer", b"X-Evil")], body=[b"hello"],
            trailers=[(b"x-evil", b"injected")],
        )  # fmt: skip
    assert response.status == 200
    assert response.body == b"hello"
    [headers] = seen
    assert (b"x-evil", b"injected") not in headers
    if client.version == "1.1":
        assert [name for name, _ in headers] == [b"host", b"trailer", b"transfer-encoding"]
    else:  # Host from :authority: first on the h2 engine, last on zttp (RFC 9113 8.3.1)
        assert [name for name, _ in headers] in ([b"host", b"trailer"], [b"trailer", b"host"])


async def test_streamed_response_framing(wire: OpenWire) -> None:
    """A response of unknown length: chunked over HTTP/1.1, DATA frames over HTTP/2."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"hello", b"", b" world"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    async with wire(app) as client:
        response = await client.request()
        assert response.header(b"content-length") is None
        # An empty body message must not end the body early ("0\r\n\r\n", END_STREAM).
        assert response.body == b"hello world!"
        if client.version == "1.1":
            assert response.header(b"transfer-encoding") == b"chunked"
            assert response.raw.endswith(b"5\r\nhello\r\n6\r\n world\r\n1\r\n!\r\n0\r\n\r\n")
        else:
            assert response.header(b"transfer-encoding") is None  # RFC 9113 8.2.2
            assert response.reset is None
        # The connection stays usable after a streamed response.
        assert (await client.request()).body == b"hello world!"


# --- HTTP/1.0 -------------------------------------------------------------------------------


async def test_http10_closes_unless_keep_alive_is_asked_for(connect: Connect) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["http_version"] == "1.0"
        await respond(send, 200, b"ten")

    async with Wire(connect(app)) as client:
        await client.send(b"GET / HTTP/1.0\r\n\r\n")
        response = client.read_response()
        assert response.body == b"ten"
        assert response.header(b"connection") == b"close"
        assert client.is_closed_by_server()
    async with Wire(connect(app)) as client:
        for _ in range(2):
            await client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = client.read_response()
            assert response.body == b"ten"
            assert response.header(b"connection") == b"keep-alive"
        assert not client.is_closed_by_server()


async def test_http10_keep_alive_pipelined(connect: Connect) -> None:
    async with Wire(connect(echo)) as client:
        await client.send(b"".join(b"GET /%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i
                                   for i in range(3)))  # fmt: skip
        assert [client.read_response().body for _ in range(3)] == [b"/0:", b"/1:", b"/2:"]
        await client.send(b"GET /last HTTP/1.0\r\n\r\n")
        assert client.read_response().body == b"/last:"
        assert client.is_closed_by_server()


async def test_http11_close_ends_the_connection_after_the_response(connect: Connect) -> None:
    async with Wire(connect(echo)) as client:
        # Whatever follows a "Connection: close" request is never answered (RFC 9112 9.6).
        await client.send(get("/a", headers=b"Connection: close\r\n") + get("/b"))
        response = client.read_response()
        assert response.body == b"/a:"
        assert response.header(b"connection") == b"close"
        assert client.read_until_closed() == b""


async def test_http10_streamed_response_is_close_delimited(connect: Connect) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    async with Wire(connect(app)) as client:
        # Keep-alive is asked for, but without a length the close is the only delimiter.
        await client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head = client.read_head()
        assert head.header(b"transfer-encoding") is None  # chunked does not exist in 1.0
        assert head.header(b"content-length") is None
        assert head.header(b"connection") == b"close"
        assert client.read_until_closed() == b"ab"


# --- Expect: 100-continue -------------------------------------------------------------------


async def test_100_continue_is_sent_when_the_app_reads(wire: OpenWire) -> None:
    async with wire(echo) as client:
        expect = [(b"Expect", b"100-continue")]
        ref = await client.start("/c", headers=expect, length=5)
        if client.version == "1.1":
            assert client.read_head().status == 100
        else:  # an interim HEADERS frame (RFC 9113 8.1)
            assert [dict(h)[b":status"] for h in client.stream(ref).informational] == [b"100"]
        await client.send_body(ref, b"hello")
        response = client.response(ref)
        assert response.status == 200
        assert response.body == b"/c:hello"


async def test_no_100_continue_when_the_app_answers_without_reading(wire: OpenWire) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, 401, b"who are you")

    async with wire(app) as client:
        ref = await client.start(headers=[(b"Expect", b"100-continue")], length=5)
        response = client.response(ref)
        assert response.interim == []
        assert response.status == 401
        assert response.body == b"who are you"
        if client.version == "1.1":
            # The unread body would be parsed as the next request, so the connection ends.
            assert client.read_until_closed() == b""
        else:
            # The stream is answered: RST_STREAM NO_ERROR tells the client to stop sending
            # (RFC 9113 8.1); the connection goes on.
            assert response.reset == NO_ERROR
            assert (await client.request()).status == 401


# --- HEAD -----------------------------------------------------------------------------------


async def test_head_writes_no_body_but_keeps_content_length(wire: OpenWire) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/declared":
            headers = [(b"content-length", b"11")]
            await respond(send, 200, b"", headers)
        else:  # a framework that sends the GET body for HEAD too
            await respond(send, 200, b"hello world")

    async with wire(app) as client:
        for path in ("/declared", "/sent"):
            response = await client.request(path, method=b"HEAD")
            assert response.status == 200
            assert response.header(b"content-length") == b"11"
            assert response.body == b""  # over HTTP/2: no DATA frame at all
        # Nothing but the heads was written: the next response starts right after them.
        assert (await client.request("/sent")).body == b"hello world"


# --- Date, Server and default headers -------------------------------------------------------


async def test_date_and_server_headers(wire: OpenWire) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, 200, b"x")

    async with wire(app) as client:
        response = await client.request()
        assert response.all(b"server") == [b"dualcorn"]
        [date] = response.all(b"date")
        assert date.endswith(b" GMT") and len(date) == 29, date  # IMF-fixdate, RFC 9110 5.6.7
    async with wire(app, date_header=False, server_header=False) as client:
        response = await client.request()
        assert response.header(b"date") is None
        assert response.header(b"server") is None


async def test_default_headers_and_app_headers_win(wire: OpenWire) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [(b"X-A", b"from-app"), (b"server", b"mine")] if scope["path"] == "/own" else []
        await respond(send, 200, b"x", headers)

    async with wire(app, headers=(("x-a", "b"), ("x-b", "c"))) as client:
        response = await client.request()
        assert response.all(b"x-a") == [b"b"]
        assert response.all(b"x-b") == [b"c"]
        assert response.all(b"server") == [b"dualcorn"]
        response = await client.request("/own")
        assert response.all(b"x-a") == [b"from-app"]
        assert response.all(b"server") == [b"mine"]
        assert response.all(b"x-b") == [b"c"]


# --- Content-Length checked against what the app sends --------------------------------------


@pytest.mark.parametrize("sent", [5, 20])
async def test_content_length_mismatch_closes(
    wire: OpenWire, errors: pytest.LogCaptureFixture, sent: int
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x" * sent})

    async with wire(app) as client:
        if client.version == "1.1":
            await client.send(get())
            data = client.read_until_closed()
            head, _, body = data.partition(b"\r\n\r\n")
            status = int(head[9:12])
            declared = b"content-length: 10" in head
        else:
            response = await client.request()
            status, body = response.status, response.body
            declared = response.header(b"content-length") == b"10"
            # The head is out: the stream is reset, so the client cannot take it as whole.
            assert response.reset == (INTERNAL_ERROR if sent < 10 else None)
            assert not client.is_closed_by_server()  # one stream's failure, not the connection's
        if sent < 10:
            # The head is out: the client sees fewer bytes than announced, then the end.
            assert status == 200 and declared
            assert body == b"x" * sent
        else:
            # Nothing was written yet: a clean 500, never bytes past the declared length.
            assert status == 500
            assert body == b""
    assert "Content-Length" in errors.text
    assert any(record.levelno >= logging.ERROR for record in errors.records)


# --- Response header validation -------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"a\r\nset-cookie: evil=1", b"a\nb", b"a\x00b", b"a\rb"])
async def test_response_splitting_is_impossible(
    wire: OpenWire, errors: pytest.LogCaptureFixture, bad: bytes
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, 200, b"x", [(b"x-ok", b"1"), (b"x-evil", bad)])

    async with wire(app) as client:
        response = await client.request()
        assert response.status == 500
        assert response.body == b""
        assert not any(b"evil" in name + value for name, value in response.headers)
        assert response.header(b"x-ok") is None
        assert b"evil" not in response.raw
    assert "CR, LF or NUL" in errors.text


async def test_invalid_header_name_is_refused(
    wire: OpenWire, errors: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, 200, b"x", [(b"bad name", b"1")])

    async with wire(app) as client:
        assert (await client.request()).status == 500
    assert "invalid response header name" in errors.text


# --- App errors -----------------------------------------------------------------------------


async def test_exception_before_start_gives_500(
    wire: OpenWire, errors: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise ValueError("boom before start")

    async with wire(app) as client:
        response = await client.request()
        assert response.status == 500
        assert response.body == b""
        assert response.header(b"content-length") == b"0"
        if client.version == "1.1":
            assert response.header(b"connection") == b"close"
        else:  # the stream ends; the connection serves the next one
            assert response.header(b"connection") is None
            assert (await client.request()).status == 500
    [record, *more] = [r for r in errors.records if r.exc_info]
    assert record.levelno == logging.ERROR
    assert len(more) == (0 if client.version == "1.1" else 1)
    assert "boom before start" in errors.text
    assert "Traceback" in errors.text


async def test_exception_between_start_and_body_is_still_a_500(
    wire: OpenWire, errors: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"5"), (b"x-app", b"1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise ValueError("boom between start and body")

    async with wire(app) as client:
        response = await client.request()
        # Nothing of the app's head reached the wire, so the client gets an honest 500.
        assert response.status == 500
        assert response.header(b"x-app") is None
        assert response.header(b"content-length") == b"0"
        assert client.is_closed_by_server() == (client.version == "1.1")
    assert "boom between start and body" in errors.text


async def test_exception_after_start_closes(
    wire: OpenWire, errors: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after start")

    async with wire(app) as client:
        if client.version == "1.1":
            await client.send(get())
            assert client.read_head().status == 200
            rest = client.read_until_closed()
            # The chunked body never gets its last chunk: the client sees the truncation.
            assert rest == b"7\r\npartial\r\n"
        else:
            response = await client.request()
            assert response.status == 200
            assert response.body == b"partial"
            # RFC 9113 8.1: a response cut short is reset, never ended as if whole.
            assert response.reset == INTERNAL_ERROR
            assert not client.is_closed_by_server()
    assert "boom after start" in errors.text


async def test_app_returning_without_a_response(
    wire: OpenWire, errors: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        return None

    async with wire(app) as client:
        response = await client.request()
        assert response.status == 500
        assert response.body == b""
    assert "returned without starting a response" in errors.text


async def test_app_returning_mid_response_closes(
    wire: OpenWire, errors: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})

    async with wire(app) as client:
        if client.version == "1.1":
            await client.send(get())
            assert client.read_head().status == 200
            assert client.read_until_closed() == b"1\r\na\r\n"
        else:
            response = await client.request()
            assert response.body == b"a"
            assert response.reset == INTERNAL_ERROR
    assert "without completing the response" in errors.text


# --- Limits ---------------------------------------------------------------------------------


async def test_limit_request_body(wire: OpenWire) -> None:
    calls: list[str] = []
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        if message["type"] == "http.request":
            await respond(send, 200, b"ok")

    async with wire(app, limit_request_body=100) as client:
        ref = await client.start("/declared", length=101)
        response = client.response(ref)
        assert response.status == 413
        if client.version == "1.1":
            assert response.header(b"connection") == b"close"
        else:  # the upload is reset (RFC 9113 8.1), the connection stays
            assert response.reset == NO_ERROR
            assert not client.is_closed_by_server()
    assert calls == []  # refused from the head alone
    # At the limit exactly: served.
    async with wire(app, limit_request_body=100) as client:
        response = await client.request("/exact", method=b"POST", body=b"x" * 100)
        assert response.status == 200
    async with wire(app, limit_request_body=100) as client:
        # No declared length (chunked over HTTP/1.1, DATA frames over HTTP/2): counted as read.
        ref = await client.start("/chunked")
        await client.send_body(ref, b"x" * 64, end=False)
        await client.send_body(ref, b"x" * 64, end=False)
        response = client.response(ref)
        assert response.status == 413
        if client.version == "1.1":
            assert client.read_until_closed() == b""
        else:
            assert response.reset is not None
            assert not client.is_closed_by_server()
    assert calls == ["/exact", "/chunked"]
    # The app never saw more than the limit, and learnt that the request was cut off.
    delivered = sum(len(m.get("body", b"")) for m in seen if m["type"] == "http.request")
    assert delivered <= 100 + 100  # /exact's 100, plus at most the limit of /chunked
    assert seen[-1]["type"] == "http.disconnect"


async def test_limit_keepalive_requests(wire: OpenWire) -> None:
    """A connection ends after N requests: --limit-keepalive-requests over HTTP/1.1, its
    HTTP/2 counterpart --http2-max-requests (a graceful GOAWAY, RFC 9113 6.8)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await respond(send, 200, b"ok")

    if wire.version == "1.1":
        options: dict[str, Any] = {"limit_keepalive_requests": 3}
    else:
        options = {"http2_max_requests": 3}
    async with wire(app, **options) as client:
        for _ in range(2):
            response = await client.request()
            assert response.header(b"connection") is None
        response = await client.request()
        assert response.status == 200
        if client.version == "1.1":
            assert response.header(b"connection") == b"close"
        else:  # the final GOAWAY names the third stream as the last one served
            assert client.client.goaway == (5, NO_ERROR)
        assert client.is_closed_by_server()


# --- On real sockets: what is about the transport itself ------------------------------------
# Everything above runs in memory (tests/memconn.py); below, the tests whose point is the
# socket: several connections against one server, timeouts in real time, back-pressure from a
# real peer, sendfile.


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
