"""The WSGI pool's hand-off (dualcorn.adapters.wsgi_pool): idle threads park on locks of their
own, and no job is ever left queued while threads sleep, whatever the timing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from dualcorn.adapters.wsgi_pool import WorkerPool


class _Job:
    def __init__(self, done: list[int], number: int, pause: float = 0.0) -> None:
        self.done = done
        self.number = number
        self.pause = pause

    def run(self) -> None:
        if self.pause:
            time.sleep(self.pause)
        self.done.append(self.number)  # list.append is atomic

    def describe(self) -> str:
        return f"job {self.number}"


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "jobs left queued while the pool's threads sleep"
        time.sleep(0.005)


def test_jobs_one_at_a_time_all_run_and_threads_park_again() -> None:
    pool = WorkerPool(4, "test-handoff")
    done: list[int] = []
    try:
        for number in range(200):
            pool.submit(_Job(done, number))
            _wait_for(lambda n=number: len(done) > n)
        # Every thread went back to its lock: a job submitted now finds one idle.
        _wait_for(lambda: pool.backlog() == -4)
        assert sorted(done) == list(range(200))
    finally:
        pool.stop()
        assert asyncio.run(pool.join(10.0)) == []


def test_bursts_from_several_threads_leave_no_job_behind() -> None:
    pool = WorkerPool(3, "test-handoff")
    done: list[int] = []

    def burst(base: int) -> None:
        for n in range(300):  # every seventh job sleeps: threads park and wake meanwhile
            pool.submit(_Job(done, base + n, pause=0.0005 if n % 7 == 0 else 0.0))

    try:
        for _round in range(5):
            done.clear()
            submitters = [threading.Thread(target=burst, args=(b,)) for b in (0, 1000, 2000)]
            for thread in submitters:
                thread.start()
            for thread in submitters:
                thread.join(20.0)
            _wait_for(lambda: len(done) == 900)
            assert pool.waiting == 0
    finally:
        pool.stop()
        assert asyncio.run(pool.join(10.0)) == []


def test_stop_runs_queued_jobs_first() -> None:
    pool = WorkerPool(2, "test-handoff")
    done: list[int] = []
    for number in range(50):
        pool.submit(_Job(done, number, pause=0.001))
    pool.stop()
    assert asyncio.run(pool.join(20.0)) == []
    assert sorted(done) == list(range(50))
