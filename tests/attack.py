"""Tools for the attack tests: a server process's RSS, raw WebSocket frames, a health check."""

from __future__ import annotations

import base64
import os
import socket
import struct

import httpx

__all__ = ["MIB", "frame", "healthy", "rss", "ws_connect"]

MIB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def healthy(port: int, path: str = "/") -> bool:
    """A request on another connection is still answered (generous timeout)."""
    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    return response.status_code == 200 and response.text == "ok"


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client frame (RFC 6455 5.2) masked with the all-zero key, so the payload is as given."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", size)
    return head + b"\0\0\0\0" + payload


def ws_connect(port: int, path: str = "/idle", extensions: str = "") -> socket.socket:
    """A raw WebSocket client socket after a 101."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    extra = f"Sec-WebSocket-Extensions: {extensions}\r\n".encode() if extensions else b""
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
        % (path.encode(), key, extra)
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101 "):
        raise ConnectionError(head.decode("latin-1"))
    if extensions and b"permessage-deflate" not in head.lower():
        raise ConnectionError(f"permessage-deflate was not accepted: {head!r}")
    return sock
