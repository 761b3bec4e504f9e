"""One server process: load the app, run lifespan, bind, serve, and shut down gracefully.

Shutdown order (SIGINT, SIGTERM or :meth:`Server.stop` from any thread): stop accepting; close
idle connections at once; let requests in flight finish within ``timeout_graceful_shutdown``;
cancel what is left; then lifespan shutdown.  A second signal skips the waiting.

The grace period is one deadline for the whole shutdown: WSGI threads still stuck in the app
when it passes are named in the log and left behind (they are daemon threads, and nothing here
waits on them in an executor), so ``--timeout-graceful-shutdown`` is kept however the app hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dualcorn.binding import bind_sockets, close_listeners, describe_socket
from dualcorn.config import Config
from dualcorn.config_file import announce_config_file
from dualcorn.gc_tuning import tune_gc
from dualcorn.listener import Listening, listen
from dualcorn.logs import reopen_log_files
from dualcorn.loops import loop_factory
from dualcorn.protocols.state import ServerState
from dualcorn.proxy_protocol import preamble_factory
from dualcorn.routing import build_apps

if TYPE_CHECKING:
    from dualcorn.tls import ServerTLS

__all__ = ["Server"]

logger = logging.getLogger("dualcorn.error")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server:
    """Serves one app in the calling thread; ``stop()`` may be called from any thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = threading.Event()  # set once the sockets are listening
        self.addresses: list[str] = []  # e.g. "http://127.0.0.1:54321", once started
        self.interface: str | None = None
        self.state: ServerState | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._stop_requested = False
        self._drain_requested = False  # SIGTERM or stop(drain=True): --shutdown-delay applies
        self._servers: list[Listening] = []
        self._bound: list[socket.socket] = []  # sockets this server bound (not inherited)
        # Supervised servers share sockets their supervisor bound and announced already.
        self.announce = True
        self._deadline: float | None = None  # loop time when the grace period ends
        # Hooks for supervisors: called (in the loop thread) once listening, and each second.
        self.on_started: list[Callable[[], None]] = []
        self.on_tick: list[Callable[[], None]] = []
        # --metrics-port: False in a supervised process (its supervisor serves the total).
        self.serve_metrics = True
        self.on_stopping: list[Callable[[], None]] = []  # called once, as shutdown begins

    # --- Entry points --------------------------------------------------------------------

    def run(self, sockets: list[socket.socket] | None = None, *, show_pid: bool = False) -> None:
        """Configure logging, then serve until stopped (blocking).

        ``show_pid`` puts the process id on every log line: supervisors run several servers
        side by side, and their output interleaves on one stderr.
        """
        from dualcorn.logs import configure_logging

        configure_logging(self.config, show_pid=show_pid)
        with asyncio.Runner(loop_factory=loop_factory(self.config.loop)) as runner:
            runner.run(self.serve(sockets))

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve on the running loop until stopped; raise StartupError or LoadError early."""
        config = self.config
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        if self.announce:
            announce_config_file(config)
        # Read the certificate files before the app: this process serves what is on disk now
        # (a renewed certificate after HUP or --reload), or fails before importing anything.
        tls = None
        if config.tls:
            from dualcorn.tls import load_tls

            tls = load_tls(config)
        apps = build_apps(config)  # the app, or a router in front of --mount and --static
        self.interface = apps.interface
        state = self.state = ServerState(config, apps.app)
        await apps.startup(config, state.lifespan_state)
        tune_gc(freeze=config.gc_freeze, threshold=config.gc_threshold)  # the app is loaded
        metrics = None
        try:
            if config.metrics_port is not None:
                from dualcorn.metrics.serving import start_process_metrics

                pools = [(s.app, s.prefix) for s in apps.served if s.interface == "wsgi"]
                metrics = await start_process_metrics(state, pools, listen=self.serve_metrics)
                self.on_tick.append(metrics.tick)
            # Handlers first: once the log says "running on", a signal never meets the default
            # action (a SIGHUP or SIGTERM would otherwise end the process on the spot).
            self._install_signal_handlers()
            await self._listen(state, sockets, tls)
            self._count_requests(state)
            for callback in self.on_started:
                callback()
            self.started.set()
            await self._main_loop()
            for callback in self.on_stopping:
                callback()
            await self._drain(state)
            await self._shutdown(state)
        finally:
            self._remove_signal_handlers()
            close_listeners(self._bound)  # and remove the Unix socket files it created
            if metrics is not None:
                await metrics.close()
            await apps.shutdown(config, self._grace_left())
            self.started.clear()

    def stop(self, force: bool = False, drain: bool = False) -> None:
        """Ask the server to shut down gracefully (or at once, with ``force``); thread-safe.

        ``drain`` first serves ``shutdown_delay`` seconds more, as after SIGTERM.
        """
        self._stop_requested = True
        self._drain_requested = self._drain_requested or drain
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if force:
            loop.call_soon_threadsafe(self._request_force)
        else:
            loop.call_soon_threadsafe(self._request_stop)

    # --- Internals -----------------------------------------------------------------------

    async def _listen(
        self, state: ServerState, sockets: list[socket.socket] | None, tls: ServerTLS | None
    ) -> None:
        from dualcorn.protocols import protocol_class

        protocol = protocol_class(self.config.http)
        make: Callable[[], asyncio.BaseProtocol] = lambda: protocol(state)  # noqa: E731
        if tls is not None:
            from dualcorn.tls import TLSHandshake

            make = lambda: TLSHandshake(state, protocol, tls)  # noqa: E731
        # --proxy-protocol: the preamble is read first, before any TLS handshake.
        factory = preamble_factory(state, make)
        loop = asyncio.get_running_loop()
        if not sockets:
            sockets = self._bound = bind_sockets(self.config)
        for sock in sockets:
            # Not loop.create_server: see dualcorn.listener (descriptors running out).
            server = await listen(loop, sock, factory, backlog=self.config.backlog)
            self._servers.append(server)
            address = describe_socket(sock, tls=tls is not None)
            self.addresses.append(address)
            if self.announce:
                logger.info("dualcorn running on %s (Press CTRL+C to quit)", address)
            else:
                logger.debug("Serving on %s", address)

    async def _main_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                # A clock, not a poll: supervisors' heartbeats ride on this once a second.
                async with asyncio.timeout(1.0):
                    await self._stop.wait()
            except TimeoutError:
                for callback in self.on_tick:
                    callback()

    async def _drain(self, state: ServerState) -> None:
        """``--shutdown-delay``: keep accepting and serving, each response with "Connection:
        close", while a load balancer still routes here (Traefik's requestAcceptGraceTimeout).
        A second signal (a forced stop) cuts it short."""
        assert self._force is not None
        delay = self.config.shutdown_delay
        if not self._drain_requested or delay <= 0 or self._force.is_set():
            return
        logger.info("Shutdown delay: serving %g s more, closing each connection after it.", delay)
        state.draining = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._force.wait()

    async def _shutdown(self, state: ServerState) -> None:
        assert self._force is not None
        logger.info("Shutting down")
        state.stopping = True
        for server in self._servers:
            server.close()
        for connection in list(state.connections):
            if not connection.long_lived:
                connection.shutdown()
        timeout = self.config.timeout_graceful_shutdown
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self._deadline = deadline
        if state.tasks:
            logger.info("Waiting for %d request(s) in flight to finish.", len(state.tasks))
            await self._wait_unless_forced(state.tasks, deadline)
        # WebSockets close with 1012 (service restart) once HTTP requests are done, so a
        # long-lived socket never holds a restart hostage.
        sessions = [c for c in state.connections if c.long_lived]
        if sessions:
            logger.info("Closing %d WebSocket(s).", len(sessions))
            for session in sessions:
                session.shutdown()
            closing = {asyncio.ensure_future(session.wait_closed()) for session in sessions}
            await self._wait_unless_forced(closing, deadline)
            for closer in closing:
                closer.cancel()  # past the deadline: the session aborts and cancels its app
            await asyncio.wait(closing)
        if state.tasks:
            logger.warning("Cancelling %d request(s) still in flight.", len(state.tasks))
            for task in list(state.tasks):
                task.cancel()
            await asyncio.wait(set(state.tasks), timeout=5.0)
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def _wait_unless_forced(
        self, tasks: Iterable[asyncio.Future[Any]], deadline: float | None
    ) -> None:
        """Wait until ``tasks`` are all done, the graceful deadline passes or a stop is forced."""
        assert self._force is not None
        pending = set(tasks)
        if not pending or self._force.is_set():
            return
        waiting = asyncio.ensure_future(asyncio.wait(pending))
        forced = asyncio.ensure_future(self._force.wait())
        now = asyncio.get_running_loop().time()
        timeout = None if deadline is None else max(0.0, deadline - now)
        await asyncio.wait({waiting, forced}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        forced.cancel()

    def _grace_left(self) -> float | None:
        """Seconds left of the grace period (all of it if shutdown never began); a moment at
        least, for threads that are finishing because their requests were just cancelled."""
        grace = self.config.timeout_graceful_shutdown
        if self._force is not None and self._force.is_set():
            return 0.5
        if self._deadline is None or grace is None:
            return grace
        return max(0.5, self._deadline - asyncio.get_running_loop().time())

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _request_force(self) -> None:
        self._request_stop()
        if self._force is not None:
            self._force.set()

    def _on_signal(self, signum: int) -> None:
        assert self._stop is not None
        if self._stop.is_set():
            logger.warning("Second %s: exiting without waiting.", signal.Signals(signum).name)
            self._request_force()
        else:
            self._drain_requested = signum == signal.SIGTERM
            self._request_stop()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread; stop() serves other threads
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)  # gunicorn: for logrotate
        # `systemctl reload` (ExecReload=kill -HUP) must not kill a lone server, which systemd
        # would count as a clean exit and not restart: a rolling restart needs --workers.
        loop.add_signal_handler(signal.SIGHUP, logger.warning,
                                "Received SIGHUP: ignored; a restart without downtime needs "
                                "--workers (or --reload).")  # fmt: skip

    def _remove_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._loop is None:
            return
        for signum in (*_SIGNALS, signal.SIGUSR1, signal.SIGHUP):
            self._loop.remove_signal_handler(signum)

    def _count_requests(self, state: ServerState) -> None:
        limit = self.config.limit_max_requests
        if limit is None:
            return
        # gunicorn max_requests_jitter: workers retire at different times, not all at once.
        limit += random.randint(0, self.config.limit_max_requests_jitter)

        def check() -> None:
            if state.total_requests >= limit and not state.stopping:
                logger.info("Reached --limit-max-requests (%d): shutting down.", limit)
                self._request_stop()

        state.on_request_done.append(check)
