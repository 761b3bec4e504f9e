"""A bare starlette Router (no Starlette app around it) is an ASGI 3 app of its own."""

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello from starlette router")


app = Router(routes=[Route("/", hello)])
