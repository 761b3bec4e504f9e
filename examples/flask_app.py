"""A small Flask application.

dualcorn examples.flask_app:app
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "hello from flask"


@app.post("/echo")
def echo() -> Response:
    return Response(request.get_data(), mimetype="application/octet-stream")


@app.get("/items/<int:item_id>")
def read_item(item_id: int) -> dict[str, int | str | None]:
    return {"item_id": item_id, "q": request.args.get("q")}
