"""The HTTP/2 frame layer on ``zttp`` (a Zig core): the fast path beside the ``h2`` engine.

Theory of operation.  :class:`ZttpEngine` offers exactly :class:`~dualcorn.protocols.http2.
engine.H2Engine`'s methods and events, so the connection, the streams and the request cycle
do not know which library parses the frames (as the HTTP/1.1 loop does not know h11 from
httptools).  ``zttp.H2Connection`` (0.0.35) costs about a twentieth of ``h2``'s CPU per
request, but it decides four things a server must decide itself; this module takes them back
by reading the frame headers that go in and out (9 bytes each: cheap):

* **Inbound flow control.**  zttp grants WINDOW_UPDATE as soon as it parses DATA, before an
  app reads it.  Here its WINDOW_UPDATE frames are dropped from what it sends, and the windows
  dualcorn grants are kept by :mod:`~dualcorn.protocols.http2.zttp_windows`, from the frame
  headers the flood guard reads (:meth:`ZttpEngine.ack` gives credit back as apps read).
* **SETTINGS.**  zttp's are fixed (128 streams, 64 KiB header list, extended CONNECT on); the
  server's own SETTINGS frame replaces zttp's at the preface: the stream limit, the header
  list, the stream window, RFC 8441 CONNECT only where the server serves WebSockets.  zttp still
  enforces its own ceilings (:data:`MAX_STREAMS`, :data:`MAX_HEADER_LIST`), so dualcorn's
  limits are advertised at most at those.
* **Malformed requests.**  zttp answers one with RST_STREAM PROTOCOL_ERROR at once; RFC 9113
  8.1.1 lets a server answer first, and the ``h2`` engine gives the HTTP/1.1 table's status.
  Here zttp's reset is held back and :class:`Malformed` reported instead, so the connection
  answers 400 on that stream and resets it only if the client is still sending, as with
  ``h2``.  Requests zttp lets through that ``h2`` calls malformed (``:protocol`` while
  extended CONNECT is off, CONNECT with ``:path`` and no ``:protocol``) are reported the same
  way.  A request zttp passed goes over as a ``CheckedRequest``: zttp made RFC 9113's field
  and pseudo-header checks, so ``request.checked_request_head`` makes only the rest (a Host
  at all among them).
* **Its hard limits.**  zttp ends a connection after :data:`STREAMS_PER_CONNECTION` streams
  or 256 resets (GOAWAY ENHANCE_YOUR_CALM), however slowly they came; the engine counts the
  same and reports ``Recycle`` before either, and the connection ends gracefully
  (:mod:`~dualcorn.protocols.http2.zttp_counts` says what zttp counts).

Frames zttp queues in reaction to what it read (SETTINGS and PING acknowledgements, window
updates, resets, GOAWAY) are taken out of it at the end of :meth:`ZttpEngine.receive`, so the
filter runs only on them; responses go out untouched.
"""

from __future__ import annotations

from typing import Any

import zttp

from dualcorn.protocols.http2 import events as ev
from dualcorn.protocols.http2.events import EngineSettings, H2ConnectionError
from dualcorn.protocols.http2.limits import ZTTP_MAX_HEADER_LIST, ZTTP_MAX_STREAMS
from dualcorn.protocols.http2.zttp_counts import GRACEFUL_STREAMS, LAST_GRACEFUL_ID, graceful_resets
from dualcorn.protocols.http2.zttp_output import ZttpOutput
from dualcorn.protocols.http2.zttp_windows import (
    DEFAULT_WINDOW,
    FLOW_CONTROL_ERROR,
    frame,
    window_update,
)

__all__ = ["GRACEFUL_STREAMS", "MAX_HEADER_LIST", "MAX_STREAMS", "ZttpEngine"]

# zttp 0.0.35's ceilings, which its SETTINGS advertise and its parser enforces.
MAX_STREAMS = ZTTP_MAX_STREAMS  # concurrent streams; past them zttp refuses (REFUSED_STREAM)
MAX_HEADER_LIST = ZTTP_MAX_HEADER_LIST  # a header block past it ends the connection
_HEADER_TABLE_SIZE = 4096  # zttp's HPACK decoder table, which its SETTINGS advertise
_MAX_FRAME_SIZE = 16384  # zttp's, likewise

_DATA, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 3, 4, 6, 7, 8
_END_STREAM = 0x1
_FRAME_HEADER = 9
# _filter's mark for a stream whose malformed-request reset it held back (not an error code).
_HELD = -1
_SET_HEADER_TABLE, _SET_PUSH, _SET_STREAMS, _SET_WINDOW = 1, 2, 3, 4
_SET_FRAME, _SET_LIST, _SET_CONNECT = 5, 6, 8


class ZttpEngine(ZttpOutput):
    """One server-side HTTP/2 connection on zttp; see the module notes.

    It is the flood guard's :class:`~dualcorn.protocols.http2.limits.FrameObserver`: the
    connection hands it to the guard, which counts DATA against its windows."""

    __slots__ = ("_preface_frames", "_recycled", "_reset_limit", "_resets", "_websockets")

    def __init__(self, settings: EngineSettings) -> None:
        conn = zttp.Connection(zttp.SERVER, zttp.HTTP2)
        super().__init__(conn, settings.initial_window_size, settings.connection_window)
        self._max_frame = _MAX_FRAME_SIZE
        self._websockets = settings.enable_connect_protocol
        # The resets zttp counted, and where the graceful end comes (zttp_counts.py).
        self._resets = 0
        self._reset_limit = graceful_resets(settings.max_concurrent_streams)
        self._recycled = False  # ev.Recycle was reported
        self._settings_frame(settings)

    def _settings_frame(self, settings: EngineSettings) -> None:
        values = (
            (_SET_HEADER_TABLE, _HEADER_TABLE_SIZE),
            (_SET_STREAMS, min(settings.max_concurrent_streams, MAX_STREAMS)),
            (_SET_WINDOW, self._stream_initial),
            (_SET_FRAME, _MAX_FRAME_SIZE),
            (_SET_LIST, min(settings.max_header_list_size, MAX_HEADER_LIST)),
            (_SET_CONNECT, int(settings.enable_connect_protocol)),  # RFC 8441 WebSockets
        )
        payload = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values)
        self._preface_frames = frame(_SETTINGS, 0, 0, payload)

    def start(self) -> None:
        """Queue the server's preface: dualcorn's SETTINGS in place of zttp's, the window."""
        self._conn.initiate_connection()
        self._conn.data_to_send()  # zttp's SETTINGS frame: replaced by the server's own
        self._out.append(self._preface_frames)
        grow = self._conn_initial - DEFAULT_WINDOW
        if grow > 0:
            self._out.append(window_update(0, grow))
        self._conn_window = self._conn_initial

    # --- Reading ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[ev.Event]:
        """Events for the bytes read; raises :class:`H2ConnectionError` (a GOAWAY is queued)."""
        overflow = self._window_error  # counted as the flood guard read the frame headers
        conn = self._conn
        if overflow:
            self._flush_zttp()
            self._out.append(self.goaway_frame(self._highest, FLOW_CONTROL_ERROR))
            raise H2ConnectionError(overflow, FLOW_CONTROL_ERROR)
        conn.receive_data(data)
        events: list[ev.Event] = []
        append = events.append
        resets: list[Any] = []
        failure: str | None = None
        next_event = conn.next_event
        need_data = zttp.NEED_DATA
        while True:
            try:
                event = next_event()
            except zttp.ProtocolError as exc:
                failure = str(exc) or "a frame zttp refused"
                break
            if event is need_data:
                break
            kind = type(event)
            # Most frequent first: request heads, then their bodies.
            if kind is zttp.Request:
                append(self._request(event))
            elif kind is zttp.Data:
                body = event.data
                sid = event.stream_id
                entry = self._open.get(sid)
                if entry is not None:
                    entry[2] -= len(body)
                left = self._lengths.get(sid)
                if left is not None:
                    left -= len(body)
                    self._lengths[sid] = left
                    if left < 0:
                        append(self._overflow(sid, len(body), left + len(body)))
                        continue
                append(ev.Body(sid, body, len(body), False))
            elif kind is zttp.EndOfMessage:
                self._close(event.stream_id)
                append(ev.End(event.stream_id))
            elif kind is zttp.WindowUpdate:
                append(ev.Window(event.stream_id))
            elif kind is zttp.RstStream:
                resets.append(event)  # the client's, or zttp's refusal: told apart below
            elif kind is zttp.Ping:
                if event.ack:
                    append(ev.PingAcked(event.data))
            elif kind is zttp.Settings:
                self._peer_settings(event.params, append)
            elif kind is zttp.GoAway:
                append(ev.Closed(event.error_code, event.last_stream_id))
            elif event is zttp.CONNECTION_CLOSED:
                break
        sent_resets = self._filter(conn.data_to_send())
        for event in resets:
            self._reset_event(event, sent_resets, append)
        if failure is not None:
            code = sent_resets.get(0, ev.PROTOCOL_ERROR)
            if 0 not in sent_resets:  # zttp queued no GOAWAY of its own
                self._out.append(self.goaway_frame(self._highest, code))
            raise H2ConnectionError(failure, code)
        # zttp's lifetime counts (zttp_counts.py): a graceful end before either is passed.
        if (
            self._resets >= self._reset_limit or self._highest >= LAST_GRACEFUL_ID
        ) and not self._recycled:
            self._recycled = True
            append(ev.Recycle())
        return events

    def _request(self, event: Any) -> ev.Event:
        sid = event.stream_id
        headers = event.headers
        if type(headers) is not list:
            headers = headers.to_list()
        method = event.method
        protocol = event.protocol
        if protocol is not None:
            if not self._websockets:
                # RFC 8441 3: :protocol only where SETTINGS_ENABLE_CONNECT_PROTOCOL was sent.
                return ev.Malformed(sid, "extended CONNECT is not enabled (RFC 8441)")
            # zttp made :authority the Host field; request.py checks an extended CONNECT's
            # pseudo-headers (RFC 8441 4), so they are given back.
            authority = [value for name, value in headers if name == b"host"]
            if method != b"CONNECT" or len(authority) != 1:
                return ev.Malformed(sid, ":protocol on a request that is no CONNECT (RFC 8441 4)")
            fields = [
                (b":method", method), (b":protocol", protocol), (b":scheme", b"https"),
                (b":path", event.target), (b":authority", authority[0]), *headers,
            ]  # fmt: skip
            self._known.add(sid)
            return ev.Request(sid, fields, event.end_stream)
        if method == b"CONNECT":
            return ev.Malformed(sid, "a CONNECT request with :path (RFC 9113 8.5)")
        if not event.end_stream:
            # The DATA that follows is counted against it in receive() (RFC 9113 8.1.1).
            for name, value in headers:
                if name == b"content-length" and value.isdigit():
                    self._lengths[sid] = int(value)
        self._known.add(sid)
        # zttp checked the pseudo-headers and the fields (request.checked_request_head says
        # which checks), and made :authority the Host field; request.py checks that one came.
        return ev.CheckedRequest(sid, method, event.target, headers, event.end_stream)

    def _overflow(self, sid: int, size: int, was: int) -> ev.Event:
        """RFC 9113 8.1.1: DATA past Content-Length is malformed (the connection resets the
        stream); the bytes never reach the app, so their window goes back now."""
        self._credit_connection(size)
        if was < 0:  # reported already: this is what followed in the same read
            return ev.Body(sid, b"", 0, False)
        return ev.Malformed(sid, "DATA past Content-Length (RFC 9113 8.1.1)")

    def _reset_event(self, event: Any, sent: dict[int, int], append: Any) -> None:
        sid = event.stream_id
        code = event.error_code
        held = sent.get(sid) == _HELD
        if held and code != ev.PROTOCOL_ERROR:
            return  # zttp's STREAM_CLOSED to the DATA after a malformed head (_filter)
        if held:
            code = _HELD  # zttp found the request malformed: the branch below
        if sent.get(sid) != code:  # the client reset the stream
            # zttp reports a client's reset only on a stream it still held, and counted it.
            self._resets += 1
            self._close(sid)
            self._known.discard(sid)
            append(ev.Reset(sid, code))
        elif code in (ev.PROTOCOL_ERROR, _HELD):  # zttp found the request (or body) malformed
            self._resets += 1  # zttp counts its own resets of a malformed request
            if sid in self._known:  # its reset went out: the stream was being served
                overflowed = self._lengths.get(sid, 0) < 0
                self._close(sid)
                self._known.discard(sid)
                if overflowed:
                    # _overflow reported this stream: a second report would find it gone
                    # and answer 400 on a stream already reset (RFC 9113 5.1: closed).
                    return
            # Else its reset was held back: the connection answers 400, then resets the
            # stream if the client is still sending (_open says).
            append(ev.Malformed(sid, "malformed request (RFC 9113 8.1.1)"))
        elif sid in self._known:  # zttp reset a served stream (REFUSED_STREAM, STREAM_CLOSED)
            # Or the client did with the code zttp sent: counted, as zttp may have.
            self._resets += 1
            self._close(sid)
            self._known.discard(sid)
            append(ev.Reset(sid, code))
        else:
            # A stream zttp refused before it was reported: the reset it queued is the answer.
            self._close(sid)

    def _peer_settings(self, params: list[tuple[int, int]], append: Any) -> None:
        for key, value in params:
            if key == _SET_WINDOW:
                append(ev.Window(0))  # every stream's window moved
            elif key == _SET_FRAME:
                self._max_frame = value
            elif key == _SET_HEADER_TABLE:
                self._table_update = True

    def _filter(self, out: bytes) -> dict[int, int]:
        """Keep zttp's reactions but its WINDOW_UPDATEs and its malformed-request resets;
        returns the resets it queued by stream (0: its GOAWAY's error code)."""
        sent: dict[int, int] = {}
        if not out:
            return sent
        keep: list[bytes] = []
        pos = start = 0
        end = len(out)
        while pos < end:
            length = int.from_bytes(out[pos : pos + 3], "big")
            kind = out[pos + 3]
            nxt = pos + _FRAME_HEADER + length
            if kind == _WINDOW_UPDATE:
                keep.append(out[start:pos])
                start = nxt
            elif kind == _RST_STREAM:
                sid = int.from_bytes(out[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
                code = int.from_bytes(out[pos + 9 : pos + 13], "big")
                if sent.get(sid) == _HELD:
                    # zttp answers DATA that followed the malformed head in the same read with
                    # STREAM_CLOSED; the connection answers that stream (400, then one reset
                    # with PROTOCOL_ERROR, RFC 9113 8.1.1), so these never go out.
                    keep.append(out[start:pos])
                    start = nxt
                elif code == ev.PROTOCOL_ERROR and sid not in self._known:
                    sent[sid] = _HELD
                    keep.append(out[start:pos])  # the connection answers 400, then resets
                    start = nxt
                else:
                    sent[sid] = code
            elif kind == _GOAWAY:
                sent[0] = int.from_bytes(out[pos + 13 : pos + 17], "big")
            pos = nxt
        if start == 0:
            self._out.append(out)
        else:
            keep.append(out[start:])
            self._out.append(b"".join(keep))
        return sent

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def highest_stream_id(self) -> int:
        return self._highest

    def ping(self, data: bytes) -> None:
        """Queue a PING with 8 bytes of ``data``; its ACK arrives as :class:`PingAcked`."""
        self._flush_zttp()
        self._out.append(frame(_PING, 0, 0, data[:8].ljust(8, b"\0")))

    def goaway_frame(self, last_stream_id: int, error_code: int) -> bytes:
        """A GOAWAY frame (RFC 9113 6.8), written apart from zttp's state."""
        payload = last_stream_id.to_bytes(4, "big") + error_code.to_bytes(4, "big")
        return frame(_GOAWAY, 0, 0, payload)

    def bytes_to_send(self) -> bytes:
        out = self._out
        if not out:
            data: bytes = self._conn.data_to_send()
            return data
        queued = self._conn.data_to_send()
        if queued:
            out.append(queued)
        self._out = []
        return b"".join(out)
