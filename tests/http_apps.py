"""Shared by tests/test_http.py and tests/test_http_transport.py: ASGI helpers, a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.memconn import MemoryConnection, WireFactory

__all__ = [
    "CANCEL",
    "INTERNAL_ERROR",
    "MIB",
    "NO_ERROR",
    "Connect",
    "OpenWire",
    "Scope",
    "Serve",
    "echo",
    "read_body",
    "respond",
    "wait_for",
]

Scope = dict[str, Any]
Serve = Callable[..., Any]
Connect = Callable[..., MemoryConnection]
OpenWire = WireFactory  # the ``wire`` fixture: a Wire (HTTP/1.1) or an H2Wire
MIB = 1024 * 1024
# RFC 9113 7: the RST_STREAM codes these tests expect over HTTP/2.
NO_ERROR, INTERNAL_ERROR, CANCEL = 0x0, 0x2, 0x8


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise OSError("client disconnected")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def respond(
    send: Any, status: int = 200, body: bytes = b"", headers: list[Any] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the request body, prefixed by the path (so ordering is visible)."""
    body = await read_body(receive)
    await respond(send, 200, scope["path"].encode() + b":" + body)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """A bounded wait for state another thread changes (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
