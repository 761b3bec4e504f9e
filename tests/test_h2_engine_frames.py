"""The h2 engine's own outbound frames (layer 1): HEADERS, CONTINUATION and DATA written by
``H2Engine`` without h2's frame objects must be what an h2 client reads back, and keep h2's
stream state and send windows in step (RFC 9113 4.3, 5.1, 6.9.1)."""

from __future__ import annotations

import pytest

pytest.importorskip("h2")

import h2.config
import h2.connection
import h2.events

from dualcorn.protocols.http2.engine import H2Engine
from dualcorn.protocols.http2.events import EngineSettings

SETTINGS = EngineSettings(100, 65536, 4096, 65535, 4 * 65535, 131072)
REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]


def pair(max_frame: int | None = None) -> tuple[H2Engine, h2.connection.H2Connection]:
    engine = H2Engine(SETTINGS)
    engine.start()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    engine.receive(client.data_to_send())
    client.receive_data(engine.bytes_to_send())
    engine.receive(client.data_to_send())  # the client's SETTINGS ACK
    return engine, client


def exchange(engine: H2Engine, client: h2.connection.H2Connection) -> list[object]:
    return list(client.receive_data(engine.bytes_to_send()))


def test_head_body_and_end_read_back() -> None:
    engine, client = pair()
    client.send_headers(1, REQUEST, end_stream=True)
    engine.receive(client.data_to_send())
    before = engine.window(1)
    assert engine.send_headers(1, [(b":status", b"200"), (b"content-length", b"5")], False)
    assert engine.send_data(1, b"hello", False)
    assert engine.window(1) == before - 5  # both windows debited
    assert engine.end_stream(1)
    events = exchange(engine, client)
    kinds = [type(event) for event in events]
    received, stream_ended = h2.events.DataReceived, h2.events.StreamEnded
    # END_STREAM rides on an empty DATA frame, as h2's own end_stream sends it.
    assert kinds == [h2.events.ResponseReceived, received, received, stream_ended]
    assert events[0].headers == [(b":status", b"200"), (b"content-length", b"5")]  # type: ignore[attr-defined]
    assert events[1].data == b"hello"  # type: ignore[attr-defined]
    assert engine.client_done(1)
    # The stream is closed on both sides: nothing more may be sent on it.
    assert not engine.send_data(1, b"x", True)
    assert not engine.send_headers(1, [(b":status", b"200")], True)


def test_a_large_head_goes_out_in_continuation_frames() -> None:
    engine, client = pair()
    client.send_headers(1, REQUEST, end_stream=True)
    engine.receive(client.data_to_send())
    # Values HPACK cannot shrink much, over two 16 KiB frames in all (RFC 9113 4.3).
    fields = [(b":status", b"200")]
    fields += [(b"x-big-%d" % n, bytes(range(33, 127)) * 120) for n in range(4)]
    assert engine.send_headers(1, fields, True)
    data = engine.bytes_to_send()
    assert data[3] == 0x1 and data[4] == 0x1  # HEADERS with END_STREAM, not END_HEADERS
    events = list(client.receive_data(data))
    assert isinstance(events[0], h2.events.ResponseReceived)
    assert events[0].headers == fields
    assert isinstance(events[1], h2.events.StreamEnded)


def test_interim_head_then_response_then_trailers() -> None:
    engine, client = pair()
    client.send_headers(1, REQUEST, end_stream=True)
    engine.receive(client.data_to_send())
    assert not engine.send_headers(1, [(b":status", b"103")], True)  # 1xx cannot end it
    assert engine.send_headers(1, [(b":status", b"103"), (b"link", b"</a.css>")], False)
    assert engine.send_headers(1, [(b":status", b"200")], False)
    assert engine.send_data(1, b"body", False)
    assert engine.send_headers(1, [(b"x-checksum", b"1")], True)
    kinds = [type(event) for event in exchange(engine, client)]
    assert kinds == [
        h2.events.InformationalResponseReceived,
        h2.events.ResponseReceived,
        h2.events.DataReceived,
        h2.events.TrailersReceived,
        h2.events.StreamEnded,
    ]


def test_data_past_the_window_or_on_a_reset_stream_is_refused() -> None:
    engine, client = pair()
    client.send_headers(1, REQUEST, end_stream=True)
    client.send_headers(3, REQUEST, end_stream=True)
    engine.receive(client.data_to_send())
    assert engine.send_headers(1, [(b":status", b"200")], False)
    window = engine.window(1)
    assert not engine.send_data(1, b"x" * (window + 1), False)
    assert engine.window(1) == window  # nothing debited
    assert engine.send_headers(3, [(b":status", b"200")], False)
    client.reset_stream(3)
    engine.receive(client.data_to_send())
    assert not engine.send_data(3, b"late", True)
    assert not engine.send_data(99, b"never opened", True)
