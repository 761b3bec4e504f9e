"""HTTP/2 under attack, frame by frame: a real server on 127.0.0.1:0 and the h2 library as a
raw client over a socket (tests/h2client.py).

Each attack that shaped HTTP/2 servers gets the answer RFC 9113 allows and its precedent
(nginx, nghttp2) chose: GOAWAY ENHANCE_YOUR_CALM for floods, REFUSED_STREAM past the stream
limit, a stream reset for a client that never opens its window; the server stays up for the
next client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from typing import Any

import pytest

pytest.importorskip("h2")

from dualcorn.protocols.http2.events import CANCEL, ENHANCE_YOUR_CALM, REFUSED_STREAM
from tests.h2client import H2Client
from tests.support import ServerThread


class CountingApp:
    """Answers 200 "ok"; counts the calls; ``/slow`` waits for ``release`` (or 10 s)."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.release: asyncio.Event | None = None
        self.sent: list[int] = []
        self.send_failed: list[BaseException] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if scope["path"] == "/slow":
                if self.release is None:
                    self.release = asyncio.Event()
                if self.running >= 100:
                    self.release.set()
                async with asyncio.timeout(10):
                    await self.release.wait()
            if scope["path"] == "/big":
                await self._big(send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.running -= 1

    async def _big(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for index in range(50):
                await send({"type": "http.response.body", "body": b"x" * 65536,
                            "more_body": True})  # fmt: skip
                self.sent.append(index)
            await send({"type": "http.response.body", "body": b""})
        except OSError as exc:
            self.send_failed.append(exc)


def still_serving(server: ServerThread) -> None:
    with H2Client(server.port) as client:
        result = client.get("/")
        assert result.status == 200 and bytes(result.data) == b"ok"


def test_rapid_reset_gets_goaway() -> None:
    """CVE-2023-44487: streams opened and reset at once, faster than the bounded rate."""
    app = CountingApp()
    with ServerThread(app) as server:
        with H2Client(server.port) as client:
            for _ in range(3000):
                sid = client.request("/slow")
                client.conn.reset_stream(sid)
            client.flush()
            goaway = client.wait_goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
            client.wait_closed()
        # Streams the client reset still count while their apps run: never past the limit.
        assert app.peak <= 100
        still_serving(server)


def test_continuation_flood_gets_goaway() -> None:
    """CONTINUATION flood (2024): a header block that never ends is bounded in bytes."""
    with ServerThread(CountingApp(), limit_request_head=16384) as server:
        with H2Client(server.port) as client:
            client.receive_once()  # the server's SETTINGS
            client.continuation_flood(1, frames=200, size=16384)
            goaway = client.wait_goaway()
            assert goaway.error_code == ENHANCE_YOUR_CALM
            client.wait_closed()
        still_serving(server)


def test_ping_flood_gets_goaway() -> None:
    """CVE-2019-9512: PINGs whose acknowledgements would pile up."""
    with ServerThread(CountingApp()) as server:
        with H2Client(server.port) as client:
            client.ping_flood(5000)
            assert client.wait_goaway().error_code == ENHANCE_YOUR_CALM
        still_serving(server)


def test_settings_flood_gets_goaway() -> None:
    """CVE-2019-9515: SETTINGS frames, each of which the server must acknowledge."""
    with ServerThread(CountingApp()) as server:
        with H2Client(server.port) as client:
            client.send_raw(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" * 5000)
            assert client.wait_goaway().error_code == ENHANCE_YOUR_CALM
        still_serving(server)


def test_empty_data_flood_gets_goaway() -> None:
    """CVE-2019-9518: empty DATA frames without END_STREAM cost the server work each."""
    with ServerThread(CountingApp()) as server:
        with H2Client(server.port) as client:
            sid = client.request("/slow", method="POST", end=False)
            frame = b"\x00\x00\x00\x00\x00" + sid.to_bytes(4, "big")
            client.send_raw(frame * 5000)
            assert client.wait_goaway().error_code == ENHANCE_YOUR_CALM
        still_serving(server)


def test_thousand_concurrent_streams_on_one_connection() -> None:
    """1,000 streams at once: 100 run (SETTINGS_MAX_CONCURRENT_STREAMS), the others are
    refused with REFUSED_STREAM (a client may retry them), and the connection goes on."""
    app = CountingApp()
    with ServerThread(app) as server:
        with H2Client(server.port, timeout=30) as client:
            # Sent before the server's SETTINGS is read: the client library would otherwise
            # hold streams back at the server's limit.
            sids = [client.request("/slow") for _ in range(1000)]
            results = client.wait(sids, timeout=60)
            statuses = [r.status for r in results if r.reset is None]
            refused = [r for r in results if r.reset is not None]
            assert all(status == 200 for status in statuses)
            assert all(r.reset == REFUSED_STREAM for r in refused)
            assert len(statuses) + len(refused) == 1000
            assert len(statuses) >= 100
            assert client.goaway is None
            assert app.peak <= 100
            # The same connection still serves.
            again = client.get("/")
            assert again.status == 200
        assert client.remote_settings[3] == 100  # SETTINGS_MAX_CONCURRENT_STREAMS


def test_window_stall_times_out_the_stream() -> None:
    """A client that never opens its window: the app's send waits (holding one message, not
    the response), and after --timeout-send the stream is reset and send raises."""
    app = CountingApp()
    with ServerThread(app, timeout_send=1.0) as server:
        with H2Client(server.port, window=0, auto_ack=False) as client:
            sid = client.request("/big")
            [result] = client.wait(sid, timeout=30)
            assert result.reset is not None
            assert len(result.data) == 0  # a window of 0: not one byte was allowed
        # The app got past at most its first body message before send waited and failed.
        assert len(app.sent) <= 1
        deadline = threading.Event()
        for _ in range(100):
            if app.send_failed:
                break
            deadline.wait(0.1)
        assert app.send_failed and isinstance(app.send_failed[0], OSError)
        still_serving(server)


def test_upload_is_held_back_by_the_window() -> None:
    """A client uploading faster than the app reads is held back: the server grants its
    window only as the app reads, so the unread body stays within the stream window."""
    started = threading.Event()
    finish = asyncio.Event()
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started.set()
        async with asyncio.timeout(10):
            await finish.wait()
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(total).encode()})

    with ServerThread(app) as server, H2Client(server.port) as client:
        client.receive_once()
        sid = client.request("/", method="POST", end=False)
        assert started.wait(10)
        while (window := client.conn.local_flow_control_window(sid)) > 0:
            size = min(window, client.conn.max_outbound_frame_size)
            client.conn.send_data(sid, b"u" * size)
            client.flush()
        # The window is spent and the app reads nothing: no more credit arrives. What the
        # server still had to say (its SETTINGS ACK, say) can arrive late on a loaded machine;
        # none of it may be credit for this stream, and it must fall silent.
        assert client.conn.local_flow_control_window(sid) == 0
        for _ in range(20):
            try:
                client.receive_once(timeout=0.5)
            except TimeoutError:
                break
            assert client.conn.local_flow_control_window(sid) == 0
        else:
            pytest.fail("the server kept sending frames to a client whose upload it holds back")
        loop = server.server._loop
        assert loop is not None
        loop.call_soon_threadsafe(finish.set)
        client.conn.end_stream(sid)
        client.flush()
        [result] = client.wait(sid)
        assert result.status == 200
        assert int(result.data) == seen[0] > 0


def test_random_frames_never_break_the_server() -> None:
    """Frames of every type with random flags, stream ids and payloads: each connection ends
    in a GOAWAY or goes on, the loop reports nothing, and the server serves the next client."""
    rng = random.Random(1913)
    with ServerThread(CountingApp()) as server:
        for _ in range(30):
            with H2Client(server.port) as client:
                frames = bytearray()
                for _ in range(rng.randrange(1, 20)):
                    payload = rng.randbytes(rng.randrange(0, 64))
                    frames += len(payload).to_bytes(3, "big")
                    frames += bytes([rng.randrange(0, 12), rng.randrange(0, 256)])
                    frames += rng.choice([0, 1, 2, 3, rng.randrange(2**31)]).to_bytes(4, "big")
                    frames += payload
                client.send_raw(bytes(frames))
                # Frames the server accepted leave it waiting for more: no close then.
                with contextlib.suppress(TimeoutError):
                    client.wait_closed(timeout=2)
        still_serving(server)


def test_hpack_bomb_gets_goaway(h2_engine: str) -> None:
    """A small block that decodes to a huge header list (one large field in the dynamic
    table, referenced again and again, CVE-2016-6581): the decoder stops at twice the head
    limit and the connection ends; a list between the limit and that is answered 431."""
    with ServerThread(CountingApp()) as server:
        with H2Client(server.port) as client:
            client.receive_once()
            if h2_engine == "h2":  # zttp ends the connection past its 64 KiB (docs/http2.md)
                sid = client.request("/", headers=[("x-bomb", "a" * 4000)] * 20)
                assert client.wait(sid)[0].status == 431  # 80 KB: past the 64 KiB head limit
            client.request("/", headers=[("x-bomb", "a" * 4000)] * 100)  # 400 KB
            assert client.wait_goaway().error_code == ENHANCE_YOUR_CALM
        still_serving(server)


def test_stalled_upload_and_silent_connection_time_out() -> None:
    """A stream whose body stops coming is reset after --timeout-body-read (the connection
    serves on); a connection that never sends a request is ended after
    --timeout-request-head."""
    seen: list[dict[str, Any]] = []

    async def reads(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        seen.append(message)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    options = {"timeout_body_read": 0.5, "timeout_request_head": 0.5}
    with ServerThread(reads, **options) as server:
        with H2Client(server.port) as client:
            sid = client.request("/", method="POST", end=False)
            client.send_body(sid, b"partial", end=False)
            [result] = client.wait(sid)
            assert result.reset == CANCEL
            assert seen[0]["type"] == "http.disconnect"
            assert client.get("/").status == 200
        with H2Client(server.port) as client:
            assert client.wait_goaway().error_code == 0
            client.wait_closed()
