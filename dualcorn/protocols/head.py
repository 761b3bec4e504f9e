"""Checks on a request head that the HTTP parsers leave out.

Theory of operation: a parser (h11 or llhttp) turns bytes into a request event.  Both are more
lenient than a server that sits behind proxies can afford: a request that two parties can read
two ways is the root of request smuggling (RFC 9112 11.2).  So dualcorn adds two layers:

1. :class:`HeadScanner` watches the raw bytes of each request head as they arrive, whole or one
   byte at a time, and enforces what the parsed event can no longer show: CRLF line endings,
   no obsolete line folding, a single plain Content-Length, and the size of the whole head.
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
    """Watches the raw bytes of one request head, whole or split across any number of reads.

    The common case, a head that arrives in one read, is checked in place; otherwise the head
    is gathered (never past the size limit) and checked once complete.
    """

    __slots__ = ("_buf", "_check", "_limit", "done")

    def __init__(self, limit: int, *, strict: bool = True) -> None:
        """``strict=False`` checks only the size: for a parser (llhttp) that refuses bare CR
        and LF, obs-fold and repeated Content-Length itself, as the malformed-request table
        in the tests proves for both parsers."""
        self._limit = limit
        self._check = _check_head if strict else _check_size
        self._buf = bytearray()
        self.done = False

    def reset(self) -> None:
        self._buf.clear()
        self.done = False

    def feed(self, data: bytes) -> None:
        """Scan the next bytes; sets ``done`` once the head is complete and sound.

        Raises ProtocolError: 400 for bare CR or LF, obsolete line folding or a repeated or
        list-valued Content-Length; 431 for a head larger than the limit.
        """
        buf = self._buf
        if not buf:
            # RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF) received
            # before the request-line.
            if data[:1] in (b"\r", b"\n"):
                data = data.lstrip(b"\r\n")
                if not data:
                    return
            end = data.find(_END_OF_HEAD)
            if end >= 0:
                self._check(data[: end + 4], self._limit)
                self.done = True
                return
            start = 0
        else:
            start = len(buf) - 3
        buf += data
        end = buf.find(_END_OF_HEAD, max(start, 0))
        if end >= 0:
            head = bytes(buf[: end + 4])
            buf.clear()
            self._check(head, self._limit)
            self.done = True
            return
        if len(buf) > self._limit:
            raise ProtocolError("the request head is larger than the limit", 431)
        # A bare LF must be refused before a lenient parser accepts "\n\n" as the end.
        lf = buf.find(b"\n", max(start, 0))
        while lf != -1:
            if lf == 0 or buf[lf - 1] != 0x0D:
                raise ProtocolError("bare LF in the request head (RFC 9112 2.2)")
            lf = buf.find(b"\n", lf + 1)


def _check_size(head: bytes, limit: int) -> None:
    if len(head) > limit:
        raise ProtocolError("the request head is larger than the limit", 431)


def _check_head(head: bytes, limit: int) -> None:
    """Checks on a complete raw head, each one pass of C-speed bytes operations."""
    if len(head) > limit:
        raise ProtocolError("the request head is larger than the limit", 431)
    crlf = head.count(b"\r\n")
    # RFC 9112 2.2: a bare CR or LF lets two parsers disagree on where a field ends.
    if head.count(b"\n") != crlf or head.count(b"\r") != crlf:
        raise ProtocolError("bare CR or LF in the request head (RFC 9112 2.2)")
    # RFC 9112 5.2: obs-fold is rejected with 400 rather than unfolded.
    if b"\r\n " in head or b"\r\n\t" in head:
        raise ProtocolError("obsolete line folding in the request head (RFC 9112 5.2)")
    lowered = head.lower()
    lengths = lowered.count(b"\ncontent-length:")
    if lengths:
        # RFC 9112 6.3 (5): parsers quietly merge "5, 5" or a repeated field into one value;
        # a server behind a proxy must not guess which length the proxy used.
        at = lowered.index(b"\ncontent-length:")
        line = lowered[at : lowered.index(b"\r\n", at + 1)]
        if lengths > 1 or b"," in line:
            raise ProtocolError("repeated or list-valued Content-Length")


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
    check_values: bool = True,
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
    count = hosts = 0
    for name, value in headers:
        count += 1
        if check_values and _CONTROL.search(value) is not None:
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
        elif name == b"host":
            hosts += 1
        elif name == b"expect":
            # RFC 9110 10.1.1: "100-continue" is the only expectation defined.
            facts.expect_continue = value.lower() == b"100-continue"
    if count > max_fields:
        raise ProtocolError("the request has more header fields than the limit", 431)
    # RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without a Host field or
    # with more than one.
    if hosts != 1 and (hosts or http_version == b"1.1"):
        raise ProtocolError("an HTTP/1.1 request needs exactly one Host field")
    # RFC 9112 6.1: a request with both is a smuggling attempt; a server ought to reject it.
    if length_seen and transfer_encoding:
        raise ProtocolError("both Content-Length and Transfer-Encoding are present")
    if transfer_encoding and http_version == b"1.0":
        raise ProtocolError("Transfer-Encoding is not defined for HTTP/1.0 (RFC 9112 6.1)")
    facts.chunked = transfer_encoding
    return facts
