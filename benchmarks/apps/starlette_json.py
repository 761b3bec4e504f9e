"""Starlette returning a small JSON dict: FastAPI's foundation without its validation layer."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"message": "Hello, world!", "id": 42, "ok": True})


app = Starlette(routes=[Route("/", index)])
