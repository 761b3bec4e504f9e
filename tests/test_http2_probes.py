"""Attack probes against the real HTTP/2 server, written frame by frame with hyperframe and
hpack (no client state machine to refuse what an attacker sends).

Each probe names what RFC 9113 asks for and checks what the server answered: the frame that
ends the stream or the connection, and that a second client is still served afterwards.  The
memory probe runs the real ``dualcorn`` command and reads its RSS from /proc.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("h2")

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.support import ServerThread

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0, 1, 3, 5
FRAME_SIZE_ERROR, ENHANCE_YOUR_CALM = 6, 11
BASE = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "localhost")]
POST = [(":method", "POST"), (":scheme", "http"), (":path", "/echo"), (":authority", "x")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/echo`` answers the body's length; ``/slow`` waits; anything else "ok"; any
    X-Echo request field comes back in the response."""
    if scope["type"] != "http":
        return
    body = b"ok"
    if scope["path"] == "/echo":
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"%d" % size
    elif scope["path"] == "/slow":
        await asyncio.sleep(2)
    echo = [(b"x-echo", v) for n, v in scope["headers"] if n == b"x-echo"]
    await send({"type": "http.response.start", "status": 200, "headers": echo})
    await send({"type": "http.response.body", "body": body})


class Raw:
    """One h2c connection driven with hand-built frames."""

    def __init__(self, port: int, *, preface: bytes = PREFACE + SettingsFrame(0).serialize()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.buffer = b""
        self.closed = False
        if preface:
            self.sock.sendall(preface)

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, *frames: bytes | Frame) -> None:
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        try:
            self.sock.sendall(data)
        except OSError:  # the server may close first; what it sent is still read
            self.closed = True

    def headers(self, sid: int, fields: list[tuple[str, str]], *, end: bool = True) -> bytes:
        frame = HeadersFrame(sid)
        frame.data = self.encoder.encode(fields, huffman=False)
        frame.flags = {"END_HEADERS", "END_STREAM"} if end else {"END_HEADERS"}
        return frame.serialize()

    def frames(self, until: Any, timeout: float = 10.0) -> list[Frame]:
        """Frames read until ``until(frame)`` is true, the connection closes or ``timeout``."""
        out: list[Frame] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                self.buffer = self.buffer[9 + length :]
                if isinstance(frame, HeadersFrame):
                    frame.fields = self.decoder.decode(frame.data, raw=True)
                out.append(frame)
                if until(frame):
                    return out
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            self.buffer += data
        return out


def ends(frame: Frame) -> bool:
    """The first frame that ends a stream or the connection."""
    return isinstance(frame, (GoAwayFrame, RstStreamFrame)) or (
        isinstance(frame, (DataFrame, HeadersFrame)) and "END_STREAM" in frame.flags
    )


def goaway(frames: list[Frame]) -> int | None:
    codes = [f.error_code for f in frames if isinstance(f, GoAwayFrame)]
    return codes[-1] if codes else None


def resets(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]


def statuses(frames: list[Frame]) -> list[bytes]:
    return [
        dict(f.fields)[b":status"]
        for f in frames
        if isinstance(f, HeadersFrame) and b":status" in dict(f.fields)
    ]


def still_serving(port: int) -> None:
    with Raw(port) as client:
        client.send(client.headers(1, BASE))
        frames = client.frames(lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
        assert statuses(frames) == [b"200"]
        assert b"".join(bytes(f.data) for f in frames if isinstance(f, DataFrame)) == b"ok"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(app) as running:
        yield running


def window_update(sid: int, increment: int) -> bytes:
    return struct.pack(">I", 4)[1:] + bytes([0x8, 0]) + struct.pack(">II", sid, increment)


# --- Connection errors: RFC 9113 says GOAWAY with this code -------------------------------


def _decreasing_ids(c: Raw) -> list[bytes]:
    return [c.headers(5, BASE), c.headers(3, BASE)]  # 5.1.1: PROTOCOL_ERROR


def _even_id(c: Raw) -> list[bytes]:
    return [c.headers(2, BASE)]  # 5.1.1: a client opens odd streams only


def _data_on_idle(c: Raw) -> list[bytes]:
    data = DataFrame(7)
    data.data = b"x"
    return [data.serialize()]  # 5.1: idle stream, PROTOCOL_ERROR


def _connection_window_overflow(c: Raw) -> list[bytes]:
    return [window_update(0, 2**31 - 1)]  # 6.9.1: FLOW_CONTROL_ERROR


def _zero_window_update(c: Raw) -> list[bytes]:
    return [window_update(0, 0)]  # 6.9: PROTOCOL_ERROR


def _continuation_alone(c: Raw) -> list[bytes]:
    frame = ContinuationFrame(1)
    frame.flags = {"END_HEADERS"}
    return [frame.serialize()]  # 6.10: PROTOCOL_ERROR


def _interleaved_header_block(c: Raw) -> list[bytes]:
    frame = HeadersFrame(1)
    frame.data = c.encoder.encode(BASE)
    frame.flags = {"END_STREAM"}  # no END_HEADERS: only CONTINUATION may follow (6.10)
    return [frame.serialize(), PingFrame(0).serialize()]


def _push_promise(c: Raw) -> list[bytes]:
    frame = PushPromiseFrame(1)
    frame.promised_stream_id = 2
    frame.flags = {"END_HEADERS"}
    return [frame.serialize()]  # 8.4: a client cannot push, PROTOCOL_ERROR


def _settings_window_too_big(c: Raw) -> list[bytes]:
    frame = SettingsFrame(0)
    frame.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 2**31}
    return [frame.serialize()]  # 6.5.2: FLOW_CONTROL_ERROR


def _oversized_frame(c: Raw) -> list[bytes]:
    frame = HeadersFrame(1)  # past the default SETTINGS_MAX_FRAME_SIZE, 16,384 (4.2)
    frame.data = c.encoder.encode([*BASE, ("x-big", "a" * 20000)], huffman=False)
    frame.flags = {"END_HEADERS", "END_STREAM"}
    return [frame.serialize()]


def _padding_past_the_frame(c: Raw) -> list[bytes]:
    # DATA, PADDED|END_STREAM, pad length 200 in a 5-byte payload (6.1: PROTOCOL_ERROR)
    return [
        c.headers(1, POST, end=False),
        struct.pack(">I", 5)[1:] + bytes([0, 0x9]) + struct.pack(">I", 1) + bytes([200]) + b"abcd",
    ]


def _data_past_the_window(c: Raw) -> list[bytes]:
    data = DataFrame(1)
    data.data = b"x" * 16384  # 64 frames: 1 MiB, past the stream and connection windows
    return [c.headers(1, [*POST[:2], (":path", "/slow"), POST[3]], end=False)] + [
        data.serialize()
    ] * 64  # 6.9.1: FLOW_CONTROL_ERROR


def _invalid_preface(c: Raw) -> list[bytes]:
    return [b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"]  # 3.4: PROTOCOL_ERROR


CONNECTION_ERRORS = {
    "decreasing stream ids": (_decreasing_ids, PROTOCOL_ERROR),
    "even stream id": (_even_id, PROTOCOL_ERROR),
    "DATA on an idle stream": (_data_on_idle, PROTOCOL_ERROR),
    "connection WINDOW_UPDATE to 2^31": (_connection_window_overflow, FLOW_CONTROL_ERROR),
    "WINDOW_UPDATE of 0": (_zero_window_update, PROTOCOL_ERROR),
    "CONTINUATION without HEADERS": (_continuation_alone, PROTOCOL_ERROR),
    "PING inside a header block": (_interleaved_header_block, PROTOCOL_ERROR),
    "PUSH_PROMISE from a client": (_push_promise, PROTOCOL_ERROR),
    "SETTINGS_INITIAL_WINDOW_SIZE 2^31": (_settings_window_too_big, FLOW_CONTROL_ERROR),
    "frame past SETTINGS_MAX_FRAME_SIZE": (_oversized_frame, FRAME_SIZE_ERROR),
    "padding longer than the frame": (_padding_past_the_frame, PROTOCOL_ERROR),
    "DATA past the window": (_data_past_the_window, FLOW_CONTROL_ERROR),
    "invalid preface": (_invalid_preface, PROTOCOL_ERROR),
}


@pytest.mark.parametrize("case", list(CONNECTION_ERRORS))
def test_connection_errors(server: ServerThread, case: str) -> None:
    build, code = CONNECTION_ERRORS[case]
    preface = b"" if case == "invalid preface" else PREFACE + SettingsFrame(0).serialize()
    with Raw(server.port, preface=preface) as client:
        client.send(*build(client))
        frames = client.frames(lambda f: isinstance(f, GoAwayFrame))
        assert goaway(frames) == code, [type(f).__name__ for f in frames]
    still_serving(server.port)


# --- Stream errors: the stream ends, the connection goes on --------------------------------


def test_stream_window_overflow_resets_the_stream(server: ServerThread) -> None:
    """RFC 9113 6.9.1: a stream's window past 2^31-1 is a stream error FLOW_CONTROL_ERROR."""
    with Raw(server.port) as client:
        slow = [*BASE[:2], (":path", "/slow"), BASE[3]]
        client.send(client.headers(1, slow), window_update(1, 2**31 - 1))
        frames = client.frames(ends)
        assert resets(frames) == [(1, FLOW_CONTROL_ERROR)]
        client.send(client.headers(3, BASE))
        assert statuses(client.frames(ends)) == [b"200"]


def test_content_length_without_data_is_malformed(server: ServerThread) -> None:
    """RFC 9113 8.1.1: Content-Length must equal the DATA sent.  A HEADERS frame that ends
    the stream with ``content-length: 10`` sent none; served, an app that proxies to an
    HTTP/1.1 backend would forward a length its body does not fill (H2.CL smuggling)."""
    with Raw(server.port) as client:
        client.send(client.headers(1, [*POST, ("content-length", "10")]))
        assert statuses(client.frames(ends)) == [b"400"]
        client.send(client.headers(3, [*POST, ("content-length", "0")]))
        frames = client.frames(lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
        assert statuses(frames) == [b"200"]


@pytest.mark.parametrize("declared, sent", [(10, 3), (10, 12)])
def test_content_length_that_the_data_does_not_match(
    server: ServerThread, declared: int, sent: int
) -> None:
    with Raw(server.port) as client:
        data = DataFrame(1)
        data.data = b"x" * sent
        data.flags = {"END_STREAM"}
        client.send(client.headers(1, [*POST, ("content-length", str(declared))], end=False), data)
        assert resets(client.frames(ends)) == [(1, PROTOCOL_ERROR)]
    still_serving(server.port)


@pytest.mark.parametrize(
    "trailer",
    [(":path", "/x"), ("x-t", "1\r\nfoo: bar"), ("transfer-encoding", "chunked"), ("X-T", "1")],
)
def test_malformed_trailers_reset_the_stream(server: ServerThread, trailer: Any) -> None:
    """RFC 9113 8.1: trailers hold no pseudo-header; 8.2: the field rules hold in them too."""
    with Raw(server.port) as client:
        data = DataFrame(1)
        data.data = b"abc"
        client.send(client.headers(1, POST, end=False), data, client.headers(1, [trailer]))
        assert resets(client.frames(ends)) == [(1, PROTOCOL_ERROR)]
        # Well-formed trailers are discarded (RFC 9110 6.5.1) and the request served.
        client.send(client.headers(3, POST, end=False), data, client.headers(3, [("x-t", "1")]))
        frames = client.frames(lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
        assert statuses(frames) == [b"200"]


def test_frames_on_a_closed_stream(server: ServerThread) -> None:
    """RFC 9113 5.1: DATA on a closed stream is STREAM_CLOSED; HEADERS reusing its id ends
    the connection (5.1.1)."""
    with Raw(server.port) as client:
        client.send(client.headers(1, BASE))
        client.frames(lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
        data = DataFrame(1)
        data.data = b"late"
        client.send(data)
        frames = client.frames(ends)
        assert resets(frames) == [(1, STREAM_CLOSED)] or goaway(frames) == STREAM_CLOSED
        client.send(client.headers(1, BASE))
        assert goaway(client.frames(lambda f: isinstance(f, GoAwayFrame))) in (
            PROTOCOL_ERROR,
            STREAM_CLOSED,
        )
    still_serving(server.port)


def test_huge_path_over_continuations_gets_414(server: ServerThread) -> None:
    """A 60 KB ``:path`` split over CONTINUATION frames: the request-line limit's 414."""
    with Raw(server.port) as client:
        block = client.encoder.encode([*BASE[:2], (":path", "/" + "a" * 60000), BASE[3]])
        first = HeadersFrame(1)
        first.data, block = block[:16384], block[16384:]
        first.flags = {"END_STREAM"}
        frames: list[bytes] = [first.serialize()]
        while block:
            more = ContinuationFrame(1)
            more.data, block = block[:16384], block[16384:]
            more.flags = set() if block else {"END_HEADERS"}
            frames.append(more.serialize())
        client.send(*frames)
        assert statuses(client.frames(ends)) == [b"414"]
        client.send(client.headers(3, BASE))
        assert statuses(client.frames(ends)) == [b"200"]


def _served_after(client: Raw, first_sid: int) -> bytes:
    """Ask for ``/`` until a stream is not refused (the app tasks may still be ending)."""
    sid = first_sid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        client.send(client.headers(sid, BASE))
        frames = client.frames(lambda f, s=sid: f.stream_id == s and ends(f))
        if statuses(frames):
            return statuses(frames)[0]
        sid += 2
        time.sleep(0.1)
    return b"refused for 10 s"


@pytest.mark.parametrize("how", ["client RST_STREAM", "body timeout"])
def test_a_stream_cut_short_gives_its_slot_back(how: str) -> None:
    """RFC 9113 5.1.2: only open streams count toward SETTINGS_MAX_CONCURRENT_STREAMS.  A
    stream the client reset, or one whose body timed out, must leave the table once its app
    returns; else a connection (a browser cancelling requests) ends up refusing every stream
    and never goes idle."""
    options = {"http2_max_concurrent_streams": 3, "timeout_body_read": 0.5}
    with ServerThread(app, **options) as server, Raw(server.port) as client:
        if how == "client RST_STREAM":
            for sid in (1, 3, 5):  # /echo waits for a body, then sends: ClientDisconnected
                reset = RstStreamFrame(sid)
                reset.error_code = 8
                client.send(client.headers(sid, POST, end=False), reset)
        else:
            client.send(*(client.headers(sid, POST, end=False) for sid in (1, 3, 5)))
            frames = client.frames(lambda f: f.stream_id == 5 and ends(f))
            assert {sid for sid, _ in resets(frames)} == {1, 3, 5}
        assert _served_after(client, 7) == b"200"


# --- Floods, and what the server does not count as one ------------------------------------


def test_priority_flood_gets_enhance_your_calm(server: ServerThread) -> None:
    """CVE-2019-9513/9518 family: frames that carry no work for an app, bounded."""
    with Raw(server.port) as client:
        frame = PriorityFrame(1)
        frame.depends_on = 0
        client.send(frame.serialize() * 20000)
        assert goaway(client.frames(lambda f: isinstance(f, GoAwayFrame))) == ENHANCE_YOUR_CALM
    still_serving(server.port)


def test_zero_header_table_size_is_honoured(server: ServerThread, h2_engine: str) -> None:
    """RFC 7541 4.2: a client that allows no dynamic table still decodes every response
    (on zttp, whose encoder sends no table size update, dualcorn puts it in: zttp_hpack.py)."""
    with Raw(server.port, preface=b"") as client:
        settings = SettingsFrame(0)
        settings.settings = {SettingsFrame.HEADER_TABLE_SIZE: 0}
        client.decoder.max_allowed_table_size = 0
        client.send(PREFACE, settings)
        client.frames(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        client.send(client.headers(1, BASE), client.headers(3, BASE))
        frames = client.frames(lambda f: isinstance(f, DataFrame) and f.stream_id == 3)
        assert statuses(frames) == [b"200", b"200"]


def test_ten_thousand_streams_in_sequence(server: ServerThread, h2_engine: str) -> None:
    """One connection, 10,000 requests one after another: no cap cuts it, nothing leaks."""
    if h2_engine == "zttp":
        pytest.skip("zttp ends a connection at 4,096 streams (tests/test_http2_engines.py)")
    with Raw(server.port) as client:
        for index in range(10000):
            sid = 2 * index + 1
            client.send(client.headers(sid, BASE))
            frames = client.frames(lambda f, s=sid: f.stream_id == s and ends(f))
            assert frames and isinstance(frames[-1], DataFrame), sid


def test_a_long_connection_does_not_keep_every_stream(server: ServerThread, h2_engine: str) -> None:
    """h2 forgets closed streams only while counting open ones, which the engine skipped: a
    connection kept every stream it ever had (measured: RSS 31 -> 114 MB over 150,000
    requests on one h2load connection; bounded at 47 MB since).  After 3,000 requests on
    one connection the frame layer's stream table holds a bounded few hundred."""
    if h2_engine == "zttp":
        pytest.skip("h2's stream table; zttp's is its own, capped at 4,096 streams")
    with Raw(server.port) as client:
        for index in range(3000):
            sid = 2 * index + 1
            client.send(client.headers(sid, BASE))
            frames = client.frames(lambda f, s=sid: f.stream_id == s and ends(f))
            assert frames and isinstance(frames[-1], DataFrame), sid
        state: Any = server.server.state
        tables = [len(c.engine._conn.streams) for c in state.connections if hasattr(c, "engine")]
        assert tables and max(tables) <= 512, tables


def test_a_closed_connection_is_not_held_for_the_send_timeout(server: ServerThread) -> None:
    """The timer that aborts a connection whose client reads nothing after the server closed
    it (--timeout-send, 60 s) kept every closed connection, with its streams and HPACK
    tables, alive for that long: connection churn held memory for a minute."""
    with Raw(server.port) as client:
        client.send(client.headers(1, BASE))
        client.frames(lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags)
        state: Any = server.server.state
        ours = [weakref.ref(c) for c in list(state.connections) if hasattr(c, "engine")]
        client.send(*_even_id(client))  # a connection error: the server closes
        assert goaway(client.frames(lambda f: isinstance(f, GoAwayFrame))) == PROTOCOL_ERROR
    deadline = time.monotonic() + 10
    while any(ref() is not None for ref in ours) and time.monotonic() < deadline:
        time.sleep(0.1)
        gc.collect()
    assert all(ref() is None for ref in ours)


def test_the_client_cannot_grow_the_servers_hpack_table(server: ServerThread) -> None:
    """RFC 7541 4.2: SETTINGS_HEADER_TABLE_SIZE is the most the server's encoder may keep.
    A client allowing 2^31-1 bytes, asking an app that echoes a request field, grew the
    server's table by every response (measured: RSS 31 -> 68 MB over 3,000 responses of
    12 KB on one connection); the server keeps its own 4,096 and says so in the block."""
    settings = SettingsFrame(0)
    settings.settings = {SettingsFrame.HEADER_TABLE_SIZE: 2**31 - 1}
    with Raw(server.port, preface=PREFACE + settings.serialize()) as client:
        client.decoder.max_allowed_table_size = 2**31 - 1
        client.frames(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
        for index in range(20):
            sid = 2 * index + 1
            value = f"{sid:06d}" * 500
            client.send(client.headers(sid, [*BASE, ("x-echo", value)]))
            frames = client.frames(lambda f, s=sid: f.stream_id == s and ends(f))
            echoed = [dict(f.fields).get(b"x-echo") for f in frames if isinstance(f, HeadersFrame)]
            assert echoed == [value.encode()]
        assert client.decoder.header_table.maxsize <= 4096


# --- A client that never reads: memory stays bounded --------------------------------------

STREAMER = textwrap.dedent(
    """
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        for _ in range(1600):  # 100 MiB, never yielding unless send waits
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    """
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_client_that_never_reads_keeps_server_memory_bounded(tmp_path: Path) -> None:
    """The client opens every window to 2^31-1 and reads nothing while the app streams 100
    MiB without yielding: the server's writes must wait on the socket (pause_writing), not
    pile up in the frame layer."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the server's RSS")
    (tmp_path / "streamer.py").write_text(STREAMER)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "dualcorn", "streamer:app", "--http2", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--lifespan", "off", "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        before = rss_kib(process.pid)
        settings = SettingsFrame(0)
        settings.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1}
        with Raw(port, preface=PREFACE + settings.serialize()) as client:
            client.send(window_update(0, 2**31 - 1 - 65535), client.headers(1, BASE))
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            peak = before
            for _ in range(30):  # 3 s of the app trying to send
                time.sleep(0.1)
                peak = max(peak, rss_kib(process.pid))
            # 100 MiB queued would be ~100,000 KiB; the socket buffers and one window's
            # worth of frames are a few MiB.
            assert peak - before < 30000, (before, peak)
    finally:
        process.terminate()
        process.wait(timeout=15)
