"""A plain ASGI 3 application with a lifespan handler, no framework; POST echoes the body.

dualcorn examples.asgi_raw:app
"""

from __future__ import annotations

from typing import Any

state: dict[str, Any] = {}


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state["greeting"] = b"hello from raw asgi"  # e.g. open a database pool here
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            state.clear()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected before sending the whole body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        raise NotImplementedError(f"unsupported scope type {scope['type']!r}")
    if scope["method"] == "POST":
        body = await read_body(receive)
    else:
        body = state.get("greeting", b"hello from raw asgi (no lifespan)")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
