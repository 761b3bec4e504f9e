"""A server process as a supervisor sees it: spawn it, give it orders, read its reports.

Why ``subprocess`` and not ``multiprocessing``'s spawn context (both start a fresh interpreter,
both can hand over the listening socket):

* the child starts in its own process group (``process_group=0``), so Ctrl+C in a terminal
  reaches only the supervisor, which then stops each child exactly once.  In a shared group
  every child would also get the SIGINT, and the supervisor's own stop order would be a second
  signal, which the server takes as "stop now, drop requests in flight";
* spawn re-imports the parent's ``__main__`` in every child (``python -m dualcorn`` would run
  the CLI again; a user's script without a ``__main__`` guard would run again) and, on POSIX,
  starts a resource-tracker process that outlives nothing useful;
* a ``pidfd`` (Linux 5.3+) tells the supervisor exactly when a child exits, as an event.

The :class:`~dualcorn.config.Config` still travels pickled over the control pipe rather than as
command-line options: a Config built by :func:`dualcorn.run` can hold values (a ``log_config``
dict, say) that have no command-line spelling.  The listening socket keeps its descriptor
number in the child (``pass_fds``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from dualcorn.config import Config
from dualcorn.errors import StartupError
from dualcorn.supervisors.child import BOOT_FAILED, Orders

__all__ = [
    "BOOT_FAILED",
    "ServerProcess",
    "SignalInbox",
    "describe_exit",
    "kill_all",
    "seconds_until",
]

_BOOTSTRAP = "import sys; from dualcorn.supervisors.child import main; main(int(sys.argv[1]))"


class ServerProcess:
    """One child running :mod:`dualcorn.supervisors.child`; all methods are non-blocking."""

    def __init__(
        self,
        config: Config,
        listen: list[socket.socket] | None,
        *,
        show_pid: bool = True,
        wait_for_go: bool = False,
    ) -> None:
        ours, theirs = socket.socketpair()
        listen_fds = [sock.fileno() for sock in listen] if listen is not None else None
        fds = [theirs.fileno(), *(listen_fds or ())]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(theirs.fileno())],
            pass_fds=fds,
            process_group=0,
        )
        theirs.close()
        self.pid = self.proc.pid
        self.conn = Connection(ours.detach())
        self.sentinel: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.sentinel = os.pidfd_open(self.pid)
        self.conn.send(
            Orders(
                config=config,
                sys_path=list(sys.path),
                listen_fds=listen_fds,
                show_pid=show_pid,
                wait_for_go=wait_for_go,
            )
        )
        self.spawned_at = time.monotonic()
        self.booted = False
        self.going = not wait_for_go  # told to serve
        self.going_at = self.spawned_at
        self.ready = False
        self.last_beat = self.spawned_at
        self.failure: tuple[str, str, str] | None = None  # kind, message, details
        self.stop_sent_at: float | None = None
        self.returncode: int | None = None
        self.killed = False
        self.shutdown_delay = config.shutdown_delay

    def __repr__(self) -> str:
        return f"<ServerProcess pid={self.pid} ready={self.ready} rc={self.returncode}>"

    # --- Orders --------------------------------------------------------------------------

    def go(self) -> None:
        """A standby starts serving: import the app, start up, listen."""
        if not self.going:
            self.going = True
            self.going_at = time.monotonic()
            self._send("go")

    def stop(self, force: bool = False, drain: bool = False) -> None:
        """Ask for a graceful stop (or an immediate one); the first request starts the clock.

        ``drain`` (SIGTERM to the supervisor) serves ``--shutdown-delay`` more seconds first,
        so the graceful clock starts that much later.
        """
        drain = drain and not force and self.shutdown_delay > 0
        if self.stop_sent_at is None:
            self.stop_sent_at = time.monotonic() + (self.shutdown_delay if drain else 0.0)
        self._send("force" if force else "drain" if drain else "stop")

    def reopen_logs(self) -> None:
        """SIGUSR1: reopen log files (an order on the pipe, safe at any stage of start-up)."""
        self._send("reopen")

    def kill(self, signum: int = signal.SIGKILL) -> None:
        self.killed = True
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def _send(self, order: str) -> None:
        if not self.conn.closed:
            with contextlib.suppress(OSError):
                self.conn.send(order)

    # --- Reports -------------------------------------------------------------------------

    def waitables(self) -> list[Any]:
        """What :func:`multiprocessing.connection.wait` should watch for this child."""
        found: list[Any] = []
        if not self.conn.closed:
            found.append(self.conn)
        if self.sentinel is not None:
            found.append(self.sentinel)
        return found

    def read(self) -> list[str]:
        """Everything the child has reported since the last call, ``"exited"`` last."""
        events = self._drain()
        if self.returncode is None:
            if self.sentinel is None and self.conn.closed:
                # Without a pidfd, end of file on the pipe is the only sign of an exit.
                self.proc.wait()
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                events += self._drain()
                self.close()
                events.append("exited")
        return events

    def _drain(self) -> list[str]:
        events = []
        while not self.conn.closed:
            try:
                if not self.conn.poll():
                    break
                message = self.conn.recv()
            except (EOFError, OSError):
                self.conn.close()
                break
            kind = message[0]
            if kind == "booted":
                self.booted = True
            elif kind == "ready":
                self.ready = True
                self.last_beat = time.monotonic()
            elif kind == "beat":
                self.last_beat = time.monotonic()
            elif kind == "failed":
                self.failure = (message[1], message[2], message[3])
            events.append(kind)
        return events

    @property
    def alive(self) -> bool:
        return self.returncode is None

    def close(self) -> None:
        self.conn.close()
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


def kill_all(processes: Iterable[ServerProcess]) -> None:
    """Last resort on the way out (an exception in a supervisor): leave no process behind."""
    for process in processes:
        if process.alive:
            process.kill()
            process.proc.wait()
        process.close()


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


class SignalInbox:
    """Signals as readable bytes: the self-pipe trick through :func:`signal.set_wakeup_fd`.

    Python's C-level handler writes each signal's number to the wakeup socket, so a supervisor
    blocked in :func:`multiprocessing.connection.wait` wakes at once and reads which signals
    came, in order; the Python-level handlers do nothing.
    """

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise StartupError("reload and workers need the main thread: they handle signals")
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        self._old_handlers = {s: signal.signal(s, _ignore) for s in signals}

    def fileno(self) -> int:
        return self._r.fileno()

    def read(self) -> list[signal.Signals]:
        try:
            data = self._r.recv(4096)
        except BlockingIOError:
            return []
        return [signal.Signals(number) for number in data]

    def close(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._r.close()
        self._w.close()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The wakeup socket carries the signal; see :class:`SignalInbox`."""


_LONGEST_WAIT = 3600.0


def seconds_until(deadlines: Iterable[float | None]) -> float | None:
    """How long to wait before the nearest deadline (None: no deadline, wait for events)."""
    due = [d for d in deadlines if d is not None]
    if not due:
        return None
    # Capped: poll(2) cannot wait 1e300 s (OverflowError), and waking early is harmless,
    # since every deadline is checked again against the clock.
    return min(_LONGEST_WAIT, max(0.0, min(due) - time.monotonic()))
