"""Litestar returning a small JSON dict: the other typed ASGI framework."""

from typing import Any

from litestar import Litestar, get


@get("/", sync_to_thread=False)
def index() -> dict[str, Any]:
    return {"message": "Hello, world!", "id": 42, "ok": True}


app = Litestar(route_handlers=[index], debug=False, openapi_config=None)
