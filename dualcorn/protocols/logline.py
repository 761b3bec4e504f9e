"""The access log line, written when a response ends (not when it starts, as uvicorn does)."""

from __future__ import annotations

import http
import time
from typing import TYPE_CHECKING, Any

from dualcorn.access_format import (
    REFUSAL,
    AccessEntry,
    AccessFormat,
    client_address,
    printable,
)

if TYPE_CHECKING:
    from dualcorn.protocols.cycle import RequestCycle

__all__ = ["access_line", "client_address", "printable", "refusal_line"]


def access_line(cycle: RequestCycle) -> tuple[Any, ...]:
    """Arguments for ``logger.info``: the entry renders itself only if a handler prints it."""
    return (
        "%s",
        AccessEntry(
            cycle.state.access_format,
            cycle.scope,
            cycle.status,
            cycle.bytes_sent,
            time.monotonic() - cycle.start_time,
            response_headers=cycle.response_headers,
        ),
    )


def refusal_line(
    client: tuple[str, int] | None,
    method: bytes,
    target: bytes,
    version: bytes,
    status: int,
    fmt: Any = None,
) -> tuple[Any, ...]:
    """The access line for a response the server gave in the app's place (503, 501...).

    The body is the reason phrase (see ``wire.error_response``); no app ran, so no time.
    """
    path, _, query = target.partition(b"?")
    scope: dict[str, Any] = {
        "method": printable(method.decode("latin-1")),
        "raw_path": path,
        "path": path.decode("latin-1"),
        "query_string": query,
        "http_version": printable(version.decode("latin-1")),
        "client": client,
        "headers": [],
    }
    entry = AccessEntry(
        fmt or AccessFormat(), scope, status, len(http.HTTPStatus(status).phrase), 0.0, kind=REFUSAL
    )
    return ("%s", entry)
