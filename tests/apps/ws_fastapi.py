"""A FastAPI app with the WebSocket endpoints the WebSocket tests exercise.

Run it as a user would: ``dualcorn tests.apps.ws_fastapi:app``; ``/`` is a page whose script
echoes one message over ``/echo`` and writes the answer into the page.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, PlainTextResponse

app = FastAPI()
# What the endpoints saw, for the in-process tests: (endpoint, event) pairs.
events: list[tuple[str, Any]] = []

PAGE = """<!doctype html>
<html><head><title>dualcorn websocket</title></head><body>
<p id="out">waiting</p>
<script>
const out = document.getElementById("out");
const ws = new WebSocket(`ws://${location.host}/echo`);
ws.onopen = () => ws.send("hello from the browser");
ws.onmessage = (event) => { out.textContent = "echoed: " + event.data; ws.close(1000); };
ws.onerror = () => { out.textContent = "websocket error"; };
</script>
</body></html>
"""


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE


@app.get("/slow", response_class=PlainTextResponse)
async def slow(seconds: float = 1.0) -> str:
    await asyncio.sleep(seconds)
    return "slow done"


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                events.append(("echo", ("disconnect", message["code"], message.get("reason"))))
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:  # pragma: no cover - receive() above returns instead
        events.append(("echo", ("disconnect", exc.code, exc.reason)))


@app.websocket("/close4001")
async def close_4001(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    await ws.close(code=4001, reason="the app chose 4001")


@app.websocket("/deny")
async def deny(ws: WebSocket) -> None:
    await ws.close()


@app.websocket("/teapot")
async def teapot(ws: WebSocket) -> None:
    # The ASGI "websocket.http.response" extension: the app's own HTTP response.
    await ws.send_denial_response(PlainTextResponse("no sockets here", status_code=418))


@app.websocket("/chat")
async def chat(ws: WebSocket) -> None:
    events.append(("chat", ws.scope["subprotocols"]))
    await ws.accept(subprotocol="chat.v2", headers=[(b"x-session", b"abc")])
    await ws.send_text(ws.scope["path"] + "?" + ws.scope["query_string"].decode())
    await ws.close()


@app.websocket("/crash")
async def crash(ws: WebSocket) -> None:
    if ws.query_params.get("when") == "after":
        await ws.accept()
    raise RuntimeError("boom")


@app.websocket("/flood")
async def flood(ws: WebSocket) -> None:
    """Send 1 MiB messages as fast as send() lets it; count how many went out."""
    await ws.accept()
    block = bytes(1024 * 1024)
    sent = 0
    try:
        while True:
            await ws.send_bytes(block)
            sent += 1
            events.append(("flood", sent))
    except (WebSocketDisconnect, OSError):
        return


@app.websocket("/idle")
async def idle(ws: WebSocket) -> None:
    """Accept, then never read: the client's messages pile up against --ws-max-queue."""
    await ws.accept()
    await asyncio.sleep(3600)
