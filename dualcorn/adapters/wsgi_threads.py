"""How WSGI app threads and the event loop hand work to each other, with few wake-ups.

Theory of operation
-------------------
Every time one thread must wake another, the request pays for a system call and a GIL hand-off;
on a small machine those wake-ups, not the application, bound a hello-world's throughput.  This
module keeps them to the minimum PEP 3333 allows:

* :class:`WorkerPool` (loop -> thread): ``size`` threads take jobs from one
  :class:`queue.SimpleQueue`.  Submitting a job is one ``put``: no ``concurrent.futures.Future``,
  no result chained back through ``wrap_future``; a job reports through its :class:`Outbox`.
* :class:`Outbox` (thread -> loop): the app thread *posts* response messages and carries on.  The
  loop is woken (one ``call_soon_threadsafe``) only when its consumer is not already scheduled,
  and the consumer sends everything posted by the time it runs.  A response complete before the
  loop gets the GIL (a list body, a generator that ends at once, a Content-Length reached) thus
  costs one wake-up each way, its end included.

PEP 3333 "Buffering and Streaming": a server "must either fully transmit all the data or
guarantee to continue transmission while the app produces the next block".  Posting is that
guarantee: the block is already on its way while the application computes the next one.  Design
rule 2 (every buffer bounded) still holds: once more than :data:`OUTBOX_LIMIT` bytes are posted
but not yet accepted by the server's ``send()`` (which waits while the transport is paused), the
app thread waits.  A slow client therefore stalls the application, not the server's memory.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from dualcorn.adapters.wsgi_input import ClientDisconnected, Message, Send

__all__ = ["OUTBOX_LIMIT", "Outbox", "WorkerPool"]

logger = logging.getLogger("dualcorn.error")

# Bytes an app thread may post ahead of the client before it waits: the same order as asyncio's
# default transport high-water mark (64 KiB), so at most two such buffers exist per response.
OUTBOX_LIMIT = 64 * 1024

Job = Callable[[], None]


class WorkerPool:
    """``size`` threads running jobs in submission order; more jobs wait in the queue.

    The threads start with the pool (as waitress's and gunicorn's gthread workers do): a
    ``submit()`` is then one ``put``, with no bookkeeping of idle threads on either side.
    """

    __slots__ = ("_jobs", "_threads")

    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job``: past the bound it waits here, holding no thread (design rule 2)."""
        self._jobs.put(job)

    def _work(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            try:
                job()
            except BaseException:  # a job handles its own errors; this is a last resort
                logger.exception("WSGI job failed")
            job = None  # drop the request's references before waiting for the next one

    def shutdown(self) -> None:
        """Let queued jobs finish, then stop and join every thread (blocks: call off the loop)."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()


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
        "_done", "_error", "_failed", "_items", "_lock", "_loop", "_queued", "_room",
        "_scheduled", "_unsent", "_waiter", "_waiting",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        # Where the app thread waits for room; made on first use, as most responses never wait.
        self._room: threading.Condition | None = None
        self._items: list[tuple[Message, int]] = []  # posted, not yet taken by the consumer
        self._unsent = 0  # body bytes posted and not yet accepted by send()
        self._queued = 0  # messages posted and not yet accepted by send()
        self._waiter: asyncio.Future[None] = loop.create_future()
        self._scheduled = False  # the consumer was woken and has not yet gone back to sleep
        self._waiting = False  # the app thread waits on _room
        self._done = False  # finish() was called
        self._error: BaseException | None = None
        self._failed = False  # the loop side stopped listening

    @property
    def aborted(self) -> bool:
        return self._failed

    # --- The app thread ------------------------------------------------------------------

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
        with self._lock:
            if self._failed:
                raise ClientDisconnected("the client disconnected")
            if start is not None:
                self._items.append((start, 0))
                self._queued += 1
            self._items.append((message, size))
            self._unsent += size
            self._queued += 1
            self._wake_consumer()
            while not self._failed and (self._queued if wait_sent else self._unsent > OUTBOX_LIMIT):
                if self._room is None:
                    self._room = threading.Condition(self._lock)
                self._waiting = True
                self._room.wait()
            self._waiting = False
            if self._failed:
                raise ClientDisconnected("the client disconnected")

    def finish(self, error: BaseException | None = None, last: list[Message] | None = None) -> None:
        """No more messages after ``last``; ``error``, if any, is raised on the loop once the
        rest is sent.  A response complete when the application returned travels as ``last``:
        the whole exchange then costs exactly one wake-up of the loop."""
        with self._lock:
            if last and not self._failed:
                self._items.extend((message, 0) for message in last)
                self._queued += len(last)
            self._done = True
            self._error = error
            if not self._failed:
                self._wake_consumer()

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

        A ``send()`` that fails with ``OSError`` means the client left: the app thread is told
        (its next post raises :class:`ClientDisconnected`) and delivery ends quietly.
        """
        while True:
            await self._waiter
            while True:
                with self._lock:
                    batch = self._items
                    if not batch:
                        if self._done:
                            error, self._error = self._error, None
                            if error is not None:
                                raise error
                            return
                        self._waiter = self._loop.create_future()
                        self._scheduled = False
                        break
                    self._items = []
                for message, size in batch:
                    try:
                        await send(message)
                    except OSError:
                        self.abort()
                        return
                    except BaseException:
                        self.abort()
                        raise
                    with self._lock:
                        self._unsent -= size
                        self._queued -= 1
                        self._notify_thread()

    def abort(self) -> None:
        """Stop listening: the app thread's next (or current) post raises ClientDisconnected."""
        with self._lock:
            self._failed = True
            self._items = []
            self._notify_thread()

    def _notify_thread(self) -> None:
        # Called with the lock held.
        if self._waiting and self._room is not None:
            self._room.notify()
