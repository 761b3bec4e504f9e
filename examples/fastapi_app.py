"""A small FastAPI application.

dualcorn examples.fastapi_app:app
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello() -> str:
    return "hello from fastapi"


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, int | str | None]:
    return {"item_id": item_id, "q": q}


@app.post("/echo", response_class=PlainTextResponse)
async def echo(request: Request) -> bytes:
    return await request.body()
