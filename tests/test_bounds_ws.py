"""WebSocket attacks against the real server (a subprocess), with its memory measured.

Each attack is bounded in time (socket timeouts of a few seconds) and each assertion is about a
bound, never a timing: the server process's RSS growth stays far below what the attack would
cost without the bound, and another client's GET is still answered.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import zlib

import pytest

from tests.attack import MIB, frame, healthy, rss, ws_connect
from tests.conftest import LOOPS
from tests.helpers import run_dualcorn
from tests.supervising import wait_for

pytestmark = pytest.mark.parametrize("loop", LOOPS)

_PING, _BINARY, _CONT, _CLOSE = 0x9, 0x2, 0x0, 0x8


def _serve(loop: str, *extra: str) -> contextlib.AbstractContextManager:  # type: ignore[type-arg]
    args = ("tests.apps.attack_apps:asgi", "--port", "0", "--loop", loop, "--lifespan", "off")
    return run_dualcorn(*args, "--no-access-log", "--ws-ping-interval", "0", *extra)


def _send_for(sock: socket.socket, data: bytes, seconds: float) -> int:
    """Send ``data`` repeatedly until the peer stops reading (a send times out) or ``seconds``
    pass; return the bytes sent.  The attack is bounded in time either way."""
    sock.settimeout(1.0)
    sent = 0
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):  # timeout, reset, broken pipe: the attack is over
        while time.monotonic() < deadline:
            sock.sendall(data)
            sent += len(data)
    return sent


def _settle(pid: int) -> int:
    time.sleep(0.5)  # let the server process what it already read
    return rss(pid)


def _bomb() -> bytes:
    # 15 MiB of zeros deflate to about 15 KiB: 40 of them on each of three connections would
    # inflate to 1.8 GB held for an app that never reads.
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = squeeze.compress(bytes(15 * MIB)) + squeeze.flush(zlib.Z_SYNC_FLUSH)
    return frame(_BINARY, deflated[:-4], rsv1=True)  # RFC 7692 7.2.1: drop 00 00 ff ff


def _bomb_three(port: int) -> list[socket.socket]:
    sockets = [
        ws_connect(port, extensions="permessage-deflate; client_no_context_takeover")
        for _ in range(3)
    ]
    bomb = _bomb() * 40
    senders = [threading.Thread(target=_send_for, args=(s, bomb, 3.0)) for s in sockets]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(30)
    return sockets


def test_deflate_bomb_is_bounded(loop: str) -> None:
    with _serve(loop) as server:
        pid, port = server.proc.pid, server.port
        assert healthy(port)
        before = rss(pid)
        sockets = _bomb_three(port)
        try:
            during = _settle(pid)
            assert healthy(port)
        finally:
            for sock in sockets:
                sock.close()
    # 4 MiB of queue, or the one 15 MiB message that crossed it, per connection.
    assert during - before < 160 * MIB, (before, during)


def test_deflate_bomb_is_freed_when_the_dead_client_is_noticed(loop: str) -> None:
    # The attacker answers no ping: the keepalive closes its connections (1011), and the
    # messages the app never read go with them, although the app task lives on.
    pings = ("--ws-ping-interval", "1", "--ws-ping-timeout", "1", "--access-log")
    with _serve(loop, *pings) as server:
        pid, port = server.proc.pid, server.port
        assert healthy(port)
        before = rss(pid)
        sockets = _bomb_three(port)
        for sock in sockets:
            sock.close()
        wait_for(lambda: server.stderr_text().count("close 1011") == 3, 30, "three 1011s")
        after = _settle(pid)
        assert healthy(port)
    assert after - before < 24 * MIB, (before, after)


def test_ping_flood_from_a_client_that_never_reads_is_bounded(loop: str) -> None:
    pings = frame(_PING, b"p" * 125) * 8192  # 1 MiB of pings, each asking for a 127-byte pong
    with _serve(loop) as server:
        pid, port = server.proc.pid, server.port
        assert healthy(port)
        before = rss(pid)
        with ws_connect(port) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sent = _send_for(sock, pings, 4.0)
            during = _settle(pid)
            assert healthy(port)
    # Without the bound, every byte sent becomes a pong held in the server's write buffer.
    assert during - before < 48 * MIB, (before, during, sent)


def test_fragment_flood_is_closed_with_1008(loop: str) -> None:
    flood = frame(_BINARY, b"x", fin=False) + frame(_CONT, b"x", fin=False) * 200_000  # 1.4 MB
    with _serve(loop) as server:
        pid, port = server.proc.pid, server.port
        before = rss(pid)
        with ws_connect(port) as sock:
            sender = threading.Thread(target=_send_for, args=(sock, flood, 5.0), daemon=True)
            sender.start()
            sock.settimeout(10)
            code = _close_code(sock)
            sender.join(10)
        assert healthy(port)
        after = rss(pid)
    assert code == 1008
    assert after - before < 32 * MIB, (before, after)


def _close_code(sock: socket.socket) -> int | None:
    """The code of the server's close frame (skipping other frames); None on EOF or reset."""
    data = b""
    with contextlib.suppress(OSError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
            while len(data) >= 2:
                size = data[1] & 0x7F
                start = 2 + {126: 2, 127: 8}.get(size, 0)
                if size >= 126:
                    if len(data) < start:
                        break
                    size = int.from_bytes(data[2:start], "big")
                if len(data) < start + size:
                    break
                if data[0] & 0x0F == _CLOSE:
                    return int(struct.unpack("!H", data[start : start + 2])[0])
                data = data[start + size :]
    return None


def test_a_burst_of_pings_gets_one_pong_for_the_latest(loop: str) -> None:
    # RFC 6455 5.5.3: "an endpoint MAY elect to send a Pong frame for only the most recently
    # processed Ping frame".  Ten pings in one write arrive in one read on loopback.
    burst = b"".join(frame(_PING, b"ping %d" % n) for n in range(10))
    with _serve(loop) as server, ws_connect(server.port) as sock:
        sock.sendall(burst + frame(_CLOSE, struct.pack("!H", 1000)))
        sock.settimeout(10)
        pongs = _pongs_until_close(sock)
    assert pongs and pongs[-1] == b"ping 9"
    assert len(pongs) < 10, pongs


def _pongs_until_close(sock: socket.socket) -> list[bytes]:
    data, pongs = b"", []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return pongs
        data += chunk
        while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
            size = data[1] & 0x7F  # the server's control frames are short and unmasked
            opcode, payload, data = data[0] & 0x0F, data[2 : 2 + size], data[2 + size :]
            if opcode == 0xA:
                pongs.append(payload)
            elif opcode == _CLOSE:
                return pongs
