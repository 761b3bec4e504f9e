"""A frame-level HTTP/2 client for tests: the h2 library driven over a real socket.

It sends what a test asks (requests, resets, floods of raw frames) and collects the server's
events by stream, so a test can assert what the server answered frame by frame.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any, NamedTuple

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class GoAway(NamedTuple):
    last_stream_id: int
    error_code: int


class StreamResult:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.informational: list[list[tuple[bytes, bytes]]] = []
        self.data = bytearray()
        self.trailers: list[tuple[bytes, bytes]] = []
        self.ended = False
        self.reset: int | None = None

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    """One HTTP/2 connection to ``port`` (h2c with prior knowledge, or TLS with ALPN h2)."""

    def __init__(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        window: int | None = None,
        auto_ack: bool = True,
        timeout: float = 10.0,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            raw = tls.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.timeout = timeout
        self._start(window=window, auto_ack=auto_ack)

    def _start(self, *, window: int | None, auto_ack: bool) -> None:
        """The client's h2 state, and its preface sent (tests/h2memconn.py reuses it)."""
        self.auto_ack = auto_ack
        # No outbound checks: tests send what a broken or hostile client would.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.streams: dict[int, StreamResult] = {}
        self.remote_settings: dict[int, int] = {}
        self.goaways: list[GoAway] = []
        self._buffer = bytearray()
        self.closed = False
        self.pings: list[bytes] = []
        self.flush()

    # --- Sending ---------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
        end: bool = True,
        authority: str = "localhost",
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"http"),
                  (b":authority", authority.encode()), (b":path", path.encode())]  # fmt: skip
        fields += [(name.encode(), value.encode()) for name, value in headers or []]
        self.streams[sid] = StreamResult()
        self.conn.send_headers(sid, fields, end_stream=end and body is None)
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        """Send ``body``, waiting for the server's window as needed."""
        view = memoryview(body)
        while view:
            window = self.conn.local_flow_control_window(sid)
            if window <= 0:
                self.receive_once()
                continue
            size = min(window, self.conn.max_outbound_frame_size, len(view))
            self.conn.send_data(sid, view[:size].tobytes())
            view = view[size:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def raw_headers(self, fields: list[tuple[bytes, bytes]], end: bool = True) -> int:
        """A request with exactly these fields (h2 checks nothing on the way out here)."""
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = StreamResult()
        self.conn.send_headers(sid, fields, end_stream=end)
        self.flush()
        return sid

    def continuation_flood(self, sid: int, frames: int, size: int) -> None:
        """A HEADERS frame without END_HEADERS, then CONTINUATION frames that never end."""
        first = HeadersFrame(sid)
        first.data = self.conn.encoder.encode(
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/"),
                (b":authority", b"localhost"),
            ]
        )
        self.send_raw(first.serialize())
        chunk = ContinuationFrame(sid)
        chunk.data = b"\x00" * size  # never decoded: the block does not end
        data = chunk.serialize()
        for _ in range(frames):
            self.send_raw(data)
            if self.closed:
                return

    def ping_flood(self, count: int) -> None:
        frame = PingFrame(0)
        frame.opaque_data = b"12345678"
        self.send_raw(frame.serialize() * count)

    # --- Receiving -------------------------------------------------------------------------

    def receive_once(self, timeout: float | None = None) -> bool:
        """Read once and process; False once the server closed the connection."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        return self.process(data)

    def process(self, data: bytes) -> bool:
        """Take the server's ``data``; False if it broke the protocol (the client gives up)."""
        try:
            events = self.conn.receive_data(self._take_goaway(data))
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for event in events:
            self._event(event)
        self.flush()
        return True

    def _take_goaway(self, data: bytes) -> bytes:
        """Frames for h2, less GOAWAY, recorded here: h2 would refuse every frame after one,
        where RFC 9113 6.8 has the streams up to its last id go on."""
        self._buffer += data
        buffer = self._buffer
        out = bytearray()
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            frame = bytes(buffer[: 9 + length])
            del buffer[: 9 + length]
            if frame[3] == 7:
                self.goaways.append(GoAway(int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF,
                                           int.from_bytes(frame[13:17], "big")))  # fmt: skip
            else:
                out += frame
        return bytes(out)

    @property
    def goaway(self) -> GoAway | None:
        """The last GOAWAY the server sent."""
        return self.goaways[-1] if self.goaways else None

    def _event(self, event: Any) -> None:
        sid = getattr(event, "stream_id", None)
        result = self.streams.get(sid) if sid else None
        if isinstance(event, h2.events.ResponseReceived) and result is not None:
            result.headers = event.headers
        elif isinstance(event, h2.events.InformationalResponseReceived) and result is not None:
            result.informational.append(event.headers)
        elif isinstance(event, h2.events.DataReceived) and result is not None:
            result.data += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.TrailersReceived) and result is not None:
            result.trailers = event.headers
        elif isinstance(event, h2.events.StreamEnded) and result is not None:
            result.ended = True
        elif isinstance(event, h2.events.StreamReset) and result is not None:
            result.reset = event.error_code
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for code, setting in event.changed_settings.items():
                self.remote_settings[int(code)] = setting.new_value
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings.append(event.ping_data)

    def wait(self, sids: list[int] | int, timeout: float | None = None) -> list[StreamResult]:
        """Read until every stream in ``sids`` ended or was reset."""
        ids = [sids] if isinstance(sids, int) else sids
        deadline = time.monotonic() + (timeout or self.timeout)
        while not all(self.streams[s].done for s in ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"streams {ids} did not finish")
            if not self.receive_once():
                break
        return [self.streams[s] for s in ids]

    def wait_goaway(self, timeout: float | None = None) -> GoAway:
        deadline = time.monotonic() + (timeout or self.timeout)
        while self.goaway is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no GOAWAY")
            if not self.receive_once():
                break
        assert self.goaway is not None, "the server closed without a GOAWAY"
        return self.goaway

    def wait_closed(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.closed:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not close the connection")
            try:
                self.receive_once(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                continue

    def get(self, path: str = "/", **kwargs: Any) -> StreamResult:
        return self.wait(self.request(path, **kwargs))[0]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
