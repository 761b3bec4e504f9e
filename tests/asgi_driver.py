"""An in-process ASGI driver: call an ASGI app with a scripted receive() and record what it sends.

It plays the server's part of one HTTP cycle the way the ASGI spec describes it: ``receive()``
hands out the scripted body chunks, then (like a real server) blocks until the response is
complete and answers ``http.disconnect``.  ``on_send`` lets a test slow ``send()`` down, inspect
the app's progress while a send is pending, or make it fail as a closed connection does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientGone", "Exchange", "drive", "make_scope"]

Message = dict[str, Any]


class ClientGone(OSError):
    """What a real server raises from send() once the client has disconnected."""


@dataclass
class Exchange:
    """Everything one request cycle produced."""

    sent: list[Message] = field(default_factory=list)
    receive_calls: int = 0
    exception: BaseException | None = None

    @property
    def start(self) -> Message:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, f"expected one http.response.start, got {self.sent!r}"
        return starts[0]

    @property
    def status(self) -> int:
        status: int = self.start["status"]
        return status

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(n), bytes(v)) for n, v in self.start["headers"]]

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for n, v in self.headers if n == name.lower().encode()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def body_messages(self) -> list[Message]:
        return [m for m in self.sent if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.body_messages)

    @property
    def complete(self) -> bool:
        """Whether the last message closed the response (ASGI: ``more_body`` false)."""
        return bool(self.sent) and not self.sent[-1].get("more_body", False)


def make_scope(
    *,
    method: str = "GET",
    path: str = "/",
    raw_path: bytes | None = None,
    query_string: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    root_path: str = "",
    server: tuple[str, int | None] | None = ("127.0.0.1", 8000),
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    scheme: str = "http",
    http_version: str = "1.1",
    extensions: dict[str, Any] | None = None,
) -> Message:
    if raw_path is None:
        raw_path = path.encode("utf-8")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": [(bytes(n), bytes(v)) for n, v in headers],
        "server": server,
        "client": client,
        "extensions": extensions or {},
    }


async def drive(
    app: Callable[..., Awaitable[None]],
    scope: Message | None = None,
    *,
    body: Sequence[bytes] = (),
    disconnect_after: int | None = None,
    on_send: Callable[[Message], Awaitable[None]] | None = None,
    raise_app_errors: bool = True,
    exchange: Exchange | None = None,
    **scope_options: Any,
) -> Exchange:
    """Run one HTTP cycle.

    ``body``: the chunks ``receive()`` hands out (the last with ``more_body`` false).  With no
    ``scope``, a Content-Length header is added for a non-empty body.
    ``disconnect_after``: after that many chunks, ``receive()`` answers ``http.disconnect``.
    ``on_send``: awaited before each message is recorded; it may block or raise.
    ``raise_app_errors``: if false, an exception from the app is stored in the result.
    ``exchange``: the record to fill, for a test that watches it while the app runs.
    """
    if scope is None:
        headers = list(scope_options.pop("headers", ()))
        names = {n.lower() for n, _ in headers}
        if body and b"content-length" not in names and b"transfer-encoding" not in names:
            headers.append((b"content-length", str(sum(map(len, body))).encode()))
        scope = make_scope(headers=headers, **scope_options)
    if exchange is None:
        exchange = Exchange()
    response_complete = asyncio.Event()
    chunks = list(body) or [b""]

    async def receive() -> Message:
        index = exchange.receive_calls
        exchange.receive_calls += 1
        if disconnect_after is not None and index >= disconnect_after:
            return {"type": "http.disconnect"}
        if index < len(chunks):
            more = index < len(chunks) - 1
            return {"type": "http.request", "body": chunks[index], "more_body": more}
        await response_complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if on_send is not None:
            await on_send(message)
        exchange.sent.append(message)
        if message["type"] != "http.response.start" and not message.get("more_body", False):
            response_complete.set()

    try:
        await app(scope, receive, send)
    except Exception as exc:
        if raise_app_errors:
            raise
        exchange.exception = exc
    return exchange
