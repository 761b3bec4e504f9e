"""The in-memory connection fixture drives real ASGI and WSGI apps on both parsers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.memconn import MemoryConnection

Scope = dict[str, Any]


async def asgi_echo(scope: Scope, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    out = scope["method"].encode() + b" " + scope["raw_path"] + b" " + body
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": out})


def wsgi_echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    out = environ["REQUEST_METHOD"].encode() + b" " + environ["PATH_INFO"].encode() + b" " + body
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


APPS = {"asgi3": asgi_echo, "wsgi": wsgi_echo}


async def test_get_and_post_pipelined_whole_and_byte_by_byte(connect: Any) -> None:
    raw = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    for interface, app in APPS.items():
        for reads in ([raw], [raw[i : i + 1] for i in range(len(raw))]):
            conn: MemoryConnection = connect(app, interface=interface)
            async with conn:
                await conn.send(reads)
                bodies = [r.body for r in conn.responses()]
                assert bodies == [b"GET /a ", b"POST /b abc", b"POST /c hi"], (interface, bodies)
                assert not conn.closed


async def test_refusal_closes(connect: Any) -> None:
    for interface, app in APPS.items():
        async with connect(app, interface=interface) as conn:
            await conn.send(b"GET / HTTP/1.1\r\n\r\n")
            assert [r.status for r in conn.responses()] == [400]
            assert conn.closed


async def test_the_wire_fixture_speaks_each_protocol(wire: Any) -> None:
    """One request per interface and body shape; the app sees the protocol the wire names."""
    versions: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        versions.append(scope["http_version"])
        await asgi_echo(scope, receive, send)

    for interface, target in (("asgi3", app), ("wsgi", wsgi_echo)):
        async with wire(target, interface=interface) as client:
            assert (await client.request("/a")).body == b"GET /a "
            sized = await client.request("/b", method=b"POST", body=b"abc")
            assert sized.body == b"POST /b abc"
            parts = await client.request("/c", method=b"POST", body=[b"h", b"i"])
            assert parts.body == b"POST /c hi"
            assert not client.is_closed_by_server()
    assert versions == [wire.version] * 3


async def test_the_http2_wire_needs_the_servers_http2() -> None:
    """The HTTP/2 wire really is h2c: with --no-http2 the preface gets HTTP/1.1's answer."""
    pytest.importorskip("h2")
    from tests.h2memconn import H2Wire

    with pytest.raises(AssertionError, match="did not switch to HTTP/2"):
        async with H2Wire(MemoryConnection("h11", asgi_echo, http2=False)):
            pass
