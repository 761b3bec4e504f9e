"""The WSGI app behind ``benchmarks/memory.py``: big bodies, both directions, in 64 KiB blocks.

``POST /upload`` reads ``wsgi.input`` in 64 KiB blocks (up to CONTENT_LENGTH, or to the end of
a chunked body) and answers ``<length> <sha256 hex>``.  ``GET /download?mib=N`` yields N MiB
from a generator, 64 KiB at a time, block ``i`` being ``i`` as 8 big-endian bytes repeated, so
the client can check order and content without the server holding the body.
"""

from collections.abc import Callable, Iterable, Iterator
from hashlib import sha256
from typing import Any

BLOCK = 64 * 1024


def block(index: int) -> bytes:
    """The ``index``-th 64 KiB block of a download (also used by the client to check it)."""
    return index.to_bytes(8, "big") * (BLOCK // 8)


def _upload(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    remaining = int(length) if length else None  # None: chunked, read to the end
    digest = sha256()
    size = 0
    while remaining is None or remaining > 0:
        data = stream.read(BLOCK if remaining is None else min(BLOCK, remaining))
        if not data:
            break
        digest.update(data)
        size += len(data)
        if remaining is not None:
            remaining -= len(data)
    return f"{size} {digest.hexdigest()}".encode()


def _download(blocks: int) -> Iterator[bytes]:
    for index in range(blocks):
        yield block(index)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/upload":
        body = _upload(environ)
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/download":
        query = dict(p.partition("=")[::2] for p in environ.get("QUERY_STRING", "").split("&"))
        mib = int(query.get("mib") or 1)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _download(mib * 1024 * 1024 // BLOCK)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
