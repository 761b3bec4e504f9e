"""Adapters say what an app takes; the protocols read it (design rule 1, issue 13).

Through the real server: a WSGI app (PEP 3333 has no WebSockets) gets an upgrade request as
the plain HTTP request it also is, an ASGI app gets a WebSocket session, and a router in front
of both (``--mount``) takes WebSockets because one app behind it does.  Nothing under
``dualcorn/protocols`` asks which interface an app was written for.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from dualcorn.adapters.capabilities import ASGI_APP, capabilities
from tests.support import ServerThread

UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = b"plain http, upgrade=" + environ.get("HTTP_UPGRADE", "").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi http"})


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while b"upgrade=" not in received and b"101 " not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


async def _echo(url: str) -> str:
    async with asyncio.timeout(10), connect(url) as ws:
        await ws.send("hi")
        return str(await ws.recv())


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_wsgi_app_gets_the_upgrade_as_plain_http(http: str) -> None:
    pytest.importorskip(http)
    with ServerThread(wsgi_app, interface="wsgi", http=http) as server:
        response = _raw(server.port, UPGRADE)
        assert response.startswith(b"HTTP/1.1 200 "), response
        assert response.endswith(b"plain http, upgrade=websocket")
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_echo(f"ws://127.0.0.1:{server.port}/chat"))
        assert refused.value.response.status_code == 200


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_an_asgi_app_gets_a_websocket_session(http: str) -> None:
    pytest.importorskip(http)
    with ServerThread(asgi_echo, interface="asgi3", http=http) as server:
        assert _raw(server.port, UPGRADE).startswith(b"HTTP/1.1 101 ")
        assert asyncio.run(_echo(f"ws://127.0.0.1:{server.port}/chat")) == "echo hi"


def test_a_router_takes_websockets_when_one_app_behind_it_does() -> None:
    """An ASGI main app with a WSGI mount: the upgrade to the ASGI app is a session, and the
    WSGI mount still answers its plain HTTP requests."""
    mounts = ("/legacy=tests.capability_apps:wsgi_app@wsgi",)
    with ServerThread("tests.capability_apps:asgi_echo", interface="auto", mounts=mounts) as server:
        assert asyncio.run(_echo(f"ws://127.0.0.1:{server.port}/chat")) == "echo hi"
        plain = b"GET /legacy/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert _raw(server.port, plain).endswith(b"plain http, upgrade=")
        # Behind the router the upgrade is a websocket scope; the WSGI adapter denies it
        # (ASGI: a close before accept is a 403), never hands it to the WSGI app.
        assert _raw(server.port, UPGRADE.replace(b"/chat", b"/legacy/x")).startswith(
            b"HTTP/1.1 403 "
        )


def test_what_the_adapters_say() -> None:
    from dualcorn import Config
    from dualcorn.adapters import prepare_app

    wsgi, _ = prepare_app(Config(app=wsgi_app, interface="wsgi", lifespan="off"))
    said = capabilities(wsgi)
    assert not said.websockets and said.close is not None
    assert capabilities(asgi_echo) == ASGI_APP and ASGI_APP.websockets and ASGI_APP.close is None
    asyncio.run(wsgi.shutdown())
