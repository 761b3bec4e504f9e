"""The HTTP/2 frame layer behind one small interface: the only module that imports ``h2``.

Theory of operation.  :class:`H2Engine` is sans-IO: the connection feeds it the bytes it read
(:meth:`H2Engine.receive`, which returns dualcorn's own events) and writes what
:meth:`H2Engine.bytes_to_send` returns.  The events and methods are the few the server needs,
so another library (``zttp.H2Connection``, measured in ``benchmarks/``) can replace ``h2``
here without the connection, the streams or the cycle changing.

Where ``h2`` (python-hyper, 4.x) is kept from doing what RFC 9113 lets a server do better:

* a HEADERS frame past SETTINGS_MAX_CONCURRENT_STREAMS makes ``h2`` end the whole connection
  (``TooManyStreamsError``).  RFC 9113 5.1.2 lets a server refuse just that stream
  (REFUSED_STREAM), which the connection does: ``h2``'s own count is switched off here, the
  connection counts its streams (including those whose app is still running after the client
  reset them: the lesson of Rapid Reset, CVE-2023-44487).
* a malformed request (RFC 9113 8.1.1: a Content-Length that is not digits or does not
  match the DATA; the field rules are checked in ``request.py``) is a *stream* error, but
  ``h2`` raises it as a connection error.  Here it becomes :class:`Malformed` for that stream
  only; the header block was decoded first, so the HPACK state stays in step.
* a graceful GOAWAY: ``h2``'s ``close_connection`` moves its state machine to CLOSED, after
  which the streams still open could not finish.  :meth:`H2Engine.goaway_frame` serializes
  the frame on its own (RFC 9113 6.8: streams up to the last id are still served), and a
  client's own graceful GOAWAY leaves its open streams to be answered.
"""

from __future__ import annotations

import contextlib
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame

from dualcorn.protocols.http2.events import (
    PROTOCOL_ERROR,
    Body,
    Closed,
    End,
    EngineSettings,
    Event,
    H2ConnectionError,
    Malformed,
    PingAcked,
    Request,
    Reset,
    SettingsAcked,
    Window,
)
from dualcorn.protocols.http2.request import malformed_trailers

__all__ = ["H2Engine"]  # the events and codes it produces live in events.py


# --- The h2 connection, kept from ending the connection on stream errors ----------------


class _ServerConnection(h2.connection.H2Connection):
    """``h2``'s connection with stream errors kept to their stream (see the module notes)."""

    _purge_at = 256  # streams in h2's table before the closed ones are forgotten

    @property
    def open_inbound_streams(self) -> int:
        # h2 reads this only to refuse a stream past MAX_CONCURRENT_STREAMS by ending the
        # connection; the server refuses such a stream by itself (RFC 9113 5.1.2).  But h2
        # forgets closed streams only while it counts them: without a count now and then its
        # table kept every stream a connection ever had (about 600 bytes each, for as long
        # as the connection lives).  Amortised: the table holds at most twice what is open.
        if len(self.streams) >= self._purge_at:
            self._open_streams(0)  # closed streams move to h2's bounded _closed_streams
            self._purge_at = max(256, 2 * len(self.streams))
        return 0

    def _receive_headers_frame(self, frame: HeadersFrame) -> Any:
        new = frame.stream_id not in self.streams
        try:
            return super()._receive_headers_frame(frame)
        except (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError):
            raise  # h2's own stream-state handling
        except h2.exceptions.ProtocolError as exc:
            stream = self.streams.get(frame.stream_id)
            if not new or stream is None or stream.closed or self._hpack_failed(exc):
                raise
            # The block was decoded and the stream opened: only its fields were refused.
            return [], [_MalformedHeaders(frame.stream_id, str(exc))]

    def _receive_frame(self, frame: Any) -> Any:
        if type(frame) is not DataFrame:
            return super()._receive_frame(frame)
        # h2 formats repr(frame) for its trace log before anything else, logger or not, and a
        # DATA frame's repr hexlifies its whole payload: 28 us per 16 KiB frame, more than
        # the rest of its handling.  A DATA frame's stream errors (a closed stream) are
        # answered inside _receive_data_frame, so h2's other handling never applies to it.
        frames, events = self._receive_data_frame(frame)
        self._prepare_for_sending(frames)
        return events

    def _receive_data_frame(self, frame: DataFrame) -> Any:
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError as exc:
            # RFC 9113 8.1.1: DATA that does not add up to Content-Length is malformed.
            # The frame's bytes still count against the connection window: give them back.
            self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
            return [], [_MalformedHeaders(frame.stream_id, str(exc))]

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> Any:
        if frame.error_code:
            return super()._receive_goaway_frame(frame)  # an error: nothing more is sent
        # RFC 9113 6.8: a graceful GOAWAY from the client means it opens no more streams;
        # those it opened are still answered (h2 would refuse to send on them, and drop
        # what is queued).
        event = h2.events.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    @staticmethod
    def _hpack_failed(exc: Exception) -> bool:
        return isinstance(exc, (h2.exceptions.DenialOfServiceError, _CompressionFailed))


class _CompressionFailed(h2.exceptions.ProtocolError):
    error_code = ErrorCodes.COMPRESSION_ERROR


class _Decoder(hpack.Decoder):
    """RFC 9113 4.3: a field block that does not decompress is a connection error of type
    COMPRESSION_ERROR (h2 says PROTOCOL_ERROR).  A block past the size cap stays h2's
    ENHANCE_YOUR_CALM (an HPACK bomb, RFC 9113 10.5.1)."""

    def decode(self, data: bytes, raw: bool = False) -> Any:
        try:
            return super().decode(data, raw)
        except hpack.OversizedHeaderListError:
            raise
        except (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise _CompressionFailed(f"HPACK: the field block does not decode: {exc}") from exc


class _MalformedHeaders(h2.events.Event):
    def __init__(self, stream_id: int, reason: str) -> None:
        self.stream_id = stream_id
        self.reason = reason


_SETTING = h2.settings.SettingCodes


class H2Engine:
    """One server-side HTTP/2 connection's frames and HPACK state."""

    __slots__ = ("_conn", "_settings")

    def __init__(self, settings: EngineSettings) -> None:
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # RFC 9113 8.2 and 8.3 (pseudo-headers, upper case, connection-specific fields,
            # CR/LF/NUL in values, CVE-2025-57804) are checked by dualcorn.protocols.http2.
            # request in one pass: h2's own checks loop over every byte in Python.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            # The cycle checked the app's fields and the writer lower-cased them.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._settings = settings
        conn = self._conn = _ServerConnection(config=config)
        conn.decoder = _Decoder()
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                _SETTING.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                _SETTING.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                _SETTING.HEADER_TABLE_SIZE: settings.header_table_size,
                _SETTING.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                _SETTING.ENABLE_CONNECT_PROTOCOL: int(settings.enable_connect_protocol),
            },
        )
        self._cap_decoder()

    def _cap_decoder(self) -> None:
        # The advertised MAX_HEADER_LIST_SIZE is advisory (RFC 9113 6.5.2): a request past it
        # is decoded (the HPACK state must stay in step) and answered 431 per stream; only a
        # block past this cap ends the connection.
        self._conn.decoder.max_header_list_size = self._settings.header_block_cap
        self._conn.decoder.max_allowed_table_size = self._settings.header_table_size

    def _cap_encoder(self) -> None:
        # The client's SETTINGS_HEADER_TABLE_SIZE is the most the server's HPACK encoder may
        # keep (RFC 7541 4.2, RFC 9113 6.5.2), not what it must: a client that allows 2^31
        # bytes, asking an app that echoes a request field into its responses, would grow
        # the server's table without bound.  The server's own size caps it (nghttp2: 4096).
        encoder = self._conn.encoder
        if encoder.header_table_size > self._settings.header_table_size:
            encoder.header_table_size = self._settings.header_table_size

    def start(self) -> None:
        """Queue the server's connection preface: SETTINGS, and the connection window."""
        conn = self._conn
        conn.initiate_connection()
        grow = self._settings.connection_window - conn.inbound_flow_control_window
        if grow > 0:
            conn.increment_flow_control_window(grow)

    # --- Reading ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Events for the bytes read; raises :class:`H2ConnectionError` (a GOAWAY is queued)."""
        try:
            raw = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return self._fail(str(exc), int(exc.error_code))
        except Exception as exc:
            # hyperframe's own refusals (ValueError, InvalidFrameError) and whatever else a
            # hostile byte stream can make a parser raise: a connection error, not a traceback.
            return self._fail(f"{type(exc).__name__}: {exc}", PROTOCOL_ERROR)
        events: list[Event] = []
        append = events.append
        for event in raw:
            # Most frequent first: DATA, then request heads.
            if isinstance(event, h2.events.DataReceived):
                ended = event.stream_ended is not None
                append(Body(event.stream_id or 0, event.data or b"",
                            event.flow_controlled_length or 0, ended))  # fmt: skip
            elif isinstance(event, h2.events.RequestReceived):
                headers = event.headers
                append(Request(event.stream_id or 0, headers, event.stream_ended is not None))
            elif isinstance(event, h2.events.StreamEnded):
                append(End(event.stream_id or 0))
            elif isinstance(event, h2.events.WindowUpdated):
                append(Window(event.stream_id or 0))
            elif isinstance(event, h2.events.StreamReset):
                append(Reset(event.stream_id or 0, int(event.error_code or 0)))
            elif isinstance(event, _MalformedHeaders):
                append(Malformed(event.stream_id, event.reason))
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                if _SETTING.INITIAL_WINDOW_SIZE in event.changed_settings:
                    append(Window(0))  # every stream's window moved
                if _SETTING.HEADER_TABLE_SIZE in event.changed_settings:
                    self._cap_encoder()
            elif isinstance(event, h2.events.SettingsAcknowledged):
                self._cap_decoder()  # h2 sets the decoder to the advertised size on the ACK
                append(SettingsAcked())
            elif isinstance(event, h2.events.PingAckReceived):
                append(PingAcked(event.ping_data or b""))
            elif isinstance(event, h2.events.ConnectionTerminated):
                append(Closed(int(event.error_code or 0), event.last_stream_id or 0))
            elif isinstance(event, h2.events.TrailersReceived):
                # RFC 9110 6.5.1 lets a recipient discard trailers (the stream's end arrives
                # as StreamEnded), once they are well formed (RFC 9113 8.1).
                reason = malformed_trailers(event.headers or [])
                if reason is not None:
                    append(Malformed(event.stream_id or 0, reason))
            # PING and priority need nothing from the server.
        return events

    def _fail(self, message: str, code: int) -> list[Event]:
        if self._conn.state_machine.state != h2.connection.ConnectionState.CLOSED:
            with contextlib.suppress(Exception):  # the GOAWAY is a courtesy; closing is not
                self._conn.close_connection(code)
        raise H2ConnectionError(message, code)

    def ack(self, stream_id: int, size: int) -> None:
        """The app read ``size`` flow-controlled bytes: the client may send that much more."""
        self._conn.acknowledge_received_data(size, stream_id)

    # --- Writing ----------------------------------------------------------------------------

    # The sending methods return False when the stream can take nothing more (the client
    # reset it, or the connection is going): the writer then treats it as reset.

    def send_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> bool:
        """A response head, an interim (1xx) head or trailers (``end``) on one stream."""
        # h2's send_headers, less what dualcorn does not need of it: a frame object per
        # HEADERS/CONTINUATION, the validation flags of checks that are off, the re-encoding of
        # fields that are bytes already, the log calls.  The state machines take the same
        # inputs in the same order (RFC 9113 5.1), before the irreversible HPACK encoding.
        conn = self._conn
        stream = conn.streams.get(stream_id)
        if stream is None:
            return False  # a server opens no stream with HEADERS; a purged one is closed
        machine = stream.state_machine
        informational = fields[0][0] == b":status" and fields[0][1][:1] == b"1"
        if informational and end:
            return False
        try:
            conn.state_machine.process_input(_SEND_HEADERS_CONN)
            machine.process_input(_SEND_INFORMATIONAL if informational else _SEND_HEADERS)
            if end:
                machine.process_input(_SEND_END_STREAM)
            elif machine.trailers_sent:
                return False  # RFC 9113 8.1: trailers end the stream
        except h2.exceptions.ProtocolError:
            return False
        block = conn.encoder.encode(fields)
        conn._data_to_send += _header_frames(stream_id, block, end, conn.max_outbound_frame_size)
        return True

    def send_response(
        self, stream_id: int, status: int, fields: list[tuple[bytes, bytes]], body: bytes
    ) -> bool | None:
        """A final head and the whole body in one DATA frame that ends the stream; None, with
        nothing sent, if the windows or the frame size cannot take the body at once."""
        size = len(body)
        if size > self.window(stream_id) or size > self._conn.max_outbound_frame_size:
            return None
        if not self.send_headers(stream_id, fields, False):
            return False
        return self.send_data(stream_id, body, True)

    def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> bool:
        """Body bytes that fit :meth:`window` and :attr:`max_frame`."""
        # h2's send_data without its DataFrame object and log calls: the same state inputs
        # and the same debits of both send windows (RFC 9113 6.9.1).
        conn = self._conn
        stream = conn.streams.get(stream_id)
        size = len(data)
        if (
            stream is None
            or size > conn.max_outbound_frame_size
            or size > conn.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
        ):
            return False
        machine = stream.state_machine
        try:
            conn.state_machine.process_input(_SEND_DATA_CONN)
            machine.process_input(_SEND_DATA)
            if end:
                machine.process_input(_SEND_END_STREAM)
        except h2.exceptions.ProtocolError:
            return False
        stream.outbound_flow_control_window -= size
        conn.outbound_flow_control_window -= size
        out = conn._data_to_send
        out += _frame_header(size, _DATA_FRAME, _END_STREAM if end else 0, stream_id)
        out += data
        return True

    def end_stream(self, stream_id: int) -> bool:
        return self.send_data(stream_id, b"", True)

    def reset(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM, unless the stream is already closed (then nothing may be sent)."""
        stream = self._conn.streams.get(stream_id)
        if stream is not None and not stream.closed:
            self._conn.reset_stream(stream_id, error_code)

    def client_done(self, stream_id: int) -> bool:
        """Whether the client has ended its side of the stream (or the stream is closed)."""
        stream = self._conn.streams.get(stream_id)
        if stream is None:
            return True
        return stream.closed or stream.state_machine.state in _REMOTE_CLOSED

    def window(self, stream_id: int) -> int:
        """How many body bytes the stream may send now (its window and the connection's)."""
        try:
            return self._conn.local_flow_control_window(stream_id)
        except h2.exceptions.ProtocolError:  # the stream is gone
            return 0

    @property
    def max_frame(self) -> int:
        return self._conn.max_outbound_frame_size

    @property
    def highest_stream_id(self) -> int:
        return self._conn.highest_inbound_stream_id

    def ping(self, data: bytes) -> None:
        """Queue a PING with 8 bytes of ``data``; its ACK arrives as :class:`PingAcked`."""
        self._conn.ping(data)

    def goaway_frame(self, last_stream_id: int, error_code: int) -> bytes:
        """A GOAWAY frame, serialized apart from h2's state machine (see the module notes)."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = error_code
        return frame.serialize()

    def bytes_to_send(self) -> bytes:
        return self._conn.data_to_send()


_SEND_HEADERS_CONN = h2.connection.ConnectionInputs.SEND_HEADERS
_SEND_DATA_CONN = h2.connection.ConnectionInputs.SEND_DATA
_SEND_HEADERS = h2.stream.StreamInputs.SEND_HEADERS
_SEND_INFORMATIONAL = h2.stream.StreamInputs.SEND_INFORMATIONAL_HEADERS
_SEND_DATA = h2.stream.StreamInputs.SEND_DATA
_SEND_END_STREAM = h2.stream.StreamInputs.SEND_END_STREAM
# RFC 9113 4.1, 6.1, 6.2, 6.10: frame types and flags of what the server sends.
_DATA_FRAME, _HEADERS_FRAME, _CONTINUATION_FRAME = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4


def _frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return (length << 48 | kind << 40 | flags << 32 | stream_id).to_bytes(9, "big")


def _header_frames(stream_id: int, block: bytes, end: bool, max_frame: int) -> bytes:
    """A HEADERS frame with the header block, in CONTINUATION frames past ``max_frame``
    (RFC 9113 4.3: END_STREAM on the HEADERS frame, END_HEADERS on the last)."""
    flags = _END_STREAM if end else 0
    if len(block) <= max_frame:
        return _frame_header(len(block), _HEADERS_FRAME, flags | _END_HEADERS, stream_id) + block
    parts = [block[at : at + max_frame] for at in range(0, len(block), max_frame)]
    out = [_frame_header(len(parts[0]), _HEADERS_FRAME, flags, stream_id), parts[0]]
    for part in parts[1:-1]:
        out += (_frame_header(len(part), _CONTINUATION_FRAME, 0, stream_id), part)
    last = parts[-1]
    out += (_frame_header(len(last), _CONTINUATION_FRAME, _END_HEADERS, stream_id), last)
    return b"".join(out)


_REMOTE_CLOSED = frozenset(
    (
        h2.stream.StreamState.HALF_CLOSED_REMOTE,
        h2.stream.StreamState.CLOSED,
    )
)
