"""HAProxy's PROXY protocol, versions 1 and 2, in front of every connection (``--proxy-protocol``).

Theory of operation
-------------------
With ``--proxy-protocol`` the listening socket's protocol is a :class:`PreambleReader`.  It
reads the preamble that a load balancer (HAProxy ``send-proxy``/``send-proxy-v2``, AWS NLB,
nginx ``proxy_protocol on`` in a stream block) writes before any byte of the client's own,
then hands the connection to the HTTP protocol with the addresses the preamble stated, as if
the client had connected directly (haproxy's ``doc/proxy-protocol.txt``, "the receiver MUST
NOT start processing the connection before it receives a complete and valid PROXY protocol
header").

* Only peers in ``--forwarded-allow-ips`` may send one; any other peer is closed at once
  (the spec: "only trusted proxies are allowed to use this protocol").  A preamble is never
  guessed at: a connection without one is closed, not served (the spec forbids guessing).
* A malformed preamble, or one not complete within ``--timeout-request-head``, closes the
  connection (logged at debug).  Version 2 blocks are bounded by :data:`MAX_V2_LENGTH`;
  TLVs are walked to check their lengths and otherwise skipped.  ``LOCAL`` (health checks),
  ``UNKNOWN`` and ``AF_UNSPEC`` keep the socket's own addresses; ``AF_UNIX`` sources have
  no address (the ASGI ``client`` is ``None``, trusted for headers only through ``unix``).
* **It never reads past the preamble.**  The reader is an ``asyncio.BufferedProtocol`` that
  offers the transport a buffer exactly as large as the bytes the preamble may still need
  (15 bytes first, the shortest valid preamble; then the version 2 length; version 1 lines
  one or two bytes at a time, so the CRLF is never overshot).  Whatever follows stays in the
  kernel for the next reader, which is what lets a TLS handshake sit behind it.

The TLS seam: the preamble comes before the TLS handshake, so with TLS the listening socket
is not created with ``ssl=``; the protocol the reader hands over to (``make``) is then the TLS
handshake protocol, which runs ``loop.start_tls`` on the same transport (the handshake reads
from the first byte after the preamble) and must copy its ``proxied`` attribute to the HTTP
connection it creates.  ``tests/test_proxy_protocol.py`` proves the exact read with a real
handshake, and runs the whole ``--proxy-protocol --ssl-certfile`` path once TLS is present.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from dualcorn.protocols.state import Connection, ServerState
from dualcorn.proxies import TrustedProxies

__all__ = [
    "MAX_V2_LENGTH",
    "V2_SIGNATURE",
    "Preamble",
    "PreambleError",
    "PreambleReader",
    "parse_v1",
    "parse_v2",
    "preamble_factory",
]

logger = logging.getLogger("dualcorn.error")

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX = b"PROXY "
_V1_MAX = 107  # the spec's worst case, "PROXY UNKNOWN <v6> <v6> 65535 65535\r\n"
_FIRST_READ = 15  # "PROXY UNKNOWN\r\n", the shortest preamble of either version
# The spec sizes preambles to fit one 536-byte segment; TLVs (SSL details, a unique id, an
# authority) may add more.  4 KiB is far beyond any real sender and still a small buffer.
MAX_V2_LENGTH = 4096
# Address block sizes by family (spec 2.2): INET 2*4+2*2, INET6 2*16+2*2, UNIX 2*108.
_ADDRESS_LENGTH = {1: 12, 2: 36, 3: 216}

Address = tuple[str, int] | None


class PreambleError(ValueError):
    """A preamble that does not match the specification: the connection is closed."""


class Preamble(NamedTuple):
    """What the sender said; ``local`` means "use the connection's own addresses"."""

    local: bool
    client: Address = None
    server: Address = None


_LOCAL = Preamble(local=True)


def _host(raw: bytes | str, version: int) -> str:
    if isinstance(raw, str) and "%" in raw:
        raise PreambleError("a scoped IPv6 address")
    address = ipaddress.ip_address(raw)
    if address.version != version:
        raise PreambleError("an address does not match the announced family")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _v1_port(text: bytes) -> int:
    # Spec 2.1: decimal in [0..65535], "Heading zeroes are not permitted".
    if not text.isdigit() or (len(text) > 1 and text[:1] == b"0") or int(text) > 65535:
        raise PreambleError("a port is not a decimal number from 0 to 65535")
    return int(text)


def parse_v1(line: bytes) -> Preamble:
    """A complete version 1 line, CRLF included."""
    if not line.startswith(_V1_PREFIX) or not line.endswith(b"\r\n") or len(line) > _V1_MAX:
        raise PreambleError("not a PROXY protocol version 1 line")
    body = line[:-2]
    if b"\r" in body or b"\n" in body:
        raise PreambleError("a lone CR or LF in a version 1 line")
    parts = body.split(b" ")
    if parts[1] == b"UNKNOWN":
        return _LOCAL  # "the receiver must ignore anything presented before the CRLF"
    if parts[1] not in (b"TCP4", b"TCP6") or len(parts) != 6:
        raise PreambleError("a version 1 line needs TCP4 or TCP6 and four fields")
    version = 4 if parts[1] == b"TCP4" else 6
    try:
        source = _host(parts[2].decode("ascii"), version)
        destination = _host(parts[3].decode("ascii"), version)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PreambleError(f"a bad address in a version 1 line: {exc}") from None
    return Preamble(False, (source, _v1_port(parts[4])), (destination, _v1_port(parts[5])))


def v2_length(header: bytes) -> int:
    """The byte count that follows a 16-byte version 2 header (checked against the bound)."""
    if header[:12] != V2_SIGNATURE or header[12] >> 4 != 2:
        raise PreambleError("not a PROXY protocol version 2 header")
    length = int.from_bytes(header[14:16], "big")
    if length > MAX_V2_LENGTH:
        raise PreambleError(f"a version 2 block of {length} bytes is over the limit")
    return length


def parse_v2(data: bytes) -> Preamble:
    """A complete version 2 preamble: the 16-byte header and its address and TLV block."""
    if len(data) < 16:
        raise PreambleError("a truncated version 2 header")
    length = v2_length(data)
    if len(data) != 16 + length:
        raise PreambleError("a version 2 block shorter or longer than it says")
    command, family, transport = data[12] & 0x0F, data[13] >> 4, data[13] & 0x0F
    # Spec 2.2: other commands, families and protocols "must be rejected as invalid".
    if command > 1 or family > 3 or transport > 2:
        raise PreambleError("an unassigned command, family or protocol")
    if command == 0:
        return _LOCAL  # a health check: "discard the protocol block including the family"
    if transport == 2:
        raise PreambleError("a datagram connection announced on a stream socket")
    block = data[16:]
    if family == 0 or transport == 0:
        return _LOCAL  # AF_UNSPEC / UNSPEC: "the receiver should ignore address information"
    size = _ADDRESS_LENGTH[family]
    if length < size:
        raise PreambleError("an address block shorter than its family needs")
    _check_tlvs(block[size:])
    if family == 3:
        return Preamble(False, None, None)  # AF_UNIX: a client without an IP address
    half = 4 if family == 1 else 16
    version = 4 if family == 1 else 6
    source = _host(block[:half], version)
    destination = _host(block[half : 2 * half], version)
    ports = block[2 * half : 2 * half + 4]
    return Preamble(
        False,
        (source, int.from_bytes(ports[:2], "big")),
        (destination, int.from_bytes(ports[2:], "big")),
    )


def _check_tlvs(tlvs: bytes) -> None:
    """Walk the TLV chain (type, 2-byte length, value) and skip every value (spec 2.2)."""
    offset = 0
    while offset < len(tlvs):
        if len(tlvs) - offset < 3:
            raise PreambleError("a truncated TLV")
        offset += 3 + int.from_bytes(tlvs[offset + 1 : offset + 3], "big")
        if offset > len(tlvs):
            raise PreambleError("a TLV longer than the block it is in")


def hand_over(transport: asyncio.Transport, protocol: Any, preamble: Preamble) -> None:
    """Give the next protocol the same transport: the next byte it reads is the client's."""
    if not preamble.local:
        protocol.proxied = (preamble.client, preamble.server)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)


class PreambleReader(asyncio.BufferedProtocol, Connection):
    """Reads exactly one PROXY protocol preamble, then hands the connection over."""

    warned = False  # whether an untrusted peer was already logged at warning level

    def __init__(
        self,
        state: ServerState,
        trusted: TrustedProxies,
        make: Callable[[], Any],
    ) -> None:
        self.state = state
        self.trusted = trusted
        self.make = make
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray(_FIRST_READ)
        self.have = 0
        self.want = _FIRST_READ
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else None
        if not self.trusted.trusts(host):
            # Once at warning level (a forgotten load balancer address shows up in the log),
            # then at debug, so a stream of strangers cannot flood it.
            log = logger.debug if PreambleReader.warned else logger.warning
            PreambleReader.warned = True
            log("--proxy-protocol: closing a connection from %s (not a trusted proxy)", host)
            transport.close()
            return
        self.state.connections.add(self)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.state.config.timeout_request_head, self._expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)[self.have : self.want]

    def buffer_updated(self, nbytes: int) -> None:
        self.have += nbytes
        try:
            preamble = self._progress()
        except PreambleError as exc:
            self._fail(str(exc))
            return
        if preamble is not None:
            self._done(preamble)

    def eof_received(self) -> bool:
        self._fail("the connection ended inside the preamble")
        return False

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- Internals -----------------------------------------------------------------------

    def _grow(self, want: int) -> None:
        if want > len(self.buffer):
            # A new buffer, not extend(): the transport may still hold a view of the old one.
            grown = bytearray(max(want, _V1_MAX + 1))
            grown[: self.have] = self.buffer[: self.have]
            self.buffer = grown
        self.want = want

    def _progress(self) -> Preamble | None:
        """Parse what has arrived; None while more bytes are needed (set ``want`` for them)."""
        data = bytes(self.buffer[: self.have])
        if not (V2_SIGNATURE.startswith(data[:12]) or _V1_PREFIX.startswith(data[:6])):
            raise PreambleError("the connection does not start with a PROXY preamble")
        if self.have < self.want:
            return None
        if data.startswith(V2_SIGNATURE):
            if self.have < 16:
                self._grow(16)
                return None
            total = 16 + v2_length(data)
            if self.have < total:
                self._grow(total)
                return None
            return parse_v2(data)
        if not data.startswith(_V1_PREFIX):
            raise PreambleError("the connection does not start with a PROXY preamble")
        if data.endswith(b"\r\n"):
            return parse_v1(data)
        # Never read past the CRLF: one byte after a CR, else two (a CRLF is still to come).
        want = self.have + (1 if data.endswith(b"\r") else 2)
        if want > _V1_MAX or b"\n" in data or b"\r" in data[:-1]:
            raise PreambleError("no CRLF within a version 1 line's length")
        self._grow(want)
        return None

    def _done(self, preamble: Preamble) -> None:
        transport = self.transport
        assert transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state.connections.discard(self)
        if self.state.stopping:
            transport.close()
            return
        hand_over(transport, self.make(), preamble)

    def _fail(self, reason: str) -> None:
        logger.debug("closing a connection with a bad PROXY preamble: %s", reason)
        if self.transport is not None:
            self.transport.close()

    def _expired(self) -> None:
        self.timer = None
        self._fail("the preamble did not arrive within --timeout-request-head")


def preamble_factory(state: ServerState, make: Callable[[], Any]) -> Callable[[], Any]:
    """The listening protocol factory: ``make`` itself, or a reader in front of it."""
    config = state.config
    if not config.proxy_protocol:
        return make
    trusted = TrustedProxies(config.forwarded_allow_ips)
    return lambda: PreambleReader(state, trusted, make)
