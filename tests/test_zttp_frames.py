"""END_STREAM merged into a zttp response's last DATA frame (layer 1: bytes).

zttp 0.0.35 ends a body with an empty DATA frame of its own; dualcorn sets END_STREAM on the
DATA frame before it and drops the empty one (dualcorn.protocols.http2.zttp_frames).  The
first test runs a real zttp connection, so a zttp that changes how it ends a body fails here
(the rewrite then leaves its bytes as they are, which the last test checks).
"""

from __future__ import annotations

import pytest

pytest.importorskip("zttp")
pytest.importorskip("h2")

import h2.config
import h2.connection
import h2.events
import zttp

from dualcorn.protocols.http2.zttp_frames import merged_end
from dualcorn.protocols.http2.zttp_windows import frame

_HEADERS, _DATA, _END_STREAM, _END_HEADERS = 1, 0, 0x1, 0x4


def frames(out: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each frame in ``out``."""
    found = []
    pos = 0
    while pos < len(out):
        length = int.from_bytes(out[pos : pos + 3], "big")
        sid = int.from_bytes(out[pos + 5 : pos + 9], "big")
        found.append((out[pos + 3], out[pos + 4], sid, bytes(out[pos + 9 : pos + 9 + length])))
        pos += 9 + length
    return found


def test_a_real_zttp_response_loses_its_empty_data_frame() -> None:
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    client.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                            (b":authority", b"a")], end_stream=True)  # fmt: skip
    server = zttp.Connection(zttp.SERVER, zttp.HTTP2)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    while server.next_event() is not zttp.NEED_DATA:
        pass
    preface = server.data_to_send()
    stream = server.stream(1)
    stream.send_response(200, [(b"content-type", b"text/plain")], False)
    stream.send_data(b"Hello, world!")
    stream.end_message()
    out = server.data_to_send()
    assert [kind for kind, _, _, _ in frames(out)] == [_HEADERS, _DATA, _DATA]  # zttp's way
    merged = merged_end(out, 1, 13)
    assert [(kind, flags & _END_STREAM, payload) for kind, flags, _, payload in
            frames(merged)][1:] == [(_DATA, _END_STREAM, b"Hello, world!")]  # fmt: skip
    events = client.receive_data(preface + bytes(merged))
    ended = [e for e in events if isinstance(e, h2.events.StreamEnded)]
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert body == b"Hello, world!" and [e.stream_id for e in ended] == [1]


def test_a_body_in_several_frames_ends_on_the_last() -> None:
    head = frame(_HEADERS, _END_HEADERS, 3, b"\x88")
    out = head + frame(_DATA, 0, 3, b"abc") + frame(_DATA, 0, 3, b"de") + frame(_DATA, 1, 3, b"")
    # ``size`` names the whole body (5), not the last frame's: the frames are walked.
    merged = merged_end(out, 3, 5)
    assert frames(merged) == [(_HEADERS, _END_HEADERS, 3, b"\x88"), (_DATA, 0, 3, b"abc"),
                              (_DATA, _END_STREAM, 3, b"de")]  # fmt: skip


@pytest.mark.parametrize(
    "out",
    [
        frame(_DATA, 0, 5, b"abc") + frame(_DATA, 1, 5, b""),  # another stream's end
        frame(_DATA, 0, 3, b"abc"),  # not ended by an empty frame
        frame(_HEADERS, 5, 3, b"\x88") + frame(_DATA, 1, 3, b""),  # no DATA before it
        b"\0\0\0\0\1\0\0\0\3",  # only the empty frame
    ],
)
def test_other_shapes_are_left_alone(out: bytes) -> None:
    assert merged_end(out, 3, 3) == out
