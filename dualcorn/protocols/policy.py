"""The request policy: one set of rules, applied to what every parser produced.

Theory of operation: a parser only tokenizes a head into a
:class:`~dualcorn.protocols.request_head.RequestHead`.  Parsers disagree on the edges of the
grammar (h11 and llhttp answered differently on more than a dozen shapes), and a request two
parties read two ways is the root of request smuggling (RFC 9112 11.2).  So the request line is
split here, the head is checked here, and the body is framed by
:mod:`dualcorn.protocols.http1.framing`; a parser is trusted only for what every parser agrees on
(field-name and field-value grammar).  ``docs/request-policy.md`` lists where this policy is
stricter or more lenient than h11, llhttp and gunicorn.

Every failure raises :class:`~dualcorn.errors.ProtocolError` carrying its status.
"""

from __future__ import annotations

import re

from dualcorn.errors import ProtocolError
from dualcorn.protocols.request_head import HeadFacts, RequestHead

__all__ = [
    "FORBIDDEN_TRAILERS",
    "check_head",
    "check_trailers",
    "split_request_line",
]

# RFC 9110 5.6.2: token = 1*tchar.
_TOKEN_CHARS = rb"-!#$%&'*+.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[" + _TOKEN_CHARS + rb"]+\Z")
# Methods that need no regex on the hot path.
_COMMON_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE")
)
_VERSIONS = {b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
# RFC 9112 3.2 / RFC 3986: no request-target form contains whitespace, a control character or
# a fragment ("#" ends the URI the server may see).
_BAD_TARGET_BYTE = re.compile(rb"[\x00-\x20\x7f#]")
# RFC 9112 3.2.2 absolute-form, for the schemes an origin server answers (RFC 9110 4.2).
_ABSOLUTE = re.compile(rb"(?i:https?)://([^/?]*)(.*)\Z")
# RFC 9112 3.2 / RFC 3986 3.2.2-3: Host = uri-host [ ":" port ]; uri-host is an IP-literal
# or a reg-name (unreserved / pct-encoded / sub-delims), which covers IPv4 addresses.
_HOST = re.compile(
    # IP-literal: IPv6 (with an RFC 6874 zone, "%25eth0") or IPvFuture, then reg-name.
    rb"(?:\[[-0-9A-Za-z:.%~_!$&'()*+,;=]+\]|[-A-Za-z0-9._~%!$&'()*+,;=]*)(?::[0-9]*)?\Z"
)
_DIGITS = re.compile(rb"[0-9]+\Z")
# RFC 9110 5.5: field values are VCHAR, obs-text, SP and HTAB.
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9110 6.5.1: framing, routing, authentication, request modifiers and content format
# cannot be trailers: a recipient that merged one would let a trailer rewrite the request.
# (gunicorn refuses a subset: Host, Content-Length, Transfer-Encoding, Trailer, TE,
# Authorization.)
FORBIDDEN_TRAILERS = frozenset(
    (
        b"content-length", b"transfer-encoding", b"trailer", b"te", b"connection",
        b"keep-alive", b"upgrade", b"host", b"authorization", b"proxy-authorization",
        b"cookie", b"expect", b"range", b"if-match", b"if-none-match", b"if-modified-since",
        b"if-unmodified-since", b"if-range", b"max-forwards", b"content-type",
        b"content-encoding", b"content-range",
    )
)  # fmt: skip
# The fields the policy looks at; every other field costs one dict lookup.
_LENGTH, _HOST_FIELD, _CONNECTION, _TRANSFER_ENCODING, _EXPECT, _CONTENT_TYPE, _UPGRADE = range(7)
_KINDS = {
    b"content-length": _LENGTH,
    b"host": _HOST_FIELD,
    b"connection": _CONNECTION,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"expect": _EXPECT,
    b"content-type": _CONTENT_TYPE,
    b"upgrade": _UPGRADE,
}


def split_request_line(line: bytes, limit: int) -> tuple[bytes, bytes, bytes]:
    """Method, target and version (``b"1.1"``/``b"1.0"``) of a request line, checked.

    RFC 9112 3: request-line = method SP request-target SP HTTP-version, with exactly one SP
    between the parts (a lenient split would let two parsers see two different targets).
    """
    # gunicorn limit_request_line: the whole line, so a 5000-byte method is bounded too.
    if len(line) > limit:
        raise ProtocolError("the request line is longer than --limit-request-line", 414)
    method, _, rest = line.partition(b" ")
    target, _, version = rest.partition(b" ")
    if not target or not version:
        # Also HTTP/0.9's "GET /": RFC 9112 2.3 leaves no version-less request line.
        raise ProtocolError(f"malformed request line {line[:100]!r} (RFC 9112 3)")
    number = _VERSIONS.get(version)
    if number is None:
        if _VERSION.match(version) is None:
            raise ProtocolError(f"malformed HTTP version {version[:20]!r} (RFC 9112 2.3)")
        # RFC 9110 6.2 / 15.6.6: a major/minor version this server does not speak.
        raise ProtocolError(f"HTTP version {version!r} is not supported", 505)
    # RFC 9110 9.1: any token is a method; unknown ones are the app's to answer (405/501).
    if method not in _COMMON_METHODS and _TOKEN.match(method) is None:
        raise ProtocolError(f"malformed method {method[:50]!r} (RFC 9110 9.1)")
    return method, target, number


def check_head(
    head: RequestHead, *, max_fields: int, underscores: str = "drop"
) -> tuple[RequestHead, HeadFacts]:
    """Check a tokenized head; return it (adjusted for absolute-form) and its framing facts.

    ``underscores`` is gunicorn's ``header_map``: ``drop`` field names with "_" (nginx's
    default too), ``refuse`` the request, or keep them (``dangerous``).

    One pass over the fields, facts kept in locals until the end: this runs for every request,
    and a field the policy does not look at costs one dict lookup and one byte search.
    """
    method, target, version, headers = head
    if method == b"CONNECT":
        # RFC 9110 9.3.6: a 2xx to CONNECT means "tunnel established"; this server opens no
        # tunnels, so no app may answer one (501: the method is not supported here).
        raise ProtocolError("CONNECT is not supported", 501)
    # Origin-form without a byte to refuse, the common case, checked here without a call.
    if target[0] == 0x2F and _BAD_TARGET_BYTE.search(target) is None:
        authority = None
    else:
        authority = _check_target(method, target)
    keep_underscores = underscores == "dangerous"
    kinds = _KINDS.get
    content_length: int | None = None
    transfer_encoding = content_type = close = keep_alive = expect = upgrade = False
    hosts = 0
    kept: list[tuple[bytes, bytes]] | None = None
    for name, value in headers:
        kind = kinds(name)
        if kind is None:
            # 0x5F is "_": an int operand makes "in" one memchr (a bytes one costs 5x more).
            if 0x5F in name and not keep_underscores:
                # A bridge that builds CGI-style names would read "x_forwarded_for" as the
                # trusted "x-forwarded-for" a proxy sets (gunicorn 22 header_map, nginx
                # underscores_in_headers off).
                if underscores == "refuse":
                    raise ProtocolError(f"header name with an underscore: {name[:60]!r}")
                if kept is None:
                    # The first field dropped: an equal field before it would have been
                    # dropped first, so index() finds this one.
                    kept = headers[: headers.index((name, value))]
            elif kept is not None:
                kept.append((name, value))
            continue
        if kept is not None:
            kept.append((name, value))
        if kind == _HOST_FIELD:
            hosts += 1
            # RFC 9112 3.2: a server MUST respond 400 to a Host that is not uri-host[:port].
            if value not in _HOSTS_SEEN:
                if _HOST.match(value) is None:
                    raise ProtocolError(f"invalid Host {value[:100]!r} (RFC 9112 3.2)")
                if len(_HOSTS_SEEN) < _HOSTS_KEPT:
                    _HOSTS_SEEN.add(value)
        elif kind == _CONNECTION:
            tokens = _CONNECTION_TOKENS.get(value)
            if tokens is None:
                tokens = _connection_tokens(value)
            close = close or tokens[0]
            keep_alive = keep_alive or tokens[1]
        elif kind == _LENGTH:
            # RFC 9112 6.3 (5): several or list-valued Content-Length fields are an
            # unrecoverable framing error for a server; we do not pick one.
            if content_length is not None:
                raise ProtocolError("more than one Content-Length field")
            if _DIGITS.match(value) is None:
                raise ProtocolError(f"malformed Content-Length {value[:30]!r}")
            content_length = int(value)
        elif kind == _TRANSFER_ENCODING:
            # RFC 9112 6.1: only "chunked", exactly once, is a framing this server reads.
            if transfer_encoding:
                raise ProtocolError("more than one Transfer-Encoding field", 501)
            if value.lower() != b"chunked":
                raise ProtocolError(f"Transfer-Encoding {value[:30]!r} is not supported", 501)
            transfer_encoding = True
        elif kind == _EXPECT:
            # RFC 9110 10.1.1: "100-continue" is the only expectation defined.
            expect = value.lower() == b"100-continue"
        elif kind == _UPGRADE:
            upgrade = True
        else:  # Content-Type, RFC 9110 5.3 / 8.3: a singleton that two parties may read apart
            if content_type:
                raise ProtocolError("more than one Content-Type field")
            content_type = True
    if kept is not None:
        headers = kept
    if len(headers) > max_fields:
        raise ProtocolError("the request has more header fields than the limit", 431)
    # RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without a Host field or
    # with more than one.
    if hosts != 1 and (hosts or version == b"1.1"):
        raise ProtocolError("an HTTP/1.1 request needs exactly one Host field")
    if transfer_encoding:
        # RFC 9112 6.1: a request with both is a smuggling attempt; a server ought to reject
        # it.
        if content_length is not None:
            raise ProtocolError("both Content-Length and Transfer-Encoding are present")
        if version == b"1.0":
            raise ProtocolError("Transfer-Encoding is not defined for HTTP/1.0 (RFC 9112 6.1)")
    if content_length is None and not (transfer_encoding or close or keep_alive or expect
                                       or upgrade):  # fmt: skip
        facts = _NO_FACTS  # nothing to say: shared, as HeadFacts are read-only once returned
    else:
        facts = HeadFacts()
        facts.content_length = content_length
        facts.chunked = transfer_encoding
        facts.close = close
        facts.keep_alive_token = keep_alive
        facts.expect_continue = expect
        facts.upgrade = upgrade
    if authority is not None or kept is not None:
        head = _resolved(head, headers, authority)
    return head, facts


def _connection_tokens(value: bytes) -> tuple[bool, bool]:
    """(``close`` sent, ``keep-alive`` sent) in a Connection field value (RFC 9110 7.6.1)."""
    tokens = value.lower()
    return b"close" in tokens, b"keep-alive" in tokens


# The values clients send, read once: the common Connection field costs a dict lookup.
_CONNECTION_TOKENS = {
    value: _connection_tokens(value)
    for value in (
        b"keep-alive", b"Keep-Alive", b"close", b"Close", b"upgrade", b"Upgrade",
        b"keep-alive, Upgrade", b"Upgrade, Keep-Alive", b"keep-alive, upgrade",
        b"TE", b"te", b"TE, close",
    )
}  # fmt: skip
_NO_FACTS = HeadFacts()
# Host values already matched against _HOST: the same few arrive on every request.  Bounded
# (a client sending many distinct hosts only fills it once; the rest are matched each time).
_HOSTS_SEEN: set[bytes] = set()
_HOSTS_KEPT = 64


def _check_target(method: bytes, target: bytes) -> tuple[bytes, bytes] | None:
    """Check the request-target form for the method (RFC 9112 3.2).

    Returns (authority, origin-form target) for absolute-form, else None.
    """
    if _BAD_TARGET_BYTE.search(target) is not None:
        raise ProtocolError(f"invalid character in the request target {target[:100]!r}")
    if target[0] == 0x2F:  # "/": origin-form, the common case
        return None
    if target == b"*":
        # RFC 9112 3.2.4: asterisk-form is only used for a server-wide OPTIONS.
        if method != b"OPTIONS":
            raise ProtocolError("asterisk-form is only for OPTIONS (RFC 9112 3.2.4)")
        return None
    match = _ABSOLUTE.match(target)
    if match is None:
        # Neither origin-, absolute- nor asterisk-form; authority-form is only for CONNECT.
        raise ProtocolError(f"invalid request target {target[:100]!r} (RFC 9112 3.2)")
    authority, rest = match.groups()
    # RFC 9110 4.2.1: an http(s) URI has a non-empty host; 4.2.4: userinfo is an error.
    if not authority or b"@" in authority or _HOST.match(authority) is None:
        raise ProtocolError(f"invalid authority in the request target {target[:100]!r}")
    if not rest.startswith(b"/"):
        rest = b"/" + rest
    return authority, rest


def _resolved(
    head: RequestHead, headers: list[tuple[bytes, bytes]], authority: tuple[bytes, bytes] | None
) -> RequestHead:
    target = head.target
    if authority is not None:
        # RFC 9112 3.2.2: for absolute-form the server MUST ignore Host and use the target's
        # authority instead: the app sees it as Host, and the path as an origin-form target.
        host, target = authority
        headers = [(b"host", host)] + [item for item in headers if item[0] != b"host"]
    return RequestHead(head.method, target, head.version, headers)


def check_trailers(block: bytes) -> None:
    """Check a trailer section (CRLF-terminated lines, already free of bare CR/LF).

    Trailer fields never reach the app (RFC 9112 7.1.2 lets a recipient discard them), but a
    proxy ahead may merge them: they follow the field grammar, and none may be a field that
    RFC 9110 6.5.1 forbids in trailers.
    """
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.match(name) is None:
            raise ProtocolError(f"malformed trailer field {line[:60]!r} (RFC 9112 7.1.2)")
        if _BAD_VALUE_BYTE.search(value) is not None:
            raise ProtocolError(f"control character in trailer {name[:60]!r} (RFC 9110 5.5)")
        if name.lower() in FORBIDDEN_TRAILERS:
            raise ProtocolError(f"{name[:60]!r} is not allowed in a trailer (RFC 9110 6.5.1)")
