"""Helpers for the process and platform tests: a notify socket, an fd hand-over, free ports."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tests.helpers import REPO_ROOT, DualcornProcess, child_env

__all__ = [
    "APP",
    "HANDOVER",
    "Message",
    "NotifyListener",
    "free_port",
    "handover_command",
    "popen_dualcorn",
    "stop_process",
]

APP = ("tests.apps.platform_app:app", "--app-dir", str(REPO_ROOT))

# What systemd does between fork and exec, in a tiny Python "exec wrapper": move the sockets to
# descriptors 3, 4, ..., name our own pid in LISTEN_PID (exec keeps the pid), then exec dualcorn.
HANDOVER = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
# Out of the way first (above 100): a target descriptor may be one of the sources.
moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for index, fd in enumerate(moved):
    os.dup2(fd, 3 + index)  # dup2 leaves the new descriptor inheritable
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)),
                  LISTEN_FDNAMES=sys.argv[2])
os.execv(sys.executable, [sys.executable, "-m", "dualcorn", *sys.argv[3:]])
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def popen_dualcorn(
    command: list[str], env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()
) -> Iterator[DualcornProcess]:
    """Start ``command`` (which execs dualcorn) and read its output; never leak it or its kids."""
    proc = subprocess.Popen(
        command,
        env=child_env({"NO_COLOR": "1", **(env or {})}),
        pass_fds=pass_fds,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # signals from the test go to dualcorn alone; the kill reaches all
    )
    try:
        yield DualcornProcess(proc)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)  # workers left behind by a failed test
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def handover_command(fds: list[int], names: str, *args: str) -> list[str]:
    return [sys.executable, "-c", HANDOVER, ",".join(map(str, fds)), names, *args]


def stop_process(server: DualcornProcess, signum: int, timeout: float = 30.0) -> int:
    server.proc.send_signal(signum)
    return server.proc.wait(timeout=timeout)


@dataclass(frozen=True)
class Message:
    fields: dict[str, str]
    sender: int  # the sending process's pid, from SCM_CREDENTIALS (what NotifyAccess checks)


class NotifyListener:
    """A datagram socket standing in for systemd's notify socket; records every message."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"dualcorn-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="dcn-")  # short: sun_path holds 108 bytes
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        # systemd reads the sender's pid the same way, to enforce NotifyAccess=main.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.messages: list[Message] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address, **extra}

    def _receive(self, timeout: float) -> Message | None:
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return None
        sender = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        message = Message(fields, sender)
        self.messages.append(message)
        return message

    def wait_for(
        self, predicate: Callable[[Message], bool], after: int = 0, timeout: float = 30.0
    ) -> Message:
        """The first message from index ``after`` on (received already or arriving) that
        matches ``predicate``."""
        for message in self.messages[after:]:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._receive(left)
            if message is not None and len(self.messages) > after and predicate(message):
                return message
        got = [m.fields for m in self.messages]
        raise AssertionError(f"no matching sd_notify message in {timeout} s; got {got}")

    def wait_field(self, key: str, value: str = "1", after: int = 0) -> Message:
        return self.wait_for(lambda m: m.fields.get(key) == value, after)

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.address)
            os.rmdir(self._dir)
