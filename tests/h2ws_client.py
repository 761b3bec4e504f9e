"""An RFC 8441 client for tests: an extended CONNECT on tests/h2client.py's HTTP/2 connection,
and wsproto (a WebSocket implementation other than the server's) for the frames in DATA."""

from __future__ import annotations

import time
from typing import Any

from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Event, Ping
from wsproto.extensions import PerMessageDeflate

from tests.h2client import H2Client, StreamResult

SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8


class WebSocketOverH2:
    """One WebSocket on an HTTP/2 connection; reading serves every stream of the connection."""

    def __init__(
        self,
        client: H2Client,
        path: str = "/ws",
        *,
        subprotocols: list[str] | None = None,
        deflate: bool = False,
        protocol: bytes = b"websocket",
        version: bytes | None = b"13",
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.client = client
        self.deflate = PerMessageDeflate() if deflate else None
        fields = [
            (b":method", b"CONNECT"),
            (b":protocol", protocol),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
        ]
        if version is not None:
            fields.append((b"sec-websocket-version", version))
        if subprotocols:
            fields.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        if self.deflate is not None:
            offer = f"{self.deflate.name}; {self.deflate.offer()}"
            fields.append((b"sec-websocket-extensions", offer.encode()))
        fields += extra or []
        self.sid = client.raw_headers(fields, end=False)
        self.result: StreamResult = client.streams[self.sid]
        self.ws: Connection | None = None
        self._read = 0  # bytes of the stream's DATA already given to wsproto
        self.wire_bytes = 0  # DATA bytes received once open (compressed, framed)
        self.events: list[Event] = []

    # --- Handshake -------------------------------------------------------------------------

    def response(self, timeout: float = 10.0) -> int:
        """Wait for the response head; once it is 200, frames can flow."""
        self.until(lambda: bool(self.result.headers) or self.result.done, timeout)
        if not self.result.headers:
            raise AssertionError(f"no response head (reset {self.result.reset})")
        status = self.result.status
        if status == 200 and self.ws is None:
            extensions = []
            accepted = self.header(b"sec-websocket-extensions")
            if self.deflate is not None and accepted is not None:
                self.deflate.finalize(accepted.decode())
                extensions.append(self.deflate)
            self.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        return status

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.result.headers:
            if key == name:
                return value
        return None

    # --- Frames ----------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        assert self.ws is not None
        self.client.send_body(self.sid, self.ws.send(event), end=False)

    def send_raw(self, data: bytes) -> None:
        self.client.send_body(self.sid, data, end=False)

    def end(self) -> None:
        self.client.conn.end_stream(self.sid)
        self.client.flush()

    def _pump(self) -> None:
        data = self.result.data
        if self.ws is not None and len(data) > self._read:
            chunk = bytes(data[self._read :])
            self._read = len(data)
            self.wire_bytes += len(chunk)
            self.ws.receive_data(chunk)
            for event in self.ws.events():
                self.events.append(event)

    def until(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        self._pump()
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the condition did not come true in time")
            try:
                if not self.client.receive_once(timeout=min(left, 1.0)):
                    self._pump()
                    if not predicate():
                        raise ConnectionError("the server closed the connection")
                    return
            except TimeoutError:
                pass
            self._pump()

    def next_event(self, kind: type[Event] | tuple[type[Event], ...], timeout: float = 10.0) -> Any:
        """The next event of ``kind`` (earlier ones of other kinds are skipped); pings are
        answered as they come (RFC 6455 5.5.2)."""

        def found() -> bool:
            for index, event in enumerate(self.events):
                if isinstance(event, Ping) and kind is not Ping:
                    self.events.pop(index)
                    self.send(event.response())
                    return found()
                if isinstance(event, kind):
                    return True
            return False

        self.until(found, timeout)
        for index, event in enumerate(self.events):
            if isinstance(event, kind):
                del self.events[: index + 1]
                return event
        raise AssertionError("unreachable")

    def close(self, code: int = 1000) -> CloseConnection:
        """The closing handshake from the client; returns the server's close frame."""
        self.send(CloseConnection(code=code))
        return self.next_event(CloseConnection)  # type: ignore[no-any-return]
