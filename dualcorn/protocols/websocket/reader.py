"""Bytes from a WebSocket client into the protocol, without passing the session's bounds.

A read from the socket may hold many frames, and with permessage-deflate (RFC 7692) a frame of
16 KiB may inflate to 16 MiB.  So a read is given to the ``websockets`` protocol a slice at a
time (16 KiB when compression was negotiated, 256 KiB otherwise), and before each slice the
bounds are checked: the inbox is full (``--ws-max-queue``, ``--ws-max-queue-bytes``), or the
transport's write buffer is above its high-water mark (a client sending pings it never reads
the pongs of; RFC 6455 5.5.3 lets a pong wait).  Past a bound, reading stops and the rest of the
read is *held* unparsed, never inflated; it is fed on its own loop turn once the app has read
the inbox down, or the client has drained the write buffer.  Nothing is held beyond one read:
the transport stops reading as soon as the first bound is hit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.server import ServerProtocol

from dualcorn.protocols.flow import ReadFlow, WriteFlow
from dualcorn.protocols.websocket.inbox import Inbox

__all__ = ["QUEUE", "WRITE", "BoundedReader"]

# ReadFlow reasons (the session's own reason, "early", is 8): the inbox is full; the
# transport's write buffer is above its high-water mark.
QUEUE, WRITE = 16, 32
# Bytes given to the protocol at a time: a compressed slice may inflate a thousandfold.
_SLICE_DEFLATE, _SLICE_PLAIN = 16 * 1024, 256 * 1024


class BoundedReader:
    """Feeds one session's reads to its protocol; ``process`` handles the frames of a slice."""

    __slots__ = ("_held", "_loop", "_process", "_read_flow", "_scheduled", "_slice",
                 "_write_flow", "inbox", "ws")  # fmt: skip

    def __init__(
        self,
        read_flow: ReadFlow,
        write_flow: WriteFlow,
        *,
        deflate: bool,
        process: Callable[[ServerProtocol], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._read_flow = read_flow
        self._write_flow = write_flow
        self._process = process
        self._slice = _SLICE_DEFLATE if deflate else _SLICE_PLAIN
        self._held = b""  # the unparsed rest of a read, while a bound stops reading
        self._scheduled = False
        self.inbox: Inbox | None = None  # set by the session, which makes both
        self.ws: ServerProtocol | None = None  # set once the app accepts

    def _blocked(self) -> bool:
        inbox = self.inbox
        return (inbox is not None and inbox.full) or self._write_flow.paused

    def feed(self, ws: ServerProtocol, data: bytes) -> None:
        """A read from the transport."""
        if self._held:  # reading is paused, but a transport may deliver one more read
            self._held += data
            return
        if len(data) <= self._slice:  # the common case: one slice
            ws.receive_data(data)
            self._process(ws)
            if self._blocked():
                self._stop_reading()
            return
        size, step = len(data), self._slice
        for start in range(0, size, step):
            if self._blocked():
                self._held = data[start:]
                self._stop_reading()
                return
            ws.receive_data(data[start : start + step])
            self._process(ws)
        if self._blocked():
            self._stop_reading()

    def _stop_reading(self) -> None:
        if self.inbox is not None and self.inbox.full:
            self._read_flow.pause(QUEUE)
        if self._write_flow.paused:
            self._read_flow.pause(WRITE)

    def inbox_has_room(self) -> None:
        """The app read the inbox down to its low mark."""
        self._read_flow.resume(QUEUE)
        self._release_held()

    def write_paused(self) -> None:
        if self.ws is not None:
            self._read_flow.pause(WRITE)

    def write_resumed(self) -> None:
        self._read_flow.resume(WRITE)
        self._release_held()

    def drop(self) -> None:
        """The connection is lost: what was held will never be parsed."""
        self._held = b""

    def _release_held(self) -> None:
        if self._held and not self._scheduled:
            # Not from inside the app's receive() or a transport callback: on its own turn.
            self._scheduled = True
            self._loop.call_soon(self._feed_held)

    def _feed_held(self) -> None:
        self._scheduled = False
        ws, held = self.ws, self._held
        if ws is None or not held or self._blocked():
            return
        self._held = b""
        self.feed(ws, held)
