"""``--workers N``: N server processes on one listening socket, supervised like gunicorn's.

Theory of operation.  The supervisor binds the socket once and every worker inherits it, so
the kernel keeps queueing connections while workers come and go; with ``--reuse-port`` each
worker binds its own ``SO_REUSEPORT`` socket instead, and the kernel spreads connections evenly
(the supervisor holds the port bound, never listening, so ``--port 0`` still means one port).
The app is imported in the workers only.

The supervisor waits on its workers' pipes and exit notices, on signals and on the nearest
deadline, and then:

* replaces a worker that exits (crash, SIGKILL, ``--limit-max-requests`` retirement);
* kills one whose event loop stopped beating for ``--timeout-worker-healthcheck`` seconds,
  with SIGABRT first so it prints where it hung (gunicorn's WORKER TIMEOUT);
* stops everything with exit status 3 when a worker fails at start-up: an import error or a
  failed lifespan startup will fail the same way again, and restarting forever hides it
  (gunicorn's WORKER_BOOT_ERROR);
* answers gunicorn's signals: TERM and INT stop gracefully (a second one stops at once), QUIT
  stops at once, HUP replaces every worker one by one, each new worker listening before an old
  one is told to go, TTIN and TTOU add and remove one worker.  A rolling restart whose new
  worker fails at start-up is abandoned and the old workers keep serving.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Sequence
from multiprocessing.connection import wait
from typing import Any

from dualcorn.addresses import listen_addresses
from dualcorn.binding import _explain, bind_sockets, close_listeners, describe_socket
from dualcorn.config import Config
from dualcorn.config_file import announce_config_file
from dualcorn.errors import LoadError, StartupError
from dualcorn.logs import configure_logging, reopen_log_files
from dualcorn.metrics.serving import SupervisorMetrics, supervisor_metrics
from dualcorn.supervisors.process import (
    BOOT_FAILED,
    ServerProcess,
    SignalInbox,
    describe_exit,
    kill_all,
    seconds_until,
)
from dualcorn.systemd import listen_sockets, notifier

__all__ = ["run_workers"]

logger = logging.getLogger("dualcorn.error")

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN,
            signal.SIGTTOU, signal.SIGUSR1)  # fmt: skip
_KILL_MARGIN = 3.0  # after the graceful timeout, time for lifespan shutdown before SIGKILL
_ABORT_GRACE = 2.0  # after SIGABRT, time to print the stacks before SIGKILL


def run_workers(config: Config) -> None:
    """Run ``config.workers`` server processes until SIGINT/SIGTERM; raise if one cannot start."""
    configure_logging(config, show_pid=True)
    # Signals first: from the moment the address is printed, Ctrl+C must stop us cleanly.
    inbox = SignalInbox(_SIGNALS)
    try:
        listen, worker_config, held = _sockets(config)
    except BaseException:
        inbox.close()
        raise
    arbiter = Arbiter(worker_config, listen)
    try:
        arbiter.metrics = supervisor_metrics(config)  # before any worker starts
    except BaseException:
        inbox.close()
        close_listeners(held)
        raise
    if arbiter.metrics is not None:
        arbiter.metrics.watch(arbiter)
    # Said once, here: the workers share these sockets and do not announce them again.
    announce_config_file(config)
    for sock in held:
        logger.info(
            "dualcorn running on %s (Press CTRL+C to quit)", describe_socket(sock, tls=config.tls)
        )
    logger.info("Started parent process; starting %d workers.", config.workers)
    try:
        arbiter.loop(inbox)
    finally:
        inbox.close()
        arbiter.kill_all()
        close_listeners(held)
        if arbiter.metrics is not None:
            arbiter.metrics.close()
    logger.info("Stopped parent process")
    if arbiter.halt is not None:
        kind, message = arbiter.halt
        raise (LoadError if kind == "load" else StartupError)(message)


def _sockets(config: Config) -> tuple[list[socket.socket] | None, Config, list[socket.socket]]:
    """The sockets to share (or None with --reuse-port), the workers' Config, what to close."""
    addresses = listen_addresses(config)
    if all(a.kind != "fd" for a in addresses) and (passed := listen_sockets()):
        return passed, config, passed  # systemd socket activation: its sockets win
    if not config.reuse_port or len(addresses) > 1 or addresses[0].kind != "tcp":
        sockets = bind_sockets(config)
        return sockets, config, sockets
    host, port = addresses[0].host, addresses[0].port
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)  # fmt: skip
    family, kind, proto, _, address = infos[0]
    reserved = socket.socket(family, kind, proto)
    try:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Bound but never listening: the kernel routes no connection to it, and no other
        # program can take the port while workers come and go.
        reserved.bind(address)
    except OSError as exc:
        reserved.close()
        raise StartupError(_explain(exc, host, port)) from None
    port = reserved.getsockname()[1]
    return None, config.replace(bind=(), uds=None, fd=None, host=host, port=port), [reserved]


class Arbiter:
    def __init__(self, config: Config, listen: list[socket.socket] | None) -> None:
        self.config = config
        self.listen = listen
        self.notify = notifier()  # sd_notify: this process is the one systemd watches
        self.target = config.workers
        self.workers: list[ServerProcess] = []  # serving or starting, oldest first
        self.retiring: list[ServerProcess] = []  # told to stop
        self.outdated: list[ServerProcess] = []  # to replace in a rolling restart (HUP)
        self.aborted: dict[int, float] = {}  # pid -> when SIGABRT was sent
        self.stopping = False
        self.halt: tuple[str, str] | None = None  # why the whole server stops with status 3
        self.restarts = 0  # workers replaced after exiting on their own
        self.metrics: SupervisorMetrics | None = None  # --metrics-port

    def processes(self) -> list[ServerProcess]:
        return self.workers + self.retiring

    def loop(self, inbox: SignalInbox) -> None:
        self._manage()
        while not (self.stopping and not self.processes()):
            waitables: list[Any] = [inbox]
            for process in self.processes():
                waitables += process.waitables()
            ready: Sequence[object] = wait(waitables, seconds_until(self._deadlines()))
            if inbox in ready:
                for signum in inbox.read():
                    self._on_signal(signum)
            for process in self.processes():
                for event in process.read():
                    self._on_event(process, event)
            self._enforce_deadlines()
            self._manage()
            self._notify()

    # --- Keeping the count ---------------------------------------------------------------

    def _spawn(self) -> None:
        worker = ServerProcess(self.config, self.listen)
        self.workers.append(worker)
        logger.info("Starting worker [%d]", worker.pid)

    def _retire(self, worker: ServerProcess, force: bool = False, drain: bool = False) -> None:
        worker.stop(force=force, drain=drain)
        if worker in self.workers:
            self.workers.remove(worker)
            self.retiring.append(worker)
        if worker in self.outdated:
            self.outdated.remove(worker)

    def _manage(self) -> None:
        if self.stopping:
            return
        if self.outdated:
            # Rolling restart: one new worker at a time, each replacing an old one once it is
            # listening (see _on_event), so capacity never drops below the target.
            if not any(not w.ready for w in self.workers if w not in self.outdated):
                self._spawn()
            return
        for _ in range(self.target - len(self.workers)):
            self._spawn()
        # TTOU: gunicorn retires the oldest workers first.
        for worker in self.workers[: max(0, len(self.workers) - self.target)]:
            logger.info("Stopping worker [%d]: %d workers wanted.", worker.pid, self.target)
            self._retire(worker)

    # --- Signals -------------------------------------------------------------------------

    def _on_signal(self, signum: signal.Signals) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            force = signum == signal.SIGQUIT or self.stopping
            how = "at once" if force else "gracefully"
            logger.info("Received %s: stopping %s.", signum.name, how)
            self.stopping = True
            for worker in self.processes():
                # --shutdown-delay: every worker drains at once, so the delay applies once.
                self._retire(worker, force=force, drain=signum == signal.SIGTERM)
        elif signum == signal.SIGUSR1:
            logger.info("Received SIGUSR1: reopening log files.")
            reopen_log_files()
            for worker in self.processes():
                worker.reopen_logs()
        elif self.stopping:
            return
        elif signum == signal.SIGHUP:
            logger.info("Received SIGHUP: replacing %d workers one by one.", len(self.workers))
            self.outdated = [w for w in self.workers if w not in self.outdated] + self.outdated
            self.outdated.sort(key=lambda w: w.spawned_at)
        elif signum == signal.SIGTTIN:
            self.target += 1
            logger.info("Received SIGTTIN: %d workers.", self.target)
        elif signum == signal.SIGTTOU:
            self.target = max(1, self.target - 1)
            logger.info("Received SIGTTOU: %d workers.", self.target)

    # --- Reports from the workers --------------------------------------------------------

    def _on_event(self, worker: ServerProcess, event: str) -> None:
        if event == "ready":
            # One line per worker from here; the address itself was announced once.
            logger.info("Worker [%d] is serving.", worker.pid)
        if event == "ready" and worker in self.workers and worker not in self.outdated:
            if self.outdated:
                old = self.outdated[0]
                logger.info("Worker [%d] is listening: stopping worker [%d].", worker.pid, old.pid)
                self._retire(old)
            return
        if event != "exited":
            return
        if self.metrics is not None:
            self.metrics.process_exited(worker.pid)
        self.aborted.pop(worker.pid, None)
        if worker in self.retiring:
            self.retiring.remove(worker)
            return
        self.workers.remove(worker)
        if worker in self.outdated:
            self.outdated.remove(worker)
        if worker.ready:
            self.restarts += 1
            how = describe_exit(worker.returncode)
            if worker.returncode == 0:  # --limit-max-requests, or someone else's SIGTERM
                logger.info("Worker [%d] %s; replacing it.", worker.pid, how)
            else:
                logger.error("Worker [%d] %s; replacing it.", worker.pid, how)
            return
        self._boot_failed(worker)

    def _boot_failed(self, worker: ServerProcess) -> None:
        failure = worker.failure
        if failure is None and worker.returncode != BOOT_FAILED:
            # Killed or crashed before it could say why (gunicorn restarts these too).
            self.restarts += 1
            logger.error("Worker [%d] %s before it was ready; replacing it.", worker.pid,
                         describe_exit(worker.returncode))  # fmt: skip
            return
        kind, message, details = failure or ("crash", "a worker failed to start", "")
        if self.stopping:
            return
        if self.outdated:
            logger.error("New worker [%d] failed to start: %s%s", worker.pid, message,
                         f"\n{details.rstrip()}" if details else "")  # fmt: skip
            logger.error("Rolling restart abandoned: the running workers keep serving.")
            self.outdated.clear()
            return
        # The message itself is the caller's to print (the CLI's "dualcorn: error: ..."); the
        # app's traceback, when it is the app's fault, only this once.
        logger.error("Worker [%d] failed to start; stopping.%s", worker.pid,
                     f" The app's traceback:\n{details.rstrip()}" if details else "")  # fmt: skip
        self.halt = (kind, message)
        self.stopping = True
        for other in self.processes():
            self._retire(other)

    # --- Deadlines -----------------------------------------------------------------------

    def _notify(self) -> None:
        ready = sum(1 for w in self.workers if w.ready)
        where = (
            ", ".join(describe_socket(s, tls=self.config.tls) for s in self.listen or ())
            or self.config.bind_description
        )
        status = f"{ready} of {self.target} workers serving on {where}"
        if self.outdated:
            status = f"Rolling restart: {len(self.outdated)} old workers left; {status}"
        if self.stopping:
            status = f"Shutting down: {len(self.processes())} workers left"
        self.notify.update(ready=ready >= self.target, reloading=bool(self.outdated),
                           stopping=self.stopping, status=status)  # fmt: skip
        self.notify.watchdog()

    def _deadlines(self) -> list[float | None]:
        config = self.config
        found: list[float | None] = [self.notify.watchdog_at()]
        for worker in self.workers:
            if worker.pid in self.aborted:
                found.append(self.aborted[worker.pid] + _ABORT_GRACE)
            elif worker.killed:
                continue
            elif worker.ready:
                if config.timeout_worker_healthcheck > 0:  # 0: never, as gunicorn's -t 0
                    found.append(worker.last_beat + config.timeout_worker_healthcheck)
            else:
                found.append(worker.going_at + config.timeout_worker_startup)
        for worker in self.retiring:
            grace = config.timeout_graceful_shutdown
            if worker.pid in self.aborted:
                found.append(self.aborted[worker.pid] + _ABORT_GRACE)
            elif not worker.killed and worker.stop_sent_at is not None and grace is not None:
                found.append(worker.stop_sent_at + grace + _KILL_MARGIN)
        return found

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        config = self.config
        for worker in self.processes():
            if worker.pid in self.aborted:
                if now >= self.aborted[worker.pid] + _ABORT_GRACE:
                    del self.aborted[worker.pid]
                    worker.kill()
                continue
            if worker.killed:
                continue
            if worker in self.retiring:
                grace = config.timeout_graceful_shutdown
                if worker.stop_sent_at is not None and grace is not None \
                        and now >= worker.stop_sent_at + grace + _KILL_MARGIN:  # fmt: skip
                    logger.warning("Worker [%d] did not stop in time: killing it.", worker.pid)
                    worker.kill()
            elif worker.ready and 0 < config.timeout_worker_healthcheck \
                    <= now - worker.last_beat:  # fmt: skip
                logger.error("Worker [%d] sent no heartbeat for %g s: killing it.",
                             worker.pid, config.timeout_worker_healthcheck)  # fmt: skip
                self.aborted[worker.pid] = now
                worker.kill(signal.SIGABRT)
            elif not worker.ready and now >= worker.going_at + config.timeout_worker_startup:
                limit = config.timeout_worker_startup
                worker.failure = ("startup", f"worker did not start within {limit:g} s", "")
                worker.kill()

    def kill_all(self) -> None:
        kill_all(self.processes())
