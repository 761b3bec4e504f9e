"""How WSGI app threads hand responses to the event loop, with few wake-ups and bounded memory.

Theory of operation
-------------------
Every time one thread must wake another, the request pays for a system call and a GIL hand-off;
on a small machine those wake-ups, not the application, bound a hello-world's throughput.  The
pool (:mod:`.wsgi_pool`) takes a job with one ``put``; an :class:`Outbox` brings the response
back: the app thread *posts* response messages and carries on.  The loop is woken (one
``call_soon_threadsafe``) only when its consumer is not already scheduled, and the consumer
sends everything posted by the time it runs.  A response complete before the loop gets the GIL
(a list body, a generator that ends at once, a Content-Length reached) thus costs one wake-up
each way, its end included.

PEP 3333 "Buffering and Streaming": a server "must either fully transmit all the data or
guarantee to continue transmission while the app produces the next block".  Posting is that
guarantee.  It also frees the thread: a client that reads slowly (or never) must not hold one
of the few app threads, or a handful of such clients starve everyone else.  So the outbox takes
a response off the app thread the way waitress's output buffer does: up to ``memory_limit``
bytes (``--wsgi-outbuf-overflow``, 1 MiB) posted but not yet sent stay in memory; more spill
to an unlinked temporary file, read back by the loop as the client drains it; only past
``limit`` bytes in all (``--wsgi-outbuf-high-watermark``, 16 MiB) does the app thread wait.
That wait is bounded too: the server's ``send()`` gives up on a client that reads nothing for
``--timeout-send`` (nginx ``send_timeout``), which aborts the outbox and wakes the thread, whose
next post raises :class:`ClientDisconnected` (and the responder calls ``close()``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading

from dualcorn.adapters.wsgi_input import ClientDisconnected, Message, Send

__all__ = ["OUTBOX_LIMIT", "OUTBOX_MEMORY", "Outbox"]

logger = logging.getLogger("dualcorn.error")

# waitress's defaults: outbuf_overflow (bytes in memory before a temporary file takes the rest)
# and outbuf_high_watermark (bytes in all before the app thread waits).
OUTBOX_MEMORY = 1024 * 1024
OUTBOX_LIMIT = 16 * 1024 * 1024
# Spilled bytes are read back and sent in blocks of this size (asyncio's largest socket read).
_READ_BACK = 256 * 1024


class _SpillFile:
    """An unlinked temporary file; closed when the last item that refers to it is dropped."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        fd, path = tempfile.mkstemp(prefix="dualcorn-wsgi-")
        os.unlink(path)
        self.fd = fd

    def __del__(self) -> None:
        os.close(self.fd)


class _Spilled:
    """A body message whose bytes wait in a spill file."""

    __slots__ = ("file", "more_body", "offset", "size")

    def __init__(self, file: _SpillFile, offset: int, size: int, more_body: bool) -> None:
        self.file = file
        self.offset = offset
        self.size = size
        self.more_body = more_body


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a cancelled consumer no longer waits
        waiter.set_result(None)


class Outbox:
    """One response's messages, from its app thread to the server's ``send()`` on the loop.

    The app thread calls :meth:`post` and finally :meth:`finish` (exactly once); the loop runs
    :meth:`deliver`, which returns once the finished response is sent, and calls :meth:`abort`
    if it gives up on the request.
    """

    __slots__ = (
        "_claimed", "_done", "_error", "_failed", "_in_memory", "_items", "_limit", "_lock",
        "_loop", "_memory_limit", "_queued", "_room", "_scheduled", "_spill", "_spill_end",
        "_spilled", "_unsent", "_waiter", "_waiting",
    )  # fmt: skip

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        memory_limit: int = OUTBOX_MEMORY,
        limit: int = OUTBOX_LIMIT,
    ) -> None:
        self._loop = loop
        self._memory_limit = memory_limit
        self._limit = limit
        self._lock = threading.Lock()
        # Where the app thread waits for room; made on first use, as most responses never wait.
        self._room: threading.Condition | None = None
        # Posted, not yet taken by the consumer: a message, or body bytes in a spill file.
        self._items: list[tuple[Message | _Spilled, int]] = []
        self._unsent = 0  # body bytes posted and not yet accepted by send()
        self._in_memory = 0  # the part of those held in memory
        self._spilled = 0  # body bytes in the spill file not yet read back by the loop
        self._queued = 0  # items posted and not yet accepted by send()
        self._spill: _SpillFile | None = None  # the app thread's current spill file
        self._spill_end = 0  # where the app thread writes next in it
        self._waiter: asyncio.Future[None] = loop.create_future()
        self._scheduled = False  # the consumer was woken and has not yet gone back to sleep
        self._waiting = False  # the app thread waits on _room
        self._done = False  # finish() was called
        self._error: BaseException | None = None
        self._failed = False  # the loop side stopped listening
        self._claimed = False  # an app thread took the request

    @property
    def aborted(self) -> bool:
        return self._failed

    @property
    def claimed(self) -> bool:
        """Whether an app thread took the request (read without the lock: it only turns true)."""
        return self._claimed

    # --- The app thread ------------------------------------------------------------------

    def claim(self) -> bool:
        """A thread takes the request: False if it was abandoned while waiting for one."""
        # acquire/release rather than "with": half the cost, on every request.
        self._lock.acquire()
        self._claimed = True
        failed = self._failed
        self._lock.release()
        return not failed

    def post(
        self,
        message: Message,
        size: int = 0,
        *,
        start: Message | None = None,
        wait_sent: bool = False,
    ) -> None:
        """Queue ``message`` (``size`` body bytes) for ``send()``; blocks only past the limit.

        ``start``: an ``http.response.start`` to send first (headers leave with their body).
        ``wait_sent``: return only once ``send()`` accepted everything posted (for a message
        that refers to a resource the thread is about to release, such as an open file).
        """
        item: Message | _Spilled = message
        in_memory = size
        # Spill only when the client is already behind (bytes wait unsent): a response that
        # keeps up never touches the disk.  Read without the lock: the loop only ever lowers
        # these, so the worst is an early spill.
        if size and self._unsent and self._in_memory + size > self._memory_limit:
            item, in_memory = self._spill_out(message, size), 0
        self._lock.acquire()  # not "with": see claim()
        try:
            if self._failed:
                raise ClientDisconnected("the client disconnected")
            if start is not None:
                self._items.append((start, 0))
                self._queued += 1
            self._items.append((item, size))
            self._unsent += size
            self._in_memory += in_memory
            if not in_memory:
                self._spilled += size
            self._queued += 1
            self._wake_consumer()
            while not self._failed and (self._queued if wait_sent else self._unsent > self._limit):
                if self._room is None:
                    self._room = threading.Condition(self._lock)
                self._waiting = True
                self._room.wait()
            self._waiting = False
            if self._failed:
                raise ClientDisconnected("the client disconnected")
        finally:
            self._lock.release()

    def _spill_out(self, message: Message, size: int) -> _Spilled:
        """Write a body message's bytes to the spill file (outside the lock: only this thread
        writes, and the loop reads only regions already handed to it)."""
        with self._lock:
            drained = not self._spilled  # the loop has read back everything written so far
        spill = self._spill
        if spill is None or (not drained and self._spill_end + size > self._limit):
            # A new file when the old one still has unread bytes but would grow past the
            # bound; the old one closes once the loop has read its last item.
            spill = self._spill = _SpillFile()
            self._spill_end = 0
        elif drained:
            self._spill_end = 0  # rewrite from the start: the file stays at most ~limit long
        offset = self._spill_end
        view = memoryview(message["body"])
        while view:
            written = os.pwrite(spill.fd, view, offset + size - len(view))
            view = view[written:]
        self._spill_end = offset + size
        return _Spilled(spill, offset, size, bool(message.get("more_body", False)))

    def finish(self, error: BaseException | None = None, last: list[Message] | None = None) -> None:
        """No more messages after ``last``; ``error``, if any, is raised on the loop once the
        rest is sent.  A response complete when the application returned travels as ``last``:
        the whole exchange then costs exactly one wake-up of the loop."""
        self._lock.acquire()  # not "with": this runs for every request (see claim())
        try:
            if last and not self._failed:
                items = self._items
                for message in last:
                    items.append((message, 0))
                self._queued += len(last)
            self._done = True
            self._error = error
            if not self._failed:
                self._wake_consumer()
        finally:
            self._lock.release()

    def _wake_consumer(self) -> None:
        # Called with the lock held.  One wake-up per batch: a scheduled consumer will see
        # whatever is posted before it takes the lock.
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(_wake, self._waiter)
        except RuntimeError:  # the loop is closed: nobody will ever send this
            self._failed = True

    # --- The loop ------------------------------------------------------------------------

    async def deliver(self, send: Send) -> None:
        """Send what the app thread posts until it finishes; re-raise its error, if any.

        A ``send()`` that fails with ``OSError`` means the client left (or read nothing for
        ``--timeout-send``): the app thread is told (its next post raises
        :class:`ClientDisconnected`) and delivery ends quietly.
        """
        while True:
            await self._waiter
            while True:
                lock = self._lock
                lock.acquire()  # not "with": see claim()
                failed, batch, done = self._failed, self._items, self._done
                if not failed and not batch and not done:
                    self._waiter = self._loop.create_future()
                    self._scheduled = False
                elif batch:
                    self._items = []
                # Everything finished and in memory: no thread waits for room any more.
                quick = done and not self._spilled
                lock.release()
                if failed:
                    return
                if not batch:
                    if not done:
                        break  # wait for the next post
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return
                if quick:
                    # The common end (a small response, complete when the app returned) needs
                    # no accounting, and nothing can follow it.
                    try:
                        for item, _ in batch:
                            await send(item)  # type: ignore[arg-type]
                    except OSError:
                        self.abort()
                        return
                    except BaseException:
                        self.abort()
                        raise
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return
                for item, size in batch:
                    try:
                        if type(item) is _Spilled:
                            await self._send_spilled(item, send)
                        else:
                            await send(item)  # type: ignore[arg-type]
                    except OSError:
                        self.abort()
                        return
                    except BaseException:
                        self.abort()
                        raise
                    with self._lock:
                        if type(item) is not _Spilled:
                            self._unsent -= size
                            self._in_memory -= size
                        self._queued -= 1
                        self._notify_thread()
                if self._items:
                    # The thread posted more meanwhile: let the loop run its other callbacks
                    # first.  A send() that never has to wait (a fast client) would otherwise
                    # keep this loop going for as long as the thread keeps posting, starving
                    # every other connection, and the connection_lost that tells a dead
                    # client's send() to raise.  (A read without the lock: a stale answer only
                    # costs or spares one turn of the loop.)
                    await asyncio.sleep(0)

    async def _send_spilled(self, item: _Spilled, send: Send) -> None:
        """Read spilled bytes back and send them, a block at a time."""
        offset, left = item.offset, item.size
        while left:
            # A page-cache read of one block: short enough to make on the loop thread.
            block = os.pread(item.file.fd, min(left, _READ_BACK), offset)
            if not block:
                raise RuntimeError("the WSGI spill file is shorter than what was written to it")
            offset += len(block)
            left -= len(block)
            with self._lock:
                self._spilled -= len(block)
            more = item.more_body or left > 0
            await send({"type": "http.response.body", "body": block, "more_body": more})
            with self._lock:
                self._unsent -= len(block)
                self._notify_thread()

    def abort(self) -> None:
        """Stop listening: the app thread's next (or current) post raises ClientDisconnected.
        (On the loop thread, as :meth:`abandon`.)"""
        with self._lock:
            self._failed = True
            self._items = []
            self._notify_thread()
        _wake(self._waiter)  # a deliver() waiting for posts returns

    def abandon(self) -> None:
        """The client left before any thread took the request: no thread will run it."""
        with self._lock:
            if self._claimed:
                return  # the app runs already; its posts will find the client gone
        self.abort()

    def _notify_thread(self) -> None:
        # Called with the lock held.
        if self._waiting and self._room is not None:
            self._room.notify()
