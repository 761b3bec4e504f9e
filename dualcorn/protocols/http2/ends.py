"""How an HTTP/2 connection ends: timeouts, the keep-alive cap, graceful GOAWAY, errors.

Theory of operation.  The ends are those of an HTTP/1.1 connection: ``--timeout-request-head``
until the first request, ``--timeout-keep-alive`` while no stream is open, and
``--http2-max-requests`` streams per connection if set.  Each end, and the server's shutdown, is
graceful (RFC 9113 6.8): a GOAWAY with the highest stream id (2^31-1) and a PING; once the PING
returns (or :data:`GOAWAY_GRACE` passed) every stream the client sent before it saw the GOAWAY
has arrived, and the final GOAWAY names the last one served.  Open streams finish (the server
waits for them within ``--timeout-graceful-shutdown``), then the connection closes.  A
connection error (RFC 9113 5.4.1) is a GOAWAY with its code, then the close.

The GOAWAY goes out ahead of the frames queued with it.  A client under load, such as
nghttp2's h2load, opens a new stream as each response completes, and refuses on its own every
stream it opened before it read a GOAWAY that came in the same read: so a response complete
before the GOAWAY, but not yet read, costs the client a request.  When a loaded connection
reaches its stream cap (``--http2-max-requests``, or the zttp engine's), the server therefore
sends a PING first and holds its output until the PING returns (or :data:`GOAWAY_GRACE`):
then the client has read every response written before, and every response after reaches it
behind the GOAWAY.  The streams it opened meanwhile are served (zttp's margin allows them).

:class:`ConnectionEnds` is the part of
:class:`~dualcorn.protocols.http2.connection.H2Connection` that does this, apart so that the
connection module reads as the path of a request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from dualcorn.config import Config
from dualcorn.protocols.http2 import events as ev
from dualcorn.protocols.state import ServerState

if TYPE_CHECKING:
    from dualcorn.protocols.http2.engines import Engine
    from dualcorn.protocols.http2.stream import StreamHandler

__all__ = ["GOAWAY_GRACE", "GOAWAY_PING", "ConnectionEnds"]

# How long the first GOAWAY waits for its PING to return before the final one (RFC 9113 6.8
# asks for "at least one round-trip time"); the PING's answer usually ends the wait first.
GOAWAY_GRACE = 1.0
GOAWAY_PING = b"dualcorn"  # the PING's payload, told apart from the client's own PINGs
HOLD_PING = b"dualhold"  # the PING before a capped connection's first GOAWAY
_ALL_STREAMS = 2**31 - 1
_PING_HEADER = b"\0\0\x08\x06\0\0\0\0\0"  # RFC 9113 6.7: 8 bytes of payload, stream 0


class ConnectionEnds:
    """The ends of :class:`~dualcorn.protocols.http2.connection.H2Connection`."""

    # The connection's, set in its __init__ and connection_made.
    transport: asyncio.Transport
    state: ServerState
    config: Config
    loop: asyncio.AbstractEventLoop
    engine: Engine
    streams: dict[int, StreamHandler]
    client: tuple[str, int] | None
    lost: bool
    _closed: asyncio.Event
    _streams_changed: asyncio.Event
    _going_away: bool  # the first GOAWAY was sent
    _last_stream: int | None  # the final GOAWAY's last stream id
    _timer: asyncio.TimerHandle | None
    _abort: asyncio.TimerHandle | None  # see _close
    _idle_timeout: float
    write_paused: bool  # the streams wait: the socket is full, or the output is held
    _socket_full: bool  # pause_writing was called, resume_writing not yet
    _holding: bool  # output held until the PING before the first GOAWAY returns

    if TYPE_CHECKING:

        def _flush(self) -> None: ...  # the connection's: writes what the engine queued

    # --- Ends ------------------------------------------------------------------------------

    def _close_if_idle(self) -> None:
        if self.streams:
            return
        if self._last_stream is not None:
            self._close()  # the final GOAWAY went out, and the last stream is done
        elif self._going_away:
            return  # the final GOAWAY follows the PING's answer (or GOAWAY_GRACE)
        elif self.state.stopping:
            self._go_away()
        else:
            self._idle_timeout = self.config.timeout_keep_alive
            self._arm_idle()

    def _go_away(self, hold: bool = False) -> None:
        """The first GOAWAY of a graceful end: no stream after those in flight.

        ``hold``: a client is loading the connection; first a PING round trip with the output
        held, so that no response reaches it in the same read as the GOAWAY (see the notes)."""
        if self._going_away:
            return
        self._going_away = True
        if self.transport.is_closing():
            return
        if hold:
            self._holding = self.write_paused = True
            self.transport.write(_PING_HEADER + HOLD_PING)  # ahead of what is queued
            self._arm(GOAWAY_GRACE)
            return
        self._announce()

    def _announce(self) -> None:
        """GOAWAY(2^31-1) ahead of the frames queued, then the PING timing the final one."""
        if self._holding:
            self._holding = False
            self.write_paused = self._socket_full
            for stream in list(self.streams.values()):
                stream.wake()
        if self.transport.is_closing():
            return
        self.transport.write(self.engine.goaway_frame(_ALL_STREAMS, ev.NO_ERROR))
        self.engine.ping(GOAWAY_PING)
        self._flush()
        self._arm(GOAWAY_GRACE)

    def ping_acked(self, data: bytes) -> None:
        if data == GOAWAY_PING:
            self._final_goaway()
        elif data == HOLD_PING and self._holding:
            self._announce()

    def _final_goaway(self) -> None:
        if self._last_stream is not None:
            return
        self._going_away = True
        self._last_stream = last = self.engine.highest_stream_id
        self._flush()
        if not self.transport.is_closing():
            self.transport.write(self.engine.goaway_frame(last, ev.NO_ERROR))
        self._close_if_idle()

    def _fail(self, reason: str, code: int) -> None:
        """A connection error: GOAWAY with ``code``, then close (RFC 9113 5.4.1)."""
        self.state.error_logger.warning("HTTP/2 client %s: %s; closing", self.client, reason)
        self._holding = False
        self._flush()
        if not self.transport.is_closing():
            self._last_stream = last = self.engine.highest_stream_id
            self.transport.write(self.engine.goaway_frame(last, code))
        for stream in list(self.streams.values()):
            stream.lost()
        self._close()

    def _close(self) -> None:
        self._stop_timer()
        transport = self.transport
        if transport.is_closing():
            return
        self._holding = False
        self._flush()
        transport.close()
        # A client that reads nothing would hold the unsent bytes for ever: nginx send_timeout.
        self._abort = self.loop.call_later(self.config.timeout_send, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self.lost:
            self.transport.abort()

    # --- Called by the server --------------------------------------------------------------

    def shutdown(self) -> None:
        self._go_away()
        # The server waits for state.tasks: this connection counts until it has closed, or
        # until only WebSocket streams are left, which the server closes with 1012 next.
        task = self.loop.create_task(self._wait_requests())
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _wait_requests(self) -> None:
        changed = self._streams_changed
        while not self.lost:
            streams = self.streams.values()
            if streams and all(stream.long_lived for stream in streams):
                return
            changed.clear()
            await changed.wait()

    # --- The connection's timer ------------------------------------------------------------

    def _arm_idle(self) -> None:
        self._arm(self._idle_timeout)

    def _arm(self, seconds: float) -> None:
        self._stop_timer()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._holding:
            self._announce()  # the PING did not come back in time
        elif self._going_away:
            self._final_goaway()  # the PING did not come back in time
        elif not self.streams:
            self._go_away()  # idle: end gracefully (a request may be on its way)
