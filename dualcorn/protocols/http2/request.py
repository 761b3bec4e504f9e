"""An HTTP/2 request head: pseudo-headers to a RequestHead, then the one shared policy.

What RFC 9113 makes a *malformed* request (8.1.1) the frame layer finds first
(:mod:`~dualcorn.protocols.http2.engine`): pseudo-header rules (8.3: exactly one ``:method``,
``:scheme`` and ``:path``, none after a regular field, no unknown ones, no ``:path`` on a plain
CONNECT), upper-case or connection-specific field names (8.2.2: Connection, Keep-Alive,
Proxy-Connection, Transfer-Encoding, Upgrade; TE other than "trailers"), CR, LF or NUL in a
value (8.2.1; CVE-2025-57804), a Host that differs from ``:authority`` (8.3.1), a
Content-Length that is not digits or not the length of the DATA.

Everything else is the HTTP/1.1 policy's, applied to the same :class:`RequestHead` value
(:func:`~dualcorn.protocols.policy.check_head`), so both protocols refuse the same requests
with the same status: the method token and the request-line limit (414) through
:func:`~dualcorn.protocols.policy.split_request_line`, the target form, Host grammar, two
Content-Length fields, Content-Type twice, underscores in names (``--header-map``), the field
count (431).  Added here, as the HTTP/1.1 tokenizers do for their protocol: field names are
tokens and values hold no other control byte (RFC 9110 5.1, 5.5), and the header list is
within ``--limit-request-head`` (431), counted as RFC 9113 6.5.2 counts it.

:decision: how a refused request is answered.  RFC 9113 8.1.1 makes a malformed request a
stream error of type PROTOCOL_ERROR and lets the server "send an HTTP response prior to closing
or resetting the stream".  dualcorn does: the client gets the status the HTTP/1.1 table gives
(400, 414, 431, 501...) on that stream, the stream ends, and if the client has not finished
sending, RST_STREAM follows (PROTOCOL_ERROR for a malformed request, NO_ERROR for one the
policy refused, RFC 9113 8.1: "stop sending").  Only the connection's own errors (a broken
HPACK block, a frame that breaks the stream state) end the connection with GOAWAY.
"""

from __future__ import annotations

import re

from dualcorn.errors import ProtocolError
from dualcorn.protocols.policy import check_head, split_request_line
from dualcorn.protocols.request_head import HeadFacts, RequestHead

__all__ = ["VERSION", "h2_request_head"]

VERSION = b"2"
# RFC 9110 5.1: a field name is a token (h2 checks only the characters RFC 9113 8.2.1 names).
_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-z]+\Z")
# RFC 9110 5.5: VCHAR, obs-text, SP, HTAB; h2 refuses only CR, LF and NUL (RFC 9113 8.2.1).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def h2_request_head(
    fields: list[tuple[bytes, bytes]],
    *,
    line_limit: int,
    list_limit: int,
    max_fields: int,
    underscores: str,
) -> tuple[RequestHead, HeadFacts]:
    """The checked head of a request whose pseudo-headers h2 validated; ProtocolError else."""
    method = path = authority = b""
    headers: list[tuple[bytes, bytes]] = []
    size = 0
    has_host = False
    for name, value in fields:
        size += len(name) + len(value) + 32
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue  # :scheme is the connection's (the scope's "scheme" is the server's)
        if _NAME.match(name) is None:
            raise ProtocolError(f"invalid header name {name[:60]!r} (RFC 9110 5.1)")
        if _BAD_VALUE.search(value) is not None:
            raise ProtocolError(f"control character in header {name[:60]!r} (RFC 9110 5.5)")
        if name == b"host":
            has_host = True
        headers.append((name, value))
    if size > list_limit:
        raise ProtocolError("the request's header list is larger than the limit", 431)
    # The policy reads the request line's grammar: one SP between parts, a token method, the
    # line within --limit-request-line (414).
    split_request_line(b"%s %s HTTP/1.1" % (method, path), line_limit)
    if path[:1] != b"/" and path != b"*":
        # RFC 9113 8.3.1: ":path" is origin-form or asterisk-form (OPTIONS), never absolute.
        raise ProtocolError(f"invalid :path {path[:100]!r} (RFC 9113 8.3.1)")
    if authority and not has_host:
        # RFC 9113 8.3.1: ":authority" replaces Host; apps read Host (h2 checked that a
        # Host sent beside it names the same authority).
        headers.insert(0, (b"host", authority))
    return check_head(
        RequestHead(method, path, VERSION, headers), max_fields=max_fields, underscores=underscores
    )
