"""The low-severity findings of the HTTP/2 attack review (notes: h2attack), each checked
against RFC 9113 and refused on both engines: the frame scanner in front of them
(protocols/http2/limits.py) or the connection does it where it can."""

from __future__ import annotations

import pytest

pytest.importorskip("h2")

from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame

from dualcorn.protocols.http2.limits import CONTROL_BURST, SMALL_WINDOW_UPDATE, FloodGuard
from tests.support import ServerThread
from tests.test_http2_probes import (
    BASE,
    ENHANCE_YOUR_CALM,
    PREFACE,
    PROTOCOL_ERROR,
    Raw,
    app,
    goaway,
    resets,
    statuses,
    still_serving,
    window_update,
)
from tests.test_http2_units import limits

COMPRESSION_ERROR, REFUSED_STREAM = 0x9, 0x7
SLOW = [*BASE[:2], (":path", "/slow"), BASE[3]]


@pytest.fixture(scope="module")
def server() -> ServerThread:
    with ServerThread(app) as running:
        yield running


def stream_done(sid: int):  # type: ignore[no-untyped-def]
    return lambda f: isinstance(f, DataFrame) and f.stream_id == sid and "END_STREAM" in f.flags


def test_a_stream_opened_after_the_clients_goaway_is_refused(server: ServerThread) -> None:
    """RFC 9113 6.8: GOAWAY starts the end of the connection; the client's stream 1 is
    answered, but stream 3, sent after its GOAWAY in the same write, is not processed
    (REFUSED_STREAM, 8.7: the client may retry it on another connection)."""
    with Raw(server.port) as client:
        client.send(client.headers(1, SLOW))
        bye = GoAwayFrame(0)
        bye.last_stream_id = 0
        client.send(bye, client.headers(3, BASE))
        frames = client.frames(stream_done(1))
        assert (3, REFUSED_STREAM) in resets(frames)
        answered = {f.stream_id for f in frames if isinstance(f, HeadersFrame)}
        assert answered == {1}
        assert statuses(frames) == [b"200"]
    still_serving(server.port)


@pytest.mark.parametrize("first", ["PING", "SETTINGS ACK", "HEADERS"])
def test_the_preface_must_be_followed_by_settings(server: ServerThread, first: str) -> None:
    """RFC 9113 3.4: the client preface is the magic string and a SETTINGS frame, which must
    be the first frame the client sends; an invalid preface is a PROTOCOL_ERROR."""
    with Raw(server.port, preface=PREFACE) as client:
        if first == "PING":
            ping = PingFrame(0)
            ping.opaque_data = b"12345678"
            client.send(ping, SettingsFrame(0))
        elif first == "SETTINGS ACK":
            client.send(SettingsFrame(0, flags=["ACK"]), SettingsFrame(0))
        else:
            client.send(client.headers(1, BASE), SettingsFrame(0))
        frames = client.frames(lambda f: isinstance(f, GoAwayFrame))
        assert goaway(frames) == PROTOCOL_ERROR
        assert not statuses(frames)
    still_serving(server.port)


# An indexed field far past both tables; a table size update (8192) past the server's
# SETTINGS_HEADER_TABLE_SIZE (4096, RFC 7541 6.3); a literal whose Huffman string is broken.
BROKEN_BLOCKS = {
    "index past the tables": b"\xff\xff\xff\x0f",
    "table size update past the setting": b"\x3f\xe1\x3f\x82",
    "invalid Huffman string": b"\x82\x86\x84\x41\x82\xff\xff",
}


@pytest.mark.parametrize("block", list(BROKEN_BLOCKS))
def test_a_field_block_that_does_not_decode_is_a_compression_error(
    server: ServerThread, block: str
) -> None:
    """RFC 9113 4.3: a field block the server cannot decompress is a connection error of
    type COMPRESSION_ERROR."""
    with Raw(server.port) as client:
        frame = HeadersFrame(1)
        frame.data = BROKEN_BLOCKS[block]
        frame.flags = {"END_HEADERS", "END_STREAM"}
        client.send(frame)
        frames = client.frames(lambda f: isinstance(f, GoAwayFrame))
        assert goaway(frames) == COMPRESSION_ERROR
    still_serving(server.port)


def test_a_flood_of_small_window_updates_is_bounded(server: ServerThread) -> None:
    """RFC 9113 10.5 (small frames), the CVE-2019-9512/9518 family: WINDOW_UPDATE(+1) frames
    are counted like PINGs, and a client past the bound gets ENHANCE_YOUR_CALM."""
    with Raw(server.port) as client:
        client.send(window_update(0, 1) * (CONTROL_BURST + 200))
        frames = client.frames(lambda f: isinstance(f, GoAwayFrame))
        assert goaway(frames) == ENHANCE_YOUR_CALM
    still_serving(server.port)


def test_large_window_updates_are_not_a_flood(server: ServerThread) -> None:
    """A client that opens its windows in large steps, as downloads do, is served."""
    with Raw(server.port) as client:
        client.send(window_update(0, 65536) * (CONTROL_BURST + 200))
        client.send(client.headers(1, BASE))
        frames = client.frames(stream_done(1))
        assert statuses(frames) == [b"200"]
        assert goaway(frames) is None


def test_guard_reads_the_increment() -> None:
    guard = FloodGuard(limits(), 0.0)
    start = PREFACE + SettingsFrame(0).serialize()
    big = window_update(1, SMALL_WINDOW_UPDATE) * (CONTROL_BURST + 10)
    assert guard.scan(start + big, 0.0) is None
    small = window_update(1, SMALL_WINDOW_UPDATE - 1)
    assert guard.scan(small * CONTROL_BURST, 0.0) is None
    assert guard.scan(small, 0.0) is not None
    assert guard.error_code == ENHANCE_YOUR_CALM


def test_guard_refuses_a_preface_without_settings() -> None:
    guard = FloodGuard(limits(), 0.0)
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    assert guard.scan(PREFACE + ping.serialize(), 0.0) is not None
    assert guard.error_code == PROTOCOL_ERROR
    guard = FloodGuard(limits(), 0.0)
    assert guard.scan(PREFACE + SettingsFrame(0).serialize() + ping.serialize(), 0.0) is None
