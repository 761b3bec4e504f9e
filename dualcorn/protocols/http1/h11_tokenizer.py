"""HTTP/1.1 connections whose header fields are tokenized by h11's grammar (pure Python).

The message loop, the request line, the policy and the body framing are shared
(:mod:`dualcorn.protocols.http1.messages`); h11 contributes the field grammar it has been hardened
with.  dualcorn writes responses itself (:mod:`dualcorn.protocols.http1.wire`), so h11's state
machine is not used: what it would add (framing, trailers, pipelining) is the part where
parsers disagreed, and is now framed once for every parser.
"""

from __future__ import annotations

import re

from h11._readers import header_field_re

from dualcorn.errors import ProtocolError
from dualcorn.protocols.http1.messages import HTTP1Connection

__all__ = ["H11Protocol"]

_field = header_field_re.fullmatch
# RFC 9110 5.5: a field value is VCHAR, obs-text, SP and HTAB.  h11's reader lets other
# control bytes through (llhttp refuses them): one search over the field section, not one
# per field.  CR and LF are checked with the raw head.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class H11Protocol(HTTP1Connection):
    def fields(self, head: bytes, version: bytes) -> list[tuple[bytes, bytes]]:
        lines = head.split(b"\r\n")
        # The request line is the policy's (its target check covers control bytes there).
        if _CONTROL.search(head, len(lines[0])) is not None:
            raise ProtocolError("control character in a header field (RFC 9110 5.5)")
        headers = []
        # The first line is the request line, the last two are the empty end of the head.
        for line in lines[1:-2]:
            match = _field(line)
            if match is None:
                raise ProtocolError(f"malformed header field {line[:60]!r} (RFC 9112 5)")
            name, value = match.group("field_name", "field_value")
            headers.append((name.lower(), value))
        return headers
