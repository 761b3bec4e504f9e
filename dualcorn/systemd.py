"""systemd integration without a dependency: socket activation and ``sd_notify``.

Socket activation (sd_listen_fds(3)).  systemd, or ``systemd-socket-activate`` and other
supervisors speaking the same protocol, bind the sockets and start the server with them open
as descriptors 3, 4, ... and the environment ``LISTEN_PID`` (the pid they are meant for),
``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES`` (their ``FileDescriptorName=``, colon
separated).  The variables are removed once read, as ``sd_listen_fds(1)`` does, so that server
processes and whatever the app starts do not take them for their own.  Only listening stream
sockets are served: ``Accept=yes`` units (one process per connection) are refused with a reason.

Notification (sd_notify(3)).  With ``NOTIFY_SOCKET`` set (``Type=notify`` units), the process
systemd watches sends newline-separated ``KEY=value`` datagrams to that Unix socket (a path, or
an abstract name written with a leading ``@``).  :class:`Notifier` sends ``READY=1`` once
listening, ``RELOADING=1`` (with ``MONOTONIC_USEC``, as ``Type=notify-reload`` requires) and
then ``READY=1`` around a rolling restart, ``STOPPING=1`` at shutdown, ``STATUS=`` lines that
``systemctl status`` shows, and ``WATCHDOG=1`` every half of ``WATCHDOG_USEC`` (the interval
sd_watchdog_enabled(3) recommends).  The variables are removed once read: with ``--workers``
or ``--reload`` only the supervisor, systemd's main process, speaks (``NotifyAccess=main``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from dualcorn.errors import StartupError

if TYPE_CHECKING:
    from dualcorn.server import Server

__all__ = ["LISTEN_FDS_START", "Notifier", "attach", "listen_sockets", "notifier"]

logger = logging.getLogger("dualcorn.error")

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first passed descriptor
_SEND_TIMEOUT = 1.0  # a datagram to systemd never waits longer than this


# --- Socket activation ---------------------------------------------------------------------


def listen_sockets() -> list[socket.socket]:
    """The listening sockets passed to this process (none without socket activation).

    Reads and removes ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES``.  Variables meant
    for another process (``LISTEN_PID`` is not ours) are removed and ignored.
    """
    pid = os.environ.pop("LISTEN_PID", None)
    count = os.environ.pop("LISTEN_FDS", None)
    names_text = os.environ.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None:
        return []
    try:
        meant_for, how_many = int(pid), int(count)
    except ValueError:
        raise StartupError(
            f"socket activation: LISTEN_PID={pid!r} and LISTEN_FDS={count!r} must be numbers"
        ) from None
    if meant_for != os.getpid():
        logger.debug("LISTEN_FDS is for process %d, not this one: ignored", meant_for)
        return []
    if how_many < 1:
        return []
    names = names_text.split(":") if names_text else []
    sockets: list[socket.socket] = []
    try:
        for index in range(how_many):
            fd = LISTEN_FDS_START + index
            name = names[index] if index < len(names) else "unknown"
            sockets.append(_adopt(fd, name))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    described = ", ".join(
        f"fd {LISTEN_FDS_START + i}" + (f" ({names[i]})" if i < len(names) else "")
        for i in range(how_many)
    )
    logger.info("Socket activation: serving on %d passed socket(s): %s", how_many, described)
    return sockets


def _adopt(fd: int, name: str) -> socket.socket:
    what = f"socket activation: descriptor {fd} ({name})"
    try:
        sock = socket.socket(fileno=fd)  # family, type and protocol are read from the socket
    except OSError as exc:
        raise StartupError(f"{what} is not a socket: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise StartupError(f"{what} is not a stream socket: use ListenStream= in the .socket unit")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise StartupError(
            f"{what} is not listening: Accept=yes units (a process per connection) are not "
            "supported; use Accept=no, the default"
        )
    # sd_listen_fds sets FD_CLOEXEC: the app's subprocesses must not inherit the socket.
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock


# --- Notification --------------------------------------------------------------------------


class Notifier:
    """Sends sd_notify messages; every method does nothing when ``NOTIFY_SOCKET`` was unset."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address: str | bytes | None = None
        if address and address.startswith("@"):
            # An abstract socket name: "@" stands for the leading NUL byte (unix(7)).
            self.address = b"\0" + address[1:].encode()
        elif address and address.startswith("/"):
            self.address = address
        elif address:
            logger.debug("NOTIFY_SOCKET=%r is not a Unix socket address: ignored", address)
        self._sock: socket.socket | None = None
        # sd_watchdog_enabled(3): ping at half the interval, so one late ping is not fatal.
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._next_watchdog = time.monotonic() if self.watchdog_interval else None
        self._ready = self._reloading = self._stopping = False
        self._status = ""

    @classmethod
    def from_environment(cls) -> Notifier:
        """Read and remove ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""
        address = os.environ.pop("NOTIFY_SOCKET", None)
        usec_text = os.environ.pop("WATCHDOG_USEC", None)
        pid_text = os.environ.pop("WATCHDOG_PID", None)
        usec = None
        try:
            # The watchdog is ours unless WATCHDOG_PID names another process.
            if usec_text and (not pid_text or int(pid_text) == os.getpid()):
                usec = int(usec_text) if int(usec_text) > 0 else None
        except ValueError:
            logger.warning("WATCHDOG_USEC=%r or WATCHDOG_PID=%r is not a number: no watchdog",
                           usec_text, pid_text)  # fmt: skip
        return cls(address, usec if address else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        """One datagram of ``KEY=value`` lines; a failure is logged, never raised."""
        if self.address is None or not fields:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.settimeout(_SEND_TIMEOUT)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            logger.debug("sd_notify to %r failed: %s", self.address, exc)

    # --- States ----------------------------------------------------------------------------

    def ready(self, status: str) -> None:
        """``READY=1`` after start-up or a reload; the status says what is served."""
        fields = ["READY=1", f"STATUS={status}"]
        if not self._ready:
            fields.append(f"MAINPID={os.getpid()}")
        self._ready, self._reloading, self._status = True, False, status
        self.send(*fields)

    def reloading(self, status: str) -> None:
        # systemd.service(5), Type=notify-reload: RELOADING=1 carries the CLOCK_MONOTONIC time.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._reloading, self._status = True, status
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")

    def stopping(self, status: str = "Shutting down") -> None:
        if not self._stopping:
            self._stopping, self._status = True, status
            self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")

    def update(self, *, ready: bool, reloading: bool, stopping: bool, status: str) -> None:
        """A supervisor's state, sent only when it changed (called once per loop turn)."""
        if self.address is None or self._stopping:
            return
        if stopping:
            self.stopping(status)
        elif reloading and self._ready and not self._reloading:
            self.reloading(status)
        elif not reloading and ready and (self._reloading or not self._ready):
            self.ready(status)
        else:
            self.status(status)

    # --- Watchdog --------------------------------------------------------------------------

    def watchdog_at(self) -> float | None:
        """When the next ``WATCHDOG=1`` is due (``time.monotonic()``), or None."""
        return self._next_watchdog

    def watchdog(self) -> None:
        """Send ``WATCHDOG=1`` if it is due (call it from the loop whose health it vouches for)."""
        due = self._next_watchdog
        if due is not None and time.monotonic() >= due:
            self.ping()

    def ping(self) -> None:
        """Send ``WATCHDOG=1`` now; the next one is due half the watchdog interval later."""
        if self.watchdog_interval is not None:
            self._next_watchdog = time.monotonic() + self.watchdog_interval
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


_notifier: Notifier | None = None


def notifier() -> Notifier:
    """This process's notifier; the first call reads (and removes) the environment."""
    global _notifier
    if _notifier is None:
        _notifier = Notifier.from_environment()
    return _notifier


def attach(server: Server, notify: Notifier) -> None:
    """Notify for a single :class:`~dualcorn.server.Server` (no supervisor): ready, watchdog,
    stopping.  The watchdog rides on the server's event loop, so a blocked loop stops it."""
    if not notify.enabled:
        return

    def started() -> None:
        notify.ready(f"Serving on {', '.join(server.addresses)}")
        interval = notify.watchdog_interval
        if interval is not None:
            loop = asyncio.get_running_loop()  # on_started runs in the server's loop

            def beat() -> None:
                notify.ping()
                if not loop.is_closed():
                    loop.call_later(interval, beat)

            beat()

    server.on_started.append(started)
    server.on_stopping.append(lambda: notify.stopping())
