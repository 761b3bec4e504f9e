"""One WebSocket session (RFC 6455) driven through the ASGI ``websocket`` interface.

Theory of operation: ``HTTPConnection.upgrade_websocket`` hands the transport to a
:class:`WebSocketSession` with a checked :class:`~dualcorn.protocols.websocket.handshake.Handshake`
and starts the app, whose first ``receive`` is ``websocket.connect``.  Until the app accepts,
bytes from the client are held (and reading paused): nothing may answer them before the 101.
After ``websocket.accept``, the ``websockets`` package's sans-IO protocol turns bytes into
frames (and answers pings, checks sizes, inflates permessage-deflate); an
:class:`~dualcorn.protocols.websocket.inbox.Inbox` makes whole, checked messages of the data frames
for ``receive``; this class sends keepalive pings, carries the app's ``send`` to the wire, and
runs the closing handshake with a timeout (RFC 6455 7.1).  Every wait is an event: ``receive``
waits on the inbox, ``send`` on the transport draining (at most ``--timeout-send``).

What a client can make the session hold is bounded: a
:class:`~dualcorn.protocols.websocket.reader.BoundedReader` stops reading while the inbox is full
(``--ws-max-queue`` messages, ``--ws-max-queue-bytes`` decompressed bytes) or the write buffer
is above its high-water mark (pongs for a client that does not read them), and never inflates
more than a slice of a read past those bounds.

The HTTP answers to the handshake (the 101, a denial, the app's own response) are the
handshake object's to make: HTTP/1.1 bytes here, HEADERS frames on an HTTP/2 stream (RFC 8441,
:mod:`dualcorn.protocols.http2.websocket`, whose stream is this session's transport).

The session is one of the server's connections with ``long_lived`` set: graceful shutdown
closes it with 1012 only after the HTTP requests in flight have finished.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, cast

from websockets.exceptions import InvalidState, ProtocolError
from websockets.frames import BINARY, CONT, PING, PONG, TEXT, Frame
from websockets.protocol import CLOSED, OPEN
from websockets.server import ServerProtocol

from dualcorn.access_format import WEBSOCKET, AccessEntry, request_extra
from dualcorn.errors import AppContractError
from dualcorn.protocols.flow import ReadFlow, WriteFlow
from dualcorn.protocols.logline import client_address
from dualcorn.protocols.state import Connection, ServerState
from dualcorn.protocols.websocket.handshake import AppResponse, Handshake
from dualcorn.protocols.websocket.inbox import Inbox, InvalidText, TooManyFragments
from dualcorn.protocols.websocket.reader import BoundedReader
from dualcorn.protocols.writer import ClientDisconnected

__all__ = ["WebSocketSession"]

_CONNECT = {"type": "websocket.connect"}
_HANDSHAKE, _RESPONDING, _OPEN, _DONE = range(4)  # the ASGI side's phase
_EARLY = 8  # a ReadFlow reason: bytes arrived before the app accepted
_PONG_BYTE = b"\x8a"  # FIN and opcode 0xA: a server's pong frame starts so (RFC 6455 5.2)
# RFC 6455 7.4.1 / IANA registry: 1006 is never sent, only reported; 1011 internal error;
# 1012 service restart.
_ABNORMAL, _POLICY_VIOLATION, _INTERNAL_ERROR, _SERVICE_RESTART = 1006, 1008, 1011, 1012


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs "connection open/closed" at INFO per socket; the access log covers it."""

    def info(self, *args: Any, **kwargs: Any) -> None:
        pass


_LIBRARY_LOG = _QuietLogger(logging.getLogger("dualcorn.error"), {})


class WebSocketSession(asyncio.Protocol, Connection):
    long_lived = True

    def __init__(
        self,
        state: ServerState,
        transport: asyncio.Transport,
        scope: dict[str, Any],
        handshake: Handshake,
        write_flow: WriteFlow,
    ) -> None:
        self.state = state
        self.config = config = state.config
        self.loop = asyncio.get_running_loop()
        self.transport = transport
        self.scope = scope
        self.handshake = handshake
        self.write_flow = write_flow
        self.read_flow = ReadFlow(transport)
        self.ws: ServerProtocol | None = None
        self.phase = _HANDSHAKE
        self.status = 0
        self.start_time = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self._early = bytearray()
        self.reader = BoundedReader(
            self.read_flow, write_flow, deflate=bool(handshake.extensions), process=self._process
        )
        self.inbox = self.reader.inbox = Inbox(
            self.reader.inbox_has_room,
            config.ws_max_queue,
            config.ws_max_queue_bytes,
            config.ws_max_fragments,
        )
        self._connect_sent = False
        self._closed = self.loop.create_future()
        self._response: AppResponse | None = None
        self._ping_payload = b""
        self._ping_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    def start(self, trailing: bytes) -> None:
        """Begin the session on bytes the HTTP parser read past the request head."""
        self.state.connections.add(self)
        if self.handshake.rejection is not None:
            self.status = int(self.handshake.rejection[9:12])
            self._write_and_close(self.handshake.rejection)
            return
        if trailing:
            self.data_received(trailing)
        self.task = self.loop.create_task(self._run())

    # --- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        if ws is None:
            if self.phase == _HANDSHAKE:
                # Frames may follow the request before the 101 is sent; hold them (one read at
                # most: reading pauses) until the app accepts.
                self._early += data
                self.read_flow.pause(_EARLY)
            return
        self.reader.feed(ws, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.reader.drop()
        for timer in (self._ping_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        ws = self.ws
        code, reason = _ABNORMAL, ""
        if ws is not None:
            ws.receive_eof()
            if ws.close_rcvd is not None:
                code, reason = ws.close_rcvd.code, ws.close_rcvd.reason
            elif ws.close_sent is not None:
                # The server failed the connection (1007, 1009, 1011): the app learns why.
                code, reason = ws.close_sent.code, ws.close_sent.reason
        self.inbox.close(code, reason)
        self.phase = _DONE
        self.write_flow.resume_writing()  # an app waiting in send() sees the disconnect
        if self.state.access_log:
            self._log(code)
        if self.state.metrics is not None:
            self.state.metrics.websocket_done(self.scope, self.status)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self.write_flow.pause_writing()
        # Stop reading too: pongs (and echoes) must not pile up for a client that does not
        # read them.  RFC 6455 5.5.3 allows a pong to wait.
        self.reader.write_paused()

    def resume_writing(self) -> None:
        self.write_flow.resume_writing()
        self.reader.write_resumed()

    # --- Frames from the client ----------------------------------------------------------

    def _process(self, ws: ServerProtocol) -> None:
        failed = False
        pings = 0
        # Once OPEN, the protocol yields only frames (its other events are handshake messages).
        for event in cast(list[Frame], ws.events_received()):
            opcode = event.opcode
            if opcode is TEXT or opcode is BINARY or opcode is CONT:
                if failed:
                    continue
                try:
                    self.inbox.feed(event)
                except InvalidText as exc:
                    # RFC 6455 8.1: invalid UTF-8 in a text message fails the connection.
                    ws.fail(1007, str(exc))
                    failed = True
                except TooManyFragments as exc:
                    # 7.4.1: 1008 "received a message that violates its policy".
                    ws.fail(_POLICY_VIOLATION, str(exc))
                    failed = True
            elif opcode is PONG:
                self._on_pong(event.data)
            elif opcode is PING:
                pings += 1
            # PING: the protocol queued the pong (RFC 6455 5.5.2).  CLOSE: it echoed the close
            # (5.5.1) and asked for the TCP close, which _flush performs.
        self._flush(ws, pings - 1)

    # --- Writing and closing -------------------------------------------------------------

    def _flush(self, ws: ServerProtocol, stale_pongs: int = 0) -> None:
        """Write what the protocol queued; ``stale_pongs``: skip that many pongs first, as
        RFC 6455 5.5.3 allows ("may elect to send a Pong frame for only the most recently
        processed Ping frame"), so a burst of pings in one read costs one answer."""
        transport = self.transport
        for data in ws.data_to_send():
            if stale_pongs > 0 and data[:1] == _PONG_BYTE:
                stale_pongs -= 1  # the protocol serialises one frame per chunk
                continue
            if data:
                if not transport.is_closing():
                    transport.write(data)
            else:
                # RFC 6455 7.1.1: "the underlying TCP connection ... SHOULD be closed first by
                # the server"; websockets asks for it once both close frames are exchanged.
                self._close_transport()
        if ws.close_expected() and self._close_timer is None:
            # 7.1.1: wait for the client's close frame, but not for ever (--ws-close-timeout).
            self._close_timer = self.loop.call_later(
                self.config.ws_close_timeout, self.transport.abort
            )

    def _close_transport(self) -> None:
        self.transport.close()
        if self._close_timer is not None:
            self._close_timer.cancel()
        # close() waits for the buffer to drain; a dead peer never lets it.
        self._close_timer = self.loop.call_later(self.config.ws_close_timeout, self.transport.abort)

    def _write_and_close(self, data: bytes) -> None:
        self.phase = max(self.phase, _RESPONDING)
        if not self.transport.is_closing():
            self.transport.write(data)
        self._close_transport()

    def _fail(self, code: int, reason: str) -> None:
        """RFC 6455 7.1.7 "Fail the WebSocket Connection": a close frame, then the TCP close."""
        ws = self.ws
        if ws is not None and ws.state is OPEN:
            ws.fail(code, reason)
            self._flush(ws)
        elif ws is None or ws.state is not CLOSED:
            self._close_transport()

    # --- Keepalive (RFC 6455 5.5.2 and 5.5.3) --------------------------------------------

    def _schedule_ping(self) -> None:
        interval = self.config.ws_ping_interval
        if interval:  # None or 0: no pings
            self._ping_timer = self.loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        ws = self.ws
        if ws is None or ws.state is not OPEN:
            return
        self._ping_payload = os.urandom(4)
        ws.send_ping(self._ping_payload)
        self._flush(ws)
        timeout = self.config.ws_ping_timeout
        if timeout is None:
            self._ping_payload = b""
            self._schedule_ping()
        else:
            self._ping_timer = self.loop.call_later(timeout, self._ping_timed_out)

    def _on_pong(self, data: bytes | bytearray | memoryview) -> None:
        # 5.5.3: a pong echoes the ping's payload; an unsolicited pong is only a heartbeat.
        if self._ping_payload and data == self._ping_payload:
            self._ping_payload = b""
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            self._schedule_ping()

    def _ping_timed_out(self) -> None:
        self._ping_timer = None
        self.state.error_logger.debug("WebSocket peer %s did not answer a ping", self.client)
        self._fail(_INTERNAL_ERROR, "keepalive ping timeout")

    # --- ASGI ----------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self._connect_sent:
            self._connect_sent = True
            return _CONNECT
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        phase = self.phase
        if phase == _OPEN:
            ws = self.ws
            assert ws is not None
            if ws.state is not OPEN:
                # ASGI websocket spec 2.4: send() on a closed connection raises an OSError.
                raise ClientDisconnected("the WebSocket is closed")
            if kind == "websocket.send":
                self._send_data(ws, message)
                self._flush(ws)
                if self.write_flow.paused:
                    # Backpressure: the client is not reading; the app waits here.
                    await self._drain()
            elif kind == "websocket.close":
                self._send_close(ws, message.get("code") or 1000, message.get("reason") or "")
            else:
                raise AppContractError(f"the app sent {kind!r} on an open WebSocket")
        elif phase == _HANDSHAKE:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self.status = 403
                self._write_and_close(self.handshake.denial(403))
            elif kind == "websocket.http.response.start":
                self._response = self.handshake.app_response(message, self.state)
                self.status = self._response.status
                self.phase = _RESPONDING
            else:
                raise AppContractError(f"expected 'websocket.accept' first, but got {kind!r}")
        elif phase == _RESPONDING and self._response is not None:
            if kind != "websocket.http.response.body":
                raise AppContractError(f"expected 'websocket.http.response.body', got {kind!r}")
            data = self._response.body(message)
            if not self.transport.is_closing():
                self.transport.write(data)
            if self._response.complete:
                self._close_transport()
            elif self.write_flow.paused:
                await self._drain()
        else:
            raise ClientDisconnected("the WebSocket is closed")

    async def _drain(self) -> None:
        # nginx send_timeout: a client that reads nothing for --timeout-send is dropped.
        if not await self.write_flow.drain(self.config.timeout_send):
            self.transport.abort()
            raise ClientDisconnected("the client read nothing in --timeout-send")

    def _accept(self, message: dict[str, Any]) -> None:
        response = self.handshake.accept_response(message, self.state)
        # The handshake was read and checked by the HTTP side, so the protocol starts OPEN.
        ws = self.ws = self.reader.ws = ServerProtocol(
            state=OPEN, max_size=self.config.ws_max_size, logger=_LIBRARY_LOG
        )
        ws.extensions = self.handshake.extensions
        self.transport.write(response)
        self.status = 101
        self.phase = _OPEN
        self._schedule_ping()
        if self._early:
            early, self._early = bytes(self._early), bytearray()
            self.read_flow.resume(_EARLY)
            self.data_received(early)

    def _send_data(self, ws: ServerProtocol, message: dict[str, Any]) -> None:
        text, data = message.get("text"), message.get("bytes")
        if text is not None and data is None:
            ws.send_text(text.encode())
        elif data is not None and text is None:
            ws.send_binary(data)
        else:
            raise AppContractError("websocket.send needs exactly one of 'text' and 'bytes'")

    def _send_close(self, ws: ServerProtocol, code: int, reason: str) -> None:
        # ASGI: "the server must close the socket with the close code passed in the message".
        try:
            ws.send_close(code, reason)
        except ProtocolError as exc:
            # RFC 6455 7.4: 1005, 1006 and 1015 are never sent; 5.5: a reason fits in 123 bytes.
            raise AppContractError(f"invalid websocket.close: {exc}") from None
        except InvalidState:
            raise ClientDisconnected("the WebSocket is closed") from None
        self._flush(ws)

    async def _run(self) -> None:
        logger = self.state.error_logger
        try:
            await self.state.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            logger.debug("the WebSocket client went away")
        except Exception as exc:
            if self.phase == _DONE and isinstance(exc, OSError):
                logger.debug("the WebSocket client went away: %r", exc)
            else:
                extra = request_extra(self.scope)
                logger.error("Exception in ASGI application", exc_info=exc, extra=extra)
            self._end(_INTERNAL_ERROR)
        else:
            if self.phase == _HANDSHAKE:
                logger.error("ASGI callable returned without accepting or closing the WebSocket")
            self._end(1000)

    def _end(self, code: int) -> None:
        """The app is done: finish whatever it left open."""
        if self.phase == _HANDSHAKE:
            self.status = 500
            self._write_and_close(self.handshake.denial(500))
        elif self.phase == _RESPONDING:
            self._close_transport()
        elif self.phase == _OPEN and self.ws is not None and self.ws.state is OPEN:
            self._send_close(self.ws, code, "")

    # --- Called by the server ------------------------------------------------------------

    def shutdown(self) -> None:
        """Close with 1012 (service restart); a handshake still pending gets a 503."""
        if self.phase == _HANDSHAKE:
            self.status = 503
            self._write_and_close(self.handshake.denial(503))
        elif self.phase == _OPEN and self.ws is not None and self.ws.state is OPEN:
            self._send_close(self.ws, _SERVICE_RESTART, "server shutting down")

    async def wait_closed(self) -> None:
        """Wait for the TCP close and the app's return; when cancelled (the graceful timeout
        ran out), abort the connection and cancel the app."""
        try:
            await asyncio.shield(self._closed)
            if self.task is not None:
                await asyncio.wait({self.task})
        except asyncio.CancelledError:
            self.transport.abort()
            if self.task is not None:
                self.task.cancel()
            raise

    # --- Access log ----------------------------------------------------------------------

    @property
    def client(self) -> str:
        return client_address(self.scope)

    def _log(self, code: int) -> None:
        entry = AccessEntry(
            self.state.access_format,
            self.scope,
            self.status,
            0,
            time.monotonic() - self.start_time,
            kind=WEBSOCKET,
            close_code=code if self.status == 101 else None,
        )
        self.state.access_logger.info("%s", entry)
