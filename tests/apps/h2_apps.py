"""The apps real HTTP/2 clients talk to (tests/test_http2_clients.py): Starlette and Flask.

Both serve the same routes: ``/info`` (what the app saw: the protocol, the root path, a URL
the framework built), ``/echo`` (POST: the body's length and SHA-256), ``/stream`` (a
256 KiB response in 8 pieces, more than HTTP/2's 64 KiB default window, so the server's flow
control is used) and ``/page`` (an HTML page whose script fetches ``info`` and writes the
protocol the app saw into the title, for the browser).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from flask import Flask, Response, request, url_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

__all__ = ["PIECE", "PIECES", "asgi_app", "stream_body", "wsgi_app"]

PIECES = 8
PIECE = 32 * 1024
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>loading</title></head>
<body><p id="out">loading</p>
<script>
fetch("info").then((r) => r.json()).then((seen) => {
  document.title = "app saw " + seen.version;
  document.getElementById("out").textContent = JSON.stringify(seen);
});
</script></body></html>
"""


def stream_body() -> bytes:
    """What ``/stream`` sends, for the clients to compare."""
    return b"".join(_pieces())


def _pieces() -> Iterator[bytes]:
    for index in range(PIECES):
        yield (b"%d" % index) * PIECE


def _digest(body: bytes) -> dict[str, Any]:
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


# --- ASGI: Starlette ---------------------------------------------------------------------


async def _info(request: Request) -> JSONResponse:
    scope = request.scope
    return JSONResponse(
        {
            "version": scope["http_version"],
            "root": scope.get("root_path", ""),
            "url": str(request.url_for("info")),
            "scheme": scope["scheme"],
        }
    )


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse(_digest(await request.body()))


async def _stream(request: Request) -> StreamingResponse:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in _pieces():
            yield piece

    return StreamingResponse(pieces(), media_type="application/octet-stream")


async def _page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


asgi_app = Starlette(
    routes=[
        Route("/info", _info, name="info"),
        Route("/echo", _echo, methods=["POST"]),
        Route("/stream", _stream),
        Route("/page", _page),
    ]
)


# --- WSGI: Flask -------------------------------------------------------------------------

wsgi_app = Flask(__name__)


@wsgi_app.get("/info")
def info() -> dict[str, Any]:
    environ = request.environ
    return {
        "version": environ["SERVER_PROTOCOL"],
        "root": environ.get("SCRIPT_NAME", ""),
        "url": url_for("info", _external=True),
        "scheme": environ["wsgi.url_scheme"],
    }


@wsgi_app.post("/echo")
def echo() -> dict[str, Any]:
    return _digest(request.get_data())


@wsgi_app.get("/stream")
def stream() -> Response:
    return Response(_pieces(), mimetype="application/octet-stream")


@wsgi_app.get("/page")
def page() -> Response:
    return Response(PAGE, mimetype="text/html")
