"""Small apps for the attack tests (tests/test_bounds_*.py): no framework, quick to start.

``asgi``: GET answers "ok"; the WebSocket ``/idle`` accepts and never reads, as the app in a
deflate-bomb or ping-flood attack.  ``wsgi``: ``/`` answers "ok", ``/big`` streams 32 MiB,
``/stuck`` blocks its thread for a minute (an app that will not finish in the grace period).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

BIG_CHUNK = 64 * 1024
BIG_CHUNKS = 512  # 32 MiB


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()  # never reads; lives until cancelled
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def _big() -> Iterator[bytes]:
    block = b"x" * BIG_CHUNK
    for _ in range(BIG_CHUNKS):
        yield block


def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(BIG_CHUNK * BIG_CHUNKS))])
        return _big()
    if path == "/stuck":
        time.sleep(60)  # deliberately longer than any grace period in the tests
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
