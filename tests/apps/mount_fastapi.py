"""The FastAPI app at / in the mount tests: links from url_for, a WebSocket, a lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"who": "fastapi"}


app = FastAPI(lifespan=lifespan)


@app.get("/")
def index(request: Request) -> dict[str, Any]:
    return {
        "self": str(request.url_for("index")),
        "item": str(request.url_for("item", item_id=7)),
        "root_path": request.scope["root_path"],
        "state": request.state.who,
    }


@app.get("/items/{item_id}")
def item(item_id: int, request: Request) -> dict[str, Any]:
    return {"item": item_id, "path": request.url.path, "root_path": request.scope["root_path"]}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    link = websocket.url_for("echo")
    await websocket.send_text(f"{websocket.scope['root_path']}|{link}|{text}")
    await websocket.close()
