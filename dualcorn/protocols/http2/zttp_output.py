"""The sending half of the zttp engine: response heads, bodies, trailers and resets.

:class:`ZttpOutput` is the base :class:`~dualcorn.protocols.http2.engine_zttp.ZttpEngine`
builds on (the engine is the reading half; :class:`~dualcorn.protocols.http2.zttp_windows.
InboundWindows` below both keeps the request-body windows).  What it adds to zttp's own
writing: a response that fits its windows goes out in one call with END_STREAM on its one DATA
frame (zttp ends a body with an empty DATA frame of its own, RFC 9113 6.1 allows either;
:func:`~dualcorn.protocols.http2.zttp_frames.merged_end`), the HPACK table size update zttp
never sends (RFC 7541 4.2, :mod:`~dualcorn.protocols.http2.zttp_hpack`), and a reset for a
response zttp refuses to send, so the client does not wait for one that cannot come.
"""

from __future__ import annotations

import contextlib
from typing import Any

import zttp

from dualcorn.protocols.http2 import events as ev
from dualcorn.protocols.http2.zttp_frames import merged_end
from dualcorn.protocols.http2.zttp_hpack import with_table_size_update
from dualcorn.protocols.http2.zttp_windows import InboundWindows

__all__ = ["ZttpOutput"]


class ZttpOutput(InboundWindows):
    """Writing on one zttp connection (the engine's base; see the module notes)."""

    __slots__ = ("_known", "_max_frame", "_table_update")

    def __init__(self, conn: Any, stream_window: int, connection_window: int) -> None:
        super().__init__(conn, stream_window, connection_window)
        self._known: set[int] = set()  # streams reported as Request and not yet ended here
        self._max_frame = 16384  # the client's SETTINGS_MAX_FRAME_SIZE (RFC 9113 6.5.2)
        # The client changed SETTINGS_HEADER_TABLE_SIZE: the next header block starts with a
        # table size update (zttp_hpack.py).
        self._table_update = False

    # The sending methods return False when the stream can take nothing more (as H2Engine's):
    # zttp refused to send (a field RFC 9113 8.2.2 forbids, or the stream is gone).

    def send_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> bool:
        """A response head, an interim (1xx) head or trailers (``end``) on one stream."""
        stream = self._conn.stream(stream_id)
        name, value = fields[0]
        try:
            if name != b":status":
                stream.end_message(fields)  # trailers
                self._ended(stream_id)
            else:
                status = int(value)
                if status < 200:
                    stream.send_informational(status, fields[1:])
                else:
                    stream.send_response(status, fields[1:], end)
                    if end:
                        self._ended(stream_id)
        except zttp.LocalProtocolError:
            self._refused_send(stream)
            return False
        if self._table_update:
            self._size_update()
        return True

    def _size_update(self) -> None:
        out = self._conn.data_to_send()
        updated = with_table_size_update(out, self._max_frame)
        if updated is not None:
            self._table_update = False
            out = updated
        if out:
            self._out.append(out)

    def send_response(
        self, stream_id: int, status: int, fields: list[tuple[bytes, bytes]], body: bytes
    ) -> bool | None:
        """A final head (``fields``, ``:status`` first) and the whole body in one DATA frame
        that ends the stream: most responses.  None, with nothing sent, if the windows or the
        frame size cannot take the body at once (or an HPACK table size update is due)."""
        size = len(body)
        stream = self._conn.stream(stream_id)
        window = stream.send_window
        if (
            window is None
            or size > window
            or size > self._conn.send_window
            or size > self._max_frame
            or self._table_update
        ):
            return None
        try:
            stream.send_response(status, fields[1:], False)
            stream.send_data(body)
            stream.end_message()
        except zttp.LocalProtocolError:
            self._refused_send(stream)
            return False
        entry = self._open.get(stream_id)
        if entry is None or entry[3]:  # as _ended: the client's side is done too
            self._known.discard(stream_id)
        out = self._conn.data_to_send()  # as _merge_end, one call less
        if out:
            self._out.append(merged_end(out, stream_id, size))
        return True

    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> bool:
        """Body bytes that fit :meth:`window` and :attr:`max_frame`."""
        stream = self._conn.stream(stream_id)
        try:
            stream.send_data(data)
            if end:
                stream.end_message()
                self._ended(stream_id)
                self._merge_end(stream_id, len(data))
        except zttp.LocalProtocolError:
            self._refused_send(stream)
            return False
        return True

    def _merge_end(self, stream_id: int, size: int) -> None:
        """zttp ends a body with an empty DATA frame of its own: set END_STREAM on the last
        DATA frame instead (zttp_frames.py)."""
        out = self._conn.data_to_send()
        if out:
            self._out.append(merged_end(out, stream_id, size))

    def _refused_send(self, stream: Any) -> None:
        # Reset, so the client does not wait for a response that cannot come.
        with contextlib.suppress(zttp.LocalProtocolError):
            stream.reset(ev.INTERNAL_ERROR)
        self._close(stream.stream_id)
        self._known.discard(stream.stream_id)

    def end_stream(self, stream_id: int) -> bool:
        stream = self._conn.stream(stream_id)
        try:
            stream.end_message()
        except zttp.LocalProtocolError:
            self._refused_send(stream)
            return False
        self._ended(stream_id)
        return True

    def _ended(self, stream_id: int) -> None:
        if self.client_done(stream_id):
            self._known.discard(stream_id)

    def reset(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM, unless the stream is already closed (then nothing may be sent)."""
        if self.client_done(stream_id) and stream_id not in self._known:
            # Closed both ways, or a request zttp refused: reset only a refused request the
            # client is still sending (the connection asks for it after its answer).
            return
        self._close(stream_id)
        self._known.discard(stream_id)
        with contextlib.suppress(zttp.LocalProtocolError):
            self._conn.stream(stream_id).reset(error_code)

    def window(self, stream_id: int) -> int:
        """How many body bytes the stream may send now (its window and the connection's)."""
        stream_window: int | None = self._conn.stream(stream_id).send_window
        if stream_window is None:
            return 0
        connection_window: int = self._conn.send_window
        return min(stream_window, connection_window)
