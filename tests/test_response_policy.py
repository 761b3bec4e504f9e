"""Responses an app gets wrong become a 500 before anything is written, on every parser.

Through an ASGI app and a WSGI app (the adapter), on every HTTP/1.1 tokenizer and over HTTP/2
(the ``wire`` fixture): a final 1xx status, a status outside 200-599, two Content-Length
fields, a Content-Length on a 204, control bytes in a header value.  A response already started
when the mistake shows is cut short instead: by closing the connection over HTTP/1.1, by
RST_STREAM over HTTP/2 (RFC 9113 8.1), whose connection serves the next request.
"""

from __future__ import annotations

from typing import Any

import pytest

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"

# (id, status, headers): each must become a 500.
WRONG: list[tuple[str, int, list[tuple[bytes, bytes]]]] = [
    ("final-100", 100, []),
    ("final-101", 101, [(b"upgrade", b"websocket"), (b"connection", b"upgrade")]),
    ("final-103", 103, [(b"link", b"</a>; rel=preload")]),
    ("status-999", 999, []),
    ("status-600", 600, []),
    ("status-99", 99, []),
    ("two-content-lengths", 200, [(b"content-length", b"2"), (b"content-length", b"2")]),
    ("two-different-lengths", 200, [(b"content-length", b"2"), (b"Content-Length", b"3")]),
    ("204-with-length", 204, [(b"content-length", b"5")]),
    ("ctl-01-in-value", 200, [(b"x-a", b"a\x01b")]),
    ("del-in-value", 200, [(b"x-a", b"a\x7fb")]),
    ("nul-in-value", 200, [(b"x-a", b"a\x00b")]),
]


def asgi_app(status: int, headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/next":
            status_, headers_ = 200, []
        else:
            status_, headers_ = status, headers
        await send({"type": "http.response.start", "status": status_, "headers": headers_})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def wsgi_app(status: int, headers: list[tuple[bytes, bytes]]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/next":
            start_response("200 OK", [])
        else:
            start_response(
                f"{status} Whatever",
                [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
            )
        return [b"ok"]

    return app


@pytest.mark.parametrize("interface", ["asgi3", "wsgi"])
@pytest.mark.parametrize(("status", "headers"), [pytest.param(s, h, id=n) for n, s, h in WRONG])
async def test_wrong_response_becomes_500(
    wire: Any, interface: str, status: int, headers: list[Any]
) -> None:
    app = (asgi_app if interface == "asgi3" else wsgi_app)(status, headers)
    async with wire(app, interface=interface) as client:
        if client.version == "2":
            response = await client.request()
            assert response.status == 500
            assert response.header(b"x-a") is None and response.header(b"link") is None
            assert response.header(b"content-length") == b"0" and response.body == b""
            assert response.interim == []  # a final 1xx is not sent as an interim one either
            assert (await client.request("/next")).body == b"ok"
            return
        conn = client.conn
        await conn.send(REQUEST + NEXT)
        written = conn.written
        assert written.startswith(b"HTTP/1.1 500 "), written[:300]
        # Nothing of the bad response was written, and the 500 is framed: the pipelined
        # request behind it is answered on its own, or the connection ends with the 500.
        assert b"x-a:" not in written and b"link:" not in written
        responses = conn.responses()
        assert responses[0].status == 500
        assert [(r.status, r.body) for r in responses[1:]] in ([], [(200, b"ok")])
        assert conn.closed or len(responses) == 2


@pytest.mark.parametrize("interface", ["asgi3", "wsgi"])
async def test_204_with_zero_length_is_sent_without_it(wire: Any, interface: str) -> None:
    """RFC 9110 8.6: no Content-Length in a 204; Django adds "0", which is dropped, not a 500."""
    headers = [(b"content-length", b"0")]
    if interface == "asgi3":

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

    else:

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:  # type: ignore[misc]
            start_response("204 No Content", [("Content-Length", "0")])
            return []

    async with wire(app, interface=interface) as client:
        responses = [await client.request() for _ in range(2)]
        assert [r.status for r in responses] == [204, 204]
        assert all(r.header(b"content-length") is None for r in responses)
        if client.version == "1.1":  # (HPACK would name it by an index: decoded above)
            assert b"content-length" not in client.conn.written.lower()
        assert not client.is_closed_by_server()


async def test_control_byte_after_the_head_was_written_closes(wire: Any) -> None:
    """A trailer-less response cannot take a header back: once started, the close is all."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": 5})  # not bytes: the app is wrong

    async with wire(app) as client:
        if client.version == "2":
            response = await client.request()
            assert (response.status, response.body) == (200, b"part")
            assert response.reset == 0x2  # INTERNAL_ERROR (RFC 9113 7): never taken as whole
            assert not client.is_closed_by_server()
            return
        conn = client.conn
        await conn.send(REQUEST + NEXT)
        assert conn.written.startswith(b"HTTP/1.1 200 ")
        assert conn.written.count(b"HTTP/1.1 ") == 1
        assert conn.closed
