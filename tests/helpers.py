"""Run the ``dualcorn`` command in a subprocess, the way a user does, and talk to it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["REPO_ROOT", "DualcornProcess", "child_env", "run_dualcorn"]

REPO_ROOT = Path(__file__).resolve().parent.parent

# The core logs exactly "dualcorn running on http://127.0.0.1:PORT" once it listens; with
# --port 0 this line is the only way to learn the port the kernel chose.
PORT_LINE = re.compile(r"running on https?://127\.0\.0\.1:(\d+)")
# Any listening address (IPv6, a Unix socket, an inherited descriptor) marks the server ready.
READY_LINE = re.compile(r"running on (\S+)")


class DualcornProcess:
    """A running ``python -m dualcorn``: its port, and everything it has written so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.port: int | None = None
        self.address: str | None = None  # what the "running on" line named
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        # Set when the port line appears, or when stderr closes (the process died first).
        self._port_known = threading.Event()
        assert proc.stdout is not None and proc.stderr is not None
        # Reading both pipes in threads keeps a chatty server from blocking on a full pipe.
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stderr, self._stderr, True)),
            threading.Thread(target=self._read, args=(proc.stdout, self._stdout, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read(self, stream: IO[str], lines: list[str], watch_port: bool) -> None:
        for line in iter(stream.readline, ""):
            with self._lock:
                lines.append(line)
            if watch_port and self.address is None:
                ready = READY_LINE.search(line)
                if ready:
                    self.address = ready.group(1)
                    match = PORT_LINE.search(line)
                    self.port = int(match.group(1)) if match else 0
                    self._port_known.set()
        if watch_port:
            self._port_known.set()

    def stderr_text(self) -> str:
        with self._lock:
            return "".join(self._stderr)

    def stdout_text(self) -> str:
        with self._lock:
            return "".join(self._stdout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_serving(self, timeout: float) -> int:
        if not self._port_known.wait(timeout):
            raise TimeoutError(f"dualcorn did not start in {timeout} s:\n{self.stderr_text()}")
        if self.port is None:
            code = self.proc.wait(timeout=5)
            raise RuntimeError(f"dualcorn exited with {code} before serving:\n{self.stderr_text()}")
        return self.port

    def stop(self, timeout: float = 10.0) -> int:
        """Send SIGINT (Ctrl+C) and return the exit code; TimeoutExpired if it lingers."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child ``python -m dualcorn``.

    The editable install may point at another checkout (a git worktree's tests must run the
    worktree's code), so this checkout goes first on PYTHONPATH whatever the cwd is.
    """
    path = os.environ.get("PYTHONPATH")
    pythonpath = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath, **(extra or {})}


@contextlib.contextmanager
def run_dualcorn(
    *args: str,
    cwd: str | os.PathLike[str] = REPO_ROOT,
    startup_timeout: float = 30.0,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    command: tuple[str, ...] = (sys.executable, "-m", "dualcorn"),
) -> Iterator[DualcornProcess]:
    """Start ``python -m dualcorn *args`` in ``cwd``; yield it once it serves; never leak it.

    ``command`` may name the installed ``dualcorn`` script instead, as a user runs it.
    """
    proc = subprocess.Popen(
        [*command, *args],
        cwd=cwd,
        env=child_env(env),
        pass_fds=pass_fds,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server = DualcornProcess(proc)
        server.wait_until_serving(startup_timeout)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        # Close our ends of the pipes once the readers have seen EOF.
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
