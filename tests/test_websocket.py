"""WebSockets end to end: a real server (asyncio and uvloop), a FastAPI app, real clients.

The client is the ``websockets`` package's asyncio client, driven with ``asyncio.run`` inside
each test so that only the *server's* loop is parametrized; byte-level cases (invalid UTF-8, a
code point split across fragments, a peer that never answers pings) use a raw socket.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import CONT, TEXT, Frame

from dualcorn.protocols.websocket.session import WebSocketSession
from tests.apps import ws_fastapi
from tests.apps.ws_fastapi import app
from tests.support import ServerThread

Serve = Callable[..., ServerThread]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def ws_url(server: ServerThread, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# --- Raw-socket client: the handshake by hand, frames built by websockets' Frame ------------


def raw_handshake(port: int, path: str = "/echo", extra: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n%s"
        % (path.encode(), key, extra)
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def masked(frame: Frame) -> bytes:
    return frame.serialize(mask=True, extensions=[])


def read_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """(opcode, payload) of the next server frame, or None at EOF."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    try:
        first, second = exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", exactly(8))[0]
        return first & 0x0F, exactly(length)
    except EOFError:
        return None


def read_close(sock: socket.socket) -> int:
    """Skip frames until the close frame; return its code."""
    while True:
        frame = read_frame(sock)
        assert frame is not None, "EOF before a close frame"
        if frame[0] == 0x8:
            return int(struct.unpack("!H", frame[1][:2])[0])


# --- Messages ------------------------------------------------------------------------------


def test_thousand_text_and_hundred_binary_echoes(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url) as ws:
            for i in range(1000):
                await ws.send(f"message {i} é")
                assert await ws.recv() == f"message {i} é"
            for i in range(100):
                payload = os.urandom(i * 37 + 1)
                await ws.send(payload)
                assert await ws.recv() == payload

    with serve(app) as server:
        run(client(ws_url(server, "/echo")))


def test_four_mib_message_with_max_size_raised(serve: Serve) -> None:
    big = os.urandom(4 * 1024 * 1024)

    async def client(url: str) -> None:
        async with connect(url, max_size=None) as ws:
            await ws.send(big)
            assert await ws.recv() == big

    with serve(app, ws_max_size=5 * 1024 * 1024) as server:
        run(client(ws_url(server, "/echo")))


def test_message_over_max_size_closes_with_1009(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(os.urandom(2048))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    with serve(app, ws_max_size=1024) as server:
        run(client(ws_url(server, "/echo")))


def test_fragmented_message_is_assembled(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url) as ws:
            await ws.send(["frag", "mented ", "téxt"])
            assert await ws.recv() == "fragmented téxt"
            await ws.send([b"ab", b"cd"])
            assert await ws.recv() == b"abcd"

    with serve(app) as server:
        run(client(ws_url(server, "/echo")))


def test_code_point_split_across_fragments(serve: Serve) -> None:
    with serve(app) as server:
        sock = raw_handshake(server.port)
        with sock:
            # "é" is C3 A9: a text message may split it between two frames (RFC 6455 5.6).
            sock.sendall(masked(Frame(TEXT, b"caf\xc3", fin=False)) + masked(Frame(CONT, b"\xa9")))
            assert read_frame(sock) == (0x1, "café".encode())


def test_frames_one_byte_at_a_time(serve: Serve) -> None:
    with serve(app) as server:
        sock = raw_handshake(server.port)
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data = masked(Frame(TEXT, b"slow", fin=False)) + masked(Frame(CONT, b"ly"))
            for i in range(len(data)):
                sock.sendall(data[i : i + 1])
                time.sleep(0.001)
            assert read_frame(sock) == (0x1, b"slowly")


def test_invalid_utf8_closes_with_1007(serve: Serve) -> None:
    with serve(app) as server:
        sock = raw_handshake(server.port)
        with sock:
            sock.sendall(masked(Frame(TEXT, b"bad \xff byte")))
            assert read_close(sock) == 1007
            assert read_frame(sock) is None  # and the server closes the TCP connection


def test_frames_sent_with_the_request_wait_for_the_accept(serve: Serve) -> None:
    with serve(app) as server:
        sock = raw_handshake(server.port, extra=masked(Frame(TEXT, b"early")))
        with sock:
            assert read_frame(sock) == (0x1, b"early")


# --- Handshake -----------------------------------------------------------------------------


def test_compression_negotiated_by_default(serve: Serve) -> None:
    async def client(url: str) -> list[Any]:
        async with connect(url) as ws:
            await ws.send("x" * 10000)
            assert await ws.recv() == "x" * 10000
            return list(ws.protocol.extensions)

    with serve(app) as server:
        extensions = run(client(ws_url(server, "/echo")))
        assert [type(e) for e in extensions] == [PerMessageDeflate]
    with serve(app, ws_per_message_deflate=False) as server:
        assert run(client(ws_url(server, "/echo"))) == []


def test_subprotocol_headers_and_scope(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url, subprotocols=["chat.v1", "chat.v2"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers["x-session"] == "abc"
            assert await ws.recv() == "/chat?room=1"

    ws_fastapi.events.clear()
    with serve(app) as server:
        run(client(ws_url(server, "/chat?room=1")))
    assert ("chat", ["chat.v1", "chat.v2"]) in ws_fastapi.events


def test_close_before_accept_is_403(serve: Serve) -> None:
    async def client(url: str) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 403

    with serve(app) as server:
        run(client(ws_url(server, "/deny")))


def test_app_sends_its_own_http_response(serve: Serve) -> None:
    async def client(url: str) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 418
        assert info.value.response.body == b"no sockets here"

    with serve(app) as server:
        run(client(ws_url(server, "/teapot")))


def test_app_error_before_accept_is_500_and_after_is_1011(serve: Serve) -> None:
    async def client(url: str) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 500
        async with connect(url + "?when=after") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011

    with serve(app) as server:
        run(client(ws_url(server, "/crash")))


def test_invalid_handshake_is_answered_by_the_server(serve: Serve) -> None:
    with serve(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"  # no Sec-WebSocket-Key
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


# --- Closing -------------------------------------------------------------------------------


def test_app_close_code_4001_reaches_the_client(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url) as ws:
            await ws.send("bye")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 4001
            assert info.value.rcvd.reason == "the app chose 4001"

    with serve(app) as server:
        run(client(ws_url(server, "/close4001")))


def test_client_close_code_reaches_the_app(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url) as ws:
            await ws.close(code=4321, reason="client leaving")

    ws_fastapi.events.clear()
    with serve(app) as server:
        run(client(ws_url(server, "/echo")))
        deadline = time.monotonic() + 5
        while not ws_fastapi.events and time.monotonic() < deadline:
            time.sleep(0.01)
    assert ("echo", ("disconnect", 4321, "client leaving")) in ws_fastapi.events


# --- Keepalive and flow control ------------------------------------------------------------


def test_ping_pong(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url) as ws:
            latency = await asyncio.wait_for(await ws.ping(b"are you there"), 5)
            assert latency >= 0

    with serve(app) as server:
        run(client(ws_url(server, "/echo")))


def test_dead_peer_is_closed_by_the_ping_timeout(serve: Serve) -> None:
    with serve(app, ws_ping_interval=0.2, ws_ping_timeout=0.2) as server:
        sock = raw_handshake(server.port)
        with sock:
            assert read_frame(sock) is not None  # the ping, which this peer never answers
            assert read_close(sock) == 1011
            assert read_frame(sock) is None


def test_unread_messages_pause_reading_at_max_queue(serve: Serve) -> None:
    block = os.urandom(16 * 1024)

    async def client(url: str, server: ServerThread) -> None:
        async with connect(url, compression=None) as ws:
            sending = asyncio.ensure_future(_send_many(ws, block, 2000))  # 32 MiB
            await asyncio.sleep(1.0)
            assert not sending.done(), "the server read 32 MiB the app never asked for"
            sessions = [c for c in server.server.state.connections  # type: ignore[union-attr]
                        if isinstance(c, WebSocketSession)]  # fmt: skip
            # One read may carry several messages past the bound, never thousands.
            assert sessions and len(sessions[0].inbox) < 64
            sending.cancel()
            # A close frame would wait behind the unread messages: drop the connection.
            ws.transport.abort()

    with serve(app, ws_max_queue=4, timeout_graceful_shutdown=0.5) as server:
        run(client(ws_url(server, "/idle"), server))


async def _send_many(ws: Any, block: bytes, count: int) -> None:
    for _ in range(count):
        await ws.send(block)


def test_app_send_waits_while_the_client_does_not_read(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url, compression=None, max_queue=1, max_size=None) as ws:
            await asyncio.sleep(1.0)  # never reading: kernel buffers and the queue fill
            sent = max((n for name, n in ws_fastapi.events if name == "flood"), default=0)
            assert 0 < sent < 200, f"{sent} MiB left the app for a client that reads nothing"
            assert len(await ws.recv()) == 1024 * 1024
            ws.transport.abort()  # the app's next send() raises; it returns

    ws_fastapi.events.clear()
    with serve(app) as server:
        run(client(ws_url(server, "/flood")))


# --- Configuration and logs ----------------------------------------------------------------


async def _http_only_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"plain http"})


def test_ws_none_serves_the_upgrade_as_http(serve: Serve) -> None:
    with serve(_http_only_app, ws="none") as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            response = sock.recv(1000)
        assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"plain http")


def test_wsproto_name_is_served_by_the_same_implementation(serve: Serve) -> None:
    async def client(url: str) -> None:
        async with connect(url) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"

    with serve(app, ws="wsproto") as server:
        run(client(ws_url(server, "/echo")))


def test_access_log_line_per_session(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    async def client(base: str) -> None:
        async with connect(base + "/echo?a=1") as ws:
            await ws.send("x")
            await ws.recv()
        with pytest.raises(InvalidStatus):
            async with connect(base + "/deny"):
                pass

    caplog.set_level(logging.INFO, logger="dualcorn.access")
    with serve(app) as server:
        run(client(ws_url(server, "")))
    lines = [r.getMessage() for r in caplog.records if r.name == "dualcorn.access"]
    assert any('"WebSocket /echo?a=1" 101 close 1000 ' in line for line in lines), lines
    assert any('"WebSocket /deny" 403 ' in line for line in lines), lines
