"""HTTP/2 connections on an in-memory transport (layer 2): the client's bytes fed whole and
one byte at a time, the server's bytes read back with the h2 library as the client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("h2")

import h2.config
import h2.connection
import h2.events

from dualcorn import Config
from dualcorn.protocols.http2.connection import H2Connection
from dualcorn.protocols.http2.events import REFUSED_STREAM
from dualcorn.protocols.state import ServerState
from tests.support import MemoryTransport


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%s %d" % (scope["path"].encode(),
                                                                   len(body))})  # fmt: skip


class Peer:
    """The client side: an h2 client connection and the server under test, in memory."""

    def __init__(self, app: Any, **options: Any) -> None:
        config = Config(app=app, **options)
        self.server = H2Connection(ServerState(config, app))
        self.transport = MemoryTransport()
        self.transport.protocol = self.server
        self.server.connection_made(self.transport)
        client_config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(client_config)
        self.client.initiate_connection()
        self.events: list[Any] = []

    def request(self, path: str, body: bytes = b"") -> int:
        sid = self.client.get_next_available_stream_id()
        fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"),
                  (b":path", path.encode())]  # fmt: skip
        self.client.send_headers(sid, fields, end_stream=not body)
        if body:
            self.client.send_data(sid, body, end_stream=True)
        return sid

    async def exchange(self, one_byte: bool = False) -> None:
        data = self.client.data_to_send()
        if one_byte:
            for index in range(len(data)):
                self.server.data_received(data[index : index + 1])
        else:
            self.server.data_received(data)
        for _ in range(50):  # the app's tasks and the deferred writes run
            await asyncio.sleep(0)
        written = bytes(self.transport.written)
        self.transport.written.clear()
        self.events += self.client.receive_data(written)

    def answers(self) -> dict[int, bytes]:
        return {e.stream_id: e.data for e in self.events if isinstance(e, h2.events.DataReceived)}


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "bytewise"])
async def test_requests_in_memory(one_byte: bool) -> None:
    peer = Peer(hello)
    first = peer.request("/a")
    second = peer.request("/b", b"12345")
    await peer.exchange(one_byte)
    assert peer.answers() == {first: b"/a 0", second: b"/b 5"}
    peer.transport.close()
    await asyncio.sleep(0)


async def test_stream_past_the_limit_is_refused_in_memory() -> None:
    release = asyncio.Event()

    async def waits(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await hello(scope, receive, send)

    peer = Peer(waits, http2_max_concurrent_streams=2)
    sids = [peer.request(f"/{n}") for n in range(3)]
    await peer.exchange()
    resets = [e for e in peer.events if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(sids[2], REFUSED_STREAM)]
    release.set()
    await peer.exchange()
    assert set(peer.answers()) == set(sids[:2])
    peer.transport.close()
    await asyncio.sleep(0)
