"""WebSockets over HTTP/2 (RFC 8441): an extended CONNECT becomes a WebSocket session.

Theory of operation.  The server sends SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 when it serves
WebSockets at all (an ASGI app, ``--ws`` not ``none``, the ``websockets`` package installed;
:mod:`~dualcorn.protocols.http2.limits`).  A client then opens a WebSocket with a HEADERS frame
holding ``:method CONNECT``, ``:protocol websocket``, ``:scheme``, ``:path`` and
``:authority`` (RFC 8441 4, 5), and the ``Sec-WebSocket-*`` fields of RFC 6455 except the key.
:func:`open_websocket` checks it and starts the very session that serves HTTP/1.1 upgrades
(:class:`~dualcorn.protocols.websocket.session.WebSocketSession`), on a
:class:`~dualcorn.protocols.http2.ws_stream.WebSocketStream` for transport: the same limits
(``--ws-max-size``, ``--ws-max-queue``...), keepalive pings, close handshake, and 1012 when the
server shuts down.  Only the HTTP answers differ, and :class:`H2Handshake` makes them:

* ``websocket.accept``: HEADERS ``:status 200`` (RFC 8441 5: no Sec-WebSocket-Accept, as no key
  was sent), the negotiated ``Sec-WebSocket-Extensions`` (permessage-deflate, RFC 7692) and the
  app's subprotocol, as over HTTP/1.1; then the stream carries RFC 6455 frames in DATA;
* ``websocket.close`` before accepting: 403 (500 if the app failed, 503 during shutdown);
* the ``websocket.http.response`` extension: the app's own status, fields and body.

What is refused before any app runs (on that stream; the connection goes on):

* ``:protocol`` while the server did not advertise RFC 8441 (a WSGI app, ``--ws none``): 400
  and RST_STREAM PROTOCOL_ERROR (RFC 9113 8.3: an undefined pseudo-header is malformed);
* a plain CONNECT (no ``:protocol``, RFC 9113 8.5): 501, as over HTTP/1.1 (no tunnels here);
* a ``:protocol`` other than ``websocket``: 501 (RFC 9110 15.6.2);
* no ``:authority`` (RFC 8441 4), or END_STREAM on the CONNECT itself: 400 and RST_STREAM
  PROTOCOL_ERROR;
* a Sec-WebSocket-Version other than 13, an invalid extension offer: 400, as over HTTP/1.1;
* the server is shutting down, or ``--limit-concurrency`` is reached: 503.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dualcorn.errors import AppContractError
from dualcorn.protocols.flow import WriteFlow
from dualcorn.protocols.http2.events import NO_ERROR, PROTOCOL_ERROR
from dualcorn.protocols.http2.ws_stream import WebSocketStream
from dualcorn.protocols.scope import websocket_scope
from dualcorn.protocols.websocket.handshake import (
    AppResponse,
    Handshake,
    denial_body,
    subprotocols,
)
from dualcorn.protocols.websocket.session import WebSocketSession
from dualcorn.protocols.writer import validate_header

if TYPE_CHECKING:
    from dualcorn.protocols.http2 import events as ev
    from dualcorn.protocols.http2.connection import H2Connection
    from dualcorn.protocols.request_head import RequestHead
    from dualcorn.protocols.state import ServerState

__all__ = ["H2AppResponse", "H2Handshake", "H2WebSocketSession", "open_websocket"]

# RFC 8441 5: no key is sent.  The websockets checker, which negotiates the extensions as it
# does for HTTP/1.1, reads an RFC 6455 request: it is given one with a placeholder key, the
# answer to which (Sec-WebSocket-Accept) is never sent.
_H1_FIELDS = [
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"AAAAAAAAAAAAAAAAAAAAAA=="),
]
_NOT_FORWARDED = frozenset((b"upgrade", b"connection", b"sec-websocket-key"))
# Fields of the 200 that are the server's; an app's copy is dropped.  RFC 9113 8.2.2: and
# those specific to an HTTP/1.1 connection.
_ACCEPT_DROPPED = frozenset(
    (b"upgrade", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
     b"sec-websocket-accept", b"sec-websocket-extensions", b"sec-websocket-protocol",
     b"content-length")
)  # fmt: skip
_RESPONSE_DROPPED = frozenset(
    (b"upgrade", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding")
)

Refusal = tuple[int, str, int]  # status, reason, the RST_STREAM code if the client still sends


def open_websocket(conn: H2Connection, event: ev.Request, head: RequestHead) -> Refusal | None:
    """Serve an extended CONNECT as a WebSocket; or what to refuse it with."""
    protocol = authority = b""
    for name, value in event.headers:
        if name[:1] != b":":
            break  # pseudo-header fields come first (RFC 9113 8.3; request.py checked)
        if name == b":protocol":
            protocol = value
        elif name == b":authority":
            authority = value
    if protocol.lower() != b"websocket":
        return 501, f"unsupported :protocol {protocol[:60]!r}", NO_ERROR
    if not authority:
        return 400, "an extended CONNECT without :authority (RFC 8441 4)", PROTOCOL_ERROR
    if event.ended:
        return 400, "an extended CONNECT that ends its stream", PROTOCOL_ERROR
    state = conn.state
    if state.stopping:
        return 503, "the server is shutting down", NO_ERROR
    if state.at_concurrency_limit():
        state.error_logger.warning("--limit-concurrency reached: answering 503")
        return 503, "too many requests in flight", NO_ERROR
    handshake = H2Handshake(head, conn)
    if handshake.refusal:
        return handshake.refusal, "invalid WebSocket handshake (RFC 6455 4.2.1)", NO_ERROR
    conn.opened()
    stream = handshake.stream = WebSocketStream(conn, event.stream_id)
    # ASGI websocket spec, "Connection Scope": http_version "2".
    scope = websocket_scope(conn, head, subprotocols(head.headers))
    session = H2WebSocketSession(state, stream, scope, handshake, WriteFlow())
    stream.set_protocol(session)
    conn.streams[event.stream_id] = stream
    session.start(b"")
    stream.task = session.task
    if session.task is not None:
        state.ws_tasks.add(session.task)
        session.task.add_done_callback(state.ws_tasks.discard)
    return None


class H2WebSocketSession(WebSocketSession):
    """The HTTP/1.1 session, waiting at shutdown for its connection to close as well."""

    transport: WebSocketStream

    async def wait_closed(self) -> None:
        await super().wait_closed()
        conn = self.transport.conn
        if self.state.stopping and not conn.lost:
            # The last stream's end lets the connection send its final GOAWAY and close;
            # the server aborts what is still open once every session returned.
            try:
                await conn.wait_closed()
            except asyncio.CancelledError:
                conn.transport.abort()
                raise


class H2Handshake(Handshake):
    """The checked request of an extended CONNECT, answered with HEADERS on its stream."""

    __slots__ = ("_conn", "refusal", "stream")

    def __init__(self, head: RequestHead, conn: H2Connection) -> None:
        fields = [field for field in head.headers if field[0] not in _NOT_FORWARDED]
        super().__init__(b"GET", head.target, b"1.1", fields + _H1_FIELDS, conn.config)
        rejection = self.rejection
        # The status HTTP/1.1 would answer (400 for a bad version or extension offer); the
        # connection answers it on the stream, never these HTTP/1.1 bytes.
        self.refusal = int(rejection[9:12]) if rejection is not None else 0
        self.rejection = None
        self._conn = conn
        self.stream: WebSocketStream | None = None

    def accept_response(self, message: dict[str, Any], state: ServerState) -> bytes:
        """HEADERS ``:status 200`` for ``websocket.accept`` (RFC 8441 5); no bytes to write."""
        fields = [(b":status", b"200")]
        if self._extensions_header:
            fields.append((b"sec-websocket-extensions", self._extensions_header.encode()))
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            # ASGI: the app names its subprotocol here, never as a header.
            if not isinstance(subprotocol, str):
                raise AppContractError(f"websocket.accept 'subprotocol' must be a str, not "
                                       f"{type(subprotocol).__name__}")  # fmt: skip
            value = subprotocol.encode("latin-1")
            validate_header(b"sec-websocket-protocol", value)
            fields.append((b"sec-websocket-protocol", value))
        fields += response_fields(self._conn, message.get("headers", ()), _ACCEPT_DROPPED)
        self._send(fields, end=False, tunnel=True)
        return b""

    def denial(self, status: int) -> bytes:
        """ASGI websocket spec, "Close": a bodiless 403 (or 500, 503) that ends the stream."""
        fields = [(b":status", b"%d" % status), (b"content-length", b"0")]
        fields += response_fields(self._conn, (), _ACCEPT_DROPPED)
        self._send(fields, end=True, tunnel=False)
        return b""

    def app_response(self, message: dict[str, Any], state: ServerState) -> AppResponse:
        assert self.stream is not None
        return H2AppResponse(message, self._conn, self.stream)

    def _send(self, fields: list[tuple[bytes, bytes]], *, end: bool, tunnel: bool) -> None:
        assert self.stream is not None, "the stream is set before the session starts"
        self.stream.send_head(fields, end=end, tunnel=tunnel)


class H2AppResponse(AppResponse):
    """The ``websocket.http.response`` extension's response as HEADERS, then DATA (the bytes
    :meth:`body` returns, which the session writes); the session's close ends the stream."""

    __slots__ = ("_fields", "_stream")

    def __init__(self, message: dict[str, Any], conn: H2Connection, stream: WebSocketStream):
        status = message.get("status")
        if not isinstance(status, int) or not 200 <= status <= 999:
            # RFC 9113 8.1: a 1xx is interim, never the response.
            raise AppContractError(
                f"websocket.http.response.start over HTTP/2 needs an int status from 200, "
                f"not {status!r}"
            )
        fields = [(b":status", b"%d" % status)]
        fields += response_fields(conn, message.get("headers", ()), _RESPONSE_DROPPED)
        self._fields: list[tuple[bytes, bytes]] | None = fields
        self._length = any(name == b"content-length" for name, _ in fields)
        self._stream = stream
        self.status = status
        self.sent = 0
        self.complete = False

    def body(self, message: dict[str, Any]) -> bytes:
        body, more = denial_body(message, self.complete)
        fields = self._fields
        if fields is not None:
            self._fields = None
            if not self._length and not more:
                fields.append((b"content-length", b"%d" % len(body)))
            self._stream.send_head(fields, end=False, tunnel=False)
        self.sent += len(body)
        self.complete = not more
        return bytes(body)


def response_fields(
    conn: H2Connection, headers: Any, dropped: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """The app's fields (checked, lower-cased: RFC 9113 8.2.1), then the server's date,
    ``server`` and ``--header`` fields the app did not set itself."""
    fields: list[tuple[bytes, bytes]] = []
    given: set[bytes] = set()
    for name, value in headers:
        validate_header(name, value)
        lower = name.lower()
        given.add(lower)
        if lower not in dropped:
            fields.append((lower, value))
    state = conn.state
    if state.date is not None and b"date" not in given:
        fields.append((b"date", state.date.value()))
    for name, value in conn.limits.default_fields:
        if name not in given:
            fields.append((name, value))
    return fields
