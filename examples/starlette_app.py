"""A small Starlette application.

dualcorn examples.starlette_app:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello from starlette")


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def headers(request: Request) -> Response:
    return JSONResponse(dict(request.headers))


app = Starlette(
    routes=[
        Route("/", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/headers", headers),
    ]
)
