"""Starting, pinning, watching and stopping server processes.

A server is started in its own session (so its whole tree can be signalled), pinned to core 0
with ``taskset`` when there are two cores or more, and given the highest RLIMIT_NOFILE its hard
limit allows.  Its resident memory is the sum over the process and all its descendants
(pre-forking servers such as granian and gunicorn serve from a child).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "ROOT",
    "RssSampler",
    "ServerFailed",
    "ServerProcess",
    "busy_fraction",
    "exit_cleanly_on_signals",
    "free_port",
    "pinned",
    "raise_nofile",
    "rss_bytes",
]

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
CLIENT_CORE = 1


class ServerFailed(Exception):
    """The server did not start, died, or answered wrongly; the message is the table cell."""


def raise_nofile() -> None:
    """Lift the soft open-files limit to the hard one (``ulimit -n $(ulimit -Hn)``)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(argv: Sequence[str], core: int) -> list[str]:
    """Prefix ``argv`` with ``taskset -c core`` when taskset exists and the core does."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core), *argv]
    return list(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (0.0 when /proc/stat is unreadable).

    Measured while the harness itself is idle, it shows whether something else is using the
    machine; numbers taken on a busy machine are not comparable with the others.
    """
    try:
        total0, idle0 = _cpu_times()
        time.sleep(seconds)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return 0.0 if total <= 0 else 1.0 - (idle1 - idle0) / total


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` plus all its descendants, in bytes (0 once it is gone)."""
    tree = _children()
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, ()))
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


class RssSampler:
    """Samples a process tree's RSS on a thread until stopped; keeps the first and the peak."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.first = 0
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.last = rss_bytes(self.pid)
            self.first = self.first or self.last
            self.peak = max(self.peak, self.last)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class ServerProcess:
    """One server subprocess: started on enter, ready-checked, torn down on exit."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.argv = pinned(argv, SERVER_CORE)
        self.cwd = cwd
        self.port = port
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=raise_nofile,
            )
        except OSError as exc:
            raise ServerFailed(f"cannot exec: {exc}") from exc
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._log.close()

    def log_tail(self, lines: int = 3) -> str:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def log_text(self) -> str:
        """Everything the server has written to stdout and stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def check_alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise ServerFailed(f"exited with {code}: {self.log_tail(1) or 'no output'}")

    def wait_ready(
        self, path: str = "/", timeout: float = 20.0, tls: ssl.SSLContext | None = None
    ) -> None:
        """Return once a GET (over TLS with ``tls``) answers with any HTTP status line; fail if
        the process dies."""
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw:
                    sock = raw if tls is None else tls.wrap_socket(raw, server_hostname="127.0.0.1")
                    sock.sendall(request)
                    if sock.recv(64).startswith(b"HTTP/1."):
                        return
            except OSError:  # ssl.SSLError included
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"not answering after {timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.1)  # a bounded start-up probe of another process, not app state

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def exit_cleanly_on_signals() -> None:
    """Turn SIGTERM (and SIGINT, ignored in background jobs) into SystemExit.

    The exception unwinds the ``with ServerProcess`` blocks, so the server under test is
    stopped too instead of being left running in its own session.
    """

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
