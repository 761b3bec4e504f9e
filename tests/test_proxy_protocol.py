"""PROXY protocol v1 and v2 (``--proxy-protocol``): the parsers, then a real server."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import ssl
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualcorn.proxy_protocol import (
    MAX_V2_LENGTH,
    V2_SIGNATURE,
    Preamble,
    PreambleError,
    parse_v1,
    parse_v2,
)


def v2(
    source: str = "203.0.113.7",
    destination: str = "198.51.100.1",
    ports: tuple[int, int] = (51234, 443),
    *,
    command: int = 1,
    family: int | None = None,
    transport: int = 1,
    tlvs: bytes = b"",
) -> bytes:
    """A version 2 preamble, built from the spec's layout (section 2.2)."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    if family is None:
        family = 1 if src.version == 4 else 2
    block = src.packed + dst.packed + struct.pack("!HH", *ports) if family in (1, 2) else b""
    if family == 3:
        block = b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")
    block += tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family << 4 | transport]) + struct.pack(
        "!H", len(block)
    ) + block  # fmt: skip


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


# --- Parsers -----------------------------------------------------------------------------


def test_parse_v1() -> None:
    assert parse_v1(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n") == Preamble(
        False, ("192.168.0.1", 56324), ("192.168.0.11", 443)
    )
    assert parse_v1(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n") == Preamble(
        False, ("2001:db8::1", 1), ("::1", 65535)
    )
    assert parse_v1(b"PROXY UNKNOWN\r\n").local
    assert parse_v1(b"PROXY UNKNOWN ffff:: ffff:: 65535 65535\r\n").local
    for bad in (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
        b"PROXY TCP4 192.168.0.01 192.168.0.11 1 2\r\n",  # octal-looking
        b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  # heading zero
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # family mismatch
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        b"PROXY UDP4 1.1.1.1 1.1.1.1 1 2\r\n",
        b"PROXY TCP4 1.1.1.1 1.1.1.1 1\r\n",
        b"PROXY TCP4  1.1.1.1 1.1.1.1 1 2\r\n",
    ):
        with pytest.raises(PreambleError):
            parse_v1(bad)


def test_parse_v2() -> None:
    assert parse_v2(v2()) == Preamble(False, ("203.0.113.7", 51234), ("198.51.100.1", 443))
    assert parse_v2(v2("2001:db8::5", "2001:db8::1", (1, 2))) == Preamble(
        False, ("2001:db8::5", 1), ("2001:db8::1", 2)
    )
    # TLVs are skipped: ALPN, authority, a unique id, an SSL block, padding.
    tlvs = tlv(1, b"h2") + tlv(2, b"example.com") + tlv(5, b"x" * 128) + tlv(0x20, b"\1" * 30)
    assert parse_v2(v2(tlvs=tlvs + tlv(4, b""))).client == ("203.0.113.7", 51234)
    assert parse_v2(v2(command=0)).local  # LOCAL: a health check
    assert parse_v2(v2(command=0, tlvs=b"\xff")).local  # LOCAL discards the whole block
    assert parse_v2(v2(family=0, transport=0)).local  # AF_UNSPEC
    assert parse_v2(v2(family=3)) == Preamble(False, None, None)  # AF_UNIX: no IP address
    for bad in (
        v2(command=2),
        v2(transport=2),  # UDP on a stream socket
        v2(family=4),
        v2(tlvs=b"\x01\x00"),  # truncated TLV
        v2(tlvs=tlv(1, b"h2")[:-1] + b""),  # TLV longer than the block
        v2()[:-1],
        V2_SIGNATURE + b"\x11\x11\x00\x00",  # version 1 in a v2 header
        V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_V2_LENGTH + 1),
        V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\0" * 4,  # shorter than INET's 12 bytes
    ):
        with pytest.raises(PreambleError):
            parse_v2(bad)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_preamble_errors(data: bytes) -> None:
    cases = [(parse_v1, data), (parse_v2, data), (parse_v1, b"PROXY " + data)]
    cases.append((parse_v2, V2_SIGNATURE + b"\x21" + data))
    for parse, value in cases:
        with contextlib.suppress(PreambleError):
            parse(value)


# --- A real server -----------------------------------------------------------------------


async def client_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    facts = {"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"]}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(facts).encode()})


REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def exchange(port: int, data: bytes, *, byte_at_a_time: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if byte_at_a_time:
            for i in range(len(data)):
                sock.sendall(data[i : i + 1])
        else:
            sock.sendall(data)
        if data == b"PROXY":
            sock.shutdown(socket.SHUT_WR)  # the client ends the connection inside the preamble
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def facts(response: bytes) -> dict[str, Any]:
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    result: dict[str, Any] = json.loads(response.split(b"\r\n\r\n", 1)[1])
    return result


@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_v1_and_v2_give_the_real_client(serve: Any, byte_at_a_time: bool) -> None:
    with serve(client_app, proxy_protocol=True) as server:
        line = b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n"
        got = facts(exchange(server.port, line + REQUEST, byte_at_a_time=byte_at_a_time))
        assert got["client"] == ["203.0.113.7", 51234]
        assert got["server"] == ["198.51.100.1", 443]
        line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 8443\r\n"
        got = facts(exchange(server.port, line + REQUEST, byte_at_a_time=byte_at_a_time))
        assert got["client"] == ["2001:db8::7", 4711]
        preamble = v2(tlvs=tlv(2, b"example.com") + tlv(4, b"\0" * 5))
        got = facts(exchange(server.port, preamble + REQUEST, byte_at_a_time=byte_at_a_time))
        assert got["client"] == ["203.0.113.7", 51234]
        assert got["server"] == ["198.51.100.1", 443]


def test_local_and_unknown_keep_the_socket_addresses(serve: Any) -> None:
    with serve(client_app, proxy_protocol=True) as server:
        for preamble in (v2(command=0), b"PROXY UNKNOWN\r\n", v2(family=0, transport=0)):
            got = facts(exchange(server.port, preamble + REQUEST))
            assert got["client"][0] == "127.0.0.1"
            assert got["server"] == ["127.0.0.1", server.port]


def test_keep_alive_after_a_preamble(serve: Any) -> None:
    with serve(client_app, proxy_protocol=True) as server:
        keep = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        response = exchange(server.port, v2() + keep + keep + REQUEST)
    assert response.count(b"HTTP/1.1 200 ") == 3
    assert response.count(b"203.0.113.7") == 3


@pytest.mark.parametrize(
    "data",
    [
        REQUEST,  # no preamble at all: never guessed at
        b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n" + REQUEST,
        b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\rX\n" + REQUEST,
        b"PROXY " + b"A" * 200 + b"\r\n" + REQUEST,
        v2(command=5) + REQUEST,
        V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\0" * 100,  # over the length bound
        v2(tlvs=b"\x01\x00\x09") + REQUEST,
        b"PROXY",  # then the client ends the connection
    ],
)
def test_bad_preambles_close_without_an_answer(serve: Any, errors: Any, data: bytes) -> None:
    with serve(client_app, proxy_protocol=True) as server:
        assert exchange(server.port, data) == b""
    assert "PROXY preamble" in errors.text


def test_untrusted_peer_is_closed(serve: Any, errors: Any, monkeypatch: Any) -> None:
    from dualcorn.proxy_protocol import PreambleReader

    monkeypatch.setattr(PreambleReader, "warned", False)
    with serve(client_app, proxy_protocol=True, forwarded_allow_ips="192.0.2.1") as server:
        assert exchange(server.port, v2() + REQUEST) == b""
        assert exchange(server.port, v2() + REQUEST) == b""
    refusals = [r for r in errors.records if "not a trusted proxy" in r.getMessage()]
    assert [r.levelname for r in refusals] == ["WARNING", "DEBUG"]


def test_stalled_preamble_is_closed_by_the_head_timeout(serve: Any) -> None:
    with (
        serve(client_app, proxy_protocol=True, timeout_request_head=0.5) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(V2_SIGNATURE[:8])
        assert sock.recv(100) == b""  # closed by the server, well before the 10 s timeout


def test_proxied_client_is_not_a_trusted_header_source(serve: Any) -> None:
    # The preamble says the client is 203.0.113.7: its own X-Forwarded-For is not believed.
    with serve(client_app, proxy_protocol=True) as server:
        request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n"
        request += b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
        got = facts(exchange(server.port, v2() + request))
    assert got["client"] == ["203.0.113.7", 51234] and got["scheme"] == "http"


class StartTLS(asyncio.Protocol):
    """A minimal TLS server protocol behind the reader: start_tls on the same transport."""

    def __init__(self, context: ssl.SSLContext, answered: asyncio.Future[bytes]) -> None:
        self.context = context
        self.answered = answered
        self.proxied: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # start_tls reads from here on
        asyncio.get_running_loop().create_task(self.handshake(transport))

    async def handshake(self, transport: Any) -> None:
        loop = asyncio.get_running_loop()
        received = loop.create_future()

        class Plain(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                if not received.done():
                    received.set_result(data)

        try:
            tls = await loop.start_tls(transport, Plain(), self.context, server_side=True)
            assert tls is not None
            request = await received
            tls.write(json.dumps([self.proxied, request.decode()]).encode())
            tls.close()
            self.answered.set_result(b"ok")
        except Exception as exc:
            self.answered.set_exception(exc)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


async def test_tls_handshake_right_after_the_preamble() -> None:
    """The reader leaves the ClientHello unread, so a TLS handshake can follow the preamble."""
    from dualcorn import Config
    from dualcorn.protocols.state import ServerState
    from dualcorn.proxy_protocol import preamble_factory

    server_context, client_context = tls_contexts()
    state = ServerState(Config(app=client_app, proxy_protocol=True), client_app)
    answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    factory = preamble_factory(state, lambda: StartTLS(server_context, answered))
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(v2())  # the ClientHello follows in the next segment
            await writer.start_tls(client_context, server_hostname="localhost")
            writer.write(b"hello")
            response = await reader.read()
            writer.close()
            await answered
    finally:
        server.close()
        await server.wait_closed()
    proxied, request = json.loads(response)
    assert proxied == [["203.0.113.7", 51234], ["198.51.100.1", 443]]
    assert request == "hello"


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_proxy_protocol_then_tls_server(tmp_path: Any, loop_name: str) -> None:
    """``--proxy-protocol`` with ``--ssl-certfile``: the preamble, then the TLS handshake."""
    from dualcorn import Config

    if "ssl_certfile" not in Config.__dataclass_fields__:
        pytest.skip("TLS (--ssl-certfile) is not on this branch yet")
    if loop_name == "uvloop":
        pytest.importorskip("uvloop")
    from tests.support import ServerThread

    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")
    ca = trustme.CA()
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "cert.pem")
    )
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    options = {"ssl_certfile": str(tmp_path / "cert.pem"), "proxy_protocol": True}
    with ServerThread(client_app, loop=loop_name, **options) as server:

        async def request() -> bytes:
            async with asyncio.timeout(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(v2())
                await writer.start_tls(client_context, server_hostname="localhost")
                writer.write(REQUEST)
                data = await reader.read()
                writer.close()
                return data

        got = facts(asyncio.run(request()))
    assert got["client"] == ["203.0.113.7", 51234]
    assert got["scheme"] == "https"


# --- The reader, fed through an in-memory transport that honours buffer sizes -------------


class MemoryTransport:
    """Delivers bytes the way a socket transport does: into the buffer the protocol offers."""

    def __init__(self) -> None:
        self.protocol: Any = None
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def close(self) -> None:
        self.closed = True

    def feed(self, data: bytes) -> None:
        while data and not self.closed:
            protocol = self.protocol
            if not hasattr(protocol, "get_buffer"):
                protocol.data_received(data)
                return
            buffer = protocol.get_buffer(-1)
            size = min(len(buffer), len(data))
            assert size > 0, "the reader offered an empty buffer"
            buffer[:size] = data[:size]
            data = data[size:]
            protocol.buffer_updated(size)


class NextProtocol:
    def __init__(self) -> None:
        self.proxied: Any = None
        self.received = b""

    def connection_made(self, transport: Any) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.received += data


def drive(chunks: list[bytes]) -> tuple[MemoryTransport, NextProtocol]:
    from dualcorn import Config
    from dualcorn.protocols.state import ServerState
    from dualcorn.proxies import TrustedProxies
    from dualcorn.proxy_protocol import PreambleReader

    async def run() -> tuple[MemoryTransport, NextProtocol]:
        state = ServerState(Config(app=client_app, proxy_protocol=True), client_app)
        following = NextProtocol()
        reader = PreambleReader(state, TrustedProxies("127.0.0.1"), lambda: following)
        transport = MemoryTransport()
        transport.protocol = reader
        reader.connection_made(transport)  # type: ignore[arg-type]
        for chunk in chunks:
            transport.feed(chunk)
        reader.connection_lost(None)
        return transport, following

    return asyncio.run(run())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


_PREAMBLES = st.sampled_from(
    [
        v2(),
        v2("2001:db8::5", "2001:db8::1"),
        v2(command=0),
        v2(tlvs=tlv(2, b"example.com") + tlv(0x20, b"\1" * 40)),
        b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n",
        b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 8443\r\n",
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff:: ffff:: 65535 65535\r\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(_PREAMBLES, st.binary(max_size=64), st.lists(st.integers(0, 200), max_size=6))
def test_reader_never_reads_past_the_preamble(
    preamble: bytes, rest: bytes, cuts: list[int]
) -> None:
    transport, following = drive(split(preamble + rest, cuts))
    assert not transport.closed
    assert transport.protocol is following
    assert following.received == rest


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_reader_never_raises(data: bytes, cuts: list[int]) -> None:
    transport, following = drive(split(data, cuts))
    assert transport.closed or transport.protocol is following or len(data) < 107
