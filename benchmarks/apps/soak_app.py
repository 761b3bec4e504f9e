"""The apps ``python -m benchmarks.soak`` serves: one ASGI app and one WSGI app.

ASGI (``asgi_app``): ``/`` hello, ``/upload`` reads the body and answers its length,
``/stream`` answers 256 KiB in 16 sends, ``/pipeline`` 64 KiB (so a pipelining client that does
not read fills its buffers); WebSocket ``/echo`` echoes, ``/noread`` accepts and then reads
nothing for 10 s (the deflate bomb and ping flood aim there).
WSGI (``wsgi_app``): ``/`` hello, ``/upload`` reads ``wsgi.input`` in 64 KiB blocks, ``/big``
yields 8 MiB (for clients that never read), ``/slow`` sleeps 0.2 s (for abandoned requests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

HELLO = b"Hello, world!"
BLOCK = 64 * 1024
NOREAD_SECONDS = 10.0


def _headers(length: int | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"text/plain")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return headers


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    if scope["path"] == "/noread":
        # An app that accepted and does not read: what arrives meanwhile must stay bounded.
        await asyncio.sleep(NOREAD_SECONDS)
        await send({"type": "websocket.close", "code": 1000})
        return
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "websocket":
        await _websocket(scope, receive, send)
        return
    path = scope["path"]
    if path == "/upload":
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200, "headers": _headers(len(body))})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": _headers()})
        chunk = b"s" * (16 * 1024)
        for _ in range(16):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/pipeline":
        body = b"p" * BLOCK
        await send({"type": "http.response.start", "status": 200, "headers": _headers(len(body))})
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": _headers(len(HELLO))})
        await send({"type": "http.response.body", "body": HELLO})


def _big() -> Iterator[bytes]:
    block = b"b" * BLOCK
    for _ in range(128):  # 8 MiB
        yield block


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/upload":
        stream = environ["wsgi.input"]
        size = 0
        while block := stream.read(BLOCK):
            size += len(block)
        body = str(size).encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/big":
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(128 * BLOCK))]
        )
        return _big()
    if path == "/slow":
        time.sleep(0.2)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]
