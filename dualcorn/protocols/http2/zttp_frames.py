"""The last DATA frame of a zttp response, made to end the stream itself.

Theory of operation.  zttp 0.0.35 ends a body with an empty DATA frame of its own (END_STREAM
and no payload) after the DATA that carried the body.  RFC 9113 6.1 lets END_STREAM ride on
the last DATA frame instead, which is one frame less per response for every client to parse
(nghttp2, browsers and h2load all take either).  :func:`merged_end` rewrites the bytes zttp
queued for one stream: the flag set on the frame before, the empty frame dropped.  zttp's own
stream state is untouched: it ended the stream either way.
"""

from __future__ import annotations

__all__ = ["merged_end"]

_DATA = 0
_END_STREAM = 0x1
_FRAME_HEADER = 9


def merged_end(out: bytes, stream_id: int, size: int) -> bytes | bytearray:
    """``out`` (whole frames, the last being zttp's empty END_STREAM DATA on ``stream_id``)
    with END_STREAM on the DATA frame before it (``size`` bytes of payload, most often);
    ``out`` unchanged if it does not end that way."""
    sid = stream_id.to_bytes(4, "big")
    if not out.endswith(b"\0\0\0\0\1" + sid):
        return out
    end = len(out) - _FRAME_HEADER
    # Most often the body went out whole as the frame before: its header is where it would
    # be.  Else walk the frames to the last one.
    last = end - _FRAME_HEADER - size
    if (
        last < 0
        or out[last : last + 4] != size.to_bytes(3, "big") + b"\0"
        or (out[last + 5 : last + 9] != sid)
    ):
        pos = last = 0
        while pos < end:
            last = pos
            pos += _FRAME_HEADER + int.from_bytes(out[pos : pos + 3], "big")
        if not end or pos != end or out[last + 3] != _DATA or out[last + 5 : last + 9] != sid:
            return out
    merged = bytearray(out)  # one copy: the flag set in place, the empty frame cut off
    del merged[end:]
    merged[last + 4] |= _END_STREAM
    return merged
