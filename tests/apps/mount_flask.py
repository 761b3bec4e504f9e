"""The Flask app mounted at /legacy in the mount tests: links from url_for."""

from __future__ import annotations

from typing import Any

from flask import Flask, request, url_for

app = Flask(__name__)


@app.get("/")
def index() -> dict[str, Any]:
    return {
        "self": url_for("index", _external=True),
        "page": url_for("page", name="x"),
        "script_name": request.environ["SCRIPT_NAME"],
        "path_info": request.environ["PATH_INFO"],
    }


@app.get("/page/<name>")
def page(name: str) -> dict[str, Any]:
    return {"page": name, "self": url_for("page", name=name, _external=True)}
