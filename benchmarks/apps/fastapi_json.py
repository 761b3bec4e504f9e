"""FastAPI returning a small JSON dict: the typical ASGI framework path."""

from typing import Any

from fastapi import FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/")
async def index() -> dict[str, Any]:
    return {"message": "Hello, world!", "id": 42, "ok": True}
