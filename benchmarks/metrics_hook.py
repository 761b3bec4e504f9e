"""What ``--metrics-port`` costs a request: the hooks alone, timed in a loop.

``python -m benchmarks.metrics_hook`` prints microseconds per call for

* the check every request pays with metrics off (``state.metrics is not None``);
* ``ServerMetrics.request_done`` with prometheus_client's in-process values (one server);
* the same with its multiprocess values (``--workers``: each update also writes an mmap'd file);
* the WSGI pool tracker wrapped around one job, and a gauge refresh (once per scrape or second).

Each figure is the best of five runs.  Each mode runs in a fresh interpreter:
prometheus_client picks its value class at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

N = 200_000


def _cycle(state: Any) -> Any:
    from dualcorn.protocols.cycle import RequestCycle

    scope = {"method": "GET", "http_version": "1.1", "path": "/", "raw_path": b"/",
             "query_string": b""}  # fmt: skip
    cycle = RequestCycle(scope, object(), object(), state, expect_100=False,  # type: ignore[arg-type]
                         more_body=False)  # fmt: skip
    cycle.started = True
    cycle.status = 200
    cycle.bytes_sent = 512
    return cycle


def _per_call(fn: Any, n: int = N) -> float:
    """Microseconds per call: the best of five runs (as timeit advises; the rest is noise)."""
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n // 5):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / (n // 5) * 1e6


def measure() -> dict[str, float]:
    from dualcorn.config import Config
    from dualcorn.metrics.recorder import PoolTracker, ServerMetrics
    from dualcorn.protocols.state import ServerState

    state = ServerState(Config(app=lambda: None), None)
    cycle = _cycle(state)
    results = {}

    def off() -> None:
        if state.metrics is not None:
            state.metrics.request_done(cycle)

    results["off: None check"] = _per_call(off)
    metrics = state.metrics = ServerMetrics(state)

    def on() -> None:
        if state.metrics is not None:
            state.metrics.request_done(cycle)

    results["on: request_done"] = _per_call(on)
    tracker = PoolTracker(8)

    def job() -> None:
        pass

    results["on: WSGI job, bare"] = _per_call(job)
    results["on: WSGI job, tracked"] = _per_call(lambda: tracker.wrap(job)())
    results["refresh (per scrape/second)"] = _per_call(metrics.refresh, 20_000)
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        for name, micros in measure().items():
            print(f"{name}\t{micros:.3f}")
        return
    rows: list[tuple[str, str, str]] = []
    for mode in ("single process", "multiprocess (--workers)"):
        env = dict(os.environ)
        with tempfile.TemporaryDirectory() as directory:
            if mode.startswith("multi"):
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            else:
                env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.metrics_hook", "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        for line in out.splitlines():
            name, micros = line.split("\t")
            rows.append((mode, name, micros))
    print("| values | hook | µs per call |")
    print("|---|---|---|")
    for mode, name, micros in rows:
        print(f"| {mode} | {name} | {micros} |")


if __name__ == "__main__":
    main()
