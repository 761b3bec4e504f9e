"""The HPACK dynamic table size update zttp 0.0.35 does not send (RFC 7541 4.2, 6.3).

Theory of operation.  A client that lowers SETTINGS_HEADER_TABLE_SIZE (to 0, say: it keeps no
dynamic table) expects the server's encoder to acknowledge the change with a dynamic table
size update at the start of the first header block after the SETTINGS acknowledgement
(RFC 7541 4.2); an HPACK decoder may treat a block without it as a decoding error.  zttp's
encoder sends none, but it never inserts into its dynamic table either (every field goes out
as a literal without indexing, checked in tests/test_http2_probes.py): its table is always
empty, so an update to size 0 is true whatever the client allows, and it is what dualcorn
puts at the start of that block itself.
"""

from __future__ import annotations

__all__ = ["TABLE_SIZE_ZERO", "with_table_size_update"]

TABLE_SIZE_ZERO = b"\x20"  # RFC 7541 6.3: 001 then the new maximum size, 0, on 5 bits
_HEADERS = 1
_PADDED, _PRIORITY = 0x8, 0x20
_FRAME_HEADER = 9


def with_table_size_update(out: bytes, max_frame: int) -> bytes | None:
    """``out`` (whole frames) with the update at the start of its first HEADERS frame's block;
    None if it has no HEADERS frame, or if that frame is full (then the next block takes it)."""
    pos = 0
    end = len(out)
    while pos + _FRAME_HEADER <= end:
        length = int.from_bytes(out[pos : pos + 3], "big")
        if out[pos + 3] != _HEADERS:
            pos += _FRAME_HEADER + length
            continue
        if length + 1 > max_frame:
            return None
        flags = out[pos + 4]
        # RFC 9113 6.2: the block fragment follows the pad length and the priority fields.
        block = (
            pos + _FRAME_HEADER + (1 if flags & _PADDED else 0) + (5 if flags & _PRIORITY else 0)
        )
        header = (length + 1).to_bytes(3, "big") + out[pos + 3 : pos + _FRAME_HEADER]
        return out[:pos] + header + out[pos + _FRAME_HEADER : block] + TABLE_SIZE_ZERO + out[block:]
    return None
