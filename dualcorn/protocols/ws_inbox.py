"""Messages from a WebSocket client, whole and checked, waiting for the app's ``receive``.

RFC 6455 5.4: a message may arrive in fragments (a text or binary frame, then continuation
frames until one has FIN set); the ASGI app sees only whole messages.  Text is checked as UTF-8
fragment by fragment (8.1), so an invalid byte fails the connection as soon as it arrives and a
code point split across two frames is still accepted.  Whole messages wait in a queue; past
``--ws-max-queue`` unread messages the connection stops reading, so a client can never make the
server hold more than the queue plus one read (and ``--ws-max-size`` bounds each message).
"""

from __future__ import annotations

import asyncio
import codecs
import collections
from typing import Any

from websockets.frames import CONT, TEXT, Frame

from dualcorn.protocols.flow import ReadFlow

__all__ = ["QUEUE", "Inbox", "InvalidText"]

QUEUE = 4  # a ReadFlow reason: the app has --ws-max-queue unread messages


class InvalidText(ValueError):
    """A text message is not UTF-8: fail the connection with 1007 (RFC 6455 7.4.1)."""


class Inbox:
    __slots__ = ("_decoder", "_disconnect", "_low", "_max", "_parts", "_queue", "_read_flow",
                 "_text", "_wake")  # fmt: skip

    def __init__(self, read_flow: ReadFlow, max_queue: int) -> None:
        self._read_flow = read_flow
        self._max = max_queue
        # Resume reading once the app has caught up to a quarter (websockets' own low mark),
        # so reading does not flap on and off with every message.
        self._low = max_queue // 4
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = asyncio.Event()
        self._disconnect: dict[str, Any] | None = None
        self._parts: list[Any] = []
        self._text = False
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, frame: Frame) -> None:
        """Add one data frame (text, binary or continuation); raise InvalidText."""
        if frame.opcode is not CONT:
            self._text = frame.opcode is TEXT
        if self._text:
            try:
                self._parts.append(self._decoder.decode(frame.data, frame.fin))
            except UnicodeDecodeError as exc:
                self._parts.clear()
                self._decoder.reset()
                raise InvalidText(f"invalid UTF-8 at byte {exc.start}") from None
        else:
            self._parts.append(frame.data)
        if not frame.fin:
            return
        parts, self._parts = self._parts, []
        if self._text:
            text = parts[0] if len(parts) == 1 else "".join(parts)
            message = {"type": "websocket.receive", "text": text}
        else:
            data = parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)
            message = {"type": "websocket.receive", "bytes": data}
        queue = self._queue
        queue.append(message)
        if len(queue) >= self._max:
            # --ws-max-queue: stop reading until the app catches up; TCP then slows the client.
            self._read_flow.pause(QUEUE)
        self._wake.set()

    def __len__(self) -> int:
        """Whole messages the app has not read yet."""
        return len(self._queue)

    def close(self, code: int, reason: str) -> None:
        """The connection is gone: after the queued messages, ``get`` returns the disconnect."""
        self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._wake.set()

    async def get(self) -> dict[str, Any]:
        queue = self._queue
        while True:
            if queue:
                message = queue.popleft()
                if len(queue) <= self._low:
                    self._read_flow.resume(QUEUE)
                return message
            if self._disconnect is not None:
                return self._disconnect
            self._wake.clear()
            await self._wake.wait()
