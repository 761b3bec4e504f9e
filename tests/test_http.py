"""HTTP in memory: every behaviour issue #2 asks of the core, over HTTP/1.1 and HTTP/2.

These tests drive a real protocol, ``ServerState`` and app through an in-memory connection (no
socket; issue 11).  The ``wire`` fixture (tests/conftest.py) runs each of them over every
HTTP/1.1 tokenizer (:class:`tests.memconn.Wire`) and over HTTP/2 (:class:`tests.h2memconn.H2Wire`:
h2c with prior knowledge, the default engine, the h2 library as the client): framing,
keep-alive, 100-continue, HEAD, default headers, app errors, limits.  The tests whose point is
the transport itself (several requests at once, timeouts in real time, back-pressure from a real
peer, sendfile) are in tests/test_http_transport.py.  Where the protocols differ the test says
so by ``client.version``: an HTTP/1.1 failure closes the connection, an HTTP/2 one resets its
stream (RFC 9113 8.1) and the connection goes on.

The tests that stay HTTP/1.1 only, and why (RFC 9113):

=====================================================  ===========================================
test                                                   why not over HTTP/2
=====================================================  ===========================================
test_pipelined_requests_are_answered_in_order          no pipelining: each request is a stream of
                                                       its own, multiplexed (5); nothing queues
                                                       behind a response
test_http10_closes_unless_keep_alive_is_asked_for      no HTTP/1.0: the version is "2" from the
test_http10_keep_alive_pipelined                       preface on (3.4), and keep-alive and close
test_http10_streamed_response_is_close_delimited       delimiting are HTTP/1.x framing
test_http11_close_ends_the_connection_after_the_...    ``Connection`` is connection-specific and
                                                       malformed in HTTP/2 (8.2.2); a connection
                                                       ends with GOAWAY (6.8)
=====================================================  ===========================================

Chunked framing has its HTTP/2 counterpart in DATA frames (8.1): ``body=[parts]`` sends a body
of unknown length either way, ``trailers=`` its trailer fields (a last HEADERS frame).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.http_apps import (
    INTERNAL_ERROR,
    NO_ERROR,
    Connect,
    OpenWire,
    Scope,
    echo,
    read_body,
    respond,
)
from tests.memconn import Wire
from tests.rawhttp import get

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
