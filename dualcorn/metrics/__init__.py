"""Prometheus metrics (``--metrics-port``): what is recorded, where it is served, how it adds up.

Theory of operation
-------------------
* :mod:`.recorder` (every server process): counters and a histogram updated once per finished
  request or WebSocket session, from one hook each; gauges (requests in flight, open
  connections, WebSocket sessions, WSGI threads busy and requests waiting) are *read* from the
  server's own state when refreshed, so they cost a request nothing at all.
* :mod:`.exporter`: a small listener of its own (never the app's port, so ``/metrics`` is not
  exposed with the app by accident) answering ``GET /metrics`` in the Prometheus text format.
* :mod:`.supervised` (``--workers``, ``--reload``): the supervisor makes a temporary
  ``PROMETHEUS_MULTIPROC_DIR`` before it starts any server process; each process writes its
  values there (prometheus_client's multiprocess mode) and refreshes its gauges once a second;
  the supervisor serves the sum, so the numbers are the whole server's.  A worker that exits
  keeps its counts (they happened) and loses its gauges (``mark_process_dead``).

``prometheus_client`` is an optional extra (``dualcorn[metrics]``); without it nothing here is
imported unless ``--metrics-port`` is given, and then the server stops at start-up with one
line that names the extra.
"""

from __future__ import annotations

from dualcorn.errors import StartupError

__all__ = ["MISSING", "require_prometheus"]

MISSING = (
    "--metrics-port needs the prometheus_client package: "
    "pip install 'dualcorn[metrics]' (or prometheus_client)"
)


def require_prometheus() -> None:
    """Raise :class:`StartupError` (exit status 3) when prometheus_client is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise StartupError(MISSING) from None
