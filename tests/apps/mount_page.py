"""A page served by the app whose stylesheet and script come from ``--static /static=DIR``."""

from __future__ import annotations

from typing import Any

PAGE = b"""<!doctype html>
<html><head><title>static</title>
<link rel="stylesheet" href="/static/site.css">
<script src="/static/site.js" defer></script>
</head><body><p id="probe">probe</p><p id="out">script did not run</p></body></html>
"""


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PAGE})
