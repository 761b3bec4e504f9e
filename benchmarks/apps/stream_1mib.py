"""A 1 MiB response sent in 64 KiB chunks, as ASGI (``asgi_app``) and WSGI (``wsgi_app``).

No Content-Length is set, so HTTP/1.1 servers answer with chunked transfer coding and must
stream each chunk rather than buffer the whole body.
"""

from collections.abc import Callable, Iterator
from typing import Any

CHUNK = b"x" * (64 * 1024)
CHUNKS = 16  # 16 x 64 KiB = 1 MiB


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # lifespan is optional: returning tells the server it is unsupported
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(CHUNKS - 1):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": CHUNK})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(CHUNKS):
        yield CHUNK
