"""Run a server module under an in-process CPU sampler: the profiler when py-spy cannot attach.

``python -m benchmarks.profiled_server OUT.txt RATE -m dualcorn APP --port N ...`` runs
``python -m dualcorn APP --port N ...`` in this process while a daemon thread, ``RATE`` times a
second of CPU time (``ITIMER_PROF``, the statistical profilers' classic timer), records
every thread's Python stack weighted by the CPU time that thread used since the previous
sample (its POSIX per-thread CPU clock).  Threads that waited (an idle pool thread) used no
CPU and add nothing, so the result is a CPU profile of every thread, like py-spy's, written
as collapsed stacks weighted in microseconds when the server exits (SIGTERM: the server's own
graceful shutdown).

Unlike py-spy it runs inside the server: the handler costs the server some CPU, and time
spent in C (uvloop, httptools) is charged to the next Python frame the main thread runs.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time
from collections import Counter
from types import FrameType

__all__ = ["Sampler", "main"]


def _stack(frame: FrameType | None) -> tuple[str, ...]:
    frames: list[str] = []
    while frame is not None:
        code = frame.f_code
        frames.append(f"{code.co_name} ({_short(code.co_filename)}:{code.co_firstlineno})")
        frame = frame.f_back
    return tuple(reversed(frames))


def _short(path: str) -> str:
    """site-packages/x/y.py -> x/y.py, as py-spy shortens file names."""
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            tail = path.rsplit(marker, 1)[1]
            return tail if marker == "site-packages/" else tail.partition("/")[2]
    root = os.getcwd() + "/"
    return path.removeprefix(root)


class Sampler:
    """On SIGPROF (every ``1/rate`` s of the process's CPU time), weigh every thread's stack.

    The signal handler runs in the main thread between two bytecodes, so the main thread's
    stack is the Python code it is running (not the ``epoll`` it waits in), weighted by the
    CPU it used since the previous signal; every other thread's current stack is weighted by
    its own CPU clock's advance (0 for a thread that waited, so it adds nothing).
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self._last: dict[int, int] = {}

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)

    def _spent(self, ident: int, used: int) -> int:
        spent = used - self._last.get(ident, 0)
        self._last[ident] = used
        return spent // 1000

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        main = threading.main_thread().ident or 0
        self.stacks[_stack(frame)] += self._spent(main, time.thread_time_ns())
        for ident, other in sys._current_frames().items():
            if ident == main:
                continue
            try:
                used = time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
            except (OSError, OverflowError):
                continue  # the thread ended between the two calls
            spent = self._spent(ident, used)
            if spent > 0:
                self.stacks[_stack(other)] += spent

    def collapsed(self) -> str:
        return "".join(f"{';'.join(s)} {w}\n" for s, w in self.stacks.items() if s and w > 0)


def main() -> None:
    out, rate, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: python -m benchmarks.profiled_server OUT RATE -m MODULE ARGS")
    sampler = Sampler(float(rate))
    sys.argv = [module, *rest]
    sampler.start()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sampler.stop()
        with open(out, "w") as file:
            file.write(sampler.collapsed())


if __name__ == "__main__":
    main()
