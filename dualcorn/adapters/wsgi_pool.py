"""The WSGI thread pool: ``size`` daemon threads taking requests from one queue.

The threads start with the pool (as waitress's and gunicorn's gthread workers do): a
``submit()`` is then one ``put``, with no bookkeeping of idle threads on either side.  What the
rest of the adapter needs to know is read without locks: how many requests wait for a thread
(the queue's size less the idle threads; ``--wsgi-queue`` bounds it) and which request each
thread runs (so a shutdown that gives up on a thread stuck in the app can say which).

Stopping never blocks the event loop: :meth:`WorkerPool.stop` queues one "stop" per thread and
:meth:`WorkerPool.join` waits, with a timeout, on a future the last thread to leave resolves.
The threads are daemon threads, so one stuck in the application for ever does not keep the
process alive once the server has given up on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Protocol

__all__ = ["Job", "WorkerPool"]

logger = logging.getLogger("dualcorn.error")


class Job(Protocol):
    def run(self) -> None: ...

    def describe(self) -> str:
        """What the job is, for a log line ("GET /path")."""
        ...


class WorkerPool:
    """``size`` threads running jobs in submission order; more jobs wait in the queue."""

    __slots__ = ("_jobs", "_left", "_lock", "_running", "_size", "_stopped", "_threads",
                 "_waiters")  # fmt: skip

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        # Thread number -> the job it runs.  Each thread writes only its own key; dict item
        # assignment and deletion are atomic, so readers on the loop need no lock.
        self._running: dict[int, Job] = {}
        self._lock = threading.Lock()  # guards _left and _waiters
        self._left = size  # threads not yet exited
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, args=(n,), name=f"{name}_{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job``: it waits here, holding no thread, until one is free."""
        self._jobs.put(job)

    @property
    def waiting(self) -> int:
        """Jobs queued that no idle thread is about to take (approximate, never negative)."""
        return max(0, self.backlog())

    def backlog(self) -> int:
        """Jobs queued less the idle threads (approximate): a job submitted now waits for a
        thread when this is 0 or more, and is taken at once by an idle one when it is below 0.
        (A thread between ``get()`` and noting its job is counted idle a moment too long.)"""
        return self._jobs.qsize() - self._size + len(self._running)

    def running(self) -> list[str]:
        """What the busy threads run now."""
        return [job.describe() for job in list(self._running.values())]

    def _work(self, number: int) -> None:
        jobs, running = self._jobs, self._running
        try:
            while (job := jobs.get()) is not None:
                running[number] = job
                try:
                    job.run()
                except BaseException:  # a job handles its own errors; this is a last resort
                    logger.exception("WSGI job failed")
                finally:
                    del running[number]
                job = None  # drop the request's references before waiting for the next one
        finally:
            self._exited()

    def _exited(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left:
                return
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

    def stop(self) -> None:
        """Let queued jobs run, then end every thread (does not wait; idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for _ in self._threads:
            self._jobs.put(None)

    async def join(self, grace: float | None) -> list[str]:
        """Wait up to ``grace`` seconds for every thread to end (after :meth:`stop`); return
        what the threads still running are stuck in (empty when all ended)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._left:
                return []
            self._waiters.append((loop, future))
        try:
            async with asyncio.timeout(grace):
                await future
        except TimeoutError:
            return self.running() or ["a request between two jobs"]
        self._reap()
        return []

    def _reap(self) -> None:
        """Join the threads, which have all left their loop by now: the last one resolved the
        waiters from its final lines, a moment before it ends.  Bounded, so a thread that the
        interpreter is slow to tear down never holds the event loop."""
        deadline = time.monotonic() + 1.0
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
