"""Flask returning a small JSON dict: the typical WSGI framework path."""

from typing import Any

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> dict[str, Any]:
    return {"message": "Hello, world!", "id": 42, "ok": True}
