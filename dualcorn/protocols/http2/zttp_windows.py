"""The zttp engine's inbound flow control: the windows dualcorn grants, kept apart from zttp.

Theory of operation.  zttp 0.0.35 grants WINDOW_UPDATE as soon as it parses DATA, before an app
reads it, and does not enforce the window it advertised.  The zttp engine drops its window
updates (:mod:`~dualcorn.protocols.http2.engine_zttp`) and keeps the windows here instead, as
the ``h2`` engine does: every DATA frame is counted against the windows dualcorn granted (a
client past them gets GOAWAY FLOW_CONTROL_ERROR, RFC 9113 6.9.1), and credit goes back only as
the app reads (:meth:`InboundWindows.ack`), so the unread body of a stream stays within its
window, per stream.

The counting needs only the 9-byte frame headers, which the flood guard
(:class:`~dualcorn.protocols.http2.limits.FloodGuard`) reads anyway: :class:`InboundWindows` is
its :class:`~dualcorn.protocols.http2.limits.FrameObserver`, so each header is read once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_WINDOW", "FLOW_CONTROL_ERROR", "InboundWindows", "frame", "window_update"]

DEFAULT_WINDOW = 65535  # RFC 9113 6.9.2: every window before SETTINGS and WINDOW_UPDATE
FLOW_CONTROL_ERROR = 3
_WINDOW_UPDATE = 8
_END_STREAM = 0x1


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    """One HTTP/2 frame (RFC 9113 4.1)."""
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def window_update(sid: int, increment: int) -> bytes:
    return frame(_WINDOW_UPDATE, 0, sid, increment.to_bytes(4, "big"))


class InboundWindows:
    """The request-body windows of one zttp connection; see the module notes."""

    __slots__ = (
        "_conn", "_conn_credit", "_conn_initial", "_conn_window", "_highest", "_lengths",
        "_open", "_out", "_stream_initial", "_window_error",
    )  # fmt: skip

    def __init__(self, conn: Any, stream_window: int, connection_window: int) -> None:
        self._conn: Any = conn  # the zttp.Connection, whose queued frames go out first
        self._out: list[bytes | bytearray] = []  # frames written here, in order with zttp's
        self._stream_initial = stream_window
        self._conn_initial = max(connection_window, DEFAULT_WINDOW)
        self._conn_window = DEFAULT_WINDOW  # what the client may still send on the connection
        self._conn_credit = 0  # read by apps, not yet granted back
        # Streams the client opened with a body to come, until zttp ends or resets them:
        # [window left, credit not yet granted back, bytes counted but not delivered,
        # client done (END_STREAM seen)].
        self._open: dict[int, list[int]] = {}
        # Content-Length left of the bodies under way: zttp does not stop a longer body.
        self._lengths: dict[int, int] = {}
        self._highest = 0  # the highest stream id the client opened
        self._window_error: str | None = None  # a window the client overran (RFC 9113 6.9.1)

    # --- FrameObserver: the frame headers as the flood guard reads them ---------------------

    def headers_frame(self, stream_id: int, flags: int) -> None:
        if stream_id > self._highest:
            self._highest = stream_id
            if not flags & _END_STREAM:
                self._open[stream_id] = [self._stream_initial, 0, 0, 0]
        elif flags & _END_STREAM:  # trailers
            entry = self._open.get(stream_id)
            if entry is not None:
                entry[3] = 1

    def data_frame(self, stream_id: int, length: int, flags: int) -> None:
        self._conn_window -= length
        if self._conn_window < 0:
            self._window_error = (
                self._window_error or "DATA past the connection window (RFC 9113 6.9.1)"
            )
        window = self._open.get(stream_id)
        if window is None:
            # A closed or unknown stream: zttp drops the frame (RFC 9113 6.9: the connection
            # window is given back all the same).
            self._credit_connection(length)
            return
        window[0] -= length
        window[2] += length
        if window[0] < 0:
            self._window_error = (
                self._window_error or "DATA past the stream window (RFC 9113 6.9.1)"
            )
        if flags & _END_STREAM:
            window[3] = 1

    def padding(self, stream_id: int, size: int) -> None:
        """Padding costs window but reaches no app (RFC 9113 6.1): granted back at once."""
        window = self._open.get(stream_id)
        if window is None:  # data_frame gave the whole frame back, or _close did
            return
        self._out.append(window_update(0, size))
        self._conn_window += size
        window[0] += size
        window[2] -= size
        self._out.append(window_update(stream_id, size))

    # --- Credit ------------------------------------------------------------------------------

    def _close(self, sid: int) -> None:
        """The stream takes no more DATA: what zttp counted but never delivered (it drops a
        body past Content-Length, or what follows a reset) goes back to the connection."""
        self._lengths.pop(sid, None)
        entry = self._open.pop(sid, None)
        if entry is not None and entry[2] > 0:
            self._credit_connection(entry[2])

    def _credit_connection(self, size: int) -> None:
        self._conn_credit += size
        if self._conn_window < self._conn_initial // 2:
            credit = self._conn_credit
            self._conn_credit = 0
            self._conn_window += credit
            self._flush_zttp()
            self._out.append(window_update(0, credit))

    def ack(self, stream_id: int, size: int) -> None:
        """The app read ``size`` flow-controlled bytes: the client may send that much more.

        Credit goes back once a window is half used (as ``h2`` and nghttp2 batch it)."""
        if size <= 0:
            return
        window = self._open.get(stream_id)
        if window is not None and not window[3]:
            window[1] += size
            if window[0] < self._stream_initial // 2:
                credit = window[1]
                window[0] += credit
                window[1] = 0
                self._flush_zttp()
                self._out.append(window_update(stream_id, credit))
        self._credit_connection(size)

    def client_done(self, stream_id: int) -> bool:
        """Whether the client has ended its side of the stream (or the stream is closed)."""
        entry = self._open.get(stream_id)
        return entry is None or entry[3] == 1

    def _flush_zttp(self) -> None:
        # Frames written here go after what zttp queued (HPACK order, HEADERS before RST).
        queued = self._conn.data_to_send()
        if queued:
            self._out.append(queued)
