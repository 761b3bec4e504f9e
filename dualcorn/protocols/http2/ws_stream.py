"""An RFC 8441 stream as a transport: the WebSocket session runs on it as on a TCP socket.

Theory of operation.  RFC 8441 5: once the server answered an extended CONNECT with 200, the
peers speak RFC 6455 "using the HTTP/2 stream ... as if it were the TCP connection"; an orderly
close is END_STREAM, an abort RST_STREAM CANCEL.  So the same
:class:`~dualcorn.protocols.websocket.session.WebSocketSession` that serves HTTP/1.1 sockets
is given a :class:`WebSocketStream` for transport, and nothing of the session changes:

* ``write``: DATA frames, as far as the stream's and the connection's windows allow (RFC 9113
  6.9); the rest waits here, and past ``--write-high-water`` bytes (or while the socket itself
  is paused) the session is told ``pause_writing``, so an app's ``send`` waits (at most
  ``--timeout-send``) exactly as it does on a full TCP buffer;
* ``pause_reading``/``resume_reading``: the window.  DATA the session has taken is
  acknowledged (WINDOW_UPDATE) only while reading is not paused; DATA that arrives while it is
  paused is held here unparsed, and holding it is bounded by the stream window the client may
  not exceed (a full inbox, a client that reads no pongs: the client waits for the window);
* ``close``: END_STREAM once the bytes waiting for the window are sent; the stream is closed
  when the client has ended its side too (or after ``--ws-close-timeout``, RST_STREAM CANCEL);
  ``abort``: RST_STREAM CANCEL;
* the client's END_STREAM is the TCP FIN (the session's ``eof_received``), its RST_STREAM or
  the loss of the connection the session's ``connection_lost``.

It is also the connection's :class:`~dualcorn.protocols.http2.connection.StreamHandler` for its
stream (which counts toward SETTINGS_MAX_CONCURRENT_STREAMS until the app returns, as a
request's does), with ``long_lived`` set: a graceful shutdown waits for the requests in
flight, then the server closes WebSockets with 1012, this one included, before the
connection closes.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, cast

from dualcorn.protocols.http2.events import CANCEL

if TYPE_CHECKING:
    from dualcorn.protocols.http2.connection import H2Connection

__all__ = ["WebSocketStream"]


class WebSocketStream(asyncio.Transport):
    """One extended-CONNECT stream: a transport for the session, a handler for the connection."""

    long_lived = True

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        super().__init__()
        self.conn = conn
        self.id = stream_id
        self.reset = False  # reset by either side: nothing more may be sent
        self.protocol: asyncio.Protocol | None = None
        self.task: asyncio.Task[None] | None = None  # the session's app
        config = conn.config
        self._high = config.write_high_water
        self._low = self._high // 4  # asyncio's own low-water mark
        self._pending: collections.deque[memoryview] = collections.deque()
        self._pending_size = 0
        self._write_paused = False  # the session was told pause_writing
        self._head_sent = False
        self._tunnel = False  # the 200 went out: both sides end the stream (RFC 8441 5)
        self._closing = False  # close(): END_STREAM once the pending bytes are sent
        self._ended = False  # END_STREAM sent
        self._client_ended = False  # END_STREAM received
        self._reading_paused = False
        self._held: collections.deque[bytes] = collections.deque()
        self._delivery = False  # a delivery of the held bytes is scheduled
        self._unacked = 0  # flow-controlled bytes received and not acknowledged
        self._done = False
        self._timer: asyncio.TimerHandle | None = None

    # --- The handshake's answer ------------------------------------------------------------

    def send_head(self, fields: list[tuple[bytes, bytes]], *, end: bool, tunnel: bool) -> None:
        """The response HEADERS: the 200 that opens the tunnel, or a refusal (``end``)."""
        if self._head_sent or self.reset or self._done:
            return
        self._head_sent = True
        self._tunnel = tunnel
        self.conn.engine.send_headers(self.id, fields, end)
        if end:
            self._ended = True
        self.conn.schedule_write()

    # --- StreamHandler (fed by the connection) ---------------------------------------------

    def feed_body(self, data: bytes, flow_length: int) -> None:
        if self._done:
            self.conn.engine.ack(self.id, flow_length)  # nobody will read it
            return
        self._unacked += flow_length
        if self._reading_paused or self._held:
            if data:
                self._held.append(data)
            return
        if data:
            self._session.data_received(data)
        if not self._reading_paused:
            self._ack()

    def feed_end(self) -> None:
        self._client_ended = True
        # As a paused TCP transport reads no FIN: the end follows what reading waits for.
        if not self._held and not self._reading_paused:
            self._eof()

    def lost(self) -> None:
        """The client reset the stream, or the connection is gone."""
        self.reset = True
        self._pending.clear()
        self._pending_size = 0
        self._held.clear()
        self._finish()

    def wake(self) -> None:
        """A window grew or the socket drained: send what waits, maybe resume the session."""
        if self._done:
            return
        if self._pending or (self._closing and not self._ended):
            self._flush()
        if (
            self._write_paused
            and self._pending_size <= self._low
            and not self.conn.write_paused
            and not self._done
        ):
            self._write_paused = False
            self._session.resume_writing()

    def release(self) -> int:
        """The window never acknowledged: the connection gives it back when the stream ends."""
        unacked = self._unacked
        self._unacked = 0
        self._held.clear()
        return unacked

    # --- asyncio.Transport -----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._done or not data:
            return
        conn = self.conn
        if conn.lost or conn.transport.is_closing():
            return
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        self._pending.append(view)
        self._pending_size += len(view)
        self._flush()
        if not self._write_paused and (self._pending_size > self._high or conn.write_paused):
            self._write_paused = True
            self._session.pause_writing()

    def _flush(self) -> None:
        """DATA as far as the windows allow; END_STREAM after the last byte once closing."""
        engine = self.conn.engine
        pending = self._pending
        sid = self.id
        while pending:
            window = engine.window(sid)
            if window <= 0:
                break
            chunk = pending[0]
            size = min(window, engine.max_frame)
            if len(chunk) <= size:
                pending.popleft()
            else:
                pending[0] = chunk[size:]
                chunk = chunk[:size]
            engine.send_data(sid, chunk, False)
            self._pending_size -= len(chunk)
        if not pending and self._closing and not self._ended and not self.reset:
            engine.end_stream(sid)
            self._ended = True
            if self._client_ended or not self._tunnel:
                self._finish()
        self.conn.schedule_write()

    def close(self) -> None:
        if self._closing or self._done:
            return
        self._closing = True
        if self._ended:  # a refusal's HEADERS ended the stream
            self._finish()
            return
        if not self._head_sent:
            # No response began (the client left before the app answered, or the app failed
            # after websocket.http.response.start): DATA may not come first (RFC 9113 8.1).
            self.abort()
            return
        self._flush()
        if not self._done:
            # The bytes may wait for a window that never opens, the client may never end its
            # side: neither holds the stream longer than --ws-close-timeout.
            self._timer = self.conn.loop.call_later(self.conn.config.ws_close_timeout, self.abort)

    def abort(self) -> None:
        if self._done:
            return
        self.reset = True
        self._pending.clear()
        self._pending_size = 0
        self.conn.engine.reset(self.id, CANCEL)  # nothing if the stream is already closed
        self.conn.schedule_write()
        self._finish()

    def is_closing(self) -> bool:
        return self._closing or self._done

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._held or self._client_ended:
            if not self._delivery:
                # Not from inside the session's own call: on a turn of its own.
                self._delivery = True
                self.conn.loop.call_soon(self._deliver)
        elif not self._done:
            self._ack()

    def is_reading(self) -> bool:
        return not self._reading_paused

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.conn.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._session

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is not None:
            self._high = high
        self._low = low if low is not None else self._high // 4

    def can_write_eof(self) -> bool:
        return False  # the session ends the stream with close() (END_STREAM)

    # --- Inside ----------------------------------------------------------------------------

    @property
    def _session(self) -> asyncio.Protocol:
        protocol = self.protocol
        assert protocol is not None, "the session sets itself as the protocol first"
        return protocol

    def _ack(self) -> None:
        unacked = self._unacked
        if unacked:
            self._unacked = 0
            self.conn.engine.ack(self.id, unacked)
            self.conn.schedule_write()

    def _deliver(self) -> None:
        self._delivery = False
        held = self._held
        while held and not self._reading_paused and not self._done:
            self._session.data_received(held.popleft())
        if self._reading_paused or self._done:
            return
        self._ack()
        if self._client_ended:
            self._eof()

    def _eof(self) -> None:
        if self._done:
            return
        if self._ended:
            self._finish()  # both sides ended the stream: closed (RFC 9113 5.1)
        elif not self._session.eof_received():
            self.close()  # asyncio's rule: a protocol that keeps nothing open closes

    def _finish(self) -> None:
        """The stream is over: the session learns it on the next turn, as from asyncio."""
        if self._done:
            return
        self._done = self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.conn.loop.call_soon(self._finished)

    def _finished(self) -> None:
        if self.protocol is not None:
            self.protocol.connection_lost(None)
        task = self.task
        if task is not None and not task.done():
            # The lesson of Rapid Reset (CVE-2023-44487): a stream counts toward
            # SETTINGS_MAX_CONCURRENT_STREAMS until its app has returned, as a request does.
            task.add_done_callback(self._app_returned)
        else:
            self.conn.stream_finished(self)

    def _app_returned(self, task: asyncio.Task[None]) -> None:
        self.conn.stream_finished(self)
