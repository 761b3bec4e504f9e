"""Bytes on the wire for responses: status lines, header checks, framing, canned errors.

Both HTTP protocols (h11 and httptools) only *parse* requests; responses are serialized here, once,
so the request cycle is shared and the hot path avoids a second header-validation pass.  Status
lines are encoded once per status code and the Date header at most once a second.
"""

from __future__ import annotations

import http

from dualcorn.errors import AppContractError
from dualcorn.protocols.writer import (
    CONNECTION,
    CONTENT_LENGTH,
    DATE,
    DEFAULT,
    HEADER_CACHE_SIZE,
    PLAIN,
    TRANSFER_ENCODING,
    DateHeader,
    validate_header,
)

__all__ = [
    "CONNECTION",
    "CONTENT_LENGTH",
    "CONTINUE_100",
    "DATE",
    "DEFAULT",
    "HEADER_CACHE_SIZE",
    "LAST_CHUNK",
    "PLAIN",
    "TRANSFER_ENCODING",
    "DateHeader",
    "chunk",
    "classify_header",
    "error_response",
    "status_line",
    "validate_header",
]

LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

_status_lines: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <code> <reason>\\r\\n``, encoded once per status code."""
    line = _status_lines.get(status)
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
        _status_lines[status] = line
    return line


def classify_header(name: object, value: object, defaults: frozenset[bytes]) -> tuple[int, bytes]:
    """Validate one response header; return what it means and its encoded line."""
    validate_header(name, value)
    assert isinstance(name, bytes) and isinstance(value, bytes)
    lower = name.lower()
    line = b"%s: %s\r\n" % (name, value)
    if lower == b"content-length":
        if not value.isdigit():
            raise AppContractError(f"the app sent an invalid Content-Length {value!r}")
        return CONTENT_LENGTH, line
    if lower == b"transfer-encoding":
        return TRANSFER_ENCODING, b""
    if lower == b"connection":
        return CONNECTION, b""
    if lower == b"date":
        return DATE, line
    if lower in defaults:
        return DEFAULT, line
    return PLAIN, line


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
