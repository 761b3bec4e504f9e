"""Flow control in both directions, so no buffer grows without bound.

Reading: a connection stops reading from the socket while any reason to hold back stands: the
app has not yet read the buffered request body (past a high-water mark), or a pipelined request
waits for the current response to finish.  Writing: the transport tells the protocol when its
buffer passes the high-water mark; the app's ``send`` then waits until it drains, but not for
ever: nginx's ``send_timeout`` (``--timeout-send``) bounds each such wait, so a client that never
reads cannot hold a response (or a WSGI thread) for longer than that.
"""

from __future__ import annotations

import asyncio

__all__ = ["BODY", "EOF", "PIPELINE", "ReadFlow", "WriteFlow"]

# Reasons to stop reading; a small bit set avoids allocating on the hot path.
BODY = 1
PIPELINE = 2
# The client half-closed: nothing more will come.  Never lifted, because asyncio's transport
# would re-arm its reader on resume_reading and report the end of the stream again.
EOF = 4


class ReadFlow:
    """Pauses the transport's reading while any reason stands."""

    __slots__ = ("_reasons", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._reasons = 0

    def pause(self, reason: int) -> None:
        if not self._reasons and not self._transport.is_closing():
            self._transport.pause_reading()
        self._reasons |= reason

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def resume(self, reason: int) -> None:
        if self._reasons & reason:
            self._reasons &= ~reason
            if not self._reasons and not self._transport.is_closing():
                self._transport.resume_reading()


class WriteFlow:
    """Lets writers wait while the transport's send buffer is above its high-water mark."""

    __slots__ = ("_drained", "paused")

    def __init__(self) -> None:
        self.paused = False
        self._drained: asyncio.Event | None = None

    def pause_writing(self) -> None:
        self.paused = True
        if self._drained is not None:
            self._drained.clear()

    def resume_writing(self) -> None:
        self.paused = False
        if self._drained is not None:
            self._drained.set()

    async def drain(self, within: float | None = None) -> bool:
        """Wait until the transport accepts more data (or the connection is lost); False if
        ``within`` seconds passed first (nginx ``send_timeout``: the caller closes)."""
        if not self.paused:
            return True
        if self._drained is None:
            self._drained = asyncio.Event()
        try:
            async with asyncio.timeout(within):
                await self._drained.wait()
        except TimeoutError:
            return False
        return True
