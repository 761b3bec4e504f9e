"""Messages from a WebSocket client, whole and checked, waiting for the app's ``receive``.

RFC 6455 5.4: a message may arrive in fragments (a text or binary frame, then continuation
frames until one has FIN set); the ASGI app sees only whole messages.  Fragments are gathered
into one ``bytearray`` (a fragment costs its bytes, not an object), and a message of more than
``--ws-max-fragments`` fragments fails the connection with 1008: a flood of one-byte fragments
stops there.  Text is checked as UTF-8 fragment by fragment (8.1), so an invalid byte fails the
connection as soon as it arrives and a code point split across two frames is still accepted.

Whole messages wait in a queue bounded twice: ``--ws-max-queue`` messages and
``--ws-max-queue-bytes`` bytes (decompressed: a permessage-deflate "bomb" counts what it
inflates to).  Past either bound :attr:`Inbox.full` is true and the session stops reading;
when the app has read the queue down to a quarter of both, ``on_room`` lets it read again.
When the connection is lost, a queue the app has fallen behind on is dropped at once, so a
client that leaves frees its memory even if the app task never reads again.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
from collections.abc import Callable
from typing import Any

from websockets.frames import CONT, TEXT, Frame

__all__ = ["Inbox", "InvalidText", "TooManyFragments"]


class InvalidText(ValueError):
    """A text message is not UTF-8: fail the connection with 1007 (RFC 6455 7.4.1)."""


class TooManyFragments(ValueError):
    """A message in more fragments than allowed: fail with 1008 (policy violation, 7.4.1)."""


class Inbox:
    __slots__ = ("_bytes", "_decoder", "_disconnect", "_fragments", "_low_bytes", "_low_count",
                 "_max_bytes", "_max_count", "_max_fragments", "_on_room", "_parts", "_queue",
                 "_text", "_wake", "full")  # fmt: skip

    def __init__(
        self,
        on_room: Callable[[], None],
        max_queue: int,
        max_bytes: int = 4 * 1024 * 1024,
        max_fragments: int = 4096,
    ) -> None:
        self._on_room = on_room
        self._max_count = max_queue
        self._max_bytes = max_bytes
        self._max_fragments = max_fragments
        # Resume reading once the app has caught up to a quarter (websockets' own low mark),
        # so reading does not flap on and off with every message.
        self._low_count = max_queue // 4
        self._low_bytes = max_bytes // 4
        self._queue: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self._bytes = 0  # payload bytes queued
        self.full = False  # past a bound: the session stops reading until on_room()
        self._wake = asyncio.Event()
        self._disconnect: dict[str, Any] | None = None
        self._parts = bytearray()  # the fragments of the message in progress
        self._fragments = 0
        self._text = False
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, frame: Frame) -> None:
        """Add one data frame (text, binary or continuation); raise InvalidText or
        TooManyFragments."""
        data = frame.data
        if frame.opcode is not CONT:
            self._text = frame.opcode is TEXT
            if frame.fin:  # the common case: a whole message in one frame
                if self._text:
                    try:
                        text = data.decode() if type(data) is bytes else bytes(data).decode()
                    except UnicodeDecodeError as exc:
                        raise InvalidText(f"invalid UTF-8 at byte {exc.start}") from None
                    self._put({"type": "websocket.receive", "text": text}, len(data))
                else:
                    self._put({"type": "websocket.receive", "bytes": bytes(data)}, len(data))
                return
        self._fragments += 1
        if self._fragments > self._max_fragments:
            self._reset()
            raise TooManyFragments(f"a message in more than {self._max_fragments} fragments")
        if self._text:
            try:
                # Checked as it comes (8.1); the text itself is decoded once, when whole.
                self._decoder.decode(data, frame.fin)
            except UnicodeDecodeError as exc:
                self._reset()
                raise InvalidText(f"invalid UTF-8 at byte {exc.start}") from None
        self._parts += data
        if not frame.fin:
            return
        parts = self._parts
        size = len(parts)
        message: dict[str, Any]
        if self._text:
            message = {"type": "websocket.receive", "text": parts.decode()}
        else:
            message = {"type": "websocket.receive", "bytes": bytes(parts)}
        self._reset()
        self._put(message, size)

    def _reset(self) -> None:
        self._parts = bytearray()
        self._fragments = 0
        self._decoder.reset()

    def _put(self, message: dict[str, Any], size: int) -> None:
        queue = self._queue
        queue.append((message, size))
        self._bytes += size
        if len(queue) >= self._max_count or self._bytes >= self._max_bytes:
            # Stop reading until the app catches up; TCP then slows the client down.
            self.full = True
        self._wake.set()

    def __len__(self) -> int:
        """Whole messages the app has not read yet."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def close(self, code: int, reason: str) -> None:
        """The connection is gone: ``get`` returns the disconnect after the queued messages,
        unless the app had fallen behind (more than a quarter of a bound), in which case they
        are dropped now: nobody can answer them, and a live app task must not keep them."""
        self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        if self._bytes > self._low_bytes or len(self._queue) > self._low_count:
            self._queue.clear()
            self._bytes = 0
        self._parts = bytearray()
        self._wake.set()

    async def get(self) -> dict[str, Any]:
        queue = self._queue
        while True:
            if queue:
                message, size = queue.popleft()
                self._bytes -= size
                if self.full and self._bytes <= self._low_bytes and len(queue) <= self._low_count:
                    self.full = False
                    self._on_room()
                return message
            if self._disconnect is not None:
                return self._disconnect
            self._wake.clear()
            await self._wake.wait()
