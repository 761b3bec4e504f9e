"""Helpers for the supervisor tests: the real command, a polling client, a /proc process scan."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers import REPO_ROOT, DualcornProcess

__all__ = ["Poller", "children", "is_alive", "serving_pids", "start_dualcorn", "wait_for"]

# The supervisor says "running on" once; then one line per worker once it listens.
RUNNING = re.compile(r"Worker \[(\d+)\] is serving")


@contextlib.contextmanager
def start_dualcorn(
    *args: str, cwd: Path, startup_timeout: float = 20.0
) -> Iterator[DualcornProcess]:
    """``python -m dualcorn *args`` in ``cwd`` importing this checkout; never leaked."""
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    # This checkout first, whatever the editable install points at.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *([path] if path else [])])
    proc = subprocess.Popen(
        [sys.executable, "-m", "dualcorn", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = DualcornProcess(proc)
    try:
        server.wait_until_serving(startup_timeout)
        yield server
    finally:
        family = children(proc.pid)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in family:  # only after a failure: a passing test has already checked this
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def children(pid: int) -> set[int]:
    """Pids whose parent is ``pid``, from /proc (no psutil)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        # The command name in parentheses may hold spaces; the fields after it are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def serving_pids(server: DualcornProcess) -> list[int]:
    """Server processes in the order the supervisor reported them serving."""
    pids = [int(m) for m in RUNNING.findall(server.stderr_text())]
    return [pid for pid in pids if pid != server.proc.pid]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` is true; AssertionError after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
    return time.monotonic() - start


@dataclass
class Result:
    started: float
    ended: float
    status: int | None
    text: str
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.ended - self.started


class Poller:
    """One client sending GET every ``interval`` seconds on a keep-alive connection."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.results: list[Result] = []
        self._done = threading.Event()
        self._between = threading.Lock()  # held while a request is in flight
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        wait_for(lambda: self.results, 10.0, "the first response")
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10.0)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._done.is_set():
                with self._between:
                    started = time.monotonic()
                    try:
                        response = client.get(self.url)
                        result = Result(started, time.monotonic(), response.status_code,
                                        response.text)  # fmt: skip
                    except httpx.HTTPError as exc:
                        result = Result(started, time.monotonic(), None, "", repr(exc))
                    self.results.append(result)
                self._done.wait(self.interval)

    @contextlib.contextmanager
    def between_requests(self) -> Iterator[None]:
        """Act while no request is in flight (one on a SIGKILLed process is lost by anyone)."""
        with self._between:
            yield

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.error is not None or r.status != 200]

    @property
    def max_latency(self) -> float:
        return max(r.latency for r in self.results)

    def first(self, text: str, after: float = 0.0) -> Result | None:
        for result in list(self.results):
            if result.started >= after and result.text == text:
                return result
        return None
