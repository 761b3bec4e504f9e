"""Small apps for the attack tests (tests/test_bounds_*.py): no framework, quick to start.

``asgi``: GET answers "ok"; the WebSocket ``/idle`` accepts and never reads, as the app in a
deflate-bomb or ping-flood attack.  ``wsgi``: ``/`` answers "ok"; ``/big?mib=N`` streams N MiB
(and counts the ``close()`` calls); ``/stuck?s=N`` blocks its thread N seconds (60 by default:
an app that will not finish in a grace period); ``/work`` counts how often the app ran it, and
``/count`` tells (``work N closed M``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

BIG_CHUNK = 64 * 1024


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


_work = itertools.count()
_closed = itertools.count()


class _Big:
    def __init__(self, chunks: int) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            yield b"x" * BIG_CHUNK  # a new object each time, as real bodies are

    def close(self) -> None:
        next(_closed)


def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/big":
        mib = int(query.partition("=")[2] or 32)
        start_response("200 OK", [("Content-Length", str(mib * 1024 * 1024))])
        return _Big(mib * 16)
    if path == "/stuck":
        time.sleep(float(query.partition("=")[2] or 60))
    elif path == "/work":
        next(_work)
    elif path == "/count":
        # itertools.count's repr is the next value; each next() above counted one call.
        text = f"work {repr(_work)[6:-1]} closed {repr(_closed)[6:-1]}"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
