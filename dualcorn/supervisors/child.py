"""The server side of a supervised process: take orders over a pipe, serve, report back.

A supervisor starts ``python -c <bootstrap> FD`` where FD is this process's end of a control
pipe (a socketpair wrapped in :class:`multiprocessing.connection.Connection`).  The first thing
on the pipe is an :class:`Orders`: the pickled :class:`~dualcorn.config.Config`, the parent's
``sys.path`` and the listening socket's descriptor.  Then:

1. the process imports dualcorn's server machinery (not the app) and reports ``booted``;
2. with ``wait_for_go`` it waits for ``go`` (the reloader keeps one such warm standby, so a
   reload costs only the app's own import, not a Python start-up);
3. it serves, reporting ``ready`` once listening and ``beat`` once a second from the event
   loop (a blocked loop stops beating: that is what the supervisor's health check sees);
4. a failure before ``ready`` is reported as ``failed`` and the process exits with status 3,
   gunicorn's WORKER_BOOT_ERROR, so the supervisor never mistakes it for a crash to restart.

``stop`` and ``force`` orders arrive on a thread and call the thread-safe
:meth:`~dualcorn.server.Server.stop`.  End of file on the pipe means the supervisor is gone
(even SIGKILLed): the server stops gracefully rather than living on as an orphan.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from dualcorn.config import Config

__all__ = ["BOOT_FAILED", "Orders", "main"]

logger = logging.getLogger("dualcorn.error")

BOOT_FAILED = 3  # gunicorn's WORKER_BOOT_ERROR: the supervisor stops instead of restarting


@dataclass(frozen=True)
class Orders:
    """What a supervisor tells a new server process before anything else."""

    config: Config
    sys_path: list[str]
    listen_fds: list[int] | None  # None: bind a socket of its own (--reuse-port)
    show_pid: bool
    wait_for_go: bool


def main(fd: int) -> None:
    conn = Connection(fd)
    orders: Orders = conn.recv()
    # The same import path as the supervisor, as multiprocessing's spawn does: the app then
    # imports exactly as it would without a supervisor.
    sys.path[:] = orders.sys_path
    for listen_fd in orders.listen_fds or ():
        # Inherited for us, not for whatever subprocesses the app starts.
        os.set_inheritable(listen_fd, False)
    # A hung worker gets SIGABRT from the health check (gunicorn does the same); faulthandler
    # prints every thread's stack first, so the log shows where it was stuck.
    faulthandler.enable()
    _warm_up(orders.config)
    conn.send(("booted",))
    if orders.wait_for_go:
        try:
            order = conn.recv()
            while order == "reopen":  # SIGUSR1 to the supervisor: a standby has no log files
                order = conn.recv()
        except EOFError:
            return
        if order != "go":
            return
    code = _serve(conn, orders)
    conn.close()
    sys.exit(code)


def _warm_up(config: Config) -> None:
    """Import what serving needs, short of the app itself (a standby must not hold stale code)."""
    import dualcorn.adapters.detect
    import dualcorn.loading
    import dualcorn.server  # noqa: F401
    from dualcorn.loops import loop_factory
    from dualcorn.protocols import protocol_class

    loop_factory(config.loop)
    protocol_class(config.http)
    if config.tls:
        importlib.import_module("dualcorn.tls")  # the ssl module is a noticeable import
    if config.interface in ("auto", "wsgi"):
        # The WSGI adapter is imported lazily for the first WSGI app; a standby pays it ahead.
        with contextlib.suppress(ImportError):
            importlib.import_module("dualcorn.adapters.wsgi")


def _serve(conn: Connection, orders: Orders) -> int:
    import socket

    from dualcorn.errors import LoadError, StartupError
    from dualcorn.server import Server

    server = Server(orders.config)
    # The supervisor announced the address once; each worker saying it again reads as if
    # there were several servers.
    server.announce = False
    # --metrics-port: the supervisor serves every process's numbers added up.
    server.serve_metrics = False
    ready = False

    def report(*message: Any) -> None:
        try:
            conn.send(message)
        except OSError:
            server.stop()  # the supervisor is gone; see the module docstring

    def on_started() -> None:
        nonlocal ready
        ready = True
        report("ready", server.addresses)

    server.on_started.append(on_started)
    server.on_tick.append(lambda: report("beat"))
    threading.Thread(target=_obey, args=(conn, server), daemon=True).start()
    sockets = None
    if orders.listen_fds is not None:
        sockets = [socket.socket(fileno=fd) for fd in orders.listen_fds]
    try:
        server.run(sockets=sockets, show_pid=orders.show_pid)
    except LoadError as exc:
        details = ""
        if getattr(exc, "show_traceback", False) and exc.__cause__ is not None:
            details = "".join(traceback.format_exception(exc.__cause__))
        report("failed", "load", str(exc), details)
        return BOOT_FAILED
    except StartupError as exc:
        report("failed", "startup", str(exc), "")
        return BOOT_FAILED
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        if ready:
            logger.exception("The server failed")
            return 1
        report("failed", "crash", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        return BOOT_FAILED
    logger.info("Finished server process")
    return 0


def _obey(conn: Connection, server: Any) -> None:
    while True:
        try:
            order = conn.recv()
        except (EOFError, OSError):
            server.stop()
            return
        if order == "stop":
            server.stop()
        elif order == "drain":  # SIGTERM to the supervisor: --shutdown-delay applies
            server.stop(drain=True)
        elif order == "force":
            server.stop(force=True)
        elif order == "reopen":  # SIGUSR1 to the supervisor
            from dualcorn.logs import reopen_log_files

            reopen_log_files()
