"""An HTTP/2 request head: pseudo-headers to a RequestHead, then the one shared policy.

What RFC 9113 makes a *malformed* request (8.1.1) is checked here in one pass over the
decoded fields, and refused with :class:`Malformed`: pseudo-header rules (8.3: only
``:method``, ``:scheme``, ``:authority``, ``:path`` and RFC 8441's ``:protocol``, each at
most once, none after a regular field, ``:method``, ``:scheme`` and a non-empty ``:path``
unless a plain CONNECT), field names
that are not lower-case tokens (8.2.1, 8.2: upper case), connection-specific fields (8.2.2:
Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade; TE other than
"trailers"), CR, LF or NUL in a value or whitespace around it (8.2.1; CVE-2025-57804), a Host
that differs from ``:authority``, two Hosts, or neither (8.3.1); ``:protocol`` on anything but
a CONNECT, or an extended CONNECT without ``:scheme``, ``:path`` and ``:authority`` (RFC 8441
4).  The frame layer adds a Content-Length that is not digits or not the length of the DATA.
(The h2 library can make these checks too; its pure-Python loop over every byte of every
field cost a quarter of its time per request, so its inbound validation is off and the rules
live here.)

A plain CONNECT (RFC 9113 8.5) asks for a tunnel, which this server never opens: 501, as over
HTTP/1.1.  An extended CONNECT (RFC 8441 4, ``:protocol``) is checked as the GET of an RFC 6455
handshake and comes back with method CONNECT, for the connection to serve as a WebSocket
(:mod:`~dualcorn.protocols.http2.websocket`) or refuse.

Everything else is the HTTP/1.1 policy's, applied to the same :class:`RequestHead` value
(:func:`~dualcorn.protocols.policy.check_head`), so both protocols refuse the same requests
with the same status: the method token and the request-line limit (414) through
:func:`~dualcorn.protocols.policy.split_request_line`, the target form, Host grammar, two
Content-Length fields, Content-Type twice, underscores in names (``--header-map``), the field
count (431).  Added here, as the HTTP/1.1 tokenizers do for their protocol: values hold no
other control byte (RFC 9110 5.5), and the header list is within ``--limit-request-head``
(431), counted as RFC 9113 6.5.2 counts it.  Cookie fields are joined into one (8.2.3), as
apps read one.

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

__all__ = ["VERSION", "Malformed", "checked_request_head", "h2_request_head", "malformed_trailers"]

VERSION = b"2"
# RFC 8441 4 adds ":protocol" (the connection refuses it unless it advertised RFC 8441).
_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# RFC 9113 8.2.2: fields of an HTTP/1.1 connection; TE may only say "trailers".
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
# RFC 9110 5.1 and RFC 9113 8.2.1: a field name is a token, in lower case.
_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-z]+\Z")
# RFC 9113 8.2.1: no NUL, CR or LF, and no whitespace at either end.
_MALFORMED_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
# RFC 9110 5.5: VCHAR, obs-text, SP, HTAB (the other control bytes: the policy's 400).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


_WS = b" \t"
# Field names already checked, so the common ones cost a set lookup; bounded, as names are
# the client's to choose.
_GOOD_NAMES: set[bytes] = set()
_GOOD_NAMES_SIZE = 512


class Malformed(ProtocolError):
    """RFC 9113 8.1.1: a malformed request (a stream error of type PROTOCOL_ERROR)."""


def h2_request_head(
    fields: list[tuple[bytes, bytes]],
    *,
    line_limit: int,
    list_limit: int,
    max_fields: int,
    underscores: str,
    ended: bool = False,
) -> tuple[RequestHead, HeadFacts]:
    """The checked head of a request; :class:`Malformed` or ProtocolError (a status) else."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    size = 0
    host: bytes | None = None
    cookies = 0
    for name, value in fields:
        size += len(name) + len(value) + 32
        if value and (_BAD_VALUE.search(value) is not None or value[0] in _WS or value[-1] in _WS):
            _bad_value(name, value)
        if name[:1] == b":":
            if headers:
                raise Malformed(f"pseudo-header {name[:60]!r} after a field (RFC 9113 8.3)")
            if name not in _PSEUDO or name in pseudo:
                raise Malformed(f"unknown or repeated pseudo-header {name[:60]!r} (8.3)")
            pseudo[name] = value
            continue
        if name not in _GOOD_NAMES:
            _check_name(name)
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value.lower() != b"trailers"):
            raise Malformed(f"connection-specific field {name!r} (RFC 9113 8.2.2)")
        if name == b"host":
            if host is not None:
                raise Malformed("two Host fields (RFC 9113 8.3.1)")
            host = value
        elif name == b"cookie":
            cookies += 1
        headers.append((name, value))
    method = pseudo.get(b":method", b"")
    path = pseudo.get(b":path", b"")
    authority = pseudo.get(b":authority")
    if not method:
        raise Malformed("no :method (RFC 9113 8.3.1)")
    protocol = pseudo.get(b":protocol")
    connect = method == b"CONNECT"
    if connect and protocol is None:
        if b":scheme" in pseudo or b":path" in pseudo or authority is None:
            raise Malformed("CONNECT has :authority only (RFC 9113 8.5)")
    elif not path or not pseudo.get(b":scheme"):
        # An empty :scheme is no "valid value" either (8.3.1; RFC 3986 3.1: one letter at
        # least); zttp refuses it too.
        raise Malformed("no :scheme, or an empty :path or :scheme (RFC 9113 8.3.1)")
    elif protocol is not None and (not connect or authority is None):
        raise Malformed(":protocol is for an extended CONNECT with :authority (RFC 8441 4)")
    if authority is None and host is None:
        raise Malformed("neither :authority nor Host (RFC 9113 8.3.1)")
    if authority is not None and host is not None and host != authority:
        raise Malformed("Host differs from :authority (RFC 9113 8.3.1)")
    if size > list_limit:
        raise ProtocolError("the request's header list is larger than the limit", 431)
    extended = connect and protocol is not None
    if extended:
        # RFC 8441 4: an extended CONNECT is checked as the GET of an RFC 6455 handshake;
        # the connection decides whether it serves its :protocol.  (A plain CONNECT is the
        # policy's 501, as over HTTP/1.1: no tunnels here.)
        method = b"GET"
    # The policy reads the request line's grammar: one SP between parts, a token method, the
    # line within --limit-request-line (414).
    split_request_line(b"%s %s HTTP/1.1" % (method, path or b"/"), line_limit)
    if method != b"CONNECT" and path[:1] != b"/" and path != b"*":
        # RFC 9113 8.3.1: ":path" is origin-form or asterisk-form (OPTIONS), never absolute.
        raise ProtocolError(f"invalid :path {path[:100]!r} (RFC 9113 8.3.1)")
    if host is None and authority is not None:
        # RFC 9113 8.3.1: ":authority" replaces Host; apps read Host.
        headers.insert(0, (b"host", authority))
    if cookies > 1:
        headers = _join_cookies(headers)
    head, facts = check_head(
        RequestHead(method, path, VERSION, headers), max_fields=max_fields, underscores=underscores
    )
    if ended and facts.content_length:
        # RFC 9113 8.1.1: Content-Length must equal the DATA; a HEADERS frame that ends the
        # stream sent none.  Served, an app proxying to HTTP/1.1 would forward a length the
        # body does not fill, and the backend would read the next request as its body (H2.CL
        # request smuggling).
        raise Malformed("Content-Length on a request with no DATA (RFC 9113 8.1.1)")
    if extended:
        head = head._replace(method=b"CONNECT")
    return head, facts


# RFC 9113 6.5.2 counts the pseudo-headers a checked head no longer carries: :method and
# :path (added with their values), :scheme (counted as "https", the longer), and :authority,
# which zttp turned into the Host field (counted with the fields: the name's difference here).
_PSEUDO_SIZE = (
    len(b":method") + len(b":path") + len(b":scheme") + len(b"https") + 3 * 32
    + len(b":authority") - len(b"host")
)  # fmt: skip


def checked_request_head(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    line_limit: int,
    list_limit: int,
    max_fields: int,
    underscores: str,
    ended: bool = False,
) -> tuple[RequestHead, HeadFacts]:
    """:func:`h2_request_head` for a head whose frame layer made RFC 9113's own checks.

    The zttp engine hands over :mod:`~dualcorn.protocols.http2.events`' ``CheckedRequest``:
    zttp refused every pseudo-header fault (8.3), a name that is not a lower-case token, a
    value with a control byte (HTAB aside) or edge whitespace (8.2.1, RFC 9110 5.5), the
    connection-specific fields and a TE other than "trailers" (8.2.2), a Host that differs
    from ``:authority`` (8.3.1), a Content-Length that is not digits (8.1.1) and a method
    that is not a token, and made ``:authority`` the Host field (``docs/http2.md`` lists who
    makes each check; the malformed-request tests run on both engines).  What is left is
    the server's: a Host at all, the header-list and request-line limits, the ``:path`` form,
    cookies joined, then the shared policy, as :func:`h2_request_head` does.
    """
    size = _PSEUDO_SIZE + len(method) + len(target) + 32 * len(headers)
    hosts = cookies = 0
    for name, value in headers:
        size += len(name) + len(value)
        if name == b"host":
            hosts += 1
        elif name == b"cookie":
            cookies += 1
    if hosts != 1:
        raise Malformed("no :authority or Host, or two Hosts (RFC 9113 8.3.1)")
    if size > list_limit:
        raise ProtocolError("the request's header list is larger than the limit", 431)
    # split_request_line's limit: the line "METHOD :path HTTP/1.1" (the grammar is zttp's).
    if len(method) + len(target) + 10 > line_limit:
        raise ProtocolError("the request line is longer than --limit-request-line", 414)
    if target[:1] != b"/" and target != b"*":
        # RFC 9113 8.3.1: ":path" is origin-form or asterisk-form (OPTIONS), never absolute.
        raise ProtocolError(f"invalid :path {target[:100]!r} (RFC 9113 8.3.1)")
    if cookies > 1:
        headers = _join_cookies(headers)
    head, facts = check_head(
        RequestHead(method, target, VERSION, headers),
        max_fields=max_fields,
        underscores=underscores,
    )
    if ended and facts.content_length:
        raise Malformed("Content-Length on a request with no DATA (RFC 9113 8.1.1)")
    return head, facts


def malformed_trailers(fields: list[tuple[bytes, bytes]]) -> str | None:
    """Why trailers are malformed (RFC 9113 8.1: no pseudo-header, 8.2 the field rules),
    or None.  The server discards request trailers (RFC 9110 6.5.1), but a malformed
    request is a stream error whatever part of it is malformed (8.1.1)."""
    for name, value in fields:
        if name[:1] == b":":
            return f"pseudo-header {name[:60]!r} in trailers (RFC 9113 8.1)"
        if _NAME.match(name) is None or name in _CONNECTION_SPECIFIC:
            return f"invalid or connection-specific trailer {name[:60]!r} (RFC 9113 8.2)"
        if value and _MALFORMED_VALUE.search(value) is not None:
            return f"NUL, CR, LF or edge whitespace in trailer {name[:60]!r} (RFC 9113 8.2.1)"
    return None


def _check_name(name: bytes) -> None:
    if _NAME.match(name) is None:
        raise Malformed(f"invalid header name {name[:60]!r} (RFC 9113 8.2.1)")
    if len(_GOOD_NAMES) < _GOOD_NAMES_SIZE:
        _GOOD_NAMES.add(name)


def _bad_value(name: bytes, value: bytes) -> None:
    if _MALFORMED_VALUE.search(value) is not None:
        raise Malformed(f"NUL, CR, LF or edge whitespace in {name[:60]!r} (RFC 9113 8.2.1)")
    raise ProtocolError(f"control character in header {name[:60]!r} (RFC 9110 5.5)")


def _join_cookies(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """RFC 9113 8.2.3: cookie fields sent apart are one field joined with "; "."""
    joined = b"; ".join(value for name, value in headers if name == b"cookie")
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name != b"cookie":
            out.append((name, value))
        elif joined:
            out.append((b"cookie", joined))
            joined = b""
    return out
