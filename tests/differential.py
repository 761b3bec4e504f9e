"""Run the same bytes through every HTTP/1.1 parser in memory and describe what happened.

An :class:`Observation` holds everything a client or an app could tell apart: the bytes the
server wrote (the Date header blanked), whether it closed, and for each request the app was
called for, the scope fields and the body it read.  Two parsers that differ in any of these
differ in accept/refuse, status, a field an app would see, or where the next request starts.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from dualcorn import Config
from dualcorn.protocols.state import ServerState
from tests.memconn import PARSERS, protocol_class
from tests.support import MemoryTransport

__all__ = ["Observation", "RecordingApp", "observe", "observe_all"]

_DATE = re.compile(rb"date: [^\r]*\r\n")


class RecordingApp:
    """Reads each body to the end, records what it saw, answers 200 (echoing the body size)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.seen.append(_describe(scope, body, disconnected=True))
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append(_describe(scope, body, disconnected=False))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})


def _describe(scope: dict[str, Any], body: bytes, *, disconnected: bool) -> tuple[Any, ...]:
    return (
        scope["method"],
        scope["http_version"],
        scope["path"],
        scope["raw_path"],
        scope["query_string"],
        tuple(scope["headers"]),
        body,
        disconnected,
    )


@dataclass(frozen=True)
class Observation:
    written: bytes
    closed: bool
    seen: tuple[tuple[Any, ...], ...]

    @property
    def statuses(self) -> list[int]:
        return [int(m) for m in re.findall(rb"HTTP/1.1 (\d{3}) ", self.written)]


async def observe(parser: str, reads: list[bytes], **options: Any) -> Observation:
    """Feed ``reads`` to a fresh connection; run until nothing more can happen."""
    app = RecordingApp()
    options.setdefault("access_log", False)
    options.setdefault("ws", "none")  # an upgrade is then an ordinary request, in memory too
    state = ServerState(Config(app=app, lifespan="off", **options), app)
    protocol = protocol_class(parser)(state)
    transport = MemoryTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    for data in reads:
        if transport.closed:
            break
        protocol.data_received(data)
        await _settle(state)
    await _settle(state)
    closed = transport.closed
    if not closed:
        transport.closed = True
        protocol.connection_lost(None)
    await _settle(state)
    protocol._stop_timer()
    written = _DATE.sub(b"", bytes(transport.written))
    return Observation(written, closed, tuple(app.seen))


async def _settle(state: ServerState) -> None:
    # In-memory apps never wait on anything outside the loop: a few rounds of the loop with
    # no task left running (or every task blocked) is quiescence.
    idle = 0
    for _ in range(200):
        await asyncio.sleep(0)
        if all(task.done() for task in state.tasks):
            idle += 1
            if idle > 2:
                return
        else:
            idle = 0
            if _blocked(state):
                return


def _blocked(state: ServerState) -> bool:
    # Tasks waiting for body bytes that were never sent: nothing in memory will wake them.
    for connection in state.connections:
        cycle = getattr(connection, "cycle", None)
        if cycle is not None and cycle._wake is not None and not cycle._wake.is_set():
            return True
    return False


async def observe_all(reads: list[bytes], **options: Any) -> dict[str, Observation]:
    return {parser: await observe(parser, reads, **options) for parser in PARSERS}
