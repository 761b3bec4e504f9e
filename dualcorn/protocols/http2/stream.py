"""One HTTP/2 stream as the request cycle sees it: its response writer and its body's owner.

Theory of operation.  The shared :class:`~dualcorn.protocols.cycle.RequestCycle` runs the app
on each stream, exactly as on an HTTP/1.1 connection.  :class:`H2Stream` is both objects the
cycle talks to (:mod:`dualcorn.protocols.writer`):

* the :class:`~dualcorn.protocols.writer.ResponseWriter`: the head becomes a HEADERS frame
  (sent with the first body bytes, so a one-message response is HEADERS and DATA in one
  write), the body DATA frames, trailers a last HEADERS frame (ASGI
  ``http.response.trailers``), 1xx responses interim HEADERS.  Body bytes go out as far as
  the client's windows allow (the stream's and the connection's, RFC 9113 6.9); the rest
  waits here, and :meth:`H2Stream.body` tells the cycle to ``await drain()``, which returns
  once the client opened its window and the socket drained, or False after
  ``--timeout-send``.  So an app never holds more than one message it sent beyond the
  window, and a client that never opens its window is dropped in bounded time.
* the :class:`~dualcorn.protocols.writer.CycleOwner`: request body bytes reach the cycle as
  DATA arrives, and the window they used is given back (WINDOW_UPDATE) only when the app has
  read them (:meth:`H2Stream.resume_body`): the unread body of a stream is bounded by the
  stream window, whatever the client sends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from dualcorn.protocols.http2.events import CANCEL, INTERNAL_ERROR
from dualcorn.protocols.writer import ClientDisconnected, file_blocks

if TYPE_CHECKING:
    from dualcorn.protocols.cycle import RequestCycle
    from dualcorn.protocols.http2.connection import H2Connection

__all__ = ["H2Stream", "StreamHandler"]

# RFC 9113 8.2.2: fields that are specific to an HTTP/1.1 connection; an app's copy is dropped
# (Connection and Transfer-Encoding are the cycle's to drop).
_CONNECTION_SPECIFIC = frozenset((b"keep-alive", b"proxy-connection", b"upgrade"))
_STATUS = {code: b"%d" % code for code in range(100, 600)}
# RFC 9110 6.4.1: these responses carry no content.
_NO_CONTENT = frozenset((204, 304))


class StreamHandler(Protocol):
    """What the connection needs of the handler of one stream.

    :class:`H2Stream` runs an HTTP request cycle;
    :class:`~dualcorn.protocols.http2.ws_stream.WebSocketStream` a WebSocket (RFC 8441, an
    extended CONNECT), in the same table, fed the same way.
    """

    id: int
    reset: bool
    # A WebSocket stream: the server closes it with 1012 after the requests in flight.
    long_lived: bool

    def feed_body(self, data: bytes, flow_length: int) -> None: ...

    def feed_end(self) -> None: ...

    def lost(self) -> None: ...

    def wake(self) -> None: ...

    def release(self) -> int: ...


class H2Stream:
    """One request/response exchange on an HTTP/2 connection; see the module notes."""

    __slots__ = (
        "_end_pending", "_ended", "_head", "_no_body", "_pending", "_sent", "_sent_at",
        "_status", "_trailers", "_unacked", "_wake", "conn", "cycle", "done", "field_cache",
        "head_request", "id", "reset",
    )  # fmt: skip
    long_lived = False  # a request, not a WebSocket (see StreamHandler)

    def __init__(self, conn: H2Connection, stream_id: int, head_request: bool) -> None:
        self.conn = conn
        self.id = stream_id
        self.field_cache = conn.limits.field_cache
        self.head_request = head_request
        self.cycle: RequestCycle | None = None
        self.reset = False  # reset by either side: nothing more may be sent
        self.done = False  # the cycle is done with the stream
        self._head: list[tuple[bytes, bytes]] | None = None  # the head, until the first body
        self._status = 0  # the head's status
        self._no_body = head_request
        self._pending: list[memoryview] = []  # body bytes waiting for the window
        self._end_pending = False
        self._ended = False  # END_STREAM sent
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._unacked = 0  # flow-controlled bytes the app has not read
        self._wake: asyncio.Event | None = None
        self._sent = self._sent_at = 0  # body bytes sent; as of the last progress check

    # --- Fed by the connection -------------------------------------------------------------

    def feed_body(self, data: bytes, flow_length: int) -> None:
        cycle = self.cycle
        if cycle is None or self.done:
            self.conn.engine.ack(self.id, flow_length)  # nobody will read it
            return
        self._unacked += flow_length
        cycle.feed_body(data)

    def feed_end(self) -> None:
        if self.cycle is not None:
            self.cycle.feed_end()

    def lost(self) -> None:
        """The client reset the stream, or the connection is gone."""
        self.reset = True
        self._pending.clear()
        if self.cycle is not None and not self.cycle.complete:
            self.cycle.feed_disconnect()
        self.wake()

    def wake(self) -> None:
        """The windows or the socket may take more: send what waits, wake ``drain``."""
        if self._pending or self._end_pending or self._trailers is not None:
            self._flush()
        if self._wake is not None:
            self._wake.set()

    # --- ResponseWriter --------------------------------------------------------------------

    def encode_field(self, name: bytes, value: bytes) -> Any:
        lower = name.lower()
        if lower in _CONNECTION_SPECIFIC:
            return None
        if value and (value[0] in b" \t" or value[-1] in b" \t"):
            # RFC 9113 8.2.1: no whitespace at either end of an HTTP/2 value (nghttp2 resets
            # such a stream), where HTTP/1.1 reads it as OWS (RFC 9110 5.5): h2's outbound
            # normalisation stripped it, which the engine leaves to this cached step.
            value = value.strip(b" \t")
        return (lower, value)

    def interim(self, status: int, fields: list[Any]) -> None:
        if self.reset:
            return
        head = [(b":status", _STATUS[status])]
        head += [field for field in fields if field is not None]
        if not self.conn.engine.send_headers(self.id, head, False):
            self.reset = True
        self.conn.schedule_write()

    def start(
        self,
        status: int,
        fields: list[Any],
        content_length: int | None,
        close: bool,
        replaced: set[bytes] | None,
    ) -> None:
        # ``close`` is HTTP/1.1's: an HTTP/2 stream ends by itself (RFC 9113 8.2.2).
        head = [(b":status", _STATUS[status])]
        state = self.conn.state
        if state.date is not None and (replaced is None or b"date" not in replaced):
            head.append((b"date", state.date.value()))
        for name, value in self.conn.limits.default_fields:
            if replaced is None or name not in replaced:
                head.append((name, value))
        head += filter(None, fields)  # a field the writer dropped is None
        if status in _NO_CONTENT:
            self._no_body = True
        elif content_length is not None:
            head.append((b"content-length", b"%d" % content_length))
        self._head = head
        self._status = status

    def _send_head(self, end: bool) -> None:
        head = self._head
        self._head = None
        if head is not None and not self.reset:
            if not self.conn.engine.send_headers(self.id, head, end):
                self.reset = True
            elif end:
                self._ended = True

    def body(self, data: bytes, end: bool) -> bool:
        if self.reset:
            return False
        if self._no_body or not data:
            if self._head is not None:
                self._send_head(end)
            elif end:
                self._end_pending = True
                self._flush()
            else:
                return False
            self.conn.schedule_write()
            return False
        head = self._head
        if head is not None:
            if end and self._trailers is None:
                # Most responses: the head and one body message that fits the windows and a
                # frame, as HEADERS and one DATA frame ending the stream, in one engine call.
                sent = self.conn.engine.send_response(self.id, self._status, head, data)
                if sent is not None:
                    self._head = None
                    self._sent_whole(sent, len(data))
                    return self.conn.write_paused
            self._send_head(False)
        if end and not self._pending and self._trailers is None and self._last_frame(data):
            return self.conn.write_paused
        self._pending.append(memoryview(data))
        if end:
            self._end_pending = True
        self._flush()
        return bool(self._pending) or self.conn.write_paused

    def _last_frame(self, data: bytes) -> bool:
        """The whole body in one DATA frame that ends the stream, if the windows allow (most
        responses: one ``http.response.body``); else False, and :meth:`_flush` splits it."""
        engine = self.conn.engine
        size = len(data)
        if self.reset or size > engine.max_frame or size > engine.window(self.id):
            return False
        self._sent_whole(engine.send_data(self.id, data, True), size)
        return True

    def _sent_whole(self, sent: bool, size: int) -> None:
        if sent:
            self._sent += size
            self._ended = True
            self.conn.write_soon(size)
            if self.done:
                self.conn.stream_finished(self)
        else:
            self.lost()

    def _flush(self) -> None:
        """Send the waiting body as far as the windows allow; then the end or the trailers."""
        engine = self.conn.engine
        pending = self._pending
        sid = self.id
        sent = self._sent
        while pending:
            window = engine.window(sid)
            if window <= 0:
                break
            chunk = pending[0]
            size = min(window, engine.max_frame)
            last = len(pending) == 1 and len(chunk) <= size
            if len(chunk) <= size:
                pending.pop(0)
            else:
                pending[0] = chunk[size:]
                chunk = chunk[:size]
            end = last and self._end_pending and self._trailers is None
            if not engine.send_data(sid, chunk, end):
                self.lost()
                return
            self._sent += len(chunk)
            if end:
                self._end_pending = False
                self._ended = True
        if not pending and not self._ended and not self.reset:
            if self._trailers is not None:
                trailers = self._trailers
                self._trailers = None
                self._ended = engine.send_headers(sid, trailers, True)
                self._end_pending = False
            elif self._end_pending:
                self._ended = engine.end_stream(sid)
                self._end_pending = False
        self.conn.write_soon(self._sent - sent)
        if self.done and self.finished:
            self.conn.stream_finished(self)

    @property
    def finished(self) -> bool:
        """Nothing is left to send on this stream."""
        return (
            self.reset
            or self._ended
            or (not self._pending and not self._end_pending and self._trailers is None)
        )

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        async for block in file_blocks(file.fileno(), offset, count):
            if self.gone():
                raise ClientDisconnected("the client disconnected")
            if self.body(bytes(block), False) and not await self.drain():
                self.abort()
                raise ClientDisconnected("the client read nothing in --timeout-send")
        if self.gone():
            raise ClientDisconnected("the client disconnected")

    def trailers(self, fields: list[Any]) -> None:
        if self.reset:
            return
        if self._head is not None:
            self._send_head(False)
        self._trailers = [field for field in fields if field is not None]
        self._flush()

    def abandon(self) -> None:
        # RFC 9113 8.1: a response cut short is reset, so the client cannot take it as whole.
        self._reset(INTERNAL_ERROR)

    async def drain(self) -> bool:
        conn = self.conn
        if self._wake is None:
            self._wake = asyncio.Event()
        wake = self._wake
        try:
            async with asyncio.timeout(conn.config.timeout_send):
                while (self._pending or conn.write_paused) and not self.gone():
                    wake.clear()
                    await wake.wait()
        except TimeoutError:
            return False
        return True

    def gone(self) -> bool:
        # A failed write closes the transport a loop turn before connection_lost: a send in
        # that gap must raise, as over HTTP/1.1 (see RequestCycle._gone).
        conn = self.conn
        return self.reset or conn.lost or conn.transport.is_closing()

    def abort(self) -> None:
        self._reset(CANCEL)

    def _reset(self, code: int) -> None:
        if not self.reset:
            self.reset = True
            self._pending.clear()
            if not self._ended:
                self.conn.engine.reset(self.id, code)
                self.conn.schedule_write()
        self.wake()

    # --- CycleOwner ------------------------------------------------------------------------

    def pause_body(self) -> None:
        """Nothing to do: the body the app has not read is never acknowledged, so the
        stream window holds the client back by itself."""

    def resume_body(self) -> None:
        unacked = self._unacked
        if unacked:
            self._unacked = 0
            self.conn.engine.ack(self.id, unacked)
            self.conn.schedule_write()

    def body_stalled(self) -> None:
        self._reset(CANCEL)

    def body_too_large(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.started and self._head is None and not self.reset:
            self.conn.respond_error(self.id, 413)  # ends the stream, resets the upload
            self.reset = True
        else:
            self._reset(CANCEL)
        if cycle is not None:
            cycle.feed_disconnect()

    def client_gone(self) -> None:
        self._reset(CANCEL)

    def cycle_done(self, cycle: RequestCycle) -> None:
        self.done = True
        self.conn.request_done()
        if self._ended or self.finished:  # most often ended: the body went out whole
            self.conn.stream_finished(self)
        else:
            # The end of the body waits for the client's window: nginx send_timeout bounds
            # each wait for the client to take more.
            self._sent_at = self._sent
            self.conn.loop.call_later(self.conn.config.timeout_send, self._check_progress)

    def app_returned(self) -> None:
        """The app's task is ending.  A cycle cut short by a disconnect (the client's
        RST_STREAM, --timeout-body-read, --timeout-send) never reports done: the stream would
        keep its slot in the table for ever, the connection would refuse every stream past
        SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 5.1.2) and never go idle."""
        if not self.done and self.cycle is not None:
            self.cycle_done(self.cycle)

    def _check_progress(self) -> None:
        if self.finished:
            return
        if self._sent == self._sent_at:
            self.conn.state.error_logger.debug("the client read nothing in --timeout-send")
            self._reset(CANCEL)
            self.conn.stream_finished(self)
            return
        self._sent_at = self._sent
        self.conn.loop.call_later(self.conn.config.timeout_send, self._check_progress)

    def release(self) -> int:
        """The window the app never read: the connection gives it back when the stream ends."""
        unacked = self._unacked
        self._unacked = 0
        return unacked
