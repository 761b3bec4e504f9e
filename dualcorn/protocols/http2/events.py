"""dualcorn's HTTP/2 frame-layer events and settings: what every engine (h2, zttp) hands the
connection, and the error codes (RFC 9113 7) the server sends.  No frame library is imported
here: :mod:`~dualcorn.protocols.http2.engine` and
:mod:`~dualcorn.protocols.http2.engine_zttp` produce these values from their libraries'."""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CANCEL",
    "ENHANCE_YOUR_CALM",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "Body",
    "CheckedRequest",
    "Closed",
    "End",
    "EngineSettings",
    "Event",
    "H2ConnectionError",
    "Malformed",
    "PingAcked",
    "Recycle",
    "Request",
    "Reset",
    "SettingsAcked",
    "Window",
]

# RFC 9113 7: error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB


# --- Events (what the connection acts on) -------------------------------------------------


class Request(NamedTuple):
    """A request head arrived (HEADERS, and CONTINUATION frames) on a new stream."""

    stream_id: int
    headers: list[tuple[bytes, bytes]]  # pseudo-headers first, as received
    ended: bool  # END_STREAM: no body follows


class CheckedRequest(NamedTuple):
    """A request head whose pseudo-headers and field syntax the frame layer has checked (RFC
    9113 8.2, 8.3: the zttp engine; docs/http2.md lists each check and who makes it), handed
    over without them: ``:authority`` is the Host field, ``:scheme`` the connection's."""

    stream_id: int
    method: bytes
    target: bytes  # :path
    headers: list[tuple[bytes, bytes]]  # the regular fields, as received
    ended: bool  # END_STREAM: no body follows


class Body(NamedTuple):
    stream_id: int
    data: bytes
    flow_length: int  # what the data cost the window (padding included): ack this much
    ended: bool


class End(NamedTuple):
    """The client finished its side of the stream (END_STREAM after DATA or trailers)."""

    stream_id: int


class Reset(NamedTuple):
    """The client reset the stream (RST_STREAM)."""

    stream_id: int
    error_code: int


class Window(NamedTuple):
    """A send window grew (stream 0: the connection's, or every stream after SETTINGS)."""

    stream_id: int


class Malformed(NamedTuple):
    """RFC 9113 8.1.1: a malformed request or body on one stream (a stream error)."""

    stream_id: int
    reason: str


class SettingsAcked(NamedTuple):
    """The client acknowledged the server's SETTINGS."""


class PingAcked(NamedTuple):
    """The client answered a PING the server sent."""

    data: bytes


class Closed(NamedTuple):
    """The client sent GOAWAY: it opens no more streams."""

    error_code: int
    last_stream_id: int


class Recycle(NamedTuple):
    """The frame layer nears a lifetime count of its own past which it would end the
    connection with an error (zttp: 4,096 streams, 256 resets): end it gracefully now (RFC
    9113 6.8), so the client moves to a new connection without losing a request."""


Event = (
    Request
    | CheckedRequest
    | Body
    | End
    | Reset
    | Window
    | Malformed
    | SettingsAcked
    | PingAcked
    | Closed
    | Recycle
)


class H2ConnectionError(Exception):
    """A connection error (RFC 9113 5.4.1): a GOAWAY is queued; send it, then close."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class EngineSettings(NamedTuple):
    """The server's SETTINGS and windows (see dualcorn.protocols.http2.limits)."""

    max_concurrent_streams: int
    max_header_list_size: int
    header_table_size: int
    initial_window_size: int
    connection_window: int
    header_block_cap: int  # what the HPACK decoder decodes at most (a connection error past)
    # RFC 8441 3: SETTINGS_ENABLE_CONNECT_PROTOCOL, when the server serves WebSockets.
    enable_connect_protocol: bool = False
