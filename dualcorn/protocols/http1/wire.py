"""HTTP/1.1 bytes for responses: status lines, chunks, canned error responses.

Used by the HTTP/1.1 writer (:mod:`dualcorn.protocols.http1.writer`), the connection's own
refusals and the WebSocket handshake.  Status lines are encoded once per status code.
"""

from __future__ import annotations

import http

from dualcorn.errors import AppContractError

__all__ = ["CONTINUE_100", "LAST_CHUNK", "STATUS_LINES", "chunk", "error_response", "status_line"]

LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

# Status lines by code, filled by status_line() (which also checks the code).
STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <code> <reason>\\r\\n``, encoded once per status code."""
    line = STATUS_LINES.get(status)
    if line is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise AppContractError(
                f"the response status must be an int from 100 to 999, not {status!r}"
            )
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        # RFC 9112 4: the reason-phrase may be empty, but the space before it is required.
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("ascii"))
        STATUS_LINES[status] = line
    return line


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def error_response(status: int, extra_headers: bytes = b"") -> bytes:
    """A complete, closing response for errors the server answers itself (4xx, 5xx)."""
    reason = http.HTTPStatus(status).phrase.encode("ascii")
    return b"".join(
        (
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(reason),
            b"connection: close\r\n",
            extra_headers,
            b"\r\n",
            reason,
        )
    )
