"""Wiring metrics into a server process and into a supervisor.

A single server process records *and* serves (:func:`start_process_metrics` with
``listen=True``): the listener runs on the server's own loop, and the gauges are read from the
server's state right before each scrape, so they are exact.

Under a supervisor (``--workers``, ``--reload``), :class:`SupervisorMetrics` creates the
``PROMETHEUS_MULTIPROC_DIR`` before the first server process starts (prometheus_client chooses
its value storage when it is first imported, from that variable), serves the aggregate from a
thread, and adds the supervisor's own numbers: the workers serving and wanted, and restarts.
Each server process records with ``listen=False`` and refreshes its gauges once a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dualcorn.config import Config

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from dualcorn.metrics.exporter import MetricsListener
    from dualcorn.metrics.recorder import ServerMetrics
    from dualcorn.protocols.state import ServerState

# prometheus_client is imported only once --metrics-port is given: supervisors import this
# module whether or not metrics are on, and the package is an optional extra.

__all__ = ["MULTIPROC_ENV", "ProcessMetrics", "SupervisorMetrics", "start_process_metrics"]

logger = logging.getLogger("dualcorn.error")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ProcessMetrics:
    """One server process's metrics and, unless supervised, its listener."""

    def __init__(self, metrics: ServerMetrics, listener: MetricsListener | None) -> None:
        self.metrics = metrics
        self.listener = listener

    def tick(self) -> None:
        """Once a second, from the server's clock: supervised processes publish their gauges."""
        if self.listener is None:
            self.metrics.refresh()

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener.sock.close()


async def start_process_metrics(
    state: ServerState, wsgi_pools: list[tuple[Any, str]], *, listen: bool
) -> ProcessMetrics:
    """Attach metrics to ``state`` and to each (WSGI adapter, mount prefix) in ``wsgi_pools``;
    listen unless supervised."""
    from dualcorn.metrics.exporter import MetricsListener, bind_metrics_socket
    from dualcorn.metrics.recorder import ServerMetrics

    config = state.config
    metrics = ServerMetrics(state)
    for adapter, mount in wsgi_pools:
        metrics.watch_wsgi(adapter, mount)
    listener = None
    if listen:
        from prometheus_client import generate_latest

        assert config.metrics_port is not None
        sock = bind_metrics_socket(config.metrics_host, config.metrics_port)

        def render() -> bytes:
            metrics.refresh()
            return generate_latest(metrics.registry)

        listener = MetricsListener(sock, render)
        try:
            await listener.start()
        except BaseException:
            sock.close()
            raise
    state.metrics = metrics
    metrics.refresh()
    return ProcessMetrics(metrics, listener)


class _SupervisorCollector:
    """The supervisor's own numbers, read from its arbiter at each scrape."""

    def __init__(self) -> None:
        self.arbiter: Any = None

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        arbiter = self.arbiter
        if arbiter is None:
            return
        workers = list(arbiter.workers)
        yield GaugeMetricFamily("dualcorn_workers", "Worker processes serving now.",
                                value=sum(1 for w in workers if w.ready))  # fmt: skip
        yield GaugeMetricFamily("dualcorn_workers_wanted", "Worker processes wanted "
                                "(--workers, changed by TTIN and TTOU).",
                                value=arbiter.target)  # fmt: skip
        yield CounterMetricFamily("dualcorn_worker_restarts", "Workers replaced after they "
                                  "exited on their own (crash, kill, --limit-max-requests).",
                                  value=arbiter.restarts)  # fmt: skip


class SupervisorMetrics:
    """The supervisor's side: the shared directory, the aggregate, the listener thread."""

    def __init__(self, config: Config) -> None:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        from dualcorn.metrics.exporter import MetricsThread, bind_metrics_socket

        # Bound first: a port in use stops the supervisor before any worker starts.
        sock = bind_metrics_socket(config.metrics_host, config.metrics_port or 0)
        self.directory = tempfile.mkdtemp(prefix="dualcorn-metrics-")
        self._previous = os.environ.get(MULTIPROC_ENV)
        # Inherited by every server process started from now on.  An app that uses
        # prometheus_client itself then has its metrics added up across workers as well.
        os.environ[MULTIPROC_ENV] = self.directory
        self.registry = registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        self.collector = _SupervisorCollector()
        registry.register(self.collector)
        self.thread = MetricsThread(sock, lambda: generate_latest(registry))
        try:
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def watch(self, arbiter: Any) -> None:
        """Report ``arbiter``'s workers (it has ``workers``, ``target`` and ``restarts``)."""
        self.collector.arbiter = arbiter

    def process_exited(self, pid: int) -> None:
        """A server process ended: its counts stay in the totals, its gauges go."""
        from prometheus_client.multiprocess import mark_process_dead

        with contextlib.suppress(OSError):
            mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.thread.close()
        if self._previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = self._previous
        shutil.rmtree(self.directory, ignore_errors=True)


def supervisor_metrics(config: Config) -> SupervisorMetrics | None:
    """A :class:`SupervisorMetrics` when ``--metrics-port`` is given, else None."""
    if config.metrics_port is None:
        return None
    return SupervisorMetrics(config)
