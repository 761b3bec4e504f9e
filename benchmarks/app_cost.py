"""What an ASGI app's own code costs per request under a server that costs (almost) nothing.

``python -m benchmarks.app_cost [APPS] [N] [ROUNDS]``, e.g.
``python -m benchmarks.app_cost fastapi_json,litestar_json 5000 5``.

No protocol, no socket, no task per request: one coroutine runs the app's lifespan startup,
then calls ``app(scope, receive, send)`` N times on a fresh copy of a wrk-like GET scope, with
a ``receive`` that returns the empty body and a ``send`` that only counts messages, and divides
``time.process_time`` by N.  The raw ASGI hello app measures what this driver itself costs
(the scope copy, the two calls into ``send``); subtracting it leaves the framework's share,
which is what it costs under any server, dualcorn, uvicorn or granian alike.  So for a CPU
target "at least granian's", the server's share would have to fall to granian's total minus
this (see ``results/profiles-asgi.md``).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import statistics
import sys
import time
from typing import Any

APPS = {
    "asgi_hello": "benchmarks.apps.asgi_hello:app",
    "fastapi_json": "benchmarks.apps.fastapi_json:app",
    "starlette_json": "benchmarks.apps.starlette_json:app",
    "litestar_json": "benchmarks.apps.litestar_json:app",
}
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8000")],
    "extensions": {},
}
_REQUEST = {"type": "http.request", "body": b"", "more_body": False}


def load(name: str) -> Any:
    module, _, attr = APPS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


async def _startup(app: Any, state: dict[str, Any]) -> asyncio.Task[Any]:
    """Run the lifespan startup (frameworks build their state there), leave it running."""
    started = asyncio.get_running_loop().create_future()
    messages = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # shutdown never comes: the task is cancelled at the end
        return {}

    async def send(message: dict[str, Any]) -> None:
        if not started.done():
            started.set_result(message["type"])

    scope = {"type": "lifespan", "asgi": SCOPE["asgi"], "state": state}
    task = asyncio.get_running_loop().create_task(app(scope, receive, send))
    try:
        await asyncio.wait_for(asyncio.shield(started), 10)
    except Exception:  # an app without lifespan support: it raised or never answered
        task.cancel()
    return task


async def run(name: str, n: int) -> float:
    app = load(name)
    state: dict[str, Any] = {}
    lifespan = await _startup(app, state)
    sent = 0

    async def receive() -> dict[str, Any]:
        return _REQUEST

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1

    async def one() -> None:
        await app({**SCOPE, "state": state.copy()}, receive, send)

    for _ in range(300):
        await one()
    gc.collect()
    sent = 0
    start = time.process_time()
    for _ in range(n):
        await one()
    elapsed = time.process_time() - start
    lifespan.cancel()
    await asyncio.gather(lifespan, return_exceptions=True)
    if sent < 2 * n:
        raise RuntimeError(f"{name}: {sent} messages sent for {n} requests")
    return elapsed / n * 1e6


def main() -> None:
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(APPS)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    base = None
    for name in ["asgi_hello", *[x for x in names if x != "asgi_hello"]]:
        results = [asyncio.run(run(name, n)) for _ in range(rounds)]
        median = statistics.median(results)
        if base is None:
            base = median
        print(
            f"{name:14} median {median:7.2f} us/req  app's own {median - base:7.2f}  "
            f"min {min(results):7.2f}  all {' '.join(f'{r:.1f}' for r in results)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
