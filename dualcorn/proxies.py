"""Trusted proxies: who may tell the server the client's address, scheme and host.

Theory of operation
-------------------
``--forwarded-allow-ips`` is parsed once into :class:`TrustedProxies` (addresses, CIDR
networks, ``*`` for everyone, ``unix`` for peers on a Unix socket, which have no address).
Each connection asks it once whether its peer is trusted; only then does the connection keep a
:class:`ProxyHeaders` and call :meth:`ProxyHeaders.rewrite` on every request scope.  For any
other peer the forwarding headers are never read: the scope keeps the socket's addresses and a
WSGI app gets ``REMOTE_ADDR`` and ``wsgi.url_scheme`` from the socket, whatever it sent.

:func:`resolve` is the pure part: from the request headers and the connection's scheme it
computes a :class:`Forwarding` (the client, scheme, Host, server port and root path a proxy
vouched for), or ``None`` when no forwarding header is present, which costs one pass over the
header names.  Malformed values are dropped one field at a time and logged at debug; nothing
here raises (``tests/test_proxies.py`` proves it with hypothesis).

Rules
-----
* **The client** is the rightmost ``X-Forwarded-For`` hop that is not itself a trusted proxy,
  walking right to left: each proxy appends the address it received the request from, so the
  entries left of the first untrusted one were written by that untrusted party and a client
  cannot spoof its address by prepending one.  When every hop is trusted, the leftmost wins
  (uvicorn does the same).  ``unknown`` or obfuscated hops (RFC 7239 6.2, 6.3) end the walk
  but leave the client as the socket peer: ASGI's ``client`` holds an IP address.
* **Forwarded versus X-Forwarded-\\***: when any of ``X-Forwarded-For/-Proto/-Host/-Port`` is
  present, ``Forwarded`` is ignored as a whole.  nginx, HAProxy (``option forwardfor``), AWS
  ALB, Traefik, Caddy and Envoy set the X-Forwarded-* family and pass a client's
  ``Forwarded`` through untouched, so preferring ``Forwarded`` would let any client behind
  them spoof its address; mixing the two per field would let a client fill the fields its
  proxy does not set.  A proxy that sends only ``Forwarded`` (HAProxy ``option forwarded``)
  is used as RFC 7239 says: the element whose ``for`` is the client gives ``proto`` and
  ``host`` too.
* **Lists in -Proto/-Host/-Port**: a value with as many members as ``X-Forwarded-For`` is read
  at the client's index; otherwise its rightmost member (set by the nearest proxy) is used.
  Repeated header lines with different values are ambiguous and ignored.
* **Scheme**: ``http``/``ws`` and ``https``/``wss`` map to ``http``/``https`` in an HTTP scope
  and ``ws``/``wss`` in a WebSocket scope.
* **Host**: a forwarded host (and/or port) replaces the request's ``Host`` header, and the
  scope's ``server`` becomes that name and port (the scheme's default port when none is
  given), so ``HTTP_HOST``, ``SERVER_NAME`` and ``SERVER_PORT`` follow for WSGI.  A default
  port is left out of the Host value.
* **X-Forwarded-Prefix** (only with ``--forwarded-prefix``) replaces ``root_path``; ``path``
  keeps the request's own path below it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from dualcorn.forwarded import (
    Node,
    parse_forwarded,
    parse_host,
    parse_node,
    parse_port,
    parse_prefix,
    split_list,
)

if TYPE_CHECKING:
    from dualcorn.config import Config

__all__ = ["UNIX", "Forwarding", "ProxyHeaders", "TrustedProxies", "proxy_headers", "resolve"]

logger = logging.getLogger("dualcorn.error")

UNIX = "unix"  # the --forwarded-allow-ips word for peers on a Unix domain socket
_NAMES = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
     b"x-forwarded-port", b"x-forwarded-prefix"}
)  # fmt: skip
_SECURE = {"https": True, "wss": True, "http": False, "ws": False}
_DEFAULT_PORT = {False: 80, True: 443}

_SEEN_LIMIT = 4096
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The parsed ``--forwarded-allow-ips``: which peers may speak for the client."""

    __slots__ = ("_seen", "addresses", "everyone", "networks", "unix")

    def __init__(self, spec: str | Iterable[str]) -> None:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        self.everyone = False
        self.unix = False
        self.addresses: set[str] = set()
        self.networks: list[Network] = []
        self._seen: dict[str, bool] = {}
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if item == "*":
                self.everyone = True
            elif item.lower() == UNIX or item.startswith("/") or item.lower().startswith("unix:"):
                # A socket path is uvicorn's documented literal for Unix socket peers.
                self.unix = True
            elif "/" in item:
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP network such as 10.0.0.0/8") from None
            else:
                node = parse_node(item.strip("[]"))
                if node is None or node.kind != "ip" or node.port:
                    raise ValueError(f"{item!r} is not an IP address, a network, '*' or '{UNIX}'")
                self.addresses.add(node.host)

    def trusts(self, host: str | None) -> bool:
        """Whether a peer is trusted; ``None`` is a peer without an address (a Unix socket)."""
        if self.everyone:
            return True
        if not host:
            return self.unix
        if host in self.addresses:
            return True
        known = self._seen.get(host)
        if known is None:
            known = self._check(host)
            if len(self._seen) >= _SEEN_LIMIT:
                self._seen.clear()  # bounded: churning addresses only costs re-parsing
            self._seen[host] = known
        return known

    def _check(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        if str(address) in self.addresses:
            return True
        return any(address in network for network in self.networks)


class Forwarding(NamedTuple):
    """What a trusted proxy changed; ``None`` fields are left as the connection set them."""

    client: tuple[str, int] | None = None
    scheme: str | None = None
    host: str | None = None  # the new Host header value
    server: tuple[str, int] | None = None
    root_path: str | None = None


class ProxyHeaders:
    """Forwarding-header handling for connections from trusted peers (one per server)."""

    __slots__ = ("prefix", "trusted")

    def __init__(self, trusted: TrustedProxies, *, prefix: bool = False) -> None:
        self.trusted = trusted
        self.prefix = prefix

    def rewrite(self, scope: dict[str, Any]) -> None:
        """Apply the forwarding headers of one request to its scope (peer already trusted)."""
        for name, _ in scope["headers"]:
            if name in _NAMES:
                break
        else:
            return  # the common case, one pass over the names: nothing was forwarded
        try:
            forwarding = resolve(self, scope["headers"], scope["scheme"])
        except Exception:  # a bug here must not cost the request; the tests keep it unreached
            logger.debug("ignoring forwarding headers that could not be read", exc_info=True)
            return
        if forwarding is not None:
            apply(scope, forwarding)


def proxy_headers(config: Config) -> ProxyHeaders | None:
    """The server's header policy, or None with ``--no-proxy-headers`` (parsed once)."""
    if not config.proxy_headers:
        return None
    return ProxyHeaders(TrustedProxies(config.forwarded_allow_ips), prefix=config.forwarded_prefix)


def apply(scope: dict[str, Any], forwarding: Forwarding) -> None:
    client, scheme, host, server, root_path = forwarding
    if client is not None:
        scope["client"] = client
    if scheme is not None:
        scope["scheme"] = scheme
    if host is not None:
        headers = scope["headers"]
        value = host.encode("latin-1")
        for index, (name, _) in enumerate(headers):
            if name == b"host":
                headers[index] = (name, value)
                break
        else:
            headers.append((b"host", value))
    if server is not None:
        scope["server"] = server
    if root_path is not None:
        old_root: str = scope["root_path"]
        scope["path"] = root_path + scope["path"][len(old_root) :]
        scope["root_path"] = root_path


def resolve(
    policy: ProxyHeaders, headers: Sequence[tuple[bytes, bytes]], scheme: str
) -> Forwarding | None:
    """The forwarded facts of one request from a trusted peer, or None if there are none."""
    found: dict[bytes, list[bytes]] | None = None
    host_header: bytes | None = None
    for name, value in headers:
        if name in _NAMES:
            if found is None:
                found = {}
            found.setdefault(name, []).append(value)
        elif name == b"host":
            host_header = value
    if found is None:
        return None
    if not policy.prefix:
        found.pop(b"x-forwarded-prefix", None)
    if not found:
        return None
    client = proto = forwarded_host = None
    port: int | None = None
    if any(name.startswith(b"x-") and name != b"x-forwarded-prefix" for name in found):
        client, proto, forwarded_host = _from_x_forwarded(policy.trusted, found)
        port = _single(found, b"x-forwarded-port", parse_port)
    elif b"forwarded" in found:
        client, proto, forwarded_host = _from_forwarded(policy.trusted, found)
    root_path = _single(found, b"x-forwarded-prefix", parse_prefix)
    secure = _SECURE.get(scheme, False) if proto is None else _SECURE[proto]
    websocket = scheme in ("ws", "wss")
    new_scheme = None
    if proto is not None:
        new_scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
    host_value, server = _authority(forwarded_host, port, host_header, _DEFAULT_PORT[secure])
    return Forwarding(client, new_scheme, host_value, server, root_path)


def _authority(
    forwarded: tuple[str, int | None] | None, port: int | None, host: bytes | None, default: int
) -> tuple[str | None, tuple[str, int] | None]:
    """The new Host value and ``server`` from a forwarded host and/or port."""
    if forwarded is None and port is None:
        return None, None
    name, given_port = forwarded if forwarded is not None else (None, None)
    if name is None and host is not None:
        current = parse_host(host)  # only a port was forwarded: keep the request's name
        name = current[0] if current is not None else None
    if name is None:
        return None, None
    effective = port if port is not None else given_port
    value = name if effective in (None, default) else f"{name}:{effective}"
    server_name = name[1:-1] if name.startswith("[") else name
    return value, (server_name, effective if effective is not None else default)


def _single(found: dict[bytes, list[bytes]], name: bytes, parse: Any) -> Any:
    """A header that must have one value: repeated lines must agree, or it is ignored."""
    values = found.get(name)
    if not values:
        return None
    if any(value != values[0] for value in values):
        logger.debug("ignoring %s: repeated with different values", name.decode())
        return None
    result = parse(values[0])
    if result is None:
        logger.debug("ignoring malformed %s: %r", name.decode(), values[0][:100])
    return result


def _walk(trusted: TrustedProxies, hops: Sequence[Node | None]) -> int:
    """Index of the client hop: the rightmost one that is not a trusted proxy."""
    for index in range(len(hops) - 1, -1, -1):
        hop = hops[index]
        if hop is None or hop.kind != "ip" or not trusted.trusts(hop.host):
            return index
    return 0  # every hop is a trusted proxy: the first one is where the request entered


def _client(hop: Node | None) -> tuple[str, int] | None:
    return (hop.host, hop.port) if hop is not None and hop.kind == "ip" else None


def _from_x_forwarded(
    trusted: TrustedProxies, found: dict[bytes, list[bytes]]
) -> tuple[tuple[str, int] | None, str | None, tuple[str, int | None] | None]:
    client = None
    index: int | None = None
    count = 0
    lines = found.get(b"x-forwarded-for")
    if lines:
        # RFC 9110 5.3: repeated lines of a list field are one list, in order.
        members = split_list(b",".join(lines))
        if members is None:
            logger.debug("ignoring X-Forwarded-For: more than the allowed number of hops")
        else:
            hops = [parse_node(member) for member in members]
            count = len(hops)
            index = _walk(trusted, hops)
            client = _client(hops[index])
            if hops[index] is None:
                logger.debug("ignoring a malformed X-Forwarded-For hop: %r", members[index][:64])
    proto = _aligned(found, b"x-forwarded-proto", index, count, _proto)
    host = _aligned(found, b"x-forwarded-host", index, count, parse_host)
    return client, proto, host


def _aligned(
    found: dict[bytes, list[bytes]], name: bytes, index: int | None, count: int, parse: Any
) -> Any:
    values = found.get(name)
    if not values:
        return None
    if any(value != values[0] for value in values):
        logger.debug("ignoring %s: repeated with different values", name.decode())
        return None
    members = split_list(values[0])
    if not members:
        logger.debug("ignoring %s: more than the allowed number of hops", name.decode())
        return None
    member = members[index] if index is not None and len(members) == count else members[-1]
    result = parse(member)
    if result is None:
        logger.debug("ignoring malformed %s: %r", name.decode(), member[:100])
    return result


def _proto(raw: bytes | str) -> str | None:
    text = (raw.decode("latin-1") if isinstance(raw, bytes) else raw).strip().lower()
    return text if text in _SECURE else None


def _from_forwarded(
    trusted: TrustedProxies, found: dict[bytes, list[bytes]]
) -> tuple[tuple[str, int] | None, str | None, tuple[str, int | None] | None]:
    # RFC 7239 4: several Forwarded lines are one list, in order.
    elements = parse_forwarded(b",".join(found[b"forwarded"]))
    if not elements:
        logger.debug("ignoring a malformed Forwarded header")
        return None, None, None
    hops = [parse_node(element["for"]) if "for" in element else None for element in elements]
    index = _walk(trusted, hops)
    element = elements[index]
    client = _client(hops[index])
    proto = host = None
    if "proto" in element:
        proto = _proto(element["proto"])
        if proto is None:
            logger.debug("ignoring Forwarded proto=%r", element["proto"][:32])
    if "host" in element:
        host = parse_host(element["host"])
        if host is None:
            logger.debug("ignoring Forwarded host=%r", element["host"][:100])
    return client, proto, host
