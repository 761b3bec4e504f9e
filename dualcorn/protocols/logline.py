"""The access log line, written when a response ends (not when it starts, as uvicorn does)."""

from __future__ import annotations

import http
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dualcorn.protocols.cycle import RequestCycle

__all__ = ["access_line", "client_address", "printable", "refusal_line"]

# Control characters (C0, DEL, C1) in a logged path could drive the reader's terminal; escape
# them the way repr() would, keep everything else readable.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPES[ord('"')] = '\\"'


def printable(text: str) -> str:
    """``text`` with every character that could inject terminal sequences escaped."""
    return text.translate(_ESCAPES)


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def access_line(cycle: RequestCycle) -> tuple[Any, ...]:
    """Arguments for ``logger.info``: format string first, so formatting stays lazy."""
    scope = cycle.scope
    target = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    fields = (
        client_address(scope),
        scope["method"],
        printable(target),
        scope["http_version"],
        cycle.status,
        cycle.bytes_sent,
        (time.monotonic() - cycle.start_time) * 1000.0,
    )
    mount = scope.get("dualcorn.mount")
    if mount is not None:  # --mount/--static: which app or directory answered
        return ('%s - "%s %s HTTP/%s" %d %d %.1fms mount=%s', *fields, printable(mount))
    return ('%s - "%s %s HTTP/%s" %d %d %.1fms', *fields)


def refusal_line(
    client: tuple[str, int] | None, method: bytes, target: bytes, version: bytes, status: int
) -> tuple[Any, ...]:
    """The access line for a response the server gave in the app's place (503, 501...).

    The body is the reason phrase (see ``wire.error_response``); no app ran, so no time.
    """
    return (
        '%s - "%s %s HTTP/%s" %d %d %.1fms',
        client_address({"client": client}),
        printable(method.decode("latin-1")),
        printable(target.decode("latin-1")),
        printable(version.decode("latin-1")),
        status,
        len(http.HTTPStatus(status).phrase),
        0.0,
    )
