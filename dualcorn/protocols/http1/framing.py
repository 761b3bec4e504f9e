"""Where each HTTP/1.1 message starts and ends, read from the raw bytes, for every parser.

Theory of operation: the connection finds each request head (up to the first CRLF CRLF), checks
its raw bytes with :func:`check_raw_head`, has a parser tokenize it, and then reads the body
itself: a Content-Length countdown, or RFC 9112 7.1 chunked coding through
:class:`ChunkedDecoder`.  Because the boundaries are dualcorn's, every parser agrees on where
the next request starts, trailers and chunk lines obey one grammar (the class of h11's
CVE-2025-43859 and the bare-LF last-chunk smuggling cannot differ between parsers), and the
work per chunk and the bytes held per trailer section are bounded.
"""

from __future__ import annotations

import re

from dualcorn.errors import ProtocolError
from dualcorn.protocols.policy import check_trailers

__all__ = ["MAX_CHUNK_LINE", "ChunkedDecoder", "check_partial_head", "check_raw_head"]

# A chunk-size line with its extensions.  llhttp and h11 set no bound of their own beyond the
# head limit; extensions are never used by this server, so 4 KiB is generous.
MAX_CHUNK_LINE = 4096
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# RFC 9112 7.1 / 7.1.1: chunk-size *chunk-ext, chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS
# value ] ).  At most 16 hex digits (a 64-bit size); no whitespace after the size unless a
# ";" follows; no CR, LF or NUL anywhere (h11's CVE-2025-43859 class).
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*"
)
_SIZE, _DATA, _DATA_END, _TRAILERS, _DONE = range(5)


def check_raw_head(head: bytes, field_limit: int) -> None:
    """Checks on a complete raw head (ending in CRLF CRLF), each a C-speed bytes operation."""
    crlf = head.count(b"\r\n")
    # RFC 9112 2.2: a bare CR or LF lets two parsers disagree on where a field ends.
    if head.count(b"\n") != crlf or head.count(b"\r") != crlf:
        raise ProtocolError("bare CR or LF in the request head (RFC 9112 2.2)")
    # RFC 9112 5.2: obs-fold is rejected with 400 rather than unfolded.
    if b"\r\n " in head or b"\r\n\t" in head:
        raise ProtocolError("obsolete line folding in the request head (RFC 9112 5.2)")
    if len(head) > field_limit:
        # gunicorn and nginx limit each field line (large_client_header_buffers); only a head
        # longer than the limit can hold such a line.
        first = head.index(b"\r\n")
        if max(map(len, head[first + 2 :].split(b"\r\n"))) > field_limit:
            raise ProtocolError("a header field is longer than --limit-request-field-size", 431)


def check_partial_head(data: bytes | bytearray, start: int, end: int) -> None:
    """Refuse a bare LF or CR in the new bytes of a head still arriving (RFC 9112 2.2).

    Without it a head ending in a bare "\\n\\n" would wait for the timeout instead of a 400.
    """
    lf = data.find(b"\n", start, end)
    while lf != -1:
        if lf == 0 or data[lf - 1] != 0x0D:
            raise ProtocolError("bare LF in the request head (RFC 9112 2.2)")
        lf = data.find(b"\n", lf + 1, end)
    cr = data.find(b"\r", start, end - 1)
    while cr != -1:
        if data[cr + 1] != 0x0A:
            raise ProtocolError("bare CR in the request head (RFC 9112 2.2)")
        cr = data.find(b"\r", cr + 1, end - 1)


class ChunkedDecoder:
    """RFC 9112 7.1 chunked coding: body bytes out, framing checked, trailers bounded."""

    __slots__ = ("_left", "_state", "_trailer_limit")

    def __init__(self, trailer_limit: int) -> None:
        self._state = _SIZE
        self._left = 0
        self._trailer_limit = trailer_limit

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes | bytearray, pos: int, out: list[bytes]) -> int:
        """Decode from ``data[pos:]``, appending body bytes to ``out``; return the new position.

        Stops at the end of the message (``done``) or where more bytes are needed; the caller
        keeps the rest.  Raises ProtocolError for a malformed chunk line or trailer section
        (400) or a trailer section larger than the head limit (431).
        """
        end = len(data)
        state = self._state
        while pos < end:
            if state == _DATA:
                take = min(self._left, end - pos)
                out.append(bytes(data[pos : pos + take]))
                pos += take
                self._left -= take
                if self._left:
                    break
                state = _DATA_END
            elif state == _SIZE:
                nl = data.find(b"\r\n", pos, pos + MAX_CHUNK_LINE + 2)
                if nl < 0:
                    if end - pos > MAX_CHUNK_LINE or data.find(b"\n", pos) >= 0:
                        raise ProtocolError("malformed or too long chunk-size line (RFC 9112 7.1)")
                    break
                match = _CHUNK_LINE.fullmatch(data, pos, nl)
                if match is None:
                    raise ProtocolError(
                        f"malformed chunk-size line {bytes(data[pos:nl][:40])!r} (RFC 9112 7.1)"
                    )
                self._left = int(match.group(1), 16)
                pos = nl + 2
                state = _DATA if self._left else _TRAILERS
            elif state == _DATA_END:
                if end - pos < 2:
                    if data[pos] != 0x0D:
                        raise ProtocolError("chunk data not followed by CRLF (RFC 9112 7.1)")
                    break
                if data[pos] != 0x0D or data[pos + 1] != 0x0A:
                    raise ProtocolError("chunk data not followed by CRLF (RFC 9112 7.1)")
                pos += 2
                state = _SIZE
            else:  # _TRAILERS
                pos = self._trailers(data, pos, end)
                if pos < 0:
                    pos = -pos - 1
                    break
                state = _DONE
                break
        self._state = state
        return pos

    def _trailers(self, data: bytes | bytearray, pos: int, end: int) -> int:
        """The trailer section; its end position, or -(pos + 1) if more bytes are needed."""
        if data[pos] == 0x0D and end - pos >= 2 and data[pos + 1] == 0x0A:
            return pos + 2  # no trailer fields: the common case
        stop = data.find(b"\r\n\r\n", pos)
        if stop < 0:
            size = end - pos
            # Counted against the head limit: llhttp held a 200 MiB trailer value in memory.
            if size > self._trailer_limit:
                raise ProtocolError("the trailer section is larger than the head limit", 431)
            check_partial_head(data, pos, end)
            return -(pos + 1)
        block = bytes(data[pos : stop + 2])
        if len(block) + 2 > self._trailer_limit:
            raise ProtocolError("the trailer section is larger than the head limit", 431)
        if block.count(b"\n") != block.count(b"\r\n") or block.count(b"\r") != block.count(b"\n"):
            raise ProtocolError("bare CR or LF in the trailer section (RFC 9112 2.2)")
        check_trailers(block)
        return stop + 4
