"""The WSGI thread pool: ``size`` daemon threads taking requests from one queue.

The threads start with the pool (as waitress's and gunicorn's gthread workers do).  An idle
thread parks on a lock of its own, on a stack of idle threads: ``submit()`` queues the job and
releases the lock of the thread parked last, unless a thread is waking already; a woken thread
that finds more jobs waiting wakes the next, so a thread seldom wakes for nothing.  (With
one queue that every idle thread waits on, CPython's ``SimpleQueue`` woke a second thread per
job, which took the GIL only to park again: about two more context switches and 10-15 us of CPU
per request when requests come one at a time; benchmarks/results/wsgi-speed.md.)  The thread
parked last is also the one whose memory is warm.  Jobs that find no idle thread wait in a
deque, in order, holding no thread.  What the rest of the adapter needs to know is read without
locks: how many requests wait for a thread (the deque's length less the idle threads;
``--wsgi-queue`` bounds it) and which request each thread runs (so a shutdown that gives up on
a thread stuck in the app can say which).

Stopping never blocks the event loop: :meth:`WorkerPool.stop` queues one "stop" per thread and
:meth:`WorkerPool.join` waits, with a timeout, on a future the last thread to leave resolves.
The threads are daemon threads, so one stuck in the application for ever does not keep the
process alive once the server has given up on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from typing import Protocol

__all__ = ["Job", "WorkerPool"]

logger = logging.getLogger("dualcorn.error")


class Job(Protocol):
    def run(self) -> None: ...

    def describe(self) -> str:
        """What the job is, for a log line ("GET /path")."""
        ...


class _Parked:
    """An idle thread's place on the stack: the lock it sleeps on, released once per wake."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()  # held while nobody woke the thread: it sleeps acquiring it


class WorkerPool:
    """``size`` threads running jobs in submission order; more jobs wait in the queue."""

    __slots__ = ("_idle", "_jobs", "_left", "_lock", "_running", "_stopped", "_threads",
                 "_waiters", "_waking")  # fmt: skip

    def __init__(self, size: int, name: str) -> None:
        # Jobs not yet taken (None: a thread's cue to exit), and the idle threads, the one
        # parked last on top.  No lock: deque.append/popleft and list.append/pop/remove are
        # atomic, and _work re-checks the jobs after parking, so no job is left behind.
        self._jobs: deque[Job | None] = deque()
        self._idle: list[_Parked] = []
        # A thread was woken and has not yet looked at the jobs: it takes the first, and wakes
        # the next idle thread if more wait (as SimpleQueue's getters chain their wake-ups).
        self._waking = False
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

    def submit(self, job: Job | None) -> None:
        """Queue ``job`` and wake an idle thread unless one is waking already: the job waits,
        holding no thread, until one is free.  (None tells the thread that takes it to exit.)"""
        self._jobs.append(job)
        if self._idle and not self._waking:
            self._wake_one()

    def _wake_one(self) -> None:
        self._waking = True
        try:
            parked = self._idle.pop()
        except IndexError:  # the last idle thread was taken meanwhile
            self._waking = False
            return
        parked.wake.release()

    @property
    def waiting(self) -> int:
        """Jobs queued that no idle thread is about to take (approximate, never negative)."""
        return max(0, self.backlog())

    def backlog(self) -> int:
        """Jobs queued less the idle threads (approximate): a job submitted now waits for a
        thread when this is 0 or more, and is taken at once by an idle one when it is below 0.
        (Read without the lock: a moment stale at worst.)"""
        return len(self._jobs) - len(self._idle)

    def running(self) -> list[str]:
        """What the busy threads run now."""
        return [job.describe() for job in list(self._running.values())]

    def _work(self, number: int) -> None:
        running, parked = self._running, _Parked()
        jobs, idle, wake = self._jobs, self._idle, parked.wake
        try:
            while True:
                try:
                    job = jobs.popleft()
                except IndexError:
                    idle.append(parked)
                    if jobs:
                        # A job came after popleft() and its submit() found no idle thread:
                        # take it ourselves, unless a submit() has popped us meanwhile (then
                        # its release is ours to consume).
                        try:
                            idle.remove(parked)
                            continue
                        except ValueError:
                            pass
                    wake.acquire()  # released by the submit() that pops this thread
                    # Woken: say so before looking at the jobs, so that a later submit()
                    # wakes a thread of its own rather than count on this one.
                    self._waking = False
                    continue
                if jobs and idle and not self._waking:
                    self._wake_one()  # more jobs wait: the next idle thread helps
                if job is None:
                    break
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
            self.submit(None)

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
