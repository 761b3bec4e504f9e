"""HTTP/2 limits, each with its default and the precedent or attack that set it.

Theory of operation.  A client of an HTTP/2 server can cost the server work and memory with
frames that cost the client almost nothing: streams opened and reset at once (Rapid Reset,
CVE-2023-44487), a header block that never ends (the CONTINUATION flood of 2024,
CVE-2024-27316 and siblings), PINGs and SETTINGS whose acknowledgements pile up
(CVE-2019-9512, CVE-2019-9515), empty frames (CVE-2019-9518), streams the server resets at the
client's bidding (CVE-2025-8671, "MadeYouReset").  :class:`FloodGuard` reads the 9-byte header
of every frame as the bytes arrive, before the frame layer parses them, and answers a client
that passes a bound with GOAWAY ENHANCE_YOUR_CALM (RFC 9113 7).  An engine that keeps its own
inbound windows (the zttp engine) reads the same pass through a :class:`FrameObserver`, so every
frame header is read once.

Memory is bounded by the windows: the server grants a stream :data:`stream window <H2Limits>`
bytes of request body that its app has not read, and the connection a fixed total, so a
client that uploads faster than the apps read is held back; the server's own output waits
for the client's windows and for the socket to drain.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from dualcorn.protocols.http2.events import EngineSettings
from dualcorn.protocols.state import ServerState

__all__ = [
    "ZTTP_MAX_HEADER_LIST", "ZTTP_MAX_STREAMS", "FloodGuard", "FrameObserver", "H2Limits",
    "limits_for",
]  # fmt: skip

# SETTINGS_MAX_CONCURRENT_STREAMS is --http2-max-concurrent-streams (100, as nginx, h2 and
# hypercorn).  A stream past it is refused with RST_STREAM REFUSED_STREAM, not the connection
# ended (RFC 9113 5.1.2).
# SETTINGS_HEADER_TABLE_SIZE: the RFC 7541 default, which nginx and nghttp2 keep.
HEADER_TABLE_SIZE = 4096
# Rapid Reset (CVE-2023-44487): streams the client resets, and streams the server resets
# because of the client, draw from a bucket of this many, refilled at this rate per second:
# nghttp2 1.57's stream_reset_burst and stream_reset_rate.
RESET_BURST = 1000
RESET_RATE = 33.0
# Frames that ask for work and carry nothing for an app: PING and SETTINGS (each makes the
# server write an acknowledgement: nghttp2 caps them at 1000 queued, max_outbound_ack),
# PRIORITY, empty DATA without END_STREAM, empty CONTINUATION, unknown frame types.
CONTROL_BURST = 1000
CONTROL_RATE = 100.0
# zttp 0.0.35's ceilings, which its parser enforces whatever the server advertises
# (engine_zttp.py; config.py refuses an explicit --http2-engine zttp past them, and
# --http2-engine auto takes h2 past them: engines.py).
ZTTP_MAX_STREAMS = 128  # SETTINGS_MAX_CONCURRENT_STREAMS
ZTTP_MAX_HEADER_LIST = 65536  # a header list past it ends the connection, not a 431 on it
# RFC 9113 6.9.2: the connection window the server grants.  Every stream's unread body counts
# against it too, so this is the most request body one connection can make the server hold.
CONNECTION_WINDOW_STREAMS = 4  # times the stream window

_FRAME_HEADER = 9
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PUSH, _PING = 0, 1, 2, 3, 4, 5, 6
_GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 7, 8, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_PREFACE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# RFC 9113 10.5: small frames cost a server their processing.  A WINDOW_UPDATE below this
# counts as a control frame: clients acknowledge in large steps (nghttp2, Chrome and Firefox
# at half the window, Go at 4 KiB, h2 at min(1024, a quarter of the window) once it is
# spent), while a flood of +1 increments costs the server a frame read per byte it may send
# (and a 1-byte DATA frame each, once a response waits on the window).
SMALL_WINDOW_UPDATE = 1024
# GOAWAY error codes (RFC 9113 7) the guard's refusals carry.
PROTOCOL_ERROR, ENHANCE_YOUR_CALM = 0x1, 0xB


class H2Limits:
    """What every HTTP/2 connection of one server shares; built once per server."""

    def __init__(self, state: ServerState) -> None:
        config = state.config
        self.max_streams = config.http2_max_concurrent_streams
        head = config.limit_request_head
        # The same head limit as HTTP/1.1 (--limit-request-head), measured as RFC 9113 6.5.2
        # counts a header list (name + value + 32 per field); past it: 431 on that stream.
        self.header_list = head
        # A header block (HEADERS + CONTINUATION frames) past twice the limit ends the
        # connection before it is decoded: the CONTINUATION flood's bound.
        self.header_block = 2 * head
        # The stream window: the body a stream may have sent that its app has not read, the
        # HTTP/1.1 --read-high-water (never below the RFC's 65,535 initial window, which the
        # client may use before it acknowledges SETTINGS).
        self.stream_window = max(config.read_high_water, 65535)
        # RFC 8441: WebSockets over HTTP/2 (extended CONNECT) when the server serves them over
        # HTTP/1.1 (an ASGI app, --ws not none, the websockets package installed).
        self.connect_protocol = state.websockets
        self.settings = EngineSettings(
            max_concurrent_streams=self.max_streams,
            max_header_list_size=head,
            header_table_size=HEADER_TABLE_SIZE,
            initial_window_size=self.stream_window,
            connection_window=self.stream_window * CONNECTION_WINDOW_STREAMS,
            header_block_cap=self.header_block,
            enable_connect_protocol=self.connect_protocol,
        )
        # Response fields in HTTP/2 form, shared by the writers (see ResponseWriter).
        self.field_cache: dict[tuple[bytes, bytes], tuple[int, Any]] = {}
        # The server's default fields (--header, "server"), lower-cased: HTTP/2 names are.
        defaults = [(b"server", b"dualcorn")] if config.server_header else []
        defaults += [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in config.headers
        ]
        self.default_fields = defaults


_LIMITS: weakref.WeakKeyDictionary[ServerState, H2Limits] = weakref.WeakKeyDictionary()


def limits_for(state: ServerState) -> H2Limits:
    limits = _LIMITS.get(state)
    if limits is None:
        limits = _LIMITS[state] = H2Limits(state)
    return limits


class _Bucket:
    """A token bucket: ``burst`` at once, refilled at ``rate`` per second."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._tokens = float(burst)
        self._last = now

    def take(self, count: int, now: float) -> bool:
        """Spend ``count`` tokens; False once the bucket is empty."""
        tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens = tokens - count
        return self._tokens >= 0


class FrameObserver(Protocol):
    """What an engine keeping its own inbound windows is told of each frame's header."""

    def headers_frame(self, stream_id: int, flags: int) -> None: ...

    def data_frame(self, stream_id: int, length: int, flags: int) -> None: ...

    def padding(self, stream_id: int, size: int) -> None:
        """A padded DATA frame's padding: its pad length byte plus one (RFC 9113 6.1)."""


class FloodGuard:
    """Reads frame headers as bytes arrive; names the flood a client started, if any."""

    __slots__ = (
        "_block", "_block_cap", "_control", "_first", "_header", "_observer", "_pad_sid",
        "_preface", "_resets", "_skip", "error_code",
    )  # fmt: skip

    def __init__(self, limits: H2Limits, now: float, observer: FrameObserver | None = None) -> None:
        self._preface = _PREFACE  # preface bytes still to skip
        self._first = True  # the next frame is the first after the preface
        # The GOAWAY code for the reason :meth:`scan` returned: ENHANCE_YOUR_CALM for a flood.
        self.error_code = ENHANCE_YOUR_CALM
        self._skip = 0  # payload bytes of the current frame still to skip
        self._header = b""  # a frame header split across reads
        self._block = 0  # bytes of the header block so far
        self._block_cap = limits.header_block
        self._resets = _Bucket(RESET_BURST, RESET_RATE, now)
        self._control = _Bucket(CONTROL_BURST, CONTROL_RATE, now)
        self._observer = observer
        self._pad_sid = 0  # a padded DATA frame whose pad length byte is in the next read

    def server_reset(self, now: float) -> str | None:
        """The server reset a stream because of the client (CVE-2025-8671 counts these)."""
        if not self._resets.take(1, now):
            return "too many streams reset (Rapid Reset, CVE-2023-44487)"
        return None

    def scan(self, data: bytes, now: float) -> str | None:
        """Account for the frames in ``data``; a reason to end the connection, or None."""
        pos = 0
        end = len(data)
        if self._preface:
            take = min(self._preface, end)
            self._preface -= take
            pos = take
        resets = control = 0
        observer = self._observer
        while pos < end:
            if self._skip:
                if self._pad_sid and observer is not None:
                    observer.padding(self._pad_sid, data[pos] + 1)
                    self._pad_sid = 0
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            if self._header:
                need = _FRAME_HEADER - len(self._header)
                header = self._header + data[pos : pos + need]
                pos += min(need, end - pos)
                if len(header) < _FRAME_HEADER:
                    self._header = header
                    break
                self._header = b""
            elif end - pos < _FRAME_HEADER:
                self._header = bytes(data[pos:end])
                break
            else:
                header = data[pos : pos + _FRAME_HEADER]
                pos += _FRAME_HEADER
            length = int.from_bytes(header[:3], "big")
            kind = header[3]
            flags = header[4]
            self._skip = length
            if self._first:
                self._first = False
                if kind != _SETTINGS or flags & _ACK:
                    # RFC 9113 3.4: the preface's SETTINGS frame "MUST be the first frame the
                    # client sends"; anything else is an invalid preface, PROTOCOL_ERROR.
                    self.error_code = PROTOCOL_ERROR
                    return "the client preface's first frame is not SETTINGS (RFC 9113 3.4)"
                continue  # the preface's own SETTINGS, once per connection: not a flood
            if kind == _DATA:
                if not length and not flags & _END_STREAM:
                    control += 1
                if observer is not None:
                    sid = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                    observer.data_frame(sid, length, flags)
                    if flags & _PADDED and length:
                        if pos < end:
                            observer.padding(sid, data[pos] + 1)
                        else:
                            self._pad_sid = sid
            elif kind in (_HEADERS, _CONTINUATION):
                if kind == _HEADERS:
                    self._block = 0
                    if observer is not None:
                        observer.headers_frame(
                            int.from_bytes(header[5:9], "big") & 0x7FFFFFFF, flags
                        )
                elif not length and not flags & _END_HEADERS:
                    control += 1
                self._block += length
                if self._block > self._block_cap:
                    return "a header block over the limit (CONTINUATION flood)"
            elif kind == _RST_STREAM:
                resets += 1
            elif kind in (_SETTINGS, _PING):
                if not flags & _ACK:
                    control += 1
            elif kind == _PRIORITY or kind > _CONTINUATION:
                control += 1
            elif kind == _WINDOW_UPDATE:
                # The increment, when the payload is in this read (else counted, to be safe).
                increment = int.from_bytes(data[pos : pos + 4], "big") & 0x7FFFFFFF
                if end - pos < 4 or increment < SMALL_WINDOW_UPDATE:
                    control += 1
        if resets and not self._resets.take(resets, now):
            return "too many streams reset (Rapid Reset, CVE-2023-44487)"
        if control and not self._control.take(control, now):
            return "too many control, empty or small frames (CVE-2019-9512/9515/9518)"
        return None
