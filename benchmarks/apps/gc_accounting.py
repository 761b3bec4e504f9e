"""A benchmark WSGI app with the cyclic garbage collector's cost counted (issue 15).

``GC_ACCOUNTING_APP=benchmarks.apps.flask_json:app python -m dualcorn
benchmarks.apps.gc_accounting:app --interface wsgi ...`` serves the named app and counts every
collection (``gc.callbacks``): how many per generation, and the CPU time of the thread that ran
it.  ``GET /gcreset`` zeroes the counts after a warm-up, ``GET /gcstats`` returns them as JSON
with the thresholds and ``gc.get_freeze_count()``; divide by the requests served meanwhile.
How ``--gc-freeze`` and ``--gc-threshold`` were measured (benchmarks/results/wsgi-speed.md).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

_module, _, _name = os.environ.get("GC_ACCOUNTING_APP", "benchmarks.apps.wsgi_hello:app").partition(
    ":"
)
_inner = getattr(importlib.import_module(_module), _name)
_lock = threading.Lock()
_counts = [0, 0, 0]
_seconds = [0.0, 0.0, 0.0]
_started = threading.local()


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.at = time.thread_time()
        return
    elapsed = time.thread_time() - getattr(_started, "at", time.thread_time())
    generation = info["generation"]
    with _lock:
        _counts[generation] += 1
        _seconds[generation] += elapsed


gc.callbacks.append(_on_collection)


def _json(start_response: Callable[..., Any], data: dict[str, Any]) -> Iterable[bytes]:
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/gcreset":
        with _lock:
            _counts[:] = [0, 0, 0]
            _seconds[:] = [0.0, 0.0, 0.0]
        return _json(start_response, {})
    if path == "/gcstats":
        with _lock:
            counts, seconds = list(_counts), list(_seconds)
        return _json(
            start_response,
            {
                "collections": counts,
                "cpu_seconds": seconds,
                "threshold": gc.get_threshold(),
                "frozen": gc.get_freeze_count(),
            },
        )
    result: Iterable[bytes] = _inner(environ, start_response)
    return result
