"""Apps that report what they believe about the client, for the reverse-proxy tests.

``dualcorn tests.apps.proxied:fastapi_app`` and ``dualcorn tests.apps.proxied:flask_app``
(a WSGI app) behind nginx or HAProxy; each answers with the address, scheme and links that a
framework computes from the scope or environ, so the tests see what a real app would use.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, WebSocket
from flask import Flask, jsonify, url_for
from flask import request as flask_request

fastapi_app = FastAPI()


@fastapi_app.get("/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    client = request.client
    return {
        "client": client.host if client else None,
        "port": client.port if client else None,
        "scheme": request.url.scheme,
        "link": str(request.url_for("whoami")),
    }


@fastapi_app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    client = websocket.client
    text = await websocket.receive_text()
    await websocket.send_json(
        {
            "echo": text,
            "scheme": websocket.url.scheme,
            "client": client.host if client else None,
        }
    )
    await websocket.close()


flask_app = Flask(__name__)


@flask_app.route("/link")
def link() -> Any:
    return jsonify(
        link=url_for("link", _external=True),
        remote_addr=flask_request.remote_addr,
        scheme=flask_request.scheme,
    )
