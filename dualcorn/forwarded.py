"""Parsers for the values of forwarding headers: pure functions, no I/O, no exceptions out.

Each function takes the bytes a client (or a proxy) sent and returns a small value, or ``None``
when the input is malformed; nothing here raises on any input (the property tests in
``tests/test_proxies.py`` feed them arbitrary bytes).  Deciding *whether* to believe a header
is :mod:`dualcorn.proxies`' job.

Grammar, quoted where it is enforced:

* RFC 7239 4: ``Forwarded = 1#forwarded-element``; ``forwarded-element = [ forwarded-pair ]
  *( ";" [ forwarded-pair ] )``; ``forwarded-pair = token "=" value``; ``value = token /
  quoted-string``.  A parameter occurs at most once per element.
* RFC 7239 6: ``node = nodename [ ":" node-port ]``; ``nodename = IPv4address / "["
  IPv6address "]" / "unknown" / obfnode``; ``obfnode = "_" 1*( ALPHA / DIGIT / "." / "_" /
  "-")``; ``node-port = port / obfport``.
* ``X-Forwarded-For`` has no RFC; proxies write bare IPv4 or IPv6 addresses, sometimes with a
  port (``1.2.3.4:5678``, ``[2001:db8::1]:80``), and HAProxy writes ``unknown``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import NamedTuple

__all__ = [
    "MAX_HOPS",
    "Node",
    "parse_forwarded",
    "parse_host",
    "parse_node",
    "parse_port",
    "parse_prefix",
    "split_list",
]

# Hops beyond this many make the whole header malformed: a real chain of proxies is a handful
# long, and walking a long attacker-made list per request would cost time for nothing.
MAX_HOPS = 32
# RFC 1035 2.3.4 caps a name at 255 octets; a port and brackets add a few.
_MAX_HOST = 262
_MAX_PREFIX = 1024

_TCHAR = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2 token
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._\-]+")  # RFC 7239 6.3 obfnode / obfport
_PORT = re.compile(r"[0-9]{1,5}")
# RFC 3986 3.2.2 reg-name (unreserved, pct-encoded, sub-delims) or an IP literal, then a port.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]+)(?::([0-9]{1,5}))?")
# An absolute path without query, fragment, whitespace or control characters.
_PREFIX = re.compile(r"/[\x21-\x7e]*")


class Node(NamedTuple):
    """One hop of ``X-Forwarded-For`` or one ``for=`` of ``Forwarded``.

    ``kind`` is ``"ip"`` (``host`` is a normalised address), ``"unknown"`` or ``"obfuscated"``
    (RFC 7239 6.2, 6.3: the proxy hides or does not know the address).
    """

    kind: str
    host: str
    port: int


def split_list(value: bytes) -> list[bytes] | None:
    """The members of a comma list (RFC 9110 5.6.1), or None if there are too many."""
    parts = value.split(b",")
    if len(parts) > MAX_HOPS:
        return None
    return [part.strip(b" \t") for part in parts]


def _ip(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return None
        if address.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1 seen by a v6 socket
            return str(address.ipv4_mapped)
    return str(address)


def _port(text: str) -> int | None:
    if not text:
        return 0
    if _OBFUSCATED.fullmatch(text):
        return 0  # RFC 7239 6.3 obfport: a port exists but is hidden
    if _PORT.fullmatch(text):
        port = int(text)
        return port if port <= 65535 else None
    return None


# Bounded memo: the same few client and proxy addresses repeat request after request, and
# parsing one with ipaddress costs microseconds; an attacker churning it only evicts entries.
@functools.lru_cache(maxsize=4096)
def parse_node(raw: bytes | str) -> Node | None:
    """A hop address: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``, ``unknown``, ``_x``."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not text or len(text) > 64:
        return None
    if text.lower() == "unknown":
        return Node("unknown", "unknown", 0)
    if _OBFUSCATED.fullmatch(text):
        return Node("obfuscated", text, 0)
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        host = _ip(inside) if bracket and ":" in inside else None
        if host is None or (rest and not rest.startswith(":")):
            return None
        port = _port(rest[1:]) if rest else 0
        return None if port is None else Node("ip", host, port)
    if text.count(":") == 1:  # IPv4 (or a name) with a port
        name, _, port_text = text.partition(":")
        if name.lower() == "unknown":
            name_node: Node | None = Node("unknown", "unknown", 0)
        elif _OBFUSCATED.fullmatch(name):
            name_node = Node("obfuscated", name, 0)
        else:
            address = _ip(name)
            name_node = None if address is None or ":" in address else Node("ip", address, 0)
        port = _port(port_text)
        if name_node is None or port is None:
            return None
        return name_node._replace(port=port)
    host = _ip(text)  # a bare IPv4 address, or a bare IPv6 one (X-Forwarded-For only)
    return None if host is None else Node("ip", host, 0)


def parse_host(raw: bytes | str) -> tuple[str, int | None] | None:
    """A ``Host``-like value (RFC 9110 7.2): the name (brackets kept for IPv6) and the port."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if not text or len(text) > _MAX_HOST:
        return None
    match = _HOST.fullmatch(text)
    if match is None:
        return None
    name, port_text = match.group(1), match.group(2)
    if name.startswith("[") and _ip(name[1:-1]) is None:
        return None
    if port_text is None:
        return name, None
    port = int(port_text)
    return (name, port) if 0 < port <= 65535 else None


def parse_port(raw: bytes) -> int | None:
    text = raw.decode("latin-1").strip()
    if not _PORT.fullmatch(text):
        return None
    port = int(text)
    return port if 0 < port <= 65535 else None


def parse_prefix(raw: bytes) -> str | None:
    """An ``X-Forwarded-Prefix`` path: absolute, printable, no query; "/" alone means none."""
    text = raw.decode("latin-1").strip()
    if len(text) > _MAX_PREFIX or not _PREFIX.fullmatch(text) or "?" in text or "#" in text:
        return None
    if "/./" in text + "/" or "/../" in text + "/" or "//" in text:
        return None  # a prefix that is not a plain mount point is refused, not normalised
    return text.rstrip("/")


def _quoted(value: bytes, start: int) -> tuple[bytes, int] | None:
    """RFC 9110 5.6.4 quoted-string starting at ``value[start] == '"'``: content, end index."""
    out = bytearray()
    i = start + 1
    length = len(value)
    while i < length:
        c = value[i]
        if c == 0x22:  # closing quote
            return bytes(out), i + 1
        if c == 0x5C:  # quoted-pair
            if i + 1 >= length:
                return None
            out.append(value[i + 1])
            i += 2
            continue
        if (c < 0x20 and c != 0x09) or c == 0x7F:
            return None
        out.append(c)
        i += 1
    return None


def parse_forwarded(value: bytes) -> list[dict[str, str]] | None:
    """RFC 7239 ``Forwarded``: one dict of lower-cased parameters per element, or None.

    Any grammar error, a repeated parameter in one element, or more than :data:`MAX_HOPS`
    elements makes the whole value malformed: half of a chain cannot be trusted.
    """
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    i, length = 0, len(value)
    while True:
        while i < length and value[i] in b" \t":
            i += 1
        if i < length and value[i] not in b",;":
            match = _TCHAR.match(value, i)
            if match is None or match.end() >= length or value[match.end()] != 0x3D:  # "="
                return None
            name = match.group().decode("ascii").lower()
            i = match.end() + 1
            if i < length and value[i] == 0x22:
                quoted = _quoted(value, i)
                if quoted is None:
                    return None
                raw, i = quoted
            else:
                token = _TCHAR.match(value, i)
                if token is None:
                    return None
                raw, i = token.group(), token.end()
            if name in current:  # RFC 7239 4: "MUST NOT occur more than once"
                return None
            current[name] = raw.decode("latin-1")
            while i < length and value[i] in b" \t":
                i += 1
        if i >= length:
            elements.append(current)
            break
        separator = value[i]
        i += 1
        if separator == 0x2C:  # ","
            elements.append(current)
            current = {}
            if len(elements) >= MAX_HOPS:
                return None
        elif separator != 0x3B:  # not ";" either
            return None
    return elements
