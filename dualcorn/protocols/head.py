"""Checks on a request head that the HTTP parsers leave out.

Theory of operation: a parser (h11 or llhttp) turns bytes into a request event.  Both are more
lenient than a server that sits behind proxies can afford: a request that two parties can read
two ways is the root of request smuggling (RFC 9112 11.2).  So dualcorn adds two layers:

1. :class:`HeadScanner` watches the raw bytes of each request head as they arrive, whole or one
   byte at a time, and enforces what the parsed event can no longer show: CRLF line endings,
   no obsolete line folding, and the size of the whole head.
2. :func:`check_request` looks at the parsed head: the framing headers (Content-Length,
   Transfer-Encoding), control characters in values, the HTTP version, the target length and the
   number of fields.

Every failure raises :class:`~dualcorn.errors.ProtocolError` carrying its status.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dualcorn.errors import ProtocolError

__all__ = ["HeadFacts", "HeadScanner", "check_request"]

_END_OF_HEAD = b"\r\n\r\n"
# RFC 9110 5.5: field values are VCHAR, obs-text, SP and HTAB; other control characters are
# invalid and NUL, CR and LF are dangerous.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]+\Z")


class HeadScanner:
    """Watches the raw bytes of one request head; carries at most 3 bytes between reads."""

    __slots__ = ("_carry", "_leading", "_limit", "_size", "done")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.reset()

    def reset(self) -> None:
        self._carry = b""
        self._size = 0
        self._leading = True  # still inside the empty lines a client may send first
        self.done = False

    def feed(self, data: bytes) -> int:
        """Scan ``data``; return how many of its bytes belong to the head (all if unfinished).

        Raises ProtocolError for bare LF (400), obsolete line folding (400) and a head larger
        than the limit (431).
        """
        if self._leading:
            # RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF) received
            # before the request-line.
            stripped = data.lstrip(b"\r\n")
            skipped = len(data) - len(stripped)
            if not stripped:
                return len(data)
            self._leading = False
            return skipped + self.feed(stripped)
        carry = self._carry
        buf = carry + data
        end = buf.find(_END_OF_HEAD)
        head = buf if end < 0 else buf[: end + 4]
        # RFC 9112 2.2: a bare LF as a line terminator lets two parsers disagree on where a
        # field ends; answer 400 instead of guessing.
        lf = head.find(b"\n")
        while lf != -1:
            if lf == 0 or head[lf - 1] != 0x0D:
                raise ProtocolError("bare LF in the request head (RFC 9112 2.2)", 400)
            # RFC 9112 5.2: obs-fold is rejected with 400 rather than unfolded.
            if lf + 1 < len(head) and head[lf + 1] in (0x20, 0x09):
                raise ProtocolError("obsolete line folding in the request head (RFC 9112 5.2)")
            lf = head.find(b"\n", lf + 1)
        consumed = len(head) - len(carry)
        self._size += consumed
        if self._size > self._limit:
            raise ProtocolError("the request head is larger than the limit", 431)
        if end >= 0:
            self.done = True
            self._carry = b""
            return consumed
        self._carry = buf[-3:]
        return len(data)


class HeadFacts:
    """What the connection needs to know of a request head, gathered in one pass."""

    __slots__ = ("chunked", "close", "content_length", "expect_continue", "keep_alive_token")

    def __init__(self) -> None:
        self.content_length: int | None = None
        self.chunked = False
        self.close = False  # "Connection: close" was sent
        self.keep_alive_token = False  # "Connection: keep-alive" was sent (matters for 1.0)
        self.expect_continue = False

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def check_request(
    http_version: bytes,
    target: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    *,
    max_target: int,
    max_fields: int,
) -> HeadFacts:
    """Check a parsed request head; return the facts that frame it.

    ``headers`` are (lower-case name, value) pairs as the parser produced them.
    """
    # RFC 9110 6.2 / RFC 9112 2.3: this server speaks HTTP/1.0 and HTTP/1.1 on this port.
    if http_version not in (b"1.1", b"1.0"):
        raise ProtocolError(f"HTTP version {http_version!r} is not supported", 505)
    if len(target) > max_target:
        raise ProtocolError("the request target is longer than the limit", 414)
    facts = HeadFacts()
    length_seen = transfer_encoding = False
    count = 0
    for name, value in headers:
        count += 1
        if _CONTROL.search(value) is not None:
            raise ProtocolError(f"control character in the value of {name!r} (RFC 9110 5.5)")
        if name == b"content-length":
            # RFC 9112 6.3 (5): several or list-valued Content-Length fields are an
            # unrecoverable framing error for a server; we do not pick one.
            if length_seen:
                raise ProtocolError("more than one Content-Length field")
            if _DIGITS.match(value) is None:
                raise ProtocolError(f"malformed Content-Length {value!r}")
            length_seen = True
            facts.content_length = int(value)
        elif name == b"transfer-encoding":
            # RFC 9112 6.1: only "chunked", exactly once, is a framing this server reads.
            if transfer_encoding:
                raise ProtocolError("more than one Transfer-Encoding field", 501)
            if value.lower() != b"chunked":
                raise ProtocolError(f"Transfer-Encoding {value!r} is not supported", 501)
            transfer_encoding = True
        elif name == b"connection":
            tokens = value.lower()
            facts.close = facts.close or b"close" in tokens
            facts.keep_alive_token = facts.keep_alive_token or b"keep-alive" in tokens
        elif name == b"expect":
            # RFC 9110 10.1.1: "100-continue" is the only expectation defined.
            facts.expect_continue = value.lower() == b"100-continue"
    if count > max_fields:
        raise ProtocolError("the request has more header fields than the limit", 431)
    # RFC 9112 6.1: a request with both is a smuggling attempt; a server ought to reject it.
    if length_seen and transfer_encoding:
        raise ProtocolError("both Content-Length and Transfer-Encoding are present")
    if transfer_encoding and http_version == b"1.0":
        raise ProtocolError("Transfer-Encoding is not defined for HTTP/1.0 (RFC 9112 6.1)")
    facts.chunked = transfer_encoding
    return facts
