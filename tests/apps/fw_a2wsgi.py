"""An ASGI app turned into WSGI by a2wsgi: dualcorn must serve it as WSGI, not ASGI."""

from a2wsgi import ASGIMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello from a2wsgi")


app = ASGIMiddleware(Starlette(routes=[Route("/", hello)]))
