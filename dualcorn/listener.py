"""Accepting connections: survive running out of descriptors, and say so once a second.

CPython's selector loop (3.11 to 3.13) handles EMFILE badly: its accept loop logs a traceback,
schedules a retry and then goes on calling ``accept()`` up to ``backlog`` times in the same
tick, each failure logging another traceback and scheduling another retry.  A server out of
descriptors thus writes tens of thousands of tracebacks and spins at 100% CPU.  On a selector
loop dualcorn therefore accepts by itself (:class:`Listener`): on EMFILE, ENFILE, ENOBUFS or
ENOMEM it stops watching the listening socket, logs one line a second at most, and tries again
shortly after (one ``accept()`` per try), while the connections it has keep being served.
uvloop (libuv) already recovers from EMFILE cleanly, so there the loop's own server is used.

:class:`Throttled` is the once-a-second log line, shared with ``--limit-connections``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from asyncio.selector_events import BaseSelectorEventLoop
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Listener", "Listening", "Throttled", "listen"]

logger = logging.getLogger("dualcorn.error")

# accept() errors that mean "out of resources", not "this one connection failed".
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# While paused, try one accept() this often: cheap, and a freed descriptor is used soon.
RETRY_DELAY = 0.25
# Connections accepted per readiness event: bounds the time one burst holds the loop.
_BATCH = 128


class Listening(Protocol):
    """What the server needs of a listening endpoint: ``asyncio.Server`` or a Listener."""

    def close(self) -> None: ...


class Throttled:
    """A warning logged at most once a second, with the number of events it stands for.

    The first event is logged at once; later ones within the second are counted and their
    total logged when the second is over (by one timer, not per event).
    """

    __slots__ = ("_count", "_log", "_loop", "_message", "_next", "_timer")

    def __init__(self, message: str, log: Callable[..., None] | None = None) -> None:
        """``message`` has one ``%d``: the number of events since the last line."""
        self._message = message
        self._log = log or logger.warning
        self._loop: asyncio.AbstractEventLoop | None = None
        self._count = 0
        self._next = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._count += 1
        now = loop.time()
        if now >= self._next:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_at(self._next, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._count:
            self._log(self._message, self._count)
            self._count = 0
            assert self._loop is not None
            self._next = self._loop.time() + 1.0

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Listener:
    """Accepts connections on one listening socket of a selector event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.BaseProtocol],
        **transport_options: Any,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = factory
        self._options = transport_options  # e.g. ssl=, for connect_accepted_socket
        self._connecting: set[asyncio.Task[Any]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self._exhausted = Throttled(
            "Out of file descriptors (ulimit -n): not accepting new connections for now "
            "(%d failed accept() calls); open connections are still served."
        )
        sock.setblocking(False)
        loop.add_reader(self._fd, self._accept)

    def _accept(self) -> None:
        sock = self._sock
        for _ in range(_BATCH):
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing more waiting
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause()
                    return
                # Another failure concerns that one connection (EPROTO, EPERM from a firewall):
                # log it and go on serving.
                logger.warning("accept() failed: %s", exc)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, **self._options)
        except OSError as exc:  # the client went before the transport was made
            logger.debug("a connection failed as it was accepted: %s", exc)
            conn.close()

    def _pause(self) -> None:
        """Stop watching the socket (it stays readable), and try again in a moment."""
        self._exhausted()
        self._loop.remove_reader(self._fd)
        if self._retry is None:
            self._retry = self._loop.call_later(RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if not self._closed:
            self._loop.add_reader(self._fd, self._accept)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        self._exhausted.cancel()
        self._loop.remove_reader(self._fd)
        self._sock.close()


async def listen(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    factory: Callable[[], asyncio.BaseProtocol],
    *,
    backlog: int,
    **transport_options: Any,
) -> Listening:
    """Serve ``sock``: with a :class:`Listener` on selector loops, the loop's own server else."""
    if isinstance(loop, BaseSelectorEventLoop):
        sock.listen(backlog)  # as create_server does: the backlog option applies to fd= too
        return Listener(loop, sock, factory, **transport_options)
    return await loop.create_server(factory, sock=sock, backlog=backlog, **transport_options)
