"""Read the whole request body and reply with its length, as ASGI and WSGI.

The load generator POSTs 1 MiB; the app reads it the way real apps do (ASGI: receive() until
``more_body`` is false; WSGI: ``wsgi.input.read`` in 64 KiB blocks up to CONTENT_LENGTH).
"""

from collections.abc import Callable, Iterable
from typing import Any

BLOCK = 64 * 1024


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    size = 0
    while remaining > 0:
        block = stream.read(min(BLOCK, remaining))
        if not block:
            break
        size += len(block)
        remaining -= len(block)
    body = str(size).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
