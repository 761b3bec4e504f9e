"""--timeout-send (nginx send_timeout): a response waits for a client that reads nothing only
so long; then the connection is closed and the app's send() raises (ASGI: an OSError).

Over HTTP/2 (``@over_both``: HTTP/1.1 on each parser, then h2c) the wait is for the client's
flow-control window (RFC 9113 6.9), and what ends is the stream: RST_STREAM CANCEL (8.1),
the connection and its other streams go on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from tests.conftest import over_both
from tests.h2client import H2Client
from tests.support import ServerThread

Serve = Callable[..., ServerThread]


CANCEL = 0x8  # RFC 9113 7


@over_both
def test_an_asgi_send_to_a_client_that_reads_nothing_gives_up(serve: Serve, protocol: str) -> None:
    outcome: list[str] = []
    done = threading.Event()

    async def endless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/next":
            await send({"type": "http.response.body", "body": b"next"})
            return
        block = b"x" * 65536
        try:
            while True:  # for ever, unless send() gives up
                await send({"type": "http.response.body", "body": block, "more_body": True})
        except OSError as exc:
            outcome.append(type(exc).__name__)
        finally:
            done.set()

    with serve(endless, timeout_send=0.5) as server:
        if protocol == "2":
            with H2Client(server.port, timeout=15) as client:
                sid = client.request("/endless")
                assert done.wait(15), "send() waited for ever for a client that opens no window"
                [result] = client.wait(sid)
                assert result.status == 200
                assert result.reset == CANCEL
                # The connection was not the stream's to end: it serves the next request.
                [second] = client.wait(client.request("/next"))
                assert (second.status, bytes(second.data)) == (200, b"next")
                assert not client.closed
            assert outcome == ["ClientDisconnected"]
            return
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert done.wait(15), "send() waited for ever for a client that reads nothing"
            # The server closed the connection: reading now reaches its end (or a reset).
            sock.settimeout(15)
            try:
                while sock.recv(1 << 20):
                    pass
            except ConnectionResetError:
                pass
    assert outcome == ["ClientDisconnected"]
