"""CPU per request inside one process: a real connection object on an in-memory transport.

``python -m benchmarks.inprocess [SCENARIOS] [PARSERS] [N] [ROUNDS] [LOOP]``, e.g.
``python -m benchmarks.inprocess asgi_hello,asgi_post httptools,h11 5000 5 uvloop``
(LOOP: ``asyncio``, the default, or ``uvloop``, the loop the server runs by default).

No socket and no load generator: a real protocol object (h11 or httptools), a real
ServerState and a real app (WSGI through the real adapter) answer N keep-alive requests, and
``time.process_time`` (every thread of the process) is divided by N.  What it measures is the
server's own Python per request, with far less noise than ``python -m benchmarks`` on a busy
machine; it is how the protocols/ reshape (issue 13) was held to its 3 % budget.  Run it on two
checkouts (``PYTHONPATH=<checkout>``) and compare the medians, or the minimums.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any

from dualcorn import Config
from dualcorn.adapters import prepare_app
from dualcorn.protocols import protocol_class

GET = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
POST = (
    b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 1024\r\n\r\n" + b"x" * 1024
)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.closed = False

    def write(self, data: Any) -> None:
        self.count += 1

    def writelines(self, data: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


async def stream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    for _ in range(4):
        await send({"type": "http.response.body", "body": b"x" * 64, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message["body"])
        if not message["more_body"]:
            break
    body = b"%d" % size
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


SCENARIOS: dict[str, tuple[Any, str, bytes]] = {
    "asgi_hello": ("benchmarks.apps.asgi_hello:app", "asgi3", GET),
    "wsgi_hello": ("benchmarks.apps.wsgi_hello:app", "wsgi", GET),
    "flask_json": ("benchmarks.apps.flask_json:app", "wsgi", GET),
    "django_view": ("benchmarks.apps.django_view:app", "wsgi", GET),
    "fastapi_json": ("benchmarks.apps.fastapi_json:app", "asgi3", GET),
    "starlette_json": ("benchmarks.apps.starlette_json:app", "asgi3", GET),
    "litestar_json": ("benchmarks.apps.litestar_json:app", "asgi3", GET),
    "asgi_stream": (stream_app, "asgi3", GET),
    "asgi_post": (echo_app, "asgi3", POST),
}


async def run(name: str, parser: str, n: int) -> float:
    app, interface, request = SCENARIOS[name]
    config = Config(
        app=app,
        interface=interface,
        http=parser,
        lifespan="off",  # type: ignore[arg-type]
        access_log=False,
    )
    from dualcorn.protocols.state import ServerState

    asgi, kind = prepare_app(config)
    try:  # what the server does once the app is loaded (issue 15; absent from older checkouts)
        from dualcorn.gc_tuning import tune_gc
    except ImportError:
        pass
    else:
        tune_gc(freeze=config.gc_freeze, threshold=config.gc_threshold)
    try:
        state = ServerState(config, asgi)
    except AttributeError:  # before the capabilities (issue 13): an interface name
        state = ServerState(config, asgi, kind)
    cls = protocol_class(parser)
    proto: Any = None
    transport = Transport()
    answered = asyncio.Event()
    state.on_request_done.append(answered.set)

    async def one() -> None:
        nonlocal proto, transport
        if proto is None or transport.closed:  # --limit-keepalive-requests closed it
            if proto is not None:
                proto.connection_lost(None)
            proto = cls(state)
            transport = Transport()
            proto.connection_made(transport)
        answered.clear()
        proto.data_received(request)
        await answered.wait()

    for _ in range(300):
        await one()
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        await one()
    elapsed = time.process_time() - start
    if kind == "wsgi":
        await asgi.shutdown()
    return elapsed / n * 1e6


def main() -> None:
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(SCENARIOS)
    parsers = sys.argv[2].split(",") if len(sys.argv) > 2 else ["httptools", "h11"]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    runner: Any = asyncio.run
    if len(sys.argv) > 5 and sys.argv[5] == "uvloop":
        import uvloop

        runner = uvloop.run
    for name in names:
        for parser in parsers:
            results = [runner(run(name, parser, n)) for _ in range(rounds)]
            print(
                f"{name:14} {parser:10} median {statistics.median(results):7.2f} us/req  "
                f"min {min(results):7.2f}  all {' '.join(f'{r:.1f}' for r in results)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
