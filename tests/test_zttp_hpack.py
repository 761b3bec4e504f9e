"""The HPACK table size update dualcorn adds to zttp's header blocks (layer 1: bytes).

dualcorn.protocols.http2.zttp_hpack relies on one fact of zttp 0.0.35's encoder: it never
inserts into its dynamic table, so an update to size 0 is always true.  The first test checks
that fact on a real zttp connection, so that a zttp that starts indexing fails here first.
"""

from __future__ import annotations

import pytest

pytest.importorskip("zttp")
pytest.importorskip("h2")

import h2.config
import h2.connection
import hpack
import zttp

from dualcorn.protocols.http2.zttp_hpack import with_table_size_update

FIELDS = [
    (b"content-type", b"text/plain"),
    (b"server", b"dualcorn"),
    (b"x-custom-header", b"a value a table would keep"),
    (b"date", b"Tue, 01 Dec 2026 01:00:00 GMT"),
]


def _integer(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    mask = (1 << prefix) - 1
    value = block[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _representations(block: bytes) -> list[str]:
    """RFC 7541 6: the kind of each field representation in a header block."""
    kinds = []
    pos = 0
    while pos < len(block):
        byte = block[pos]
        if byte & 0x80:
            _, pos = _integer(block, pos, 7)
            kinds.append("indexed")
            continue
        if byte & 0xE0 == 0x20:
            _, pos = _integer(block, pos, 5)
            kinds.append("size update")
            continue
        incremental = byte & 0xC0 == 0x40
        index, pos = _integer(block, pos, 6 if incremental else 4)
        for _ in range(1 if index else 2):  # the name unless indexed, then the value
            length, pos = _integer(block, pos, 7)
            pos += length
        kinds.append("incremental" if incremental else "literal")
    return kinds


def _header_blocks(data: bytes) -> list[bytes]:
    blocks = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        if data[pos + 3] == 1:
            blocks.append(data[pos + 9 : pos + 9 + length])
        pos += 9 + length
    return blocks


def _responses(count: int) -> list[bytes]:
    """zttp's frames for ``count`` responses with the same fields on one connection."""
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    server = zttp.Connection(zttp.SERVER, zttp.HTTP2)
    server.initiate_connection()
    server.data_to_send()
    out = []
    for _ in range(count):
        sid = client.get_next_available_stream_id()
        request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x")]
        client.send_headers(sid, [*request, (b":path", b"/")], end_stream=True)
        server.receive_data(client.data_to_send())
        while server.next_event() is not zttp.NEED_DATA:
            pass
        server.stream(sid).send_response(200, FIELDS, True)
        out.append(server.data_to_send())
    return out


def test_zttps_encoder_never_indexes_a_field() -> None:
    for data in _responses(3):
        for block in _header_blocks(data):
            kinds = _representations(block)
            assert kinds and "incremental" not in kinds, kinds


def test_the_update_leads_the_first_header_block() -> None:
    data = _responses(1)[0]
    updated = with_table_size_update(data, 16384)
    assert updated is not None and len(updated) == len(data) + 1
    block = _header_blocks(updated)[0]
    assert _representations(block)[0] == "size update"
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = 0  # a client that allows no dynamic table
    fields = decoder.decode(block, raw=True)
    assert fields[0] == (b":status", b"200") and decoder.header_table.maxsize == 0
    assert [(bytes(n), bytes(v)) for n, v in fields[1:]] == FIELDS


def test_a_full_frame_leaves_the_update_to_the_next_block() -> None:
    data = _responses(1)[0]
    assert with_table_size_update(data, len(_header_blocks(data)[0])) is None
    assert with_table_size_update(b"", 16384) is None
