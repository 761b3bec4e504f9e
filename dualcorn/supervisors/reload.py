"""``--reload``: restart the server when its code changes, without the port ever going dark.

Theory of operation.  The reloader binds the listening socket once and shares it with every
server process it starts, so the kernel keeps queueing connections whatever the processes do.
It keeps up to four kinds of process:

* **current**: the last version that started cleanly; it serves;
* **candidate**: the new version, importing the edited code and starting up, while current
  keeps serving.  Once it is listening (its ``ready`` report) it becomes current, and the old
  current is asked to stop gracefully: it stops accepting, finishes its requests in flight
  and exits (blue-green; uvicorn instead stops the old process first and leaves a gap);
* **standby**: a warm process that has already paid for Python's start-up and dualcorn's
  imports, but not the app's, waiting for ``go``.  A reload costs the app's import only;
* **retiring**: told to stop, and killed if still there ``timeout_graceful_shutdown`` (plus a
  moment for lifespan shutdown) later, so a restart never waits forever.

A candidate that fails (syntax error, import error, exception at import, lifespan startup
failure) is reported once, with the app's traceback, and current keeps serving the last good
version until the next save that imports cleanly.  A save while a candidate is still starting
supersedes it.  Every wait is for an event (a report on a child's pipe, a child's exit, a
signal, a batch of changes) or for the nearest deadline.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Sequence
from multiprocessing.connection import wait
from typing import Any

from dualcorn.binding import bind_sockets, close_listeners, describe_socket
from dualcorn.config import Config
from dualcorn.config_file import announce_config_file
from dualcorn.errors import StartupError
from dualcorn.logs import configure_logging, reopen_log_files
from dualcorn.metrics.serving import SupervisorMetrics, supervisor_metrics
from dualcorn.supervisors.process import (
    ServerProcess,
    SignalInbox,
    describe_exit,
    kill_all,
    seconds_until,
)
from dualcorn.supervisors.watch import (
    ChangeFilter,
    Watcher,
    describe_changes,
    forget_bytecode,
    watched_dirs,
)
from dualcorn.systemd import notifier

__all__ = ["run_reloader"]

logger = logging.getLogger("dualcorn.error")

# After the graceful timeout the server cancels what is left and runs lifespan shutdown; this
# long again, it is killed.
_KILL_MARGIN = 3.0
_LONGEST_BURST = 2.0


def run_reloader(config: Config) -> None:
    """Serve ``config`` with a fresh server process after every change; return on SIGINT/TERM."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        # Said before anything is bound or started: one line, no traceback (exit status 3).
        raise StartupError(
            "--reload needs the watchfiles package: pip install 'dualcorn[standard]'"
        ) from None
    configure_logging(config, show_pid=True)
    # Signals first: from the moment the address is printed, Ctrl+C must stop us cleanly.
    inbox = SignalInbox((signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
                         signal.SIGUSR1))  # fmt: skip
    try:
        _supervise(config, inbox)
    finally:
        inbox.close()
    logger.info("Stopped reloader process")


def _supervise(config: Config, inbox: SignalInbox) -> None:
    roots = watched_dirs(config)
    watch_filter = ChangeFilter(roots, config.reload_includes, config.reload_excludes)
    sockets = bind_sockets(config)
    # Said once, here, as uvicorn's reloader does: the address outlives every server process.
    announce_config_file(config)
    for sock in sockets:
        logger.info(
            "dualcorn running on %s (Press CTRL+C to quit)", describe_socket(sock, tls=config.tls)
        )
    logger.info("Will watch for changes in: %s", ", ".join(repr(str(r)) for r in roots))
    logger.info("Started reloader process using WatchFiles")
    try:
        metrics = supervisor_metrics(config)  # before any server process starts
    except BaseException:
        close_listeners(sockets)
        raise
    watcher = Watcher(roots, watch_filter)
    reloader = Reloader(config, sockets)
    reloader.metrics = metrics
    try:
        watcher.start()
        reloader.start()
        reloader.loop(inbox, watcher)
    finally:
        watcher.stop()
        reloader.kill_all()
        close_listeners(sockets)
        if reloader.metrics is not None:
            reloader.metrics.close()


class Reloader:
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.notify = notifier()  # sd_notify: this process is the one systemd watches
        self.current: ServerProcess | None = None
        self.candidate: ServerProcess | None = None
        self.standby: ServerProcess | None = None
        self.retiring: list[ServerProcess] = []
        self.stopping = False
        self.forcing = False
        self.changed_at = 0.0
        self.changes: set[str] = set()  # seen, not yet acted on: the burst may go on
        self.first_change_at = self.last_change_at = 0.0
        self.metrics: SupervisorMetrics | None = None  # --metrics-port

    def processes(self) -> list[ServerProcess]:
        found = [self.current, self.candidate, self.standby, *self.retiring]
        return [p for p in found if p is not None]

    def _spawn(self, *, wait_for_go: bool) -> ServerProcess:
        return ServerProcess(self.config, self.sockets, wait_for_go=wait_for_go)

    def start(self) -> None:
        self.changed_at = time.monotonic()
        self.candidate = self._spawn(wait_for_go=False)

    # --- The loop ------------------------------------------------------------------------

    def loop(self, inbox: SignalInbox, watcher: Watcher) -> None:
        while not (self.stopping and not self.processes()):
            waitables: list[Any] = [inbox, watcher]
            for process in self.processes():
                waitables += process.waitables()
            ready: Sequence[object] = wait(waitables, seconds_until(self._deadlines()))
            if inbox in ready:
                for signum in inbox.read():
                    self._on_signal(signum)
            if watcher in ready:
                paths = watcher.take()
                if watcher.error is not None:
                    raise watcher.error
                if paths and not self.stopping:
                    if not self.changes:
                        self.first_change_at = time.monotonic()
                    self.changes |= paths
                    self.last_change_at = time.monotonic()
            if self.changes and time.monotonic() >= self._reload_at():
                paths, self.changes = self.changes, set()
                logger.info("Detected change%s in %s. Reloading...",
                            "s" if len(paths) > 1 else "", describe_changes(paths))  # fmt: skip
                forget_bytecode(paths)
                self._reload()
                self.changed_at = self.first_change_at
            for process in self.processes():
                for event in process.read():
                    self._on_event(process, event)
            self._enforce_deadlines()
            self._keep_standby()
            self._notify()

    def _on_signal(self, signum: signal.Signals) -> None:
        if signum == signal.SIGUSR1:
            logger.info("Received SIGUSR1: reopening log files.")
            reopen_log_files()
            for process in self.processes():
                process.reopen_logs()
        elif signum == signal.SIGHUP and not self.stopping:
            logger.info("Received SIGHUP. Reloading...")
            self._reload()
        elif signum == signal.SIGQUIT or (self.stopping and signum != signal.SIGHUP):
            # uvicorn and gunicorn: a second Ctrl+C means now.
            logger.warning("Received %s: stopping now.", signum.name)
            self.stopping = self.forcing = True
            for process in self.processes():
                process.stop(force=True)
        elif signum in (signal.SIGINT, signal.SIGTERM):
            logger.info("Received %s: stopping the server processes.", signum.name)
            self.stopping = True
            for process in self.processes():
                process.stop(drain=signum == signal.SIGTERM)  # --shutdown-delay
            self.retiring = self.processes()
            self.current = self.candidate = self.standby = None

    def _reload(self) -> None:
        self.changed_at = time.monotonic()
        if self.candidate is not None:
            logger.info("Server process [%d] was still starting: superseded.", self.candidate.pid)
            self._retire(self.candidate)
        candidate, self.standby = self.standby, None
        if candidate is None:
            candidate = self._spawn(wait_for_go=False)
        candidate.go()
        self.candidate = candidate

    def _retire(self, process: ServerProcess) -> None:
        process.stop()
        self.retiring.append(process)

    def _keep_standby(self) -> None:
        # Only once nothing is starting: a standby booting next to a candidate would take CPU
        # from it and slow the very reload it exists to speed up.
        if self.stopping or self.standby is not None or self.candidate is not None:
            return
        self.standby = self._spawn(wait_for_go=True)

    # --- Reports from the children -------------------------------------------------------

    def _on_event(self, process: ServerProcess, event: str) -> None:
        if event == "exited" and self.metrics is not None:
            self.metrics.process_exited(process.pid)
        if process is self.candidate:
            if event == "ready":
                self._promote(process)
            elif event == "exited":
                self.candidate = None
                self._report_failure(process)
        elif process is self.current and event == "exited":
            self.current = None
            logger.error("Server process [%d] %s.", process.pid, describe_exit(process.returncode))
            if not self.stopping and self.candidate is None:
                logger.info("Starting a new server process.")
                self._reload()
        elif process is self.standby and event == "exited":
            self.standby = None
            logger.warning("Standby process [%d] %s.", process.pid,
                           describe_exit(process.returncode))  # fmt: skip
        elif event == "exited" and process in self.retiring:
            self.retiring.remove(process)

    def _promote(self, process: ServerProcess) -> None:
        old, self.current, self.candidate = self.current, process, None
        took = time.monotonic() - self.changed_at
        if old is None:
            logger.info("Server process [%d] is serving (%.2f s).", process.pid, took)
            return
        logger.info("Server process [%d] is serving the new code (%.2f s after the change); "
                    "stopping [%d].", process.pid, took, old.pid)  # fmt: skip
        self._retire(old)

    def _report_failure(self, process: ServerProcess) -> None:
        if process.failure is not None:
            _, message, details = process.failure
        else:
            message, details = f"it {describe_exit(process.returncode)}", ""
        if self.stopping:
            return
        # Printed once per failed attempt: the app's traceback (when it is the app's fault),
        # then one line saying what happened and what keeps serving.
        text = f"\n{details.rstrip()}" if details else ""
        logger.error("The new code did not start: %s%s", message, text)
        if self.current is not None:
            logger.warning("Still serving the last good version (server process [%d]); "
                           "waiting for the next change.", self.current.pid)  # fmt: skip
        else:
            logger.warning("Waiting for a change to try again.")

    # --- Deadlines -----------------------------------------------------------------------

    def _reload_at(self) -> float:
        # Debounce: reload once the files have been quiet for --reload-delay, and at the
        # latest _LONGEST_BURST into a burst that never pauses.
        delay = self.config.reload_delay
        return min(self.last_change_at + delay, self.first_change_at + max(_LONGEST_BURST, delay))

    def _notify(self) -> None:
        where = ", ".join(describe_socket(s, tls=self.config.tls) for s in self.sockets)
        if self.stopping:
            status = "Shutting down"
        elif self.candidate is not None and self.current is not None:
            status = f"Reloading; the last version serves on {where}"
        elif self.current is not None:
            status = f"Serving on {where} (server process {self.current.pid})"
        else:
            status = "Starting" if self.candidate is not None else "Waiting for a good change"
        self.notify.update(ready=self.current is not None, stopping=self.stopping,
                           reloading=self.candidate is not None, status=status)  # fmt: skip
        self.notify.watchdog()

    def _deadlines(self) -> list[float | None]:
        found: list[float | None] = [self._reload_at() if self.changes else None]
        found.append(self.notify.watchdog_at())
        if self.candidate is not None and not self.candidate.killed:
            found.append(self.candidate.going_at + self.config.timeout_worker_startup)
        found += [self._kill_at(p) for p in self.retiring]
        return found

    def _kill_at(self, process: ServerProcess) -> float | None:
        if process.stop_sent_at is None or process.killed:
            return None
        grace = self.config.timeout_graceful_shutdown
        if not process.going:  # a standby serves nothing: it exits at once
            grace = 0.0
        if grace is None:
            return None  # the user asked to wait for requests in flight however long
        return process.stop_sent_at + grace + _KILL_MARGIN

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        candidate = self.candidate
        limit = self.config.timeout_worker_startup
        if candidate is not None and not candidate.killed and now >= candidate.going_at + limit:
            candidate.failure = ("timeout", f"it did not start within {limit:g} s", "")
            candidate.kill()
        for process in self.retiring:
            kill_at = self._kill_at(process)
            if kill_at is not None and now >= kill_at:
                logger.warning("Server process [%d] did not stop in time: killing it.",
                               process.pid)  # fmt: skip
                process.kill()

    def kill_all(self) -> None:
        kill_all(self.processes())
