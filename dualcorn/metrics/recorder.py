"""What one server process records: prometheus_client objects and the hooks that feed them.

Cost per request.  With metrics off the server's hooks are a ``None`` check.  With metrics on, a
finished request costs one dictionary look-up of its label set (the label children are cached:
``Counter.labels()`` takes a lock and builds a tuple on every call) and four value updates.
Gauges cost requests nothing: :meth:`ServerMetrics.refresh` reads them from the server's state,
before each scrape in a single process and once a second in a supervised one.

Label values must stay few (every label set is a time series kept for ever): a method outside
RFC 9110's registered ones (and PATCH, RFC 5789) is recorded as ``OTHER``, so a client sending
made-up methods cannot grow the server's memory (design rule 2).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from dualcorn.adapters.wsgi_pool import Job
    from dualcorn.protocols.cycle import RequestCycle
    from dualcorn.protocols.state import ServerState

__all__ = ["CLIENT_GONE", "PoolTracker", "ServerMetrics", "mount_label"]

# RFC 9110 9.3 and RFC 5789; anything else is "OTHER".
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# nginx's 499 "client closed request": the client left before the app's response started.
CLIENT_GONE = 499
# Seconds.  Prometheus' default buckets start at 5 ms; a fast server needs finer ones below.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           60.0)  # fmt: skip
# Distinct (method, status, mount) label sets cached; past it, labels() is called each time.
_CACHE_LIMIT = 4096


def mount_label(scope: dict[str, Any]) -> str:
    """The ``mount`` label of a request: the path prefix of the app that served it.

    The mount router puts the prefix in the scope under ``"dualcorn.mount"`` (``"/"`` for the
    main app, ``"static:/static"`` for static files); the main app's label is empty.
    """
    mount: str = scope.get("dualcorn.mount", "")
    return "" if mount == "/" else mount


class PoolTracker:
    """WSGI threads busy and requests waiting for one, for one WSGI app's pool.

    :meth:`wrap` is called on the loop thread when a job is queued; the wrapped job runs on a
    pool thread.  The counts are read by :meth:`ServerMetrics.refresh`.
    """

    __slots__ = ("_lock", "busy", "mount", "threads", "waiting")

    def __init__(self, threads: int, mount: str = "") -> None:
        self._lock = threading.Lock()
        self.threads = threads
        self.mount = mount
        self.busy = 0
        self.waiting = 0

    def wrap(self, job: Job) -> Job:
        """``job`` counted as waiting now, and as busy while a pool thread runs it."""
        with self._lock:
            self.waiting += 1
        return _TrackedJob(job, self)


class _TrackedJob:
    """A pool job (dualcorn.adapters.wsgi_pool.Job) that moves its tracker's counts."""

    __slots__ = ("_job", "_tracker")

    def __init__(self, job: Job, tracker: PoolTracker) -> None:
        self._job = job
        self._tracker = tracker

    def run(self) -> None:
        tracker = self._tracker
        with tracker._lock:
            tracker.waiting -= 1
            tracker.busy += 1
        try:
            self._job.run()
        finally:
            with tracker._lock:
                tracker.busy -= 1

    def describe(self) -> str:
        return self._job.describe()


class ServerMetrics:
    """The metrics of one server process, in a registry of its own.

    Its own registry (not prometheus_client's global one) keeps the application's metrics and
    dualcorn's apart, and lets several servers live in one process (tests, ``dualcorn.run`` in
    threads).
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "dualcorn_http_requests", "HTTP requests served, by method, status and mount.",
            ("method", "status", "mount"), registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "dualcorn_http_request_duration_seconds",
            "Time from the request head to the end of the app's handling, by mount.",
            ("mount",), buckets=BUCKETS, registry=registry,
        )  # fmt: skip
        self.body_in = Counter(
            "dualcorn_http_request_body_bytes", "Request body bytes received, by mount.",
            ("mount",), registry=registry,
        )  # fmt: skip
        self.body_out = Counter(
            "dualcorn_http_response_body_bytes", "Response body bytes sent, by mount.",
            ("mount",), registry=registry,
        )  # fmt: skip
        self.refused = Counter(
            "dualcorn_http_refused", "Requests the server answered itself (400, 408, 413, "
            "431, 501, 503...) without calling the app, by status.", ("status",),
            registry=registry,
        )  # fmt: skip
        self.websockets = Counter(
            "dualcorn_websocket_sessions", "WebSocket sessions ended, by handshake status "
            "(101: accepted) and mount.", ("status", "mount"), registry=registry,
        )  # fmt: skip
        # Gauges: "livesum" adds up the processes alive now (multiprocess mode; ignored else).
        self.in_flight = _gauge("dualcorn_http_requests_in_flight",
                                "HTTP requests being handled now.", (), registry)  # fmt: skip
        self.connections = _gauge("dualcorn_connections_open",
                                  "Open client connections (WebSockets included).", (),
                                  registry)  # fmt: skip
        self.websockets_open = _gauge("dualcorn_websocket_sessions_open",
                                      "Open WebSocket sessions.", (), registry)  # fmt: skip
        self.wsgi_threads = _gauge(
            "dualcorn_wsgi_threads", "WSGI pool threads, by mount.", ("mount",), registry
        )
        self.wsgi_busy = _gauge("dualcorn_wsgi_threads_busy",
                                "WSGI threads running a request, by mount.", ("mount",),
                                registry)  # fmt: skip
        self.wsgi_waiting = _gauge("dualcorn_wsgi_requests_waiting",
                                   "WSGI requests waiting for a free thread, by mount.",
                                   ("mount",), registry)  # fmt: skip
        self.pools: list[PoolTracker] = []
        self._children: dict[tuple[str, int, str], tuple[Any, Any, Any, Any]] = {}

    # --- Hooks (loop thread) -------------------------------------------------------------

    def request_done(self, cycle: RequestCycle) -> None:
        """Called once per request when its task ends, whatever the outcome."""
        scope = cycle.scope
        method = scope["method"]
        status = cycle.status if cycle.started else CLIENT_GONE
        mount = mount_label(scope)
        key = (method, status, mount)
        children = self._children.get(key)
        if children is None:
            children = self._label(key)
        requests, duration, body_in, body_out = children
        requests.inc()
        duration.observe(time.monotonic() - cycle.start_time)
        received = cycle._body_seen
        if received:
            body_in.inc(received)
        if cycle.bytes_sent:
            body_out.inc(cycle.bytes_sent)

    def websocket_done(self, scope: dict[str, Any], status: int) -> None:
        """Called once per WebSocket session when its connection is lost; status 0 (the
        client left before the app answered the handshake) is recorded as 499."""
        self.websockets.labels(str(status or CLIENT_GONE), mount_label(scope)).inc()

    def request_refused(self, status: int) -> None:
        self.refused.labels(str(status)).inc()

    def watch_wsgi(self, adapter: Any, mount: str = "") -> None:
        """Count the busy threads and waiting requests of a WSGI adapter's pool."""
        tracker = PoolTracker(adapter.threads, mount)
        adapter.pool_tracker = tracker
        self.pools.append(tracker)

    def refresh(self) -> None:
        """Read the gauges from the server's state (loop thread)."""
        state = self.state
        self.in_flight.set(len(state.tasks))
        self.connections.set(len(state.connections))
        self.websockets_open.set(sum(1 for c in state.connections if c.long_lived))
        for pool in self.pools:
            self.wsgi_threads.labels(pool.mount).set(pool.threads)
            self.wsgi_busy.labels(pool.mount).set(pool.busy)
            self.wsgi_waiting.labels(pool.mount).set(pool.waiting)

    def _label(self, key: tuple[str, int, str]) -> tuple[Any, Any, Any, Any]:
        method, status, mount = key
        label = method if method in _METHODS else "OTHER"
        children = (
            self.requests.labels(label, str(status), mount),
            self.duration.labels(mount),
            self.body_in.labels(mount),
            self.body_out.labels(mount),
        )
        # Keyed by the raw method: bound the cache, since made-up methods all map to OTHER.
        if len(self._children) < _CACHE_LIMIT:
            self._children[key] = children
        return children


def _gauge(name: str, text: str, labels: tuple[str, ...], registry: CollectorRegistry) -> Gauge:
    return Gauge(name, text, labels, registry=registry, multiprocess_mode="livesum")
