"""The request side of the WSGI bridge: ``wsgi.input`` streamed from ASGI ``receive()``.

Theory of operation
-------------------
A WSGI application runs in a worker thread and reads its body with blocking calls; the ASGI
``receive()`` it must come from is a coroutine on the event loop.  :class:`LoopBridge` is the one
way an app thread reaches the loop: it schedules a coroutine with
:func:`asyncio.run_coroutine_threadsafe` and blocks on the result.  Every such trip is a "hop".

:class:`WSGIInput` calls ``receive()`` only when the application asks for bytes it does not yet
hold, so it holds at most one received chunk (plus the unread rest of the previous one).  The
server stops reading the socket while a bounded amount of body waits for ``receive()``, so a slow
application slows the client down instead of filling memory.

When the request task is cancelled (the server gave up on the request), the adapter calls
:meth:`LoopBridge.abort`: the hop in flight is cancelled and later hops fail at once with
:class:`ClientDisconnected`, so an app thread never waits on a loop that stopped listening.
"""

from __future__ import annotations

import threading
from asyncio import AbstractEventLoop, run_coroutine_threadsafe
from collections.abc import Awaitable, Callable, Coroutine, Iterator, MutableMapping
from concurrent.futures import CancelledError as FutureCancelledError
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["ClientDisconnected", "LoopBridge", "Message", "Receive", "Send", "WSGIInput"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_T = TypeVar("_T")


class ClientDisconnected(OSError):
    """The client went away before the request was fully read or the response fully sent.

    An ``OSError``, like the socket errors a WSGI application already expects from ``read()``.
    """


class LoopBridge:
    """Runs coroutines on the event loop on behalf of one request's app thread."""

    __slots__ = ("_aborted", "_lock", "_loop", "_pending")

    def __init__(self, loop: AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: Future[Any] | None = None
        self._aborted = False

    def call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the loop and wait for its result (from an app thread only)."""
        with self._lock:
            if self._aborted:
                coroutine.close()
                raise ClientDisconnected("the request was abandoned by the server")
            try:
                future = run_coroutine_threadsafe(coroutine, self._loop)
            except RuntimeError:  # the loop is closed: nobody will ever answer
                coroutine.close()
                raise ClientDisconnected("the event loop has stopped") from None
            self._pending = future
        try:
            return future.result()
        except FutureCancelledError:
            raise ClientDisconnected("the request was abandoned by the server") from None
        finally:
            self._pending = None

    def abort(self) -> None:
        """Cancel the hop in flight and refuse later ones (called on the loop thread)."""
        with self._lock:
            self._aborted = True
            if self._pending is not None:
                self._pending.cancel()


class WSGIInput:
    """``wsgi.input``: a read-only binary stream over the request body (PEP 3333 "Input and
    Error Streams": ``read(size)``, ``readline()``, ``readlines(hint)``, ``__iter__``).

    Optional size arguments follow :class:`io.BufferedIOBase`: ``None`` or a negative size means
    "to the end".  ``wsgi.input_terminated`` is true, so reading to the end is always safe.
    """

    __slots__ = ("_bridge", "_buffer", "_disconnected", "_more_body", "_receive")

    def __init__(
        self,
        bridge: LoopBridge | None,
        receive: Receive,
        *,
        body: bytes = b"",
        more_body: bool = True,
    ) -> None:
        """``body`` and ``more_body`` seed the stream with a chunk the adapter already received
        on the loop (it does so for requests without a body, saving the app thread a hop).
        Without a ``bridge`` there is nothing more to receive: the body is ``body``."""
        self._bridge = bridge
        self._receive = receive
        # The unread rest of what receive() delivered; consumed from the front.
        self._buffer = bytearray(body)
        self._more_body = more_body and bridge is not None
        self._disconnected = False

    @property
    def disconnected(self) -> bool:
        """Whether ``receive()`` reported ``http.disconnect``."""
        return self._disconnected

    def _fill(self) -> bool:
        """Receive one more chunk into the buffer; False at the end of the body."""
        if self._disconnected:  # keep failing: the rest of the body will never come
            raise ClientDisconnected("the client disconnected while sending the request body")
        if not self._more_body or self._bridge is None:
            return False
        message = self._bridge.call(_receive_message(self._receive))
        if message["type"] == "http.disconnect":
            self._disconnected = True
            self._more_body = False
            raise ClientDisconnected("the client disconnected while sending the request body")
        self._buffer += message.get("body", b"")
        self._more_body = message.get("more_body", False)
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]  # bytearray deletes from the front in amortised O(1)
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the body); all the rest by default."""
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        """One line including its ``b"\\n"``, or at most ``size`` bytes of it.

        PEP 3333: "the optional 'size' argument to readline() ... a server should support it".
        """
        limit = -1 if size is None else size
        scanned = 0  # bytes already searched for a newline, so each byte is scanned once
        while True:
            newline = self._buffer.find(b"\n", scanned)
            if newline >= 0:
                end = newline + 1
                return self._take(end if limit < 0 else min(end, limit))
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            scanned = len(self._buffer)
            if not self._fill():
                return self._take(len(self._buffer))

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Lines until the end, or until their total length reaches ``hint`` (if positive)."""
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


async def _receive_message(receive: Receive) -> Message:
    # run_coroutine_threadsafe needs a coroutine, and receive() may be any awaitable callable.
    return await receive()
